"""NetCDF4/HDF5 through xarray: aet objects written by :func:`aet.io.write`, any NetCDF file
with one 3D variable (dims named ``angle, y, x`` or ``z, y, x``), and plain analysis datasets
(:func:`write_dataset`, :func:`read_dataset`: what ``aet analyze`` writes).

NetCDF attributes hold text, numbers and 1D numeric arrays only. Other attribute values (nested
lists such as per-region 3 × 3 crystal axes, dicts, booleans, None) are stored as JSON text and
their names listed in the attribute ``aet_json_attrs``; the readers here decode them. Writing
needs the netCDF4 library (a dependency of aet); h5netcdf is used instead when only it is
installed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from ..core.meta import CLASS_ATTR, to_jsonable
from ..errors import CorruptFileError
from ._common import guard_lazy_dataset
from .zarr_ import _apply_overrides, from_dataset, to_dataset

JSON_ATTRS = "aet_json_attrs"


def _engine() -> str:
    try:
        import netCDF4  # noqa: F401
    except ImportError:
        try:
            import h5netcdf  # noqa: F401
        except ImportError:
            raise ImportError(
                "writing NetCDF needs the netCDF4 library, a dependency of aet that is missing "
                "here: pip install netCDF4 (or h5netcdf)") from None
        return "h5netcdf"
    return "netcdf4"


def _storable(v) -> bool:
    if isinstance(v, (bool, np.bool_)) or v is None:
        return False
    if isinstance(v, (str, int, float, np.integer, np.floating)):
        return True
    if isinstance(v, (list, tuple, np.ndarray)):
        a = np.asarray(v)
        return a.ndim == 1 and a.size > 0 and a.dtype.kind in "iuf"
    return False


def _encode_attrs(attrs: dict) -> dict:
    out, enc = {}, []
    for k, v in attrs.items():
        if k == JSON_ATTRS:
            continue
        if _storable(v):
            out[k] = v
        else:
            out[k] = json.dumps(to_jsonable(v))
            enc.append(k)
    if enc:
        out[JSON_ATTRS] = json.dumps(enc)
    return out


def _decode_attrs(attrs: dict) -> dict:
    out = dict(attrs)
    raw = out.pop(JSON_ATTRS, None)
    if raw is None:
        return out
    try:
        names = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        return out
    for k in names if isinstance(names, list) else []:
        if isinstance(out.get(k), str):
            try:
                out[k] = json.loads(out[k])
            except json.JSONDecodeError:
                pass
    return out


def _encode(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy(deep=False)
    ds.attrs = _encode_attrs(ds.attrs)
    for name in list(ds.variables):
        ds[name].attrs = _encode_attrs(ds[name].attrs)
        ds[name].encoding = {}
    return ds


def _decode(ds: xr.Dataset) -> xr.Dataset:
    ds.attrs = _decode_attrs(ds.attrs)
    for name in list(ds.variables):
        ds[name].attrs = _decode_attrs(ds[name].attrs)
    return ds


def write(obj, path: Path) -> None:
    _encode(to_dataset(obj)).to_netcdf(path, engine=_engine())


def write_dataset(ds: xr.Dataset, path, *, overwrite: bool = True) -> Path:
    """Write a plain :class:`xarray.Dataset` (e.g. strain fields, order parameters) to NetCDF4,
    atomically, with every attribute kept (see the module docstring)."""
    from ._atomic import atomic_path

    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"write_dataset writes an xarray.Dataset, got {type(ds).__name__}")
    p = Path(path)
    enc = _encode(ds)
    with atomic_path(p, overwrite=overwrite) as tmp:
        enc.to_netcdf(tmp, engine=_engine())
    return p


def read_dataset(path) -> xr.Dataset:
    """Read a NetCDF file written by :func:`write_dataset` (JSON attributes decoded), in
    memory."""
    try:
        with xr.open_dataset(path) as ds:
            return _decode(ds.load())
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"{str(path)!r} is not a readable NetCDF file: {exc}") from None


def read(path: Path, *, kind=None, **metadata):
    try:
        ds = guard_lazy_dataset(xr.open_dataset(path, chunks=None), path)
    except Exception as exc:
        raise CorruptFileError(f"{str(path)!r} is not a readable NetCDF/HDF5 file: {exc}") \
            from None
    ds = _decode(ds)
    if CLASS_ATTR in ds.attrs:
        return _apply_overrides(from_dataset(ds, source=str(path)), kind, metadata, path)
    from ._common import make_object

    arrays = [v for v in ds.data_vars.values() if v.ndim in (3, 4)]
    if len(arrays) != 1:
        raise CorruptFileError(
            f"{str(path)!r} is not an aet file and has {len(arrays)} 3D/4D variables "
            f"({sorted(ds.data_vars)}); open it with xarray and wrap the one you want"
        )
    da = arrays[0]
    default = "volume" if tuple(da.dims) == ("z", "y", "x") else None
    return make_object(da.data, path=path, fmt="netcdf", kind=kind, metadata=metadata,
                       file_attrs={k: v for k, v in da.attrs.items()
                                   if isinstance(v, (int, float, str))},
                       default_kind=default)
