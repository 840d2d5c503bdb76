"""Array-level forward and back projectors (NumPy in, NumPy out).

Frame (DESIGN.md): volume ``(z, y, x)`` with the centre at index ``n // 2`` of every axis;
projections ``(angle, y, x)`` with the centre at ``n // 2``; Euler angles (φ, θ, ψ) in degrees,
R = R_z(φ)·R_y(θ)·R_z(ψ) active, projection = rotated object summed along z. Interpolation is
trilinear (bilinear for a single tilt axis), unit steps along the ray; :func:`back_project` is
the exact adjoint of :func:`forward_project` (⟨A x, y⟩ = ⟨x, Aᵀ y⟩ to float32 rounding).
"""

from __future__ import annotations

import numba
import numpy as np

from ..model._meta import rotation_matrices as _rotation_matrices
from . import _kernels as K

__all__ = ["Projector", "back_project", "euler_as_array", "forward_project",
           "is_single_axis_euler", "rotation_matrices"]


def euler_as_array(euler_deg, name: str = "euler_deg") -> np.ndarray:
    """Coerce angles to an ``(n, 3)`` float64 array of (φ, θ, ψ) in degrees.

    A 1D array is a list of tilt angles θ (φ = ψ = 0); pass one Euler triple as ``[[φ, θ, ψ]]``.
    """
    e = np.asarray(euler_deg, dtype=np.float64)
    if e.ndim == 0:
        e = e.reshape(1)
    if e.ndim == 1:
        e = np.stack([np.zeros_like(e), e, np.zeros_like(e)], axis=1)
    if e.ndim != 2 or e.shape[1] != 3:
        raise ValueError(
            f"{name} must be 1D tilt angles θ or an (n, 3) array of Euler angles (φ, θ, ψ) in "
            f"degrees, got shape {e.shape}"
        )
    if not np.all(np.isfinite(e)):
        raise ValueError(f"{name} contains NaN or inf; pass finite angles in degrees")
    return e


def is_single_axis_euler(euler: np.ndarray) -> bool:
    """True when every φ and ψ is zero: a tilt about y, each y-slice an independent 2D problem."""
    return bool(np.all(np.abs(euler[:, 0]) < 1e-9) and np.all(np.abs(euler[:, 2]) < 1e-9))


def rotation_matrices(euler_deg) -> np.ndarray:
    """``(n, 3, 3)`` matrices R = R_z(φ)·R_y(θ)·R_z(ψ) acting on (x, y, z) columns
    (validated input; :func:`aet.model._meta.rotation_matrices` does the arithmetic)."""
    return _rotation_matrices(euler_as_array(euler_deg))


_MIN_PARALLEL_WORK = 4_000_000


