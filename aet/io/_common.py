"""Helpers shared by the readers: turning a raw array + metadata into the right object."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..core.meta import PROVENANCE_ATTR, get_provenance, with_provenance
from ..core.schema import facade_class
from ..errors import MetadataError


def make_object(array, *, path: Path, fmt: str, kind: str | None, metadata: dict[str, Any],
                file_attrs: dict[str, Any] | None = None, file_angles=None,
                default_kind: str | None = None, use_sidecar: bool = True):
    """Wrap a raw 2D/3D/4D array read from ``path`` as a TiltSeries or Volume.

    Precedence for angles and pixel size: ``metadata`` (the caller) > the file > a sidecar
    (:func:`aet.io.angles.find_sidecar`; not looked for when ``use_sidecar`` is False, e.g. for
    a reconstruction lying beside its tilt series' ``.tlt``). ``metadata["angles"]`` may be
    numbers or the path of an angle file (:func:`aet.io.angles.read_angles`).
    """
    TiltSeries = facade_class("TiltSeries")
    Volume = facade_class("Volume")
    from .angles import check_degrees, find_sidecar, read_angles

    md = dict(metadata)
    attrs = {**(file_attrs or {})}
    file_px = attrs.pop("pixel_size_A", None)
    n_tilts = 1 if array.ndim == 2 else int(array.shape[0])
    fpa = int(array.shape[1]) if array.ndim == 4 else 1
    angles = md.pop("angles", None)
    euler_convention = md.pop("euler_convention", None)
    src: dict[str, Any] = {"path": str(path), "format": fmt}
    side_attrs: dict[str, Any] = {}
    if isinstance(angles, (str, os.PathLike)):
        got = read_angles(angles, n=n_tilts, frames_per_angle=fpa,
                          euler_convention=euler_convention)
        angles, side_attrs = got.values, dict(got.attrs)
        src["angles"] = got.source
    elif angles is not None:
        check_degrees(angles, f"angles for {str(path)!r}", stacklevel=4)
        src["angles"] = "argument"
    if angles is None and file_angles is not None:
        angles = file_angles
        check_degrees(angles, f"the tilt angles in {str(path)!r}", stacklevel=4)
        src["angles"] = "file"
    if angles is None and kind != "volume" and use_sidecar:
        side = find_sidecar(path)
        if side is not None:
            got = read_angles(side, n=n_tilts, frames_per_angle=fpa)
            angles, side_attrs = got.values, dict(got.attrs)
            src["angles"] = str(side)
    side_px = side_attrs.pop("pixel_size_A", None)
    for k, v in side_attrs.items():
        attrs.setdefault(k, v)
    if kind is None:
        if angles is not None:
            kind = "tilt_series"
        elif default_kind is not None:
            kind = default_kind
        else:
            raise MetadataError(
                f"{str(path)!r} holds an array of shape {tuple(array.shape)} but no tilt angles "
                f"were given; pass angles=[...] (degrees) or an angle file (.tlt, .rawtlt, "
                f".mdoc) for a tilt series, or kind='volume' for a 3D volume"
            )
    if kind == "tilt_series":
        if array.ndim == 2:
            array = array[None]
        px = md.pop("pixel_size_A", None)
        if px is None:
            px = file_px if file_px is not None else side_px
        if px is None:
            raise MetadataError(
                f"pixel_size_A is missing: {str(path)!r} carries no pixel size; pass "
                f"pixel_size_A=<Å per pixel>"
            )
        obj = TiltSeries(array, angles=angles, pixel_size_A=px, **attrs, **md)
    elif kind == "volume":
        vs = md.pop("voxel_size_A", None)
        if vs is None:
            vs = md.pop("pixel_size_A", None)
        if vs is None:
            vs = file_px
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
