"""Geometry shared by the stages: the tilt geometry of a series, rigid superposition,
neighbour distance, matching.

One implementation of each, in the frame and units of ``docs/conventions.rst`` (positions
``(n, 3)`` in (x, y, z) Å, angles in degrees):

- :class:`TiltGeometry` — the frozen acquisition geometry of a tilt series (Euler angles,
  pixel size, per-projection shifts, tilt-axis rotation), read from and written back to its
  DataArray in one place; :func:`pixel_size_of` and :func:`is_single_axis` are its two rules;

- :func:`kabsch_rotation` — the proper rotation that best superposes paired, centred point
  sets (optionally weighted, optionally batched);
- :func:`nearest_neighbour_distance` — the one documented nearest-neighbour statistic;
- :func:`match_atoms` — optimal one-to-one pairing of two atom sets within a radius.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..errors import MetadataError
from .meta import euler_angles_of, rotation_matrices, spacing_from_coord

__all__ = ["SINGLE_AXIS_TOL_DEG", "TiltGeometry", "as_points", "bond_length_A",
           "is_single_axis", "kabsch_rotation", "match_atoms", "nearest_neighbour_distance",
           "pixel_size_of"]


# --------------------------------------------------------------------------- tilt geometry
#: |φ| and |ψ| (degrees) below which a projection counts as a pure tilt about y: the one
#: tolerance of "single axis" in the package (the reconstructors' fast path, align()).
SINGLE_AXIS_TOL_DEG = 1e-9


def is_single_axis(euler_deg) -> bool:
    """True when every φ and ψ of the ``(n, 3)`` Euler angles (degrees) is zero within
    :data:`SINGLE_AXIS_TOL_DEG`: a tilt about y, each y-slice an independent 2D problem.

    Examples
    --------
    >>> is_single_axis([[0, -30, 0], [0, 30, 0]]), is_single_axis([[0.5, 30, 0]])
    (True, False)
    """
    e = np.asarray(euler_deg, dtype=np.float64).reshape(-1, 3)
    return bool(np.all(np.abs(e[:, 0]) < SINGLE_AXIS_TOL_DEG)
                and np.all(np.abs(e[:, 2]) < SINGLE_AXIS_TOL_DEG))


def pixel_size_of(da: xr.DataArray, name: str = "ts") -> float:
    """The pixel size (Å) of a tilt-series DataArray: ``attrs["pixel_size_A"]``, else the
    (uniform) spacing of its ``x`` coordinate; a :class:`~aet.errors.MetadataError` naming the
    fix when neither gives it (never a silent default).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> pixel_size_of(xr.DataArray(np.zeros((1, 2, 2)), dims=("angle", "y", "x"),
    ...                            attrs={"pixel_size_A": 0.35}))
    0.35
    """
    px = da.attrs.get("pixel_size_A")
    if px is None:
        if "x" in da.coords and da.sizes.get("x", 0) > 1:
            return spacing_from_coord(da.coords["x"].values, "x")
        raise MetadataError(
            f"{name} has no attrs['pixel_size_A'] and no x coordinate to take it from; build "
            f"it with aet.TiltSeries(..., pixel_size_A=<Å per pixel>) or set "
            f"{name}.attrs['pixel_size_A']")
    try:
        v = float(px)
    except (TypeError, ValueError):
        raise MetadataError(f"{name}.attrs['pixel_size_A'] must be a length in Å, got "
                            f"{px!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise MetadataError(f"{name}.attrs['pixel_size_A'] must be a finite positive length "
                            f"in Å, got {px!r}")
    return v


def _frozen(a) -> np.ndarray:
    a = np.array(a, dtype=np.float64, copy=True)
    a.flags.writeable = False
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class TiltGeometry:
    """The acquisition geometry of a tilt series, built once and never modified.

    Attributes
    ----------
    euler_deg : (n, 3) ndarray
        Euler angles (φ, θ, ψ) in degrees per projection (ZYZ, docs/conventions.rst); read-only.
    pixel_size_A : float
        Pixel size in Å.
    shifts_A : (n, 2) ndarray or None
        Per-projection displacements (x, y) in Å that alignment measured and corrected in the
        images (coords ``shift_x_A``, ``shift_y_A``); None when the series has none.
    tilt_axis_rotation_deg : float or None
        In-plane rotation of the tilt axis that alignment corrected (attrs
        ``tilt_axis_rotation_deg``); None when the series has none.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros((2, 4, 4)), dims=("angle", "y", "x"),
    ...                   coords={"angle": [-30.0, 30.0]}, attrs={"pixel_size_A": 0.5})
    >>> g = TiltGeometry.from_dataarray(da)
    >>> g.angles_deg.tolist(), g.pixel_size_A, g.single_axis
    ([-30.0, 30.0], 0.5, True)
    >>> g2 = g.replace(euler_deg=g.euler_deg + [[1.0, 0, 0]])
    >>> g2.single_axis, g2.assign_to(da).coords["phi"].values.tolist()
    (False, [1.0, 1.0])
    """

    euler_deg: np.ndarray
    pixel_size_A: float
    shifts_A: np.ndarray | None = None
    tilt_axis_rotation_deg: float | None = None

    def __post_init__(self):
        e = np.asarray(self.euler_deg, dtype=np.float64)
        if e.ndim != 2 or e.shape[1] != 3:
            raise ValueError(f"euler_deg must be an (n, 3) array of Euler angles (φ, θ, ψ) in "
                             f"degrees, got shape {e.shape}")
        if not np.all(np.isfinite(e)):
            raise ValueError("euler_deg contains NaN or inf; pass finite angles in degrees")
        object.__setattr__(self, "euler_deg", _frozen(e))
        px = float(self.pixel_size_A)
        if not math.isfinite(px) or px <= 0:
            raise MetadataError(f"pixel_size_A must be a finite positive length in Å, got "
                                f"{self.pixel_size_A!r}")
        object.__setattr__(self, "pixel_size_A", px)
        if self.shifts_A is not None:
            s = np.asarray(self.shifts_A, dtype=np.float64)
            if s.shape != (e.shape[0], 2):
                raise ValueError(f"shifts_A must have shape ({e.shape[0]}, 2) (x, y in Å per "
                                 f"projection), got {s.shape}")
            object.__setattr__(self, "shifts_A", _frozen(s))
        if self.tilt_axis_rotation_deg is not None:
            object.__setattr__(self, "tilt_axis_rotation_deg",
                               float(self.tilt_axis_rotation_deg))

    # -- reading and writing ---------------------------------------------------------------
    @classmethod
    def from_dataarray(cls, da: xr.DataArray, name: str = "ts") -> TiltGeometry:
        """The geometry of a tilt-series DataArray: Euler angles from its ``angle`` (θ) and
        optional ``phi``/``psi`` coords, the pixel size (:func:`pixel_size_of`), the
        ``shift_x_A``/``shift_y_A`` coords and ``attrs["tilt_axis_rotation_deg"]``."""
        if "angle" not in da.coords:
            raise MetadataError(f"{name} has no 'angle' coordinate; build it with "
                                f"aet.TiltSeries(..., angles=<degrees>)")
        shifts = None
        if "shift_x_A" in da.coords or "shift_y_A" in da.coords:
            n = da.sizes["angle"]
            sx = da.coords["shift_x_A"].values if "shift_x_A" in da.coords else np.zeros(n)
            sy = da.coords["shift_y_A"].values if "shift_y_A" in da.coords else np.zeros(n)
            shifts = np.stack([np.ravel(sx), np.ravel(sy)], axis=1)
        return cls(euler_angles_of(da), pixel_size_of(da, name), shifts,
                   da.attrs.get("tilt_axis_rotation_deg"))

    def assign_to(self, da: xr.DataArray) -> xr.DataArray:
        """``da`` (a shallow copy) carrying this geometry: ``angle`` = θ, ``phi``/``psi``
        when the geometry is not single-axis or ``da`` has them already, ``shift_x_A``/
        ``shift_y_A`` and ``attrs["tilt_axis_rotation_deg"]`` when set, and
        ``attrs["pixel_size_A"]``. The pixel data and the y, x coords are left as they are."""
        if da.sizes.get("angle") != self.n:
            raise ValueError(f"the geometry has {self.n} projections but the DataArray has "
                             f"{da.sizes.get('angle')} (dim 'angle')")
        e = self.euler_deg
        old = da.coords["angle"].attrs if "angle" in da.coords else {}
        coords = {"angle": ("angle", e[:, 1].copy(),
                            dict(old) or {"units": "degree", "long_name": "tilt angle θ"})}
        if not self.single_axis or "phi" in da.coords or "psi" in da.coords:
            coords["phi"] = ("angle", e[:, 0].copy(), {"units": "degree"})
            coords["psi"] = ("angle", e[:, 2].copy(), {"units": "degree"})
        if self.shifts_A is not None:
            coords["shift_x_A"] = ("angle", self.shifts_A[:, 0].copy())
            coords["shift_y_A"] = ("angle", self.shifts_A[:, 1].copy())
        out = da.assign_coords(coords)
        out.attrs = dict(da.attrs)
        out.attrs["pixel_size_A"] = self.pixel_size_A
        if self.tilt_axis_rotation_deg is not None:
            out.attrs["tilt_axis_rotation_deg"] = self.tilt_axis_rotation_deg
        return out

    def replace(self, **changes) -> TiltGeometry:
        """A new geometry with some fields changed (this one is frozen)."""
        return dataclasses.replace(self, **changes)

    def aligned(self, shifts_A=None, tilt_axis_rotation_deg: float | None = None,
                euler_deg=None) -> TiltGeometry:
        """The geometry after an alignment step that corrected the images by further
        displacements ``shifts_A`` ((n, 2) x, y in Å; added to the recorded ones) and a tilt-axis
        rotation (added to the recorded one; None: untouched), with refined Euler angles
        ``euler_deg`` when given. The one way the alignments update a series' geometry."""
        changes: dict = {}
        if shifts_A is not None:
            prev = 0.0 if self.shifts_A is None else self.shifts_A
            changes["shifts_A"] = prev + np.asarray(shifts_A, dtype=np.float64)
        if tilt_axis_rotation_deg is not None:
            changes["tilt_axis_rotation_deg"] = float(tilt_axis_rotation_deg) + (
                self.tilt_axis_rotation_deg or 0.0)
        if euler_deg is not None:
            changes["euler_deg"] = euler_deg
        return self.replace(**changes)

    # -- derived -------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of projections."""
        return int(self.euler_deg.shape[0])

    @property
    def angles_deg(self) -> np.ndarray:
        """Tilt angles θ in degrees, one per projection."""
        return self.euler_deg[:, 1]

    @property
    def single_axis(self) -> bool:
        """True when every φ and ψ is zero (:func:`is_single_axis`, one tolerance)."""
        return is_single_axis(self.euler_deg)

    @property
    def rotations(self) -> np.ndarray:
        """``(n, 3, 3)`` rotation matrices R = R_z(φ)·R_y(θ)·R_z(ψ)."""
        return rotation_matrices(self.euler_deg)

    def __eq__(self, other) -> bool:
        if not isinstance(other, TiltGeometry):
            return NotImplemented

        def same(a, b):
            return (a is None and b is None) or (
                a is not None and b is not None and np.array_equal(a, b))

        return (np.array_equal(self.euler_deg, other.euler_deg)
                and self.pixel_size_A == other.pixel_size_A
                and same(self.shifts_A, other.shifts_A)
                and self.tilt_axis_rotation_deg == other.tilt_axis_rotation_deg)

    __hash__ = None


