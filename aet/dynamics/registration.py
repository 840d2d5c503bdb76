"""Rigid registration of atomic models of one particle across times, and atom correspondence.

Frames and units: positions are ``(n, 3)`` arrays in (x, y, z) Å (the :class:`~aet.AtomicModel`
frame); rotations are 3×3 proper matrices acting on column vectors, so a model is moved onto the
reference by ``x' = R @ x + t`` (row form: ``X @ R.T + t``). Angles are reported in degrees.

Method
------
1. **Seeds.** Both point clouds are centred on their centroids and their principal axes are
   found (eigenvectors of the 3×3 covariance). The principal-axis frame is ambiguous up to the
   sign and, for a nearly round particle, the order of its axes, so every proper
   sign/permutation matrix (24 of them) gives one seed rotation, plus the identity seed (no
   rotation beyond the centroid shift); by default (``seeds="auto"``) the principal-axis seeds
   are tried only when the identity seed does not give a good fit.
2. **Robust ICP** from each seed, first on the atoms within ``start_radius_A`` of the
   centroid and then on regions growing by 1.5× per stage (the lattice traps plain ICP once
   the particle's rim is off by more than half a bond; a small central region is not trapped
   and hands an accurate start to the next stage): nearest neighbours on a KD-tree of the
   reference, pairs further than ``max_pair_distance_A`` dropped, the worst
   ``1 - trim_fraction`` of the rest trimmed, Huber weights on the remaining distances
   (scale ``huber_A``), a weighted Kabsch step; iterate until the update is below ``tol_A``.
3. **Choice.** The seed whose converged solution has the lowest trimmed RMS distance wins; a
   species-mismatch fraction (when species are given) breaks the cubic-lattice ambiguity where
   the shape does not, and among solutions whose score is within ``tie_tolerance`` of the best
   the smallest rotation is kept (between annealing steps the particle turns little).
4. **Correspondence.** After the transform, each atom of one time is paired with at most one
   atom of the other by a minimum-cost assignment (Hungarian, :func:`scipy.optimize.
   linear_sum_assignment`) restricted to KD-tree candidates within ``radius_A``; the candidate
   graph is split into connected components so each assignment problem stays tiny.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from ..core.geometry import as_points, kabsch_rotation
from ..core.geometry import match_atoms as _match_atoms

__all__ = ["RigidTransform", "apply_transform", "kabsch", "match_atoms", "principal_axes",
           "register_rigid", "rotation_angle_deg"]


# --------------------------------------------------------------------------- small helpers
_as_points = as_points  # one definition: aet.core.geometry


def rotation_angle_deg(R) -> float:
    """Rotation angle (degrees, 0..180) of a proper rotation matrix."""
    R = np.asarray(R, dtype=np.float64)
    c = (np.trace(R) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def apply_transform(positions, R, t) -> np.ndarray:
    """``positions @ R.T + t``: move (x, y, z) Å positions by the rigid transform ``(R, t)``."""
    p = _as_points(positions, "positions")
    return p @ np.asarray(R, dtype=np.float64).T + np.asarray(t, dtype=np.float64)


def kabsch(moving, fixed, weights=None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares rigid transform taking ``moving`` onto ``fixed`` (paired rows).

    Minimises ``Σ w_i |R m_i + t − f_i|²`` over proper rotations ``R`` (det +1) and
    translations ``t`` (Kabsch 1976, with the reflection correction).

    Parameters
    ----------
    moving, fixed : (n, 3) array_like
        Paired positions (x, y, z) in Å, ``n ≥ 3``.
    weights : (n,) array_like, optional
        Non-negative weights (default all 1).

    Returns
    -------
    R : (3, 3) ndarray
    t : (3,) ndarray, Å

    Examples
    --------
    >>> import numpy as np
    >>> m = np.array([[0., 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    >>> R, t = kabsch(m, m + [1.0, 2.0, 3.0])
    >>> np.round(t, 6).tolist(), np.allclose(R, np.eye(3))
    ([1.0, 2.0, 3.0], True)
    """
    m = np.asarray(moving, dtype=np.float64)
    f = np.asarray(fixed, dtype=np.float64)
    if m.shape != f.shape or m.ndim != 2 or m.shape[1] != 3:
        raise ValueError(f"moving and fixed must be paired (n, 3) arrays, got {m.shape} and "
                         f"{f.shape}")
    w = np.ones(m.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    sw = w.sum()
    if m.shape[0] < 3 or not sw > 0:
        raise ValueError("kabsch needs at least 3 pairs with positive total weight")
    cm = (w[:, None] * m).sum(0) / sw
    cf = (w[:, None] * f).sum(0) / sw
    R = kabsch_rotation(m - cm, f - cf, w)
    return R, cf - R @ cm


def principal_axes(positions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centroid, principal moments (descending, Å²) and axes (columns) of a point cloud."""
    p = _as_points(positions, "positions")
    c = p.mean(0)
    evals, evecs = np.linalg.eigh(np.cov((p - c).T))
    order = np.argsort(evals)[::-1]
    V = evecs[:, order]
    if np.linalg.det(V) < 0:
        V[:, 2] *= -1
    return c, evals[order], V


def _signed_permutations() -> list[np.ndarray]:
    """The 24 proper (det +1) signed permutation matrices (the rotation group of a cube)."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            M = np.zeros((3, 3))
            for i, j in enumerate(perm):
                M[i, j] = signs[i]
            if np.linalg.det(M) > 0:
                out.append(M)
    return out


# --------------------------------------------------------------------------- result type
@dataclass(frozen=True)
class RigidTransform:
    """Result of :func:`register_rigid`: ``fixed ≈ moving @ R.T + t``.

    Attributes
    ----------
    R : (3, 3) ndarray
        Proper rotation matrix.
    t : (3,) ndarray
        Translation in Å.
    rmsd_A : float
        RMS distance (Å) of the inlier pairs after registration.
    inlier_fraction : float
        Fraction of moving atoms paired with a reference atom within ``max_pair_distance_A``.
    n_iter : int
        ICP iterations of the winning seed.
    seed : str
        Which seed won (``"identity"`` or ``"pca-<k>"``).
    species_mismatch : float
        Fraction of inlier pairs whose species differ (NaN when no species were given).
    """

    R: np.ndarray
    t: np.ndarray
    rmsd_A: float
    inlier_fraction: float
    n_iter: int
    seed: str
    species_mismatch: float = float("nan")
    candidates: list = field(default_factory=list, repr=False)

    @property
    def angle_deg(self) -> float:
        """Rotation angle of ``R`` in degrees."""
        return rotation_angle_deg(self.R)

    def apply(self, positions) -> np.ndarray:
        """Move positions (x, y, z) Å of the moving model into the reference frame."""
        return apply_transform(positions, self.R, self.t)

    def inverse(self) -> RigidTransform:
        """The transform taking the reference frame back to the moving model's frame."""
        Ri = self.R.T
        return RigidTransform(Ri, -Ri @ self.t, self.rmsd_A, self.inlier_fraction, self.n_iter,
                              self.seed, self.species_mismatch)

    def as_dict(self) -> dict:
        """JSON-able summary (rotation matrix, translation Å, angle degrees, residuals)."""
        return {"R": self.R.tolist(), "t_A": self.t.tolist(), "angle_deg": self.angle_deg,
                "rmsd_A": self.rmsd_A, "inlier_fraction": self.inlier_fraction,
                "n_iter": self.n_iter, "seed": self.seed,
                "species_mismatch": self.species_mismatch}


# --------------------------------------------------------------------------- ICP
def _icp(moving, fixed_tree, fixed, R, t, *, max_pair_distance_A, trim_fraction, huber_A,
         max_iter, tol_A):
    """Robust point-to-point ICP from ``(R, t)``. Returns ``R, t, rmsd, inlier_frac, it``."""
    n = moving.shape[0]
    n_keep_min = max(3, int(np.ceil(0.2 * n)))
    it = 0
    for it in range(1, max_iter + 1):
        cur = moving @ R.T + t
        d, j = fixed_tree.query(cur, k=1, distance_upper_bound=max_pair_distance_A)
        ok = np.isfinite(d)
        if np.count_nonzero(ok) < n_keep_min:
            return R, t, np.inf, float(np.count_nonzero(ok)) / max(n, 1), it
        idx = np.flatnonzero(ok)
        dk = d[idx]
        n_keep = max(n_keep_min, int(np.floor(trim_fraction * idx.size)))
        if n_keep < idx.size:
            part = np.argpartition(dk, n_keep - 1)[:n_keep]
            idx, dk = idx[part], dk[part]
        w = np.where(dk <= huber_A, 1.0, huber_A / np.maximum(dk, 1e-12))
        dR, dt = kabsch(cur[idx], fixed[j[idx]], w)
        R = dR @ R
        t = dR @ t + dt
        # size of the update at the particle's extent
        step = np.linalg.norm(dt) + np.linalg.norm(dR - np.eye(3)) * np.abs(cur).max()
        if step < tol_A:
            break
    cur = moving @ R.T + t
    d, _ = fixed_tree.query(cur, k=1, distance_upper_bound=max_pair_distance_A)
    ok = np.isfinite(d)
    dk = np.sort(d[ok])
    n_keep = max(1, int(np.floor(trim_fraction * dk.size)))
    rmsd = float(np.sqrt(np.mean(dk[:n_keep] ** 2))) if dk.size else np.inf
    return R, t, rmsd, float(np.count_nonzero(ok)) / max(n, 1), it


def _polish(moving, fixed_tree, fixed, R, t, *, max_pair_distance_A, max_iter, tol_A,
            clip_sigma=3.5):
    """Final least-squares ICP steps on every pair within ``clip_sigma`` robust σ.

    Once the robust ICP has converged, trimming and Huber weights only throw information
    away: for Gaussian position noise the efficient estimate is plain least squares over the
    correct pairs. The pair distances of 3D Gaussian noise follow a Maxwell law (median
    1.538 σ), so σ is estimated from the median and pairs beyond ``clip_sigma`` σ (atoms that
    moved, arrived or left) are dropped.
    """
    for _ in range(max_iter):
        cur = moving @ R.T + t
        d, j = fixed_tree.query(cur, k=1, distance_upper_bound=max_pair_distance_A)
        ok = np.isfinite(d)
        if np.count_nonzero(ok) < 4:
            break
        sig = float(np.median(d[ok])) / 1.538
        idx = np.flatnonzero(ok & (d <= clip_sigma * max(sig, 1e-6)))
        if idx.size < 4:
            break
        dR, dt = kabsch(cur[idx], fixed[j[idx]])
        R = dR @ R
        t = dR @ t + dt
        if np.linalg.norm(dt) + np.linalg.norm(dR - np.eye(3)) * np.abs(cur).max() < tol_A:
            break
    return R, t


def _check_fraction(name, v, lo_open=True):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in (0, 1], got {type(v).__name__}")
    if not (0 < v <= 1):
        raise ValueError(f"{name} must be in (0, 1], got {v!r}")
    return float(v)


def _check_length(name, v):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a length in Å, got {type(v).__name__}")
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a finite positive length in Å, got {v!r}")
    return float(v)


def register_rigid(moving, fixed, *, moving_species=None, fixed_species=None,
                   max_pair_distance_A: float = 1.5, trim_fraction: float = 0.9,
                   huber_A: float = 0.3, max_iter: int = 100, tol_A: float = 1e-5,
                   seeds: str = "auto", tie_tolerance: float = 0.05,
                   species_weight_A: float = 0.5, n_sample: int = 400, coarse_iter: int = 15,
                   start_radius_A: float = 6.0, polish: bool = True,
                   seed: int | np.random.Generator | None = 0) -> RigidTransform:
    """Rigidly register the atoms ``moving`` onto ``fixed`` (robust ICP, PCA seeds).

    Parameters
    ----------
    moving, fixed : (n, 3), (m, 3) array_like
        Positions (x, y, z) in Å of the same particle at two times; atom counts may differ
        (atoms that left, arrived or were missed are handled as outliers).
    moving_species, fixed_species : (n,), (m,) array_like of str, optional
        Element symbols; when both are given, the fraction of inlier pairs whose species differ
        enters the score that picks between seeds (chemical order breaks the cubic symmetry
        of the lattice where the shape does not).
    max_pair_distance_A : float
        Pairs further apart than this (Å) are outliers at every ICP step (default 1.5 Å, a bit
        over half the Fe–Pt nearest-neighbour distance).
    trim_fraction : float
        Fraction of the remaining pairs kept (closest first) at each step (trimmed ICP).
    huber_A : float
        Huber scale (Å): pairs further than this are down-weighted by ``huber_A / d``.
    max_iter, tol_A : int, float
        ICP stops after ``max_iter`` steps or once a step moves atoms by less than ``tol_A``.
    seeds : {"auto", "pca", "identity"}
        ``"pca"``: the identity seed plus the 24 principal-axis seeds; ``"identity"``: only
        the centroid-aligned identity seed; ``"auto"`` (default): the identity seed, and the
        principal-axis seeds too unless it pairs ≥ 90 % of the atoms at a trimmed RMS
        distance ≤ ``max_pair_distance_A / 2`` (between annealing steps the particle usually
        turns little, and the growing-region ICP converges from up to ~15°).
    tie_tolerance : float
        Relative score margin within which the smallest rotation wins.
    species_weight_A : float
        Å added to the score per unit species-mismatch fraction.
    n_sample, coarse_iter : int
        The seeds are compared after ``coarse_iter`` ICP steps on a random subset of at most
        ``n_sample`` moving atoms; the three best (and any within ``tie_tolerance`` of the
        best) are then refined on all atoms.
    start_radius_A : float
        Radius (Å) of the central region of the first ICP stage; each later stage grows it by
        1.5× until the whole particle is included (see step 2 above).
    polish : bool
        Finish with least-squares steps over all pairs within 3.5 robust σ (the efficient
        estimate under Gaussian position noise; trimming/Huber weights are for getting there).
    seed : int or numpy.random.Generator, optional
        Randomness of that subset.

    Returns
    -------
    RigidTransform
        ``fixed ≈ moving @ R.T + t``; ``.angle_deg``, ``.rmsd_A``, ``.inlier_fraction``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> fixed = rng.uniform(-10, 10, (300, 3))
    >>> th = np.radians(5.0)
    >>> Rz = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    >>> moving = (fixed - [0.5, 0.2, 0.0]) @ Rz   # rotate by -5° about z, shift
    >>> res = register_rigid(moving, fixed)
    >>> round(res.angle_deg, 3), res.rmsd_A < 1e-6
    (5.0, True)
    """
    mov = _as_points(moving, "moving")
    fix = _as_points(fixed, "fixed")
    if mov.shape[0] < 4 or fix.shape[0] < 4:
        raise ValueError(f"registration needs at least 4 atoms in each model, got "
                         f"{mov.shape[0]} (moving) and {fix.shape[0]} (fixed)")
    max_pair_distance_A = _check_length("max_pair_distance_A", max_pair_distance_A)
    huber_A = _check_length("huber_A", huber_A)
    tol_A = _check_length("tol_A", tol_A)
    trim_fraction = _check_fraction("trim_fraction", trim_fraction)
    if seeds not in ("auto", "pca", "identity"):
        raise ValueError(f"seeds must be 'auto', 'pca' or 'identity', got {seeds!r}")
    sp_m = sp_f = None
    if (moving_species is None) != (fixed_species is None):
        raise ValueError("pass both moving_species and fixed_species (or neither)")
    if moving_species is not None:
        sp_m = np.asarray(moving_species).astype(str)
        sp_f = np.asarray(fixed_species).astype(str)
        if sp_m.shape != (mov.shape[0],) or sp_f.shape != (fix.shape[0],):
            raise ValueError(f"moving_species/fixed_species must have one symbol per atom: got "
                             f"{sp_m.shape}/{sp_f.shape} for {mov.shape[0]}/{fix.shape[0]} atoms")

    cm, _, Vm = principal_axes(mov)
    cf, _, Vf = principal_axes(fix)
    tree = cKDTree(fix)
    pca_seeds = [(f"pca-{k}", Vf @ P @ Vm.T) for k, P in enumerate(_signed_permutations())]
    rng = np.random.default_rng(seed)
    sub = np.arange(mov.shape[0])
    if mov.shape[0] > n_sample:
        sub = np.sort(rng.choice(mov.shape[0], size=int(n_sample), replace=False))
    opts = {"max_pair_distance_A": max_pair_distance_A, "trim_fraction": trim_fraction,
            "huber_A": huber_A, "tol_A": tol_A}
    cands = []
    # growing regions: ICP on the atoms within r of the centroid, r growing by 1.5× per stage;
    # the lattice traps plain ICP once the rim moves by more than ~d_nn/2, but a small central
    # region converges from a large rotation and then hands an accurate start to the next
    r_all = float(np.linalg.norm(mov - cm, axis=1).max())
    radii = []
    r = float(start_radius_A)
    while r < r_all:
        radii.append(r)
        r *= 1.5
    dist_c = np.linalg.norm(mov - cm, axis=1)
    regions = []
    for r in radii:
        idx = np.flatnonzero(dist_c <= r)
        if idx.size > n_sample:
            idx = np.sort(rng.choice(idx, size=int(n_sample), replace=False))
        if idx.size >= 10:
            regions.append(mov[idx])
    def run_seed(name, R0):
        R, t = R0, cf - R0 @ cm
        it = 0
        for inner in regions:
            R, t, _, _, k = _icp(inner, tree, fix, R, t, max_iter=coarse_iter, **opts)
            it += k
        R, t, rmsd, frac, k = _icp(mov[sub], tree, fix, R, t, max_iter=coarse_iter, **opts)
        return _scored(name, R, t, rmsd, frac, it + k, mov[sub], tree,
                       None if sp_m is None else sp_m[sub], sp_f, max_pair_distance_A,
                       species_weight_A)

    cands.append(run_seed("identity", np.eye(3)))
    ok_identity = (cands[0]["inlier_fraction"] >= 0.9
                   and cands[0]["rmsd_A"] <= 0.5 * max_pair_distance_A)
    if seeds == "pca" or (seeds == "auto" and not ok_identity):
        cands.extend(run_seed(name, R0) for name, R0 in pca_seeds)
    # refine the promising seeds (the best three and any within the tie margin) on all atoms
    cands.sort(key=lambda c: c["score"])
    best = cands[0]["score"]
    chosen = [c for k, c in enumerate(cands)
              if k < 3 or c["score"] <= best * (1.0 + tie_tolerance) + 1e-9]
    refined = []
    for c in chosen:
        R, t, rmsd, frac, it = _icp(mov, tree, fix, c["R"], c["t"], max_iter=max_iter, **opts)
        if polish:
            R, t = _polish(mov, tree, fix, R, t, max_pair_distance_A=max_pair_distance_A,
                           max_iter=max_iter, tol_A=tol_A)
            R, t, rmsd, frac, _ = _icp(mov, tree, fix, R, t, max_iter=0, **opts)  # scores only
        refined.append(_scored(c["seed"], R, t, rmsd, frac, it + c["n_iter"], mov, tree, sp_m,
                               sp_f, max_pair_distance_A, species_weight_A))
    best = min(c["score"] for c in refined)
    near = [c for c in refined if c["score"] <= best * (1.0 + tie_tolerance) + 1e-9]
    fin = min(near, key=lambda c: c["angle_deg"])
    summary = [{k: v for k, v in c.items() if k not in ("R", "t")} for c in cands]
    return RigidTransform(fin["R"], fin["t"], float(fin["rmsd_A"]),
                          float(fin["inlier_fraction"]), int(fin["n_iter"]), fin["seed"],
                          float(fin["species_mismatch"]), summary)


def _scored(name, R, t, rmsd, frac, it, mov, tree, sp_m, sp_f, max_pair_distance_A,
            species_weight_A) -> dict:
    mism = float("nan")
    if sp_m is not None and np.isfinite(rmsd):
        d, j = tree.query(mov @ R.T + t, k=1, distance_upper_bound=max_pair_distance_A)
        ok = np.isfinite(d)
        mism = float(np.mean(sp_m[ok] != sp_f[j[ok]])) if ok.any() else 1.0
    # unpaired atoms cost the full pair distance: a wrong seed leaves many unpaired
    score = rmsd * frac + max_pair_distance_A * (1.0 - frac)
    if np.isfinite(mism):
        score += species_weight_A * mism
    return {"seed": name, "R": R, "t": t, "rmsd_A": rmsd, "inlier_fraction": frac,
            "n_iter": it, "species_mismatch": mism, "score": score,
            "angle_deg": rotation_angle_deg(R)}


# --------------------------------------------------------------------------- correspondence
def match_atoms(a, b, *, radius_A: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one pairing of atoms ``a`` and ``b`` (same frame) within ``radius_A``.

    Minimises the summed squared distance over all one-to-one pairings among KD-tree
    candidates closer than ``radius_A`` (Hungarian algorithm on each connected component of
    the candidate graph), pairing as many atoms as possible first.

    Parameters
    ----------
    a, b : (n, 3), (m, 3) array_like
        Positions (x, y, z) in Å, already registered into one frame.
    radius_A : float
        Largest distance (Å) of a pair (default 1.0 Å, well below the ~2.7 Å nearest-neighbour
        distance of FePt).

    Returns
    -------
    ia, ib : (k,) int ndarrays
        Paired indices (``a[ia[i]]`` ↔ ``b[ib[i]]``), sorted by ``ia``.
    dist : (k,) ndarray
        Pair distances in Å.
    """
    return _match_atoms(a, b, _check_length("radius_A", radius_A))