class Projector:
    """The linear operator A (forward projection) and Aᵀ (back projection) of one geometry.

    Works in an internal layout chosen for speed: for a single tilt axis volumes are
    ``(z, x, y)`` and projections ``(angle, x, y)`` (y innermost, contiguous float32); in general
    volumes are ``(z, y, x)`` and projections ``(angle, y, x)``. Use :meth:`to_internal_volume`
    / :meth:`from_internal_volume` (and the projection twins) to convert from/to the public
    layout. Iterative solvers run entirely in the internal layout.

    Parameters
    ----------
    euler_deg : array_like
        ``(n, 3)`` Euler angles (φ, θ, ψ) in degrees, or 1D tilt angles θ.
    volume_shape : tuple of int
        ``(nz, ny, nx)``.
    detector_shape : tuple of int, optional
        ``(ny_det, nx_det)``; default ``(ny, nx)``. A detector narrower than the volume counts
        only its own field of view (extended objects: the box is padded around it).
    parallel : bool
        Use the multi-threaded kernels (in-memory calls; small problems run serially anyway);
        ``False`` for per-chunk dask calls.
    single_axis : bool, optional
        Force (``True``) or forbid (``False``) the single-axis fast path; default: automatic.
    """

    def __init__(self, euler_deg, volume_shape, *, detector_shape=None, parallel=True,
                 single_axis=None):
        self.euler = euler_as_array(euler_deg)
        self.volume_shape = tuple(int(s) for s in volume_shape)
        if len(self.volume_shape) != 3:
            raise ValueError(f"volume_shape must be (nz, ny, nx), got {volume_shape!r}")
        nz, ny, nx = self.volume_shape
        self.detector_shape = (ny, nx) if detector_shape is None else tuple(
            int(s) for s in detector_shape)
        auto = is_single_axis_euler(self.euler)
        if single_axis is None:
            single_axis = auto
        if single_axis and not auto:
            raise ValueError("single_axis=True needs φ = ψ = 0 for every projection")
        if single_axis and self.detector_shape[0] != ny:
            raise ValueError(
                f"the single-axis projector needs detector rows == volume ny ({ny}), got "
                f"detector_shape {self.detector_shape}"
            )
        self.single_axis = bool(single_axis)
        # threads pay off only on real work: below ~4·10⁶ interpolations a parallel region's
        # start-up and barrier cost more than they save (and far more on a loaded machine)
        work = len(self.euler) * nz * ny * max(nx, self.detector_shape[1])
        self.parallel = bool(parallel) and work >= _MIN_PARALLEL_WORK
        th = np.radians(self.euler[:, 1])
        self._cos = np.ascontiguousarray(np.cos(th))
        self._sin = np.ascontiguousarray(np.sin(th))
        self._Ms = np.ascontiguousarray(np.transpose(rotation_matrices(self.euler), (0, 2, 1)))
        self.n_angles = len(self.euler)

    # -- layouts ----------------------------------------------------------------------------
    @property
    def internal_volume_shape(self):
        nz, ny, nx = self.volume_shape
        return (nz, nx, ny) if self.single_axis else (nz, ny, nx)

    @property
    def internal_projection_shape(self):
        nyd, nxd = self.detector_shape
        return (self.n_angles, nxd, nyd) if self.single_axis else (self.n_angles, nyd, nxd)

    def to_internal_volume(self, vol_zyx):
        v = np.asarray(vol_zyx, dtype=np.float32)
        return np.ascontiguousarray(v.transpose(0, 2, 1) if self.single_axis else v)

    def from_internal_volume(self, vol):
        return np.ascontiguousarray(vol.transpose(0, 2, 1)) if self.single_axis else vol

    def to_internal_projections(self, proj_ayx):
        p = np.asarray(proj_ayx, dtype=np.float32)
        return np.ascontiguousarray(p.transpose(0, 2, 1) if self.single_axis else p)

    def from_internal_projections(self, proj):
        return np.ascontiguousarray(proj.transpose(0, 2, 1)) if self.single_axis else proj

    # -- the operator ---------------------------------------------------------------------------
    def forward(self, vol, out=None):
        """A·vol in the internal layout (float32, C-contiguous)."""
        if out is None:
            out = np.zeros(self.internal_projection_shape, dtype=np.float32)
        else:
            out[...] = 0
        if self.single_axis:
            if self.parallel:
                K.fp_single_axis_par(vol, self._cos, self._sin, out)
            else:
                K.fp_single_axis(vol, self._cos, self._sin, out)
        elif self.parallel:
            K.fp_euler_par(vol, self._Ms, out)
        else:
            K.fp_euler(vol, self._Ms, out)
        return out

    def adjoint(self, proj, out=None):
        """Aᵀ·proj in the internal layout (float32, C-contiguous)."""
        shape = self.internal_volume_shape
        if out is None:
            out = np.zeros(shape, dtype=np.float32)
        else:
            out[...] = 0
        if self.single_axis:
            if self.parallel:
                K.bp_single_axis_par(proj, self._cos, self._sin, out, self._scratch(shape))
            else:
                K.bp_single_axis(proj, self._cos, self._sin, out)
        elif self.parallel and numba.get_num_threads() > 1:
            acc = self._scratch(shape, extra=1)
            acc[...] = 0
            K.bp_euler_par(proj, self._Ms, acc)
            np.sum(acc, axis=0, out=out)
        else:
            K.bp_euler(proj, self._Ms, out)
        return out

    def _scratch(self, shape, extra=0):
        """Per-thread partial volumes for the parallel back projector (kept between calls)."""
        nth = min(max(1, numba.get_num_threads()), max(1, self.n_angles)) - 1 + extra
        key = (nth, *shape)
        if getattr(self, "_scratch_key", None) != key:
            self._scratch_arr = np.empty(key, dtype=np.float32)
            self._scratch_key = key
        return self._scratch_arr

    def interpolations_per_forward(self) -> int:
        """Number of interpolated samples of one forward projection (for throughput figures)."""
        nz, ny, nx = self.volume_shape
        ones = np.ones(self.internal_volume_shape, np.float32)
        # samples whose trilinear weights touch the box ~ the sum of A·1 over the detector
        return int(round(float(self.forward(ones).sum())))


