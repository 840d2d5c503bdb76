"""NetCDF4/HDF5 through xarray: aet objects written by :func:`aet.io.write`, or any NetCDF
file with one 3D variable (dims named ``angle, y, x`` or ``z, y, x``)."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from ..errors import CorruptFileError
from ..model._meta import CLASS_ATTR
from ._common import guard_lazy_dataset
from .zarr_ import _apply_overrides, from_dataset, to_dataset


def write(obj, path: Path) -> None:
    ds = to_dataset(obj)
    for v in ds.variables.values():
        v.encoding = {}
    ds.to_netcdf(path, engine="h5netcdf" if _has_h5netcdf() else "netcdf4")


def _has_h5netcdf() -> bool:
    try:
        import h5netcdf  # noqa: F401
    except ImportError:
        return False
    return True


def read(path: Path, *, kind=None, **metadata):
    try:
        ds = guard_lazy_dataset(xr.open_dataset(path, chunks=None), path)
    except Exception as exc:
        raise CorruptFileError(f"{str(path)!r} is not a readable NetCDF/HDF5 file: {exc}") \
            from None
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
