"""Array-level forward and back projectors (NumPy in, NumPy out).

Frame (docs/conventions.rst): volume ``(z, y, x)`` with the centre at index ``n // 2`` of every
axis; projections ``(angle, y, x)`` with the centre at ``n // 2``; Euler angles (φ, θ, ψ) in
degrees, R = R_z(φ)·R_y(θ)·R_z(ψ) active, projection = rotated object summed along z.

Discretisations (:class:`Projector` ``method``):

- single tilt axis (φ = ψ = 0): bilinear in each y-slice, unit steps along the ray;
- ``"shearwarp"`` (default for general angles): the line integral is taken slice by slice along
  the volume axis closest to the ray (bilinear in each slice, the same weights for a whole
  slice), into an intermediate image that a 2D cubic-convolution warp maps onto the detector
  (see ``_kernels.py``). 11-26× faster than trilinear ray casting (64³-128³ × 47 projections,
  ``benchmarks/bench_reconstruct.py``), as fast as the single-axis path. It differs from
  trilinear ray casting by interpolation blur only: on Gaussian atoms of σ = 1.2 voxels
  2-6 % (relative L2), as close to the exact line integrals as trilinear itself, no shift of
  the atoms (tests/reconstruct/test_euler_fast.py). Where the ray is within ~1.5° of 45° to
  two axes both slicings are computed and blended (:func:`axis_weights`), so the operator is
  continuous in the angles (a hard switch would jump by ~0.4 %, what a 0.2° turn changes).
- ``"trilinear"``: trilinear ray casting in unit steps along every ray (the slow exact twin of
  ``tests/reference/reconstruct.py``).

:func:`back_project` is the exact adjoint of :func:`forward_project` in every case
(⟨A x, y⟩ = ⟨x, Aᵀ y⟩ to float32 rounding).
"""

from __future__ import annotations

import numba
import numpy as np

from ..core.geometry import is_single_axis
from ..core.meta import rotation_matrices as _rotation_matrices
from . import _kernels as K

__all__ = ["METHODS", "Projector", "axis_weights", "back_project", "euler_as_array",
           "forward_project", "rotation_matrices",
           "shear_warp_geometry"]

#: discretisations of the general-angle projector pair
METHODS = ("auto", "shearwarp", "trilinear")


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


def rotation_matrices(euler_deg) -> np.ndarray:
    """``(n, 3, 3)`` matrices R = R_z(φ)·R_y(θ)·R_z(ψ) acting on (x, y, z) columns
    (validated input; :func:`aet.core.meta.rotation_matrices` does the arithmetic)."""
    return _rotation_matrices(euler_as_array(euler_deg))


# (k, a, b) axes of the principal-axis layouts, as (x, y, z) = (0, 1, 2) indices: slices k,
# rows a, contiguous b. k = z: (z, y, x); k = y: (y, z, x); k = x: (x, z, y).
_LAYOUT = {2: (2, 1, 0), 1: (1, 2, 0), 0: (0, 2, 1)}


#: band of the axis blend: |d_second| / |d_principal| above 1 − SW_BLEND mixes both axes
SW_BLEND = 0.05


def principal_axis(d) -> int:
    """Volume axis (x, y, z) = (0, 1, 2) closest to the ray direction ``d`` (ties: z, x, y)."""
    ax, ay, az = (abs(float(c)) for c in d)
    if az >= max(ax, ay) - 1e-9:
        return 2
    return 0 if ax >= ay - 1e-9 else 1


def axis_weights(d):
    """``[(axis, weight), ...]``: the slicing axes of ray direction ``d`` and their weights.

    The principal axis alone, except near a tie with the second one (|d_2| / |d_1| = r above
    1 − ``SW_BLEND``, a band of ~±1.5° around 45°): then both, with weights
    ½ + ½(1 − r)/SW_BLEND and the rest, so the operator varies continuously with the angles
    where the principal axis switches (without the blend it jumps by ~0.4 % there)."""
    k1 = principal_axis(d)
    rest = [a for a in (2, 0, 1) if a != k1]
    k2 = rest[0] if abs(d[rest[0]]) >= abs(d[rest[1]]) - 1e-9 else rest[1]
    r = abs(d[k2]) / abs(d[k1])
    if r <= 1.0 - SW_BLEND:
        return [(k1, 1.0)]
    w1 = min(1.0, 0.5 + 0.5 * (1.0 - r) / SW_BLEND)
    return [(k1, w1), (k2, 1.0 - w1)]