def forward_project(vol_zyx, euler_deg, *, detector_shape=None, parallel=True) -> np.ndarray:
    """Project a volume at the given Euler angles.

    Parameters
    ----------
    vol_zyx : ndarray, shape (nz, ny, nx)
        Volume, centre at index ``n // 2`` of each axis, voxel units.
    euler_deg : array_like
        ``(n, 3)`` Euler angles (φ, θ, ψ) in degrees (R = R_z(φ)·R_y(θ)·R_z(ψ), active), or 1D
        tilt angles θ about y.
    detector_shape : (int, int), optional
        ``(ny_det, nx_det)`` of each projection, centred at ``n // 2``; default ``(ny, nx)``.
    parallel : bool
        Multi-threaded (in-memory) or serial (inside dask tasks).

    Returns
    -------
    ndarray, float32, shape (n, ny_det, nx_det)
        Line integrals in voxel units (a sum over unit steps).

    Examples
    --------
    >>> import numpy as np
    >>> vol = np.zeros((9, 9, 9), np.float32); vol[4, 4, 6] = 1.0    # x = +2 voxels
    >>> p = forward_project(vol, [0.0, 90.0])
    >>> [np.unravel_index(np.argmax(q), q.shape) for q in p]          # 90°: x' = z = 0
    [(np.int64(4), np.int64(6)), (np.int64(4), np.int64(4))]
    """
    vol = np.asarray(vol_zyx)
    if vol.ndim != 3:
        raise ValueError(f"vol_zyx must have 3 dims (z, y, x), got shape {vol.shape}")
    op = Projector(euler_deg, vol.shape, detector_shape=detector_shape, parallel=parallel)
    return op.from_internal_projections(op.forward(op.to_internal_volume(vol)))


def back_project(proj_ayx, euler_deg, *, volume_shape, parallel=True) -> np.ndarray:
    """Exact adjoint of :func:`forward_project`: smear projections back into a volume.

    Parameters
    ----------
    proj_ayx : ndarray, shape (n, ny_det, nx_det)
        Projections, centre at index ``n // 2``.
    euler_deg : array_like
        Angles as in :func:`forward_project`.
    volume_shape : (int, int, int)
        ``(nz, ny, nx)`` of the output.
    parallel : bool
        Multi-threaded or serial.

    Returns
    -------
    ndarray, float32, shape ``volume_shape``
    """
    p = np.asarray(proj_ayx)
    if p.ndim != 3:
        raise ValueError(f"proj_ayx must have 3 dims (angle, y, x), got shape {p.shape}")
    op = Projector(euler_deg, volume_shape, detector_shape=p.shape[1:], parallel=parallel)
    if len(op.euler) != p.shape[0]:
        raise ValueError(
            f"euler_deg has {len(op.euler)} entries but proj_ayx has {p.shape[0]} projections; "
            f"pass one angle per projection"
        )
    return op.from_internal_volume(op.adjoint(op.to_internal_projections(p)))
