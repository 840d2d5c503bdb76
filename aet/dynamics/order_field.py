"""Smoothed order-parameter fields on a common grid (Gaussian splatting of per-atom values).

The field at voxel ``v`` is the Gaussian-weighted mean of the per-atom order parameters,
``Σ_i w_i o_i / Σ_i w_i`` with ``w_i = exp(-|v - x_i|² / 2σ²)`` (Nadaraya–Watson smoothing),
truncated at ``truncate · σ`` and masked (NaN) where the total weight says no atom is near
(outside the particle). Grids follow docs/conventions.rst: dims ``(z, y, x)``, coords in Å,
0 Å at index ``n // 2`` of each axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..core.meta import centred_coord, positions_to_indices
from . import _kernels

__all__ = ["common_grid", "order_field", "order_fields"]


def common_grid(positions: Sequence[np.ndarray], *, voxel_size_A: float = 0.5,
                padding_A: float = 3.0) -> xr.DataArray:
    """An empty centred ``(z, y, x)`` grid (zeros) covering every position set with padding.

    Parameters
    ----------
    positions : sequence of (n_t, 3) arrays
        Positions (x, y, z) in Å, all in one (registered) frame.
    voxel_size_A : float
        Grid spacing in Å.
    padding_A : float
        Margin around the outermost atom, Å.

    Returns
    -------
    xarray.DataArray
        Zeros with dims ``(z, y, x)``, coords in Å centred at index ``n // 2``; attrs
        ``voxel_size_A``.
    """
    if not (np.isfinite(voxel_size_A) and voxel_size_A > 0):
        raise ValueError(f"voxel_size_A must be a positive length in Å, got {voxel_size_A!r}")
    allp = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in positions])
    if allp.size == 0:
        raise ValueError("positions are empty; need at least one atom to place a grid")
    half = np.abs(allp).max(0) + float(padding_A)                      # x, y, z
    n = 2 * np.ceil(half / voxel_size_A).astype(int) + 1
    coords = {d: centred_coord(int(n[2 - k]), voxel_size_A) for k, d in enumerate("zyx")}
    shape = tuple(coords[d].size for d in "zyx")
    return xr.DataArray(np.zeros(shape), dims=("z", "y", "x"), coords=coords,
                        attrs={"voxel_size_A": float(voxel_size_A)})


def order_field(positions, order, grid: xr.DataArray, *, sigma_A: float = 1.5,
                truncate: float = 3.0, mask_fraction: float = 0.2) -> xr.DataArray:
    """Splat per-atom order parameters onto ``grid`` as a smooth field.

    Parameters
    ----------
    positions : (n, 3) array_like
        Positions (x, y, z) in Å in the grid's frame.
    order : (n,) array_like
        Per-atom order parameter (0 random .. 1 perfect); NaN atoms are ignored.
    grid : xarray.DataArray
        Target grid, dims ``(z, y, x)`` with uniform Å coords (e.g. from :func:`common_grid`).
    sigma_A : float
        Gaussian width (Å).
    truncate : float
        Kernel radius in units of ``sigma_A``.
    mask_fraction : float
        Voxels whose total weight is below this fraction of the median total weight at the
        atoms are set to NaN (outside the particle).

    Returns
    -------
    xarray.DataArray
        The field on ``grid``'s coords, NaN outside the particle; attrs ``sigma_A``,
        ``voxel_size_A``.
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    val = np.asarray(order, dtype=np.float64).reshape(-1)
    if val.shape[0] != pos.shape[0]:
        raise ValueError(f"order has {val.shape[0]} values but there are {pos.shape[0]} "
                         f"positions; pass one order parameter per atom")
    if not (np.isfinite(sigma_A) and sigma_A > 0):
        raise ValueError(f"sigma_A must be a positive length in Å, got {sigma_A!r}")
    if tuple(grid.dims) != ("z", "y", "x"):
        raise ValueError(f"grid has dims {tuple(grid.dims)}; expected ('z', 'y', 'x')")
    ok = np.isfinite(val)
    pos, val = pos[ok], val[ok]
    vs = float(np.abs(grid.coords["x"].values[1] - grid.coords["x"].values[0]))
    idx = positions_to_indices(pos, grid)
    sig = sigma_A / vs
    num, den = _kernels.splat(idx, val, grid.shape, sig, truncate * sig)
    # total weight expected inside the particle: median of den at the atoms' voxels
    near = np.clip(np.rint(idx).astype(np.int64), 0, np.array(grid.shape) - 1)
    ref = float(np.median(den[near[:, 0], near[:, 1], near[:, 2]])) if len(near) else 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        field = np.where(den > mask_fraction * ref, num / np.where(den > 0, den, 1.0), np.nan)
    return xr.DataArray(field, dims=("z", "y", "x"), coords=grid.coords,
                        attrs={"voxel_size_A": vs, "sigma_A": float(sigma_A),
                               "long_name": "order parameter (Gaussian-smoothed)"})


def order_fields(positions: Sequence[np.ndarray], orders: Sequence[np.ndarray], *,
                 times_min: Sequence[float] | None = None, voxel_size_A: float = 0.5,
                 sigma_A: float = 1.5, padding_A: float = 3.0, truncate: float = 3.0,
                 mask_fraction: float = 0.2) -> xr.DataArray:
    """Order fields of several times on one common grid: dims ``(time, z, y, x)``.

    ``positions`` must already be registered into one frame. ``times_min`` (minutes) become
    the ``time`` coord (default 0, 1, 2, ...).
    """
    if len(positions) != len(orders):
        raise ValueError(f"positions has {len(positions)} entries but orders has "
                         f"{len(orders)}; pass one per time")
    grid = common_grid(positions, voxel_size_A=voxel_size_A, padding_A=padding_A)
    fields = [order_field(p, o, grid, sigma_A=sigma_A, truncate=truncate,
                          mask_fraction=mask_fraction) for p, o in zip(positions, orders)]
    t = np.arange(len(fields), dtype=float) if times_min is None else \
        np.asarray(times_min, dtype=float)
    out = xr.concat(fields, dim="time").assign_coords(time=t)
    out["time"].attrs["units"] = "min"
    return out
