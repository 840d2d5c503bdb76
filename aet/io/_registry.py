"""The format registry: one declaration per format, modules imported on first use."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnknownFormatError

KINDS = ("tilt_series", "volume", "model", "tracker")


@dataclass(frozen=True)
class Format:
    """A registered file format.

    ``reader``/``writer`` are ``"module:function"`` strings resolved on first use so that
    importing :mod:`aet` imports no format library.
    Readers: ``read(path, *, kind=None, **metadata) -> TiltSeries | Volume | AtomicModel``.
    Writers: ``write(obj, path, **options)`` writing to exactly ``path`` (the registry wraps
    them in an atomic rename).
    """

    name: str
    extensions: tuple[str, ...]
    description: str
    kinds: tuple[str, ...]
    reader: str | None = None
    writer: str | None = None
    filenames: tuple[str, ...] = ()  # exact file names (e.g. POSCAR, CONTCAR)

    def _resolve(self, spec: str):
        mod, func = spec.split(":")
        return getattr(importlib.import_module(mod, package="aet.io"), func)

    def read(self, path, **kw):
        if self.reader is None:
            raise UnknownFormatError(f"format {self.name!r} cannot be read")
        return self._resolve(self.reader)(path, **kw)

    def write(self, obj, path, **kw):
        if self.writer is None:
            raise UnknownFormatError(
                f"format {self.name!r} cannot be written; writable formats: "
                f"{', '.join(f.name for f in REGISTRY.values() if f.writer)}"
            )
        return self._resolve(self.writer)(obj, path, **kw)


REGISTRY: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    """Add a format (replacing one of the same name)."""
    REGISTRY[fmt.name] = fmt
    return fmt


def supported() -> str:
    """A one-line list of the supported formats and extensions."""
    return "; ".join(
        f"{f.name} ({', '.join(f.extensions + f.filenames)})" for f in REGISTRY.values()
    )


def format_for(path, format: str | None = None, *, kind: str | None = None) -> Format:
    """Find the format of ``path`` (by ``format`` name, exact file name, then extension)."""
    if format is not None:
        key = format.lower().lstrip(".")
        for f in REGISTRY.values():
            if key == f.name or ("." + key) in f.extensions:
                return f
        raise UnknownFormatError(f"unknown format {format!r}; supported formats: {supported()}")
    p = Path(path)
    name = p.name.lower()
    candidates = []
    for f in REGISTRY.values():
        if kind is not None and kind not in f.kinds:
            continue
        if any(name == fn.lower() or name.startswith(fn.lower() + "_") for fn in f.filenames):
            return f
        for ext in f.extensions:
            if name.endswith(ext):
                candidates.append((len(ext), f))
    if candidates:
        return max(candidates, key=lambda t: t[0])[1]
    raise UnknownFormatError(
        f"cannot tell the format of {str(path)!r} from its extension {p.suffix!r}; supported "
        f"formats: {supported()}. Pass format=... to choose one"
    )


# --------------------------------------------------------------------------- declarations
for _fmt in (
    Format("zarr", (".zarr",), "aet native store (Zarr via xarray; lazy)",
           ("tilt_series", "volume", "model", "tracker"), ".zarr_:read", ".zarr_:write"),
    Format("netcdf", (".nc", ".h5", ".hdf5", ".nc4"), "NetCDF4/HDF5 written by xarray or aet",
           ("tilt_series", "volume", "model"), ".netcdf:read", ".netcdf:write"),
    Format("numpy", (".npy", ".npz"), "NumPy arrays", ("tilt_series", "volume"),
           ".numpy_:read", ".numpy_:write"),
    Format("tiff", (".tif", ".tiff"), "TIFF stacks (tifffile)", ("tilt_series", "volume"),
           ".tiff:read", ".tiff:write"),
    Format("mrc", (".mrc", ".mrcs", ".rec", ".ali", ".st", ".map"), "MRC/CCP4 (mrcfile)",
           ("tilt_series", "volume"), ".mrc:read", ".mrc:write"),
    Format("matlab", (".mat",), "MATLAB .mat v5 and v7.3 (AET group layout)",
           ("tilt_series", "volume", "model"), ".matlab:read"),
    Format("dm", (".dm3", ".dm4"), "Gatan DigitalMicrograph (RosettaSciIO)",
           ("tilt_series", "volume"), ".rsciio_:read"),
    Format("tia", (".emi", ".ser"), "FEI/Thermo TIA (RosettaSciIO)", ("tilt_series", "volume"),
           ".rsciio_:read"),
    Format("emd", (".emd",), "Berkeley EMD (tomviz, Materials Data Bank tilt series) / Velox EMD "
           "(RosettaSciIO)", ("tilt_series", "volume"), ".emd:read"),
    Format("csv", (".csv",), "atom table: x_A, y_A, z_A, species (+ extras)", ("model",),
           ".atoms:read_csv", ".atoms:write_csv"),
    Format("xyz", (".xyz", ".extxyz"), "XYZ / extended XYZ (ASE)", ("model",),
           ".atoms:read_ase", ".atoms:write_xyz"),
    Format("cif", (".cif",), "CIF (ASE)", ("model",), ".atoms:read_ase", ".atoms:write_cif"),
    Format("poscar", (".vasp", ".poscar"), "VASP POSCAR (ASE)", ("model",), ".atoms:read_ase",
           ".atoms:write_poscar", filenames=("POSCAR", "CONTCAR")),
):
    register(_fmt)
