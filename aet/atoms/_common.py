"""Shared validation helpers of :mod:`aet.atoms` (core level: no facades)."""

from __future__ import annotations

import numbers

import numpy as np
import xarray as xr

from ..core.meta import spacing_from_coord
from ..core.schema import as_xarray


def check_volume(volume, name: str = "volume") -> tuple[xr.DataArray, float]:
    """Return ``(DataArray, voxel_size_A)`` of a ``(z, y, x)`` volume with Å coordinates."""
    volume = as_xarray(volume, xr.DataArray)
    if not isinstance(volume, xr.DataArray):
        raise TypeError(
            f"{name} must be an xarray.DataArray with dims (z, y, x) (or an aet.Volume), got "
            f"{type(volume).__name__}; wrap a numpy array with aet.Volume(arr, voxel_size_A=...)"
        )
    if tuple(volume.dims) != ("z", "y", "x"):
        raise ValueError(
            f"{name} must have dims ('z', 'y', 'x'), got {tuple(volume.dims)}; transpose it "
            f"with .transpose('z', 'y', 'x')"
        )
    spacings = []
    for d in ("z", "y", "x"):
        if d not in volume.coords:
            raise ValueError(f"{name} has no coordinate {d!r} in Å; build it with aet.Volume")
        spacings.append(spacing_from_coord(volume.coords[d].values, d)
                        if volume.sizes[d] > 1 else float(volume.attrs.get("voxel_size_A", 1)))
    if not np.allclose(spacings, spacings[0], rtol=1e-6):
        raise ValueError(f"{name} must have cubic voxels; got spacings {spacings} Å (z, y, x)")
    if volume.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {volume.dtype}")
    vs = float(spacings[0])
    attr = volume.attrs.get("voxel_size_A")
    if attr is not None and np.isclose(float(attr), vs, rtol=1e-6):
        vs = float(attr)  # the exact value the user gave (coords carry rounding)
    return volume, vs


def check_positive(name: str, value, *, allow_zero: bool = False, integer: bool = False):
    ok_type = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, ok_type):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__} {value!r}")
    v = int(value) if integer else float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return v


def check_model(ds, name: str = "model") -> xr.Dataset:
    ds = as_xarray(ds, xr.Dataset)
    if not isinstance(ds, xr.Dataset) or "position" not in ds or "species" not in ds:
        raise TypeError(
            f"{name} must be an atomic-model xarray.Dataset (variables 'position', 'species') "
            f"or an aet.AtomicModel, got {type(ds).__name__}"
        )
    return ds


def model_positions(ds: xr.Dataset) -> np.ndarray:
    pos = ds["position"].transpose("atom", "axis")
    if "axis" in ds.coords:
        pos = pos.sel(axis=["x", "y", "z"])
    return np.array(pos.values, dtype=np.float64)