# --------------------------------------------------------------------------- point sets


def as_points(x, name: str) -> np.ndarray:
    """``x`` as a finite float ``(n, 3)`` array of (x, y, z) Å; a clear error naming ``name``."""
    a = np.asarray(x)
    if a.dtype == object or a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numbers (x, y, z) in Å, got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name} must have shape (n_atoms, 3) in (x, y, z) Å, got {a.shape}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains non-finite positions (NaN or inf); remove those atoms")
    return a


def kabsch_rotation(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
                    ) -> np.ndarray:
    """Proper rotation ``R`` (det +1) minimising ``Σ_i w_i ‖dst_i − R src_i‖²``.

    Kabsch (1976) with the reflection correction: ``H = Σ w src dstᵀ = U S Vᵀ``,
    ``R = V diag(1, 1, d) Uᵀ`` with ``d = sign det(V Uᵀ)`` (1 where that determinant is 0).
    The point sets must already be centred (subtract the (weighted) centroids first); rows are
    vectors.

    Parameters
    ----------
    src, dst : (n, 3) or (b, n, 3) ndarray
        Paired vectors; a leading batch dimension gives one rotation per batch.
    weights : (n,) or (b, n) ndarray, optional
        Non-negative weights (default all 1).

    Returns
    -------
    R : (3, 3) or (b, 3, 3) ndarray

    Examples
    --------
    >>> import numpy as np
    >>> c, s = np.cos(0.3), np.sin(0.3)
    >>> R = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    >>> p = np.array([[1., 0, 0], [0, 2, 0], [0, 0, 3], [-1, -2, -3]])
    >>> np.allclose(kabsch_rotation(p, p @ R.T), R)
    True
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim == 2:
        w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
        H = (src * w[:, None]).T @ dst
        U, _, Vt = np.linalg.svd(H)
        d = np.sign(np.linalg.det(Vt.T @ U.T))
        return Vt.T @ np.diag([1.0, 1.0, d if d != 0 else 1.0]) @ U.T
    w = np.ones(src.shape[:2]) if weights is None else np.asarray(weights, dtype=np.float64)
    H = np.einsum("nk,nki,nkj->nij", w, src, dst)
    U, _, Vt = np.linalg.svd(H)
    V, Ut = np.swapaxes(Vt, 1, 2), np.swapaxes(U, 1, 2)
    d = np.sign(np.linalg.det(V @ Ut))
    D = np.zeros_like(H)
    D[:, 0, 0] = 1
    D[:, 1, 1] = 1
    D[:, 2, 2] = np.where(d == 0, 1, d)
    return V @ D @ Ut


def nearest_neighbour_distance(positions, *, k: int = 1, pooled: bool = False) -> float:
    """Typical nearest-neighbour distance (Å) of an atom set.

    For each atom take the distances to its ``k`` nearest other atoms; the result is the
    median over atoms of their per-atom median (``pooled=False``), or the median of all
    ``n × k`` distances together (``pooled=True``). ``k = 1`` is the plain nearest-neighbour
    distance; a larger ``k`` (6, or the 12 of an fcc first shell) stays close to the lattice
    value under position noise, where the minimum of several noisy distances is biased low.
    ``k`` is capped at ``n - 1``.

    Examples
    --------
    >>> import numpy as np
    >>> nearest_neighbour_distance(np.array([[0., 0, 0], [2.5, 0, 0], [5.0, 0, 0]]))
    2.5
    """
    p = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    if p.shape[0] < 2:
        raise ValueError("need at least 2 atoms to measure a nearest-neighbour distance")
    k = int(min(k, p.shape[0] - 1))
    d, _ = cKDTree(p).query(p, k=k + 1)
    d = d[:, 1:]
    return float(np.median(d) if pooled else np.median(np.median(d, axis=1)))


def bond_length_A(pos) -> float:
    """An atom set's bond length (Å): the first peak of its pair-distance histogram (0.05 Å
    bins, smoothed over 3) below twice the median nearest-neighbour distance; the median
    nearest-neighbour distance (:func:`nearest_neighbour_distance`) itself when there are too
    few pairs.

    The median alone is pulled down by peaks between the atoms (noise of a low-dose
    reconstruction): on an abTEM 3 nm FePt case with a third of the peaks noise it gave 2.2 Å
    for 2.7 Å bonds, and a neighbour radius of 1.15× that dropped half the atoms."""
    pos = np.asarray(pos, dtype=np.float64).reshape(-1, 3)
    med = nearest_neighbour_distance(pos)
    pairs = cKDTree(pos).query_pairs(2.0 * med, output_type="ndarray")
    if len(pairs) < 20 or not med > 0:
        return med
    dist = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
    edges = np.arange(0.0, 2.0 * med + 0.05, 0.05)
    h, _ = np.histogram(dist, edges)
    h = np.convolve(h, np.ones(3) / 3, mode="same")
    # pairs in a shell grow as r²: divide it out so the first shell, not the count of far
    # pairs, sets the peak
    c = 0.5 * (edges[1:] + edges[:-1])
    return float(c[int(np.argmax(h / np.maximum(c, 1e-9) ** 2))])


def match_atoms(a, b, radius_A: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal one-to-one pairing of atoms ``a`` and ``b`` (same frame) within ``radius_A``.

    Pairs as many atoms as possible, then minimises the summed squared distance of the pairs
    (exact: Hungarian algorithm on each connected component of the graph of KD-tree candidates
    closer than ``radius_A``).

    Parameters
    ----------
    a, b : (n, 3), (m, 3) array_like
        Positions (x, y, z) in Å, already in one frame.
    radius_A : float
        Largest distance (Å) of a pair.

    Returns
    -------
    ia, ib : (k,) int ndarrays
        Paired indices (``a[ia[i]]`` ↔ ``b[ib[i]]``), sorted by ``ia``.
    dist : (k,) ndarray
        Pair distances in Å.

    Examples
    --------
    >>> import numpy as np
    >>> ia, ib, d = match_atoms(np.array([[0., 0, 0], [3, 0, 0]]),
    ...                         np.array([[3.2, 0, 0], [0, 0, 0], [9, 9, 9]]), 1.0)
    >>> ia.tolist(), ib.tolist(), np.round(d, 3).tolist()
    ([0, 1], [1, 0], [0.0, 0.2])
    """
    pa = as_points(a, "a")
    pb = as_points(b, "b")
    radius_A = float(radius_A)
    empty = np.zeros(0, dtype=np.int64)
    if pa.shape[0] == 0 or pb.shape[0] == 0:
        return empty, empty.copy(), np.zeros(0)
    sdm = cKDTree(pa).sparse_distance_matrix(cKDTree(pb), radius_A, output_type="coo_matrix")
    if sdm.nnz == 0:
        return empty, empty.copy(), np.zeros(0)
    rows, cols = sdm.row.astype(np.int64), sdm.col.astype(np.int64)
    na, nb = pa.shape[0], pb.shape[0]
    # explicit distances (sparse_distance_matrix drops exact zeros)
    dd = np.linalg.norm(pa[rows] - pb[cols], axis=1)
    graph = coo_matrix((np.ones(rows.size), (rows, na + cols)), shape=(na + nb, na + nb))
    _, lab = connected_components(graph, directed=False)
    comp = lab[rows]
    order = np.argsort(comp, kind="stable")
    rows, cols, dd, comp = rows[order], cols[order], dd[order], comp[order]
    starts = np.flatnonzero(np.r_[True, np.diff(comp) != 0])
    sizes = np.diff(np.r_[starts, comp.size])
    single = starts[sizes == 1]  # components of one candidate pair: matched as they are
    out_a, out_b = [rows[single]], [cols[single]]
    big = 1e6 * radius_A ** 2 + 1.0
    for st, sz in zip(starts[sizes > 1], sizes[sizes > 1]):
        r, c, dist = rows[st:st + sz], cols[st:st + sz], dd[st:st + sz]
        ur, ri = np.unique(r, return_inverse=True)
        uc, ci = np.unique(c, return_inverse=True)
        # non-candidates cost `big` (more than all real pairs of a component together), so
        # the number of real pairs is maximised first
        C = np.full((ur.size, uc.size), big)
        C[ri, ci] = dist ** 2
        sr, sc = linear_sum_assignment(C)
        ok = C[sr, sc] < big
        out_a.append(ur[sr[ok]])
        out_b.append(uc[sc[ok]])
    ia = np.concatenate(out_a)
    ib = np.concatenate(out_b)
    o = np.argsort(ia, kind="stable")
    ia, ib = ia[o], ib[o]
    return ia, ib, np.linalg.norm(pa[ia] - pb[ib], axis=1)
