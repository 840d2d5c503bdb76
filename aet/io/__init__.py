"""Reading and writing: :func:`open` for any supported format, :func:`save` to native Zarr.

Formats are declared once in :mod:`aet.io._registry`; :func:`supported_formats` lists them.
Every write goes to a temporary name in the target folder and is renamed into place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..core.schema import facade_class
from ..errors import UnknownFormatError
from ._atomic import atomic_path
from ._registry import REGISTRY, Format, format_for, register, supported

__all__ = ["REGISTRY", "Format", "open", "read_model", "register", "save",
           "supported_formats", "write", "write_model"]


def supported_formats() -> dict[str, Format]:
    """The registered formats by name."""
    return dict(REGISTRY)


def _check_exists(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"No such file or folder: {str(p)!r}")
    return p


def open(path, *, format: str | None = None, kind: str | None = None, **metadata):
    """Open a tilt series, volume or atomic model from any supported format.

    Parameters
    ----------
    path : str or path-like
    format : str, optional
        Format name (see :func:`supported_formats`); by default from the extension.
    kind : {"tilt_series", "volume", "model"}, optional
        What the file holds when the format cannot tell (a 3D TIFF may be either). By
        default: a tilt series when angles are known (argument, file or sidecar), a volume
        for ``.rec``/volume stores, and a model for atom formats.
    **metadata
        ``angles`` (degrees, 1D or ``(n, 3)`` Euler), ``pixel_size_A``/``voxel_size_A`` and
        any attrs; they override what the file says. Reader options also go here:
        ``frames_per_angle``, ``lazy`` (TIFF/MRC, see :mod:`aet.io.mrc`); ``variable``,
        ``euler_convention``, ``species``, ``types`` (MATLAB, see :mod:`aet.io.matlab`);
        ``signal`` (DM/TIA/EMD, see :mod:`aet.io.rsciio_`).

    Returns
    -------
    TiltSeries, Volume or AtomicModel
    """
    p = _check_exists(path)
    if kind is not None and kind not in ("tilt_series", "volume", "model"):
        raise ValueError(f"kind must be 'tilt_series', 'volume' or 'model', got {kind!r}")
    fmt = format_for(p, format)
    from ._h5probe import check_hdf5

    check_hdf5(p)  # a damaged HDF5 header can crash or hang the C library: probe it first
    return fmt.read(p, kind=kind, **metadata)


def save(obj, path, *, overwrite: bool = True) -> Path:
    """Save a ``TiltSeries``, ``Volume``, ``AtomicModel`` or ``NucleusTracker`` to a native
    Zarr store."""
    p = Path(path)
    if p.suffix.lower() != ".zarr":
        raise UnknownFormatError(
            f"save() writes aet's native Zarr store; {str(path)!r} does not end in .zarr. "
            f"Use a .zarr path, or write(obj, path) for other formats ({supported()})"
        )
    return write(obj, p, format="zarr", overwrite=overwrite)


def write(obj, path, *, format: str | None = None, overwrite: bool = True, **options) -> Path:
    """Write ``obj`` in the format given by ``format`` or the extension, atomically."""
    p = Path(path)
    kind = _kind_of(obj)
    try:
        fmt = format_for(p, format, kind=kind)
    except UnknownFormatError:
        fmt = format_for(p, format)  # a known format that cannot hold this kind: say so
    if kind not in fmt.kinds:
        raise UnknownFormatError(
            f"format {fmt.name!r} cannot hold a {type(obj).__name__}; formats that can: "
            f"{', '.join(f.name for f in REGISTRY.values() if kind in f.kinds and f.writer)}"
        )
    sidecars = {p.parent / (p.name + suffix) for suffix in _SIDECARS.get(fmt.name, ())}
    if not overwrite:
        for side in sorted(sidecars):
            if side.exists():
                raise FileExistsError(f"{str(side)!r} (written beside {p.name}) exists; pass "
                                      f"overwrite=True to replace it")
    with atomic_path(p, overwrite=overwrite) as tmp:
        extra = fmt.write(obj, tmp, **options)
    for suffix, doc in (extra or {}).items():
        if isinstance(doc, dict) and "url" in doc:
            doc = {**doc, "url": p.name}
        with atomic_path(p.parent / (p.name + suffix)) as tmp:
            tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    return p


#: files a format writes beside its target (``<name><suffix>``)
_SIDECARS = {"csv": ("-metadata.json",)}


def write_model(model, path, *, format: str | None = None, overwrite: bool = True) -> Path:
    """Write an ``AtomicModel`` (CSV, XYZ/extXYZ, CIF, POSCAR, Zarr)."""
    return write(model, path, format=format, overwrite=overwrite)


def read_model(path, *, format: str | None = None):
    """Read an ``AtomicModel`` from any atom format."""
    AtomicModel = facade_class("AtomicModel")

    obj = open(path, format=format, kind="model")
    if not isinstance(obj, AtomicModel):
        raise UnknownFormatError(f"{str(path)!r} holds a {type(obj).__name__}, not a model")
    return obj


def _kind_of(obj) -> str:
    AtomicModel = facade_class("AtomicModel")
    TiltSeries = facade_class("TiltSeries")
    Volume = facade_class("Volume")
    NucleusTracker = facade_class("NucleusTracker")

    if isinstance(obj, TiltSeries):
        return "tilt_series"
    if isinstance(obj, NucleusTracker):
        return "tracker"
    if isinstance(obj, Volume):
        return "volume"
    if isinstance(obj, AtomicModel):
        return "model"
    raise TypeError(
        f"can only write TiltSeries, Volume, AtomicModel or NucleusTracker objects, got "
        f"{type(obj).__name__}"
    )
