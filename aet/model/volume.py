"""``Volume``: a 3D reconstruction ``(z, y, x)`` with voxel size and history."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from ..core.meta import (
    centred_coord,
    check_positive_length,
    indices_to_positions,
    positions_to_indices,
    spacing_from_coord,
    with_provenance,
)
from ..core.schema import facade_class, register_facade
from ._base import _Facade, as_array, check_dims, check_finite

_DIMS = ("z", "y", "x")


def _as_volume_dataarray(data, voxel_size_A, attrs: dict) -> xr.DataArray:
    if isinstance(data, Volume):
        data = data.data
    if isinstance(data, xr.DataArray):
        check_dims(data.dims, [_DIMS], "data")
        arr = as_array(data.data, "data")
        base_attrs = dict(data.attrs)
        if voxel_size_A is None:
            voxel_size_A = base_attrs.get("voxel_size_A")
        if voxel_size_A is None and "x" in data.coords and data.sizes["x"] > 1:
            voxel_size_A = spacing_from_coord(data.coords["x"].values, "x")
    else:
        arr = as_array(data, "data")
        if arr.ndim != 3:
            raise ValueError(
                f"data must have 3 dims (z, y, x), got {arr.ndim} dims with shape {arr.shape}"
            )
        base_attrs = {}
    if any(s == 0 for s in arr.shape):
        raise ValueError(f"data is empty (shape {tuple(arr.shape)}); every dim needs ≥ 1 voxel")
    check_finite(arr, "data")
    vs = check_positive_length("voxel_size_A", voxel_size_A)
    coords = {d: (d, centred_coord(n, vs), {"units": "Å"}) for d, n in zip(_DIMS, arr.shape)}
    merged = {**base_attrs, **attrs, "voxel_size_A": vs}
    return xr.DataArray(arr, dims=_DIMS, coords=coords, attrs=merged, name="volume")


@register_facade
class Volume(_Facade):
    """A reconstructed volume: dims ``(z, y, x)``, coordinates in Å with 0 at index ``n // 2``;
    the beam runs along z at zero tilt.

    Parameters
    ----------
    data : array_like, dask array, xarray.DataArray or Volume
        Voxel values. Never modified.
    voxel_size_A : float
        Cubic voxel edge in Å (required unless ``data`` carries it).
    **attrs
        Further metadata (units in the key names).

    Examples
    --------
    >>> import numpy as np, aet
    >>> vol = aet.Volume(np.zeros((4, 5, 6)), voxel_size_A=0.5)
    >>> vol.data.dims, float(vol.data.z[2]), float(vol.data.x[0])
    (('z', 'y', 'x'), 0.0, -1.5)
    """

    __slots__ = ()

    def __init__(self, data, *, voxel_size_A=None, **attrs):
        built = type(self)._wrap(_as_volume_dataarray(data, voxel_size_A, attrs))
        object.__setattr__(self, "_da", built._da)

    @property
    def voxel_size_A(self) -> float:
        return float(self._da.attrs["voxel_size_A"])

    @property
    def box_A(self) -> list[list[float]]:
        """The volume's extent ``[[x0, y0, z0], [x1, y1, z1]]`` (Å, first and last voxel
        centres), e.g. for ``model.cleanup(box_A=vol.box_A)``."""
        return [[float(self._da[c].min()) for c in ("x", "y", "z")],
                [float(self._da[c].max()) for c in ("x", "y", "z")]]

    def _repr_lines(self):
        vs = self.voxel_size_A
        ext = " × ".join(f"{n * vs:.1f}" for n in self.shape)
        return [f"voxel_size_A: {vs:g}  (extent {ext} Å, z × y × x)"]

    # -- frame helpers (docs/conventions.rst: convert only through these) --------------------------
    def positions_to_indices(self, positions_xyz_A) -> np.ndarray:
        """(N, 3) positions (x, y, z) Å → fractional voxel indices (z, y, x)."""
        return positions_to_indices(positions_xyz_A, self._da)

    def indices_to_positions(self, indices_zyx) -> np.ndarray:
        """(N, 3) fractional voxel indices (z, y, x) → positions (x, y, z) Å."""
        return indices_to_positions(indices_zyx, self._da)

    # -- stages ---------------------------------------------------------------------------
    def trace_atoms(self, *, min_distance_A: float = 2.0, **kw):
        """Trace atoms as refined local maxima (:func:`aet.atoms.trace`) → ``AtomicModel``."""
        from .. import atoms
        from .atomicmodel import AtomicModel

        params: dict[str, Any] = {"min_distance_A": min_distance_A, **kw}
        ds = atoms.trace(self._da, **params)
        decision = ds.attrs.get("atom_decision")  # the atom/non-atom decision, when taken
        return AtomicModel._from_core(ds, parent_attrs=self._da.attrs, op="trace_atoms",
                                      params=params, result=None if decision is None else
                                      {"atom_decision": json.loads(decision)})

    def project(self, angles, **kw):
        """Forward-project to a :class:`~aet.TiltSeries` at ``angles`` (degrees: 1D tilt or
        ``(n, 3)`` Euler), see :func:`aet.reconstruct.project`."""
        from .. import reconstruct as _rec
        TiltSeries = facade_class("TiltSeries")  # the sibling facade, looked up by name

        params = {"angles": angles, **kw}
        da = _rec.project(self._da, **params)
        da = with_provenance(da, "project", params, parent_attrs=self._da.attrs)
        return TiltSeries._wrap(da)
