"""Shared helpers of aet.reconstruct: building result DataArrays, validation, progress bars."""

from __future__ import annotations

import sys

import numpy as np
import xarray as xr

from ..core.meta import centred_coord, spacing_from_coord


def volume_dataarray(arr, voxel_size_A: float, attrs: dict | None = None) -> xr.DataArray:
    """``(z, y, x)`` DataArray with centred Å coords (0 at index n // 2) and ``voxel_size_A``."""
    coords = {d: (d, centred_coord(n, voxel_size_A), {"units": "Å"})
              for d, n in zip(("z", "y", "x"), arr.shape)}
    out_attrs = dict(attrs or {})
    out_attrs["voxel_size_A"] = float(voxel_size_A)
    return xr.DataArray(arr, dims=("z", "y", "x"), coords=coords, attrs=out_attrs,
                        name="volume")


def projections_dataarray(arr, euler_deg: np.ndarray, pixel_size_A: float,
                          attrs: dict | None = None) -> xr.DataArray:
    """``(angle, y, x)`` DataArray in the TiltSeries layout (angle = θ; φ, ψ coords when any is
    non-zero) with ``pixel_size_A``."""
    coords = {
        "angle": ("angle", euler_deg[:, 1].copy(),
                  {"units": "degree", "long_name": "tilt angle θ"}),
        "y": ("y", centred_coord(arr.shape[1], pixel_size_A), {"units": "Å"}),
        "x": ("x", centred_coord(arr.shape[2], pixel_size_A), {"units": "Å"}),
    }
    if np.any(euler_deg[:, 0] != 0) or np.any(euler_deg[:, 2] != 0):
        coords["phi"] = ("angle", euler_deg[:, 0].copy(), {"units": "degree"})
        coords["psi"] = ("angle", euler_deg[:, 2].copy(), {"units": "degree"})
    out_attrs = dict(attrs or {})
    out_attrs["pixel_size_A"] = float(pixel_size_A)
    out_attrs.setdefault("units", "counts")
    return xr.DataArray(arr, dims=("angle", "y", "x"), coords=coords, attrs=out_attrs,
                        name="projections")


def voxel_size_of(da: xr.DataArray) -> float:
    """The voxel size of a volume ``da`` in Å: from ``attrs["voxel_size_A"]``, else from the x
    coordinate (a tilt series' pixel size: :func:`aet.core.geometry.pixel_size_of`)."""
    if "voxel_size_A" in da.attrs:
        return float(da.attrs["voxel_size_A"])
    if "x" in da.coords and da.sizes["x"] > 1:
        return spacing_from_coord(da.coords["x"].values, "x")
    raise ValueError("voxel_size_A is missing from the input's attrs and the x coordinate "
                     "cannot give it; pass data with attrs['voxel_size_A'] (Å)")


def progress_bar(total: int, desc: str, progress):
    """A tqdm bar; shown when ``progress`` is True, or when None and stderr is a terminal."""
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else bool(progress)
    return tqdm(total=total, desc=desc, disable=not show, leave=False)
