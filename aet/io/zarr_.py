"""Native storage: Zarr through xarray (chunked, lazy on read)."""

from __future__ import annotations

import os
from pathlib import Path

import xarray as xr

from ..core.meta import CLASS_ATTR
from ..core.schema import facade_class
from ..errors import CorruptFileError, MetadataError
from ._common import guard_lazy_dataset

_VAR = {"TiltSeries": "projections", "Volume": "volume"}


def to_dataset(obj) -> xr.Dataset:
    """The Dataset aet stores for a facade object (class name in ``attrs['aet_class']``)."""
    AtomicModel = facade_class("AtomicModel")

    if isinstance(obj, facade_class("NucleusTracker")):
        return obj.to_dataset()  # its own layout (models along atom, registration summary)
    if isinstance(obj, AtomicModel):
        ds = obj.data.copy(deep=False)
    else:
        da = obj.data
        name = _VAR[type(obj).__name__]
        ds = da.to_dataset(name=name)
        ds.attrs = dict(da.attrs)
        ds[name].attrs = {}
    ds.attrs[CLASS_ATTR] = type(obj).__name__
    return ds


def from_dataset(ds: xr.Dataset, *, source: str):
    """Rebuild the facade object a Dataset was saved from."""
    AtomicModel = facade_class("AtomicModel")
    TiltSeries = facade_class("TiltSeries")
    Volume = facade_class("Volume")

    cls = ds.attrs.get(CLASS_ATTR)
    if cls == "NucleusTracker":
        return _tracker_from_dataset(ds)
    if cls == "AtomicModel":
        return AtomicModel._wrap(AtomicModel(ds).data)
    if cls in _VAR:
        var = _VAR[cls]
        if var not in ds:
            raise CorruptFileError(f"{source}: aet {cls} store lacks variable {var!r}")
        da = ds[var]
        da.attrs = dict(ds.attrs)
        obj = (TiltSeries if cls == "TiltSeries" else Volume)(da)
        return type(obj)._wrap(obj.data)
    raise MetadataError(
        f"{source} is not an aet store (attrs['aet_class'] is {cls!r}); open plain arrays with "
        f"xarray and wrap them, e.g. aet.Volume(xr.open_zarr(path)['var'], voxel_size_A=...)"
    )


def _tracker_from_dataset(ds: xr.Dataset):
    """A saved :class:`aet.NucleusTracker` (issue 6; its own layout, see
    ``NucleusTracker.to_dataset``)."""
    return facade_class("NucleusTracker").from_dataset(ds)


def write(obj, path: Path, *, chunks=None) -> None:
    ds = to_dataset(obj)
    if chunks is not None:
        ds = ds.chunk(chunks)
    for v in ds.variables.values():
        v.encoding = {}
    # Zarr format 2: every dtype we store (including the fixed-width unicode of species and
    # axis names, which has no Zarr v3 specification yet) is stable and readable by other tools
    ds.to_zarr(path, mode="w", consolidated=True, zarr_format=2)


def read(path: Path, *, kind=None, **metadata):
    try:
        ds = xr.open_zarr(path, consolidated=None, chunks=None)
        ds = guard_lazy_dataset(ds, path)  # lazy, and damaged chunks raise CorruptFileError
        obj = from_dataset(ds, source=str(path))
    except (CorruptFileError, MetadataError):
        raise
    except Exception as exc:  # zarr raises many types for a broken store
        raise CorruptFileError(f"{str(path)!r} is not a readable Zarr store: "
                               f"{type(exc).__name__}: {exc}") from None
    return _apply_overrides(obj, kind, metadata, path)


def _apply_overrides(obj, kind, metadata, path):
    AtomicModel = facade_class("AtomicModel")

    want = {"TiltSeries": "tilt_series", "Volume": "volume", "AtomicModel": "model",
            "NucleusTracker": "tracker"}
    if kind is not None and want[type(obj).__name__] != kind:
        raise MetadataError(f"{str(path)!r} holds a {type(obj).__name__}, not kind={kind!r}")
    if metadata:
        if isinstance(obj, AtomicModel):
            ds = obj.data.copy()
            ds.attrs.update(metadata)
            return AtomicModel._wrap(ds)
        md = dict(metadata)
        if isinstance(md.get("angles"), (str, os.PathLike)):
            from .angles import read_angles

            md["angles"] = read_angles(md["angles"], n=obj.data.sizes.get("angle", 1),
                                       frames_per_angle=obj.data.sizes.get("frame", 1)).values
        return type(obj)(obj.data, **md)
    return obj
