"""Helpers shared by the readers: turning a raw array + metadata into the right object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MetadataError
from ..model._meta import PROVENANCE_ATTR, get_provenance, with_provenance


def read_sidecar_angles(path: Path) -> np.ndarray | None:
    """Angles from a sidecar text file next to ``path``: ``<stem>.tlt``, ``<stem>.rawtlt``,
    ``<stem>_angles.txt`` or ``<stem>.angles`` (one angle per line, or 3 Euler columns)."""
    stem = path.name
    for suffix in (".zarr", ".mrc", ".tiff", ".tif", ".npy", ".npz", ".st", ".ali", ".mrcs",
                   ".dm3", ".dm4", ".emd", ".ser", ".emi", ".h5", ".hdf5", ".nc", ".rec", ".map",
                   ".mat"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for name in (f"{stem}.tlt", f"{stem}.rawtlt", f"{stem}_angles.txt", f"{stem}.angles"):
        cand = path.parent / name
        if cand.is_file():
            try:
                arr = np.loadtxt(cand, dtype=np.float64, ndmin=1)
            except ValueError as exc:
                raise MetadataError(f"angle sidecar {str(cand)!r} is not numeric text: {exc}") \
                    from None
            return arr
    return None


def make_object(array, *, path: Path, fmt: str, kind: str | None, metadata: dict[str, Any],
                file_attrs: dict[str, Any] | None = None, file_angles=None,
                default_kind: str | None = None):
    """Wrap a raw 2D/3D/4D array read from ``path`` as a TiltSeries or Volume.

    Precedence for angles and pixel size: ``metadata`` (the caller) > the file > a sidecar.
    """
    from ..model.tiltseries import TiltSeries
    from ..model.volume import Volume

    md = dict(metadata)
    attrs = {**(file_attrs or {})}
    file_px = attrs.pop("pixel_size_A", None)
    angles = md.pop("angles", None)
    if angles is None:
        angles = file_angles
    if angles is None:
        angles = read_sidecar_angles(path)
    if kind is None:
        if angles is not None:
            kind = "tilt_series"
        elif default_kind is not None:
            kind = default_kind
        else:
            raise MetadataError(
                f"{str(path)!r} holds an array of shape {tuple(array.shape)} but no tilt angles "
                f"were given; pass angles=[...] (degrees) for a tilt series, or kind='volume' "
                f"for a 3D volume"
            )
    src = {"path": str(path), "format": fmt}
    if kind == "tilt_series":
        if array.ndim == 2:
            array = array[None]
        px = md.pop("pixel_size_A", None) or file_px
        if px is None:
            raise MetadataError(
                f"pixel_size_A is missing: {str(path)!r} carries no pixel size; pass "
                f"pixel_size_A=<Å per pixel>"
            )
        obj = TiltSeries(array, angles=angles, pixel_size_A=px, **attrs, **md)
    elif kind == "volume":
        vs = md.pop("voxel_size_A", None) or md.pop("pixel_size_A", None) or file_px
        if vs is None:
            raise MetadataError(
                f"voxel_size_A is missing: {str(path)!r} carries no voxel size; pass "
                f"voxel_size_A=<Å per voxel>"
            )
        obj = Volume(array, voxel_size_A=vs, **attrs, **md)
    else:
        raise ValueError(f"{fmt} files hold arrays, not atomic models (kind={kind!r})")
    return type(obj)._wrap(with_provenance(obj.data, "open", src))


class _GuardedArray:
    """Array-like over a lazily indexed backend array whose reads raise
    :class:`~aet.errors.CorruptFileError` (naming the file) instead of a library's own error.

    Lazy stores are read chunk by chunk long after ``open``; a damaged chunk must still come
    out as a documented error.
    """

    def __init__(self, inner, path, name):
        self.inner, self.path, self.name = inner, str(path), name
        self.shape, self.dtype, self.ndim = tuple(inner.shape), inner.dtype, len(inner.shape)

    def __getitem__(self, key):
        from ..errors import CorruptFileError

        try:
            return np.asarray(self.inner[key].values)
        except Exception as exc:  # the codec/storage layers raise many types
            raise CorruptFileError(
                f"{self.path!r}: variable {self.name!r} could not be read at {key}: "
                f"{type(exc).__name__}: {exc}"
            ) from None


def guard_lazy_dataset(ds, path):
    """Return ``ds`` with every data variable as a dask array over a :class:`_GuardedArray`
    (chunks = the store's own chunks, so one block reads exactly one stored chunk)."""
    import os

    import dask.array as dsa
    from dask.base import tokenize

    out = ds.copy()
    mtime = os.stat(path).st_mtime_ns
    for name, var in ds.data_vars.items():
        inner = var.variable  # lazily indexed: indexing it reads only what is asked for
        chunks = var.encoding.get("preferred_chunks") or {}
        enc = var.encoding.get("chunks") or var.encoding.get("chunksizes")
        if enc is not None and len(enc) == var.ndim:
            chunk_shape = tuple(int(c) for c in enc)
        else:
            chunk_shape = tuple(int(chunks.get(d, n)) for d, n in zip(var.dims, var.shape))
        if var.ndim == 0:
            continue
        arr = dsa.from_array(_GuardedArray(inner, path, name), chunks=chunk_shape,
                             name=f"aet-open-{tokenize(str(path), name, mtime)}",
                             asarray=False, fancy=False)
        out[name] = var.copy(data=arr)
    return out


def restore_provenance(obj, saved):
    """Put the provenance list ``saved`` in a file before the ``open`` record of ``obj``."""
    if not saved or not isinstance(saved, list):
        return obj
    da = obj.data
    opened = get_provenance(da.attrs)[-1]
    base = da.copy(deep=False)
    base.attrs = {**da.attrs, PROVENANCE_ATTR: json.dumps(saved)}
    return type(obj)._wrap(with_provenance(base, opened["op"], opened["params"]))
