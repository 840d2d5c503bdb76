"""``project``: forward-project a Volume DataArray to a TiltSeries-layout DataArray."""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

from ..core.geometry import is_single_axis
from ..core.schema import is_dask
from ._common import projections_dataarray, voxel_size_of
from .projector import Projector, euler_as_array, forward_project


def project(da: xr.DataArray, *, angles, detector_shape=None) -> xr.DataArray:
    """Forward-project a volume at ``angles`` (what :meth:`aet.Volume.project` calls).

    Parameters
    ----------
    da : xarray.DataArray
        Volume with dims ``(z, y, x)``, coords in Å centred at index ``n // 2``, attrs
        ``voxel_size_A``; numpy- or dask-backed (kept lazy).
    angles : array_like
        1D tilt angles θ in degrees (tilt about y) or ``(n, 3)`` Euler angles (φ, θ, ψ) in
        degrees, R = R_z(φ)·R_y(θ)·R_z(ψ) active, projection = sum along z.
    detector_shape : (int, int), optional
        ``(ny, nx)`` of the projections (centred); default the volume's ``(ny, nx)``.

    Returns
    -------
    xarray.DataArray
        ``(angle, y, x)`` float32 line integrals (sum over unit voxel steps), attrs
        ``pixel_size_A`` = the voxel size. Lazy when the volume is. A single tilt axis is
        chunked along y exactly like the volume (each y-slice is an independent 2D problem).
    """
    if not isinstance(da, xr.DataArray) or tuple(da.dims) != ("z", "y", "x"):
        raise TypeError("da must be an xarray.DataArray with dims ('z', 'y', 'x'); wrap "
                        "arrays with aet.Volume(arr, voxel_size_A=...).data")
    euler = euler_as_array(angles, "angles")
    vs = voxel_size_of(da)
    arr = da.data
    nz, ny, nx = arr.shape
    det = (ny, nx) if detector_shape is None else tuple(int(s) for s in detector_shape)
    attrs = {k: v for k, v in da.attrs.items()
             if k not in ("voxel_size_A", "aet_class", "provenance", "units")}
    if not is_dask(arr):
        out = forward_project(np.asarray(arr), euler, detector_shape=det)
        return projections_dataarray(out, euler, vs, attrs)
    n = len(euler)
    if is_single_axis(euler) and det[0] == ny:
        vol = arr.rechunk({0: -1, 2: -1})
        out = dsa.map_blocks(_project_block, vol, euler=euler, nxd=det[1],
                             chunks=((n,), vol.chunks[1], (det[1],)), dtype=np.float32,
                             meta=np.empty((0, 0, 0), np.float32))
    else:
        # a general rotation mixes y rows: the whole volume feeds every projection
        whole = arr.rechunk(-1).to_delayed().ravel()[0]
        step = max(1, int(np.ceil(n / 8)))
        parts = [dsa.from_delayed(dask.delayed(forward_project)(whole, euler[i:i + step],
                                                                detector_shape=det,
                                                                parallel=False),
                                  shape=(len(euler[i:i + step]), *det), dtype=np.float32)
                 for i in range(0, n, step)]
        out = dsa.concatenate(parts, axis=0)
    return projections_dataarray(out, euler, vs, attrs)


def _project_block(block, *, euler, nxd):
    op = Projector(euler, block.shape, detector_shape=(block.shape[1], nxd), parallel=False,
                   single_axis=True)
    return op.from_internal_projections(op.forward(op.to_internal_volume(block)))