def shear_warp_geometry(euler_deg, volume_shape, detector_shape):
    """Per-entry parameters of the shear-warp projector.

    An *entry* is one projection sliced along one axis; a projection has one entry, or two
    (weights summing to 1) where its ray is within ~1.5° of 45° to two axes
    (:func:`axis_weights`). Entries are in projection order.

    Parameters
    ----------
    euler_deg : array_like
        ``(n, 3)`` Euler angles (φ, θ, ψ) in degrees (or 1D tilt angles θ).
    volume_shape, detector_shape : tuple of int
        ``(nz, ny, nx)`` and ``(ny_det, nx_det)``.

    Returns
    -------
    axis : ndarray of int64, shape (n_entries,)
        Slicing axis of each entry, (x, y, z) = (0, 1, 2).
    geo : ndarray of float64, shape (n_entries, 12)
        s_a, s_b (shear per slice), a0, b0 (intermediate-grid origin, voxels relative to the
        volume centre), NA, NB (grid size), dA/du, dA/dv, dB/du, dB/dv (detector → grid
        affine map), weight/|d_k| (weight × step length per slice), projection index; see
        ``_kernels.py``. The grid is the part of the sheared slices' footprint that the
        detector reads, so a detector narrower than the box (padded films) costs only its
        own field of view.
    """
    e = euler_as_array(euler_deg)
    M = np.transpose(rotation_matrices(e), (0, 2, 1))
    nz, ny, nx = (int(s) for s in volume_shape)
    sizes = (nx, ny, nz)
    nyd, nxd = (int(s) for s in detector_shape)
    us = np.array([-(nxd // 2), nxd - 1 - nxd // 2], float)
    vs = np.array([-(nyd // 2), nyd - 1 - nyd // 2], float)
    uu, vv = np.meshgrid(us, vs)
    axis, geo = [], []
    for j in range(len(e)):
        d = M[j, :, 2]
        for k_ax, weight in axis_weights(d):
            k, a, b = _LAYOUT[k_ax]
            s_a, s_b = d[a] / d[k], d[b] / d[k]
            g = (M[j, a, 0] - M[j, k, 0] * s_a, M[j, a, 1] - M[j, k, 1] * s_a,
                 M[j, b, 0] - M[j, k, 0] * s_b, M[j, b, 1] - M[j, k, 1] * s_b)
            kc = np.array([-(sizes[k] // 2), sizes[k] - 1 - sizes[k] // 2], float)
            origin = []
            for ax_i, s_i, gu, gv in ((a, s_a, g[0], g[1]), (b, s_b, g[2], g[3])):
                c = sizes[ax_i] // 2
                # support: some slice has a tap inside the box, (-1, n) in absolute index
                sup_lo = np.floor(np.min(-1.0 - c - kc * s_i))
                sup_hi = np.ceil(np.max(sizes[ax_i] - c - kc * s_i))
                # the detector's footprint, with the -1 ... +2 taps of the cubic warp
                det = gu * uu + gv * vv
                lo = max(sup_lo, np.floor(det.min()) - 1)
                hi = min(sup_hi, np.floor(det.max()) + 2)
                origin.append((lo, max(0.0, hi - lo + 1)))
            axis.append(k)
            geo.append((s_a, s_b, origin[0][0], origin[1][0], origin[0][1], origin[1][1], *g,
                        weight / abs(d[k]), j))
    return np.asarray(axis, np.int64), np.asarray(geo, np.float64).reshape(-1, 12)


#: interpolations per operator call below which the serial kernels run: threads pay off only
#: on real work (a parallel region's start-up and barrier cost more than they save below a
#: few 10⁶, far more on a loaded machine), and a parallel kernel costs a compile of its own
#: (cold ``aet demo``, thread CPU time: bp/fp_single_axis_par 7.4 + 2.3 s against ~1 s for
#: the serial pair), so a small problem — the demo's 15 × 80³ — compiles only the serial one
_MIN_PARALLEL_WORK = 20_000_000
#: most projections a forward task shears slice by slice together (cache reuse of a slice)
SW_GROUP = 4
#: most slices a back-projection task gathers together (cache reuse of intermediate images)
SW_KBLOCK = 4


class Projector:
    """The linear operator A (forward projection) and Aᵀ (back projection) of one geometry.

    Works in an internal layout chosen for speed: for a single tilt axis volumes are
    ``(z, x, y)`` and projections ``(angle, x, y)`` (y innermost, contiguous float32); in general
    volumes are ``(z, y, x)`` and projections ``(angle, y, x)``. Use :meth:`to_internal_volume`
    / :meth:`from_internal_volume` (and the projection twins) to convert from/to the public
    layout. Iterative solvers run entirely in the internal layout.

    An instance keeps work buffers between calls (the shear-warp pair's padded volumes and
    intermediate images: about one to three volumes plus one detector-sized image per
    projection), so one instance must not be called from two threads at once.

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
    method : {"auto", "shearwarp", "trilinear"}
        Discretisation of the general-angle pair (module docstring): ``"auto"`` is the
        single-axis path when φ = ψ = 0 (and ``single_axis`` allows it), else ``"shearwarp"``.
        ``"trilinear"`` is the slower ray caster, kept as the exact twin of the reference.
    """

    def __init__(self, euler_deg, volume_shape, *, detector_shape=None, parallel=True,
                 single_axis=None, method="auto"):
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.euler = euler_as_array(euler_deg)
        self.volume_shape = tuple(int(s) for s in volume_shape)
        if len(self.volume_shape) != 3:
            raise ValueError(f"volume_shape must be (nz, ny, nx), got {volume_shape!r}")
        nz, ny, nx = self.volume_shape
        self.detector_shape = (ny, nx) if detector_shape is None else tuple(
            int(s) for s in detector_shape)
        auto = is_single_axis(self.euler)
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
        if self.single_axis:
            self.method = "single_axis"
        else:
            self.method = "shearwarp" if method == "auto" else method
        work = len(self.euler) * nz * ny * max(nx, self.detector_shape[1])
        self.parallel = bool(parallel) and work >= _MIN_PARALLEL_WORK
        self._parallel_requested = bool(parallel)
        self._bufs = {}
        th = np.radians(self.euler[:, 1])
        self._cos = np.ascontiguousarray(np.cos(th))
        self._sin = np.ascontiguousarray(np.sin(th))
        self._Ms = np.ascontiguousarray(np.transpose(rotation_matrices(self.euler), (0, 2, 1)))
        self.n_angles = len(self.euler)
        if self.method == "shearwarp":
            self._sw_axis, self._sw_geo = shear_warp_geometry(
                self.euler, self.volume_shape, self.detector_shape)
            self._sw_groups = [(int(ax), np.flatnonzero(self._sw_axis == ax))
                               for ax in (2, 0, 1) if np.any(self._sw_axis == ax)]
            sizes = ((self._sw_geo[:, 4] + 2 * K.SW_BORDER)
                     * (self._sw_geo[:, 5] + 2 * K.SW_BORDER)).astype(np.int64)
            offsets = np.concatenate([[0], np.cumsum(sizes)])
            self._sw_geo = np.ascontiguousarray(
                np.column_stack([self._sw_geo, offsets[:-1].astype(np.float64)]))
            self._sw_ipads = np.zeros(int(offsets[-1]), np.float32)
            self._sw_estart = np.searchsorted(self._sw_geo[:, 11],
                                              np.arange(self.n_angles + 1)).astype(np.int64)
            self._sw_buf = {}
            self._sw_plan()

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
        elif self.method == "shearwarp":
            vps = [self._sw_dummy] * 3
            for ax, _ in self._sw_groups:
                vps[2 - ax] = self._sw_buffer(("pad", ax), 2)
                K.pad_permute(vol, ax, vps[2 - ax])
            fp = K.fp_shearwarp_par if self.parallel else K.fp_shearwarp
            fp(*vps, self._sw_geo, self._sw_estart, self._sw_order, self._sw_tasks,
               self._sw_ipads, out)
        elif self.parallel:
            K.fp_euler_par(vol, self._Ms, out)
        else:
            K.fp_euler(vol, self._Ms, out)
        return out

    def _sw_plan(self):
        """Task lists of the shear-warp kernels: projections grouped by principal axis; a
        forward task shears up to ``SW_GROUP`` projections slice by slice together (a slice is
        read from memory once for all of them), a back-projection task gathers up to
        ``SW_KBLOCK`` slices (an intermediate image is read once for all of them) — fewer
        while that would leave a thread without work."""
        nth = numba.get_num_threads() if self.parallel else 1
        nz, ny, nx = self.volume_shape
        sizes = (nx, ny, nz)
        order, tasks, ktasks = [], [], []
        for ax, idx in self._sw_groups:
            q0 = len(order)
            order.extend(idx.tolist())
            g = int(max(1, min(SW_GROUP, len(idx) // max(1, 2 * nth))))
            for q in range(q0, len(order), g):
                tasks.append((ax, q, min(len(order), q + g)))
            nk = sizes[ax]
            kb = int(max(1, min(SW_KBLOCK, nk // max(1, 4 * nth))))
            for k in range(0, nk, kb):
                ktasks.append((ax, k, min(nk, k + kb), q0, len(order)))
        self._sw_order = np.asarray(order, np.int64)
        self._sw_tasks = np.asarray(tasks, np.int64).reshape(-1, 3)
        self._sw_ktasks = np.asarray(ktasks, np.int64).reshape(-1, 5)
        self._sw_dummy = np.zeros((1, 1, 1), np.float32)

    def _sw_buffer(self, key, pad):
        """Volume in the principal-axis layout of ``key[1]`` (zero border of ``pad // 2``),
        allocated once: the forward kernels write only its interior."""
        buf = self._sw_buf.get(key)
        if buf is None:
            nz, ny, nx = self.volume_shape
            sizes = (nx, ny, nz)
            k, a, b = _LAYOUT[key[1]]
            buf = np.zeros((sizes[k], sizes[a] + pad, sizes[b] + pad), np.float32)
            self._sw_buf[key] = buf
        return buf

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
        elif self.method == "shearwarp":
            vks = [out, self._sw_dummy, self._sw_dummy]
            for ax, _ in self._sw_groups:
                if ax != 2:
                    vks[2 - ax] = self._sw_buffer(("acc", ax), 0)
                    vks[2 - ax][...] = 0
            bp = K.bp_shearwarp_par if self.parallel else K.bp_shearwarp
            bp(proj, self._sw_geo, self._sw_estart, self._sw_order, self._sw_ktasks,
               self._sw_ipads, *vks)
            for ax, _ in self._sw_groups:
                if ax != 2:
                    K.permute_add(vks[2 - ax], ax, out)
        elif self.parallel and numba.get_num_threads() > 1:
            acc = self._scratch(shape, extra=1)
            acc[...] = 0
            K.bp_euler_par(proj, self._Ms, acc)
            np.sum(acc, axis=0, out=out)
        else:
            K.bp_euler(proj, self._Ms, out)
        return out

    def _scratch(self, shape, extra=0):
        """Per-thread partial volumes for the parallel back projector (kept between calls,
        shared with the projectors of :meth:`subset`)."""
        nth = min(max(1, numba.get_num_threads()), max(1, self.n_angles)) - 1 + extra
        key = (nth, *shape)
        arr = self._bufs.get("scratch")
        if arr is None or arr.shape != key:
            arr = np.empty(key, dtype=np.float32)
            self._bufs["scratch"] = arr
        return arr

    def subset(self, index) -> Projector:
        """The projector of the projections ``index`` (ordered subsets), same volume and
        detector and the same kernels (parallel or serial) as this one; it shares this
        projector's work buffers (volume-sized scratch), so the two must not be called at the
        same time."""
        idx = np.asarray(index, dtype=np.int64).reshape(-1)
        sub = Projector(self.euler[idx], self.volume_shape, detector_shape=self.detector_shape,
                        parallel=self._parallel_requested, single_axis=self.single_axis,
                        method="auto" if self.method == "single_axis" else self.method)
        sub._bufs = self._bufs
        # the parent's choice of kernels, not one per subset size: a run compiles one variant
        # (the serial kernels cost a compile of their own, ~1-3 s per pair)
        sub.parallel = self.parallel
        if self.method == "shearwarp":
            sub._sw_buf = self._sw_buf
            sub._sw_plan()
        return sub

    def interpolations_per_forward(self) -> int:
        """Number of interpolated samples of one forward projection (for throughput figures)."""
        nz, ny, nx = self.volume_shape
        ones = np.ones(self.internal_volume_shape, np.float32)
        # samples whose trilinear weights touch the box ~ the sum of A·1 over the detector
        return int(round(float(self.forward(ones).sum())))


def forward_project(vol_zyx, euler_deg, *, detector_shape=None, parallel=True,
                    method="auto") -> np.ndarray:
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
    method : {"auto", "shearwarp", "trilinear"}
        Discretisation for general angles (:class:`Projector`).

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
    op = Projector(euler_deg, vol.shape, detector_shape=detector_shape, parallel=parallel,
                   method=method)
    return op.from_internal_projections(op.forward(op.to_internal_volume(vol)))


def back_project(proj_ayx, euler_deg, *, volume_shape, parallel=True,
                 method="auto") -> np.ndarray:
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
    method : {"auto", "shearwarp", "trilinear"}
        As in :func:`forward_project`.

    Returns
    -------
    ndarray, float32, shape ``volume_shape``
    """
    p = np.asarray(proj_ayx)
    if p.ndim != 3:
        raise ValueError(f"proj_ayx must have 3 dims (angle, y, x), got shape {p.shape}")
    op = Projector(euler_deg, volume_shape, detector_shape=p.shape[1:], parallel=parallel,
                   method=method)
    if len(op.euler) != p.shape[0]:
        raise ValueError(
            f"euler_deg has {len(op.euler)} entries but proj_ayx has {p.shape[0]} projections; "
            f"pass one angle per projection"
        )
    return op.from_internal_volume(op.adjoint(op.to_internal_projections(p)))
