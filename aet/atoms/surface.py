"""Surface flags and clean-up of traced models (coordination and alpha shapes)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sps
import xarray as xr
from scipy.sparse.csgraph import connected_components
from scipy.spatial import Delaunay, cKDTree

from ..core.geometry import bond_length_A, nearest_neighbour_distance
from ..core.schema import build_model_dataset
from ._common import check_model, check_positive, model_positions

__all__ = ["flag_surface", "cleanup", "coordination_numbers", "alpha_shape_vertices",
           "neighbour_radius_A", "first_shell_spread_A"]


def _nn_distance(pos: np.ndarray) -> float:
    # the plain nearest-neighbour distance (k=1) of aet.core.geometry; 1 Å for a lone atom
    return 1.0 if len(pos) < 2 else nearest_neighbour_distance(pos, k=1)


def coordination_numbers(positions_xyz_A: np.ndarray, radius_A: float) -> np.ndarray:
    """Number of other atoms within ``radius_A`` (Å) of each atom."""
    pos = np.asarray(positions_xyz_A, dtype=np.float64).reshape(-1, 3)
    if len(pos) == 0:
        return np.zeros(0, dtype=np.int64)
    pairs = cKDTree(pos).query_pairs(float(radius_A), output_type="ndarray")
    return np.bincount(pairs.ravel(), minlength=len(pos)).astype(np.int64)


def _circumradii(pts: np.ndarray, simplices: np.ndarray) -> np.ndarray:
    a = pts[simplices[:, 0]]
    M = pts[simplices[:, 1:]] - a[:, None, :]  # (n, 3, 3)
    rhs = 0.5 * (M**2).sum(axis=2)
    det = np.linalg.det(M)
    ok = np.abs(det) > 1e-12
    c = np.full((len(simplices), 3), np.inf)
    c[ok] = np.linalg.solve(M[ok], rhs[ok][..., None])[..., 0]
    return np.linalg.norm(c, axis=1)


def alpha_shape_vertices(positions_xyz_A: np.ndarray, alpha_A: float) -> np.ndarray:
    """Boolean mask of the atoms on the boundary of the alpha shape of radius ``alpha_A``.

    The alpha complex keeps the Delaunay tetrahedra whose circumradius is ≤ ``alpha_A``; a
    triangle that belongs to exactly one kept tetrahedron is a boundary face, and its corners
    are surface atoms. Atoms in no kept tetrahedron are surface atoms too.
    """
    pos = np.asarray(positions_xyz_A, dtype=np.float64).reshape(-1, 3)
    n = len(pos)
    if n < 5:
        return np.ones(n, dtype=bool)
    tri = Delaunay(pos)
    simp = tri.simplices[_circumradii(pos, tri.simplices) <= alpha_A]
    on = np.zeros(n, dtype=bool)
    inside_any = np.zeros(n, dtype=bool)
    if len(simp):
        inside_any[np.unique(simp)] = True
        faces = np.concatenate([np.sort(simp[:, [i for i in range(4) if i != k]], axis=1)
                                for k in range(4)])
        uniq, counts = np.unique(faces, axis=0, return_counts=True)
        on[np.unique(uniq[counts == 1])] = True
    return on | ~inside_any


def flag_surface(model: xr.Dataset, *, method: str = "coordination",
                 radius_A: float | None = None, min_coordination: int | None = None,
                 alpha_A: float | None = None):
    """Flag surface atoms.

    Parameters
    ----------
    model : xarray.Dataset
        Atomic-model dataset (positions (x, y, z) Å).
    method : {"coordination", "alpha", "both"}
        ``"coordination"``: fewer than ``min_coordination`` neighbours within ``radius_A``.
        ``"alpha"``: on the boundary of the alpha shape of radius ``alpha_A``. ``"both"``:
        either criterion.
    radius_A : float, optional
        First-shell radius (Å); default 1.2 × the median nearest-neighbour distance.
    min_coordination : int, optional
        Default: 80 % of the bulk coordination (the 90th percentile), rounded up.
    alpha_A : float, optional
        Alpha radius (Å); default the median nearest-neighbour distance (keeps the
        tetrahedra of close-packed lattices, whose circumradius is ≤ 0.71 × that distance).

    Returns
    -------
    (xarray.Dataset, dict)
        The model with boolean ``surface`` and integer ``coordination``; the dict has the
        radii and threshold used and the number of surface atoms.
    """
    ds = check_model(model)
    if method not in ("coordination", "alpha", "both"):
        raise ValueError(f"method must be 'coordination', 'alpha' or 'both', got {method!r}")
    pos = model_positions(ds)
    nn = _nn_distance(pos)
    r = 1.2 * nn if radius_A is None else check_positive("radius_A", radius_A)
    coord = coordination_numbers(pos, r)
    bulk = float(np.percentile(coord, 90)) if len(coord) else 0.0
    mc = int(np.ceil(0.8 * bulk)) if min_coordination is None else \
        check_positive("min_coordination", min_coordination, integer=True, allow_zero=True)
    surf = np.zeros(len(pos), dtype=bool)
    if method in ("coordination", "both"):
        surf |= coord < mc
    alpha = nn if alpha_A is None else check_positive("alpha_A", alpha_A)
    if method in ("alpha", "both"):
        surf |= alpha_shape_vertices(pos, alpha)
    out = ds.copy()
    out["surface"] = ("atom", surf)
    out["coordination"] = ("atom", coord)
    return out, {"method": method, "radius_A": r, "min_coordination": mc, "alpha_A": alpha,
                 "n_surface": int(surf.sum())}


#: ``cleanup(radius_A="auto")``: at least this many times the bond length
#: (:func:`aet.core.geometry.bond_length_A`), between the first (1×) and second (√2×) shells
#: of a close-packed crystal
AUTO_RADIUS_FACTOR = 1.15
#: ... and at most this many: half-way between the first and second shells
AUTO_RADIUS_MAX_FACTOR = 0.5 * (1.0 + np.sqrt(2.0))
#: ... within which the radius reaches this many standard deviations of the model's own
#: first-shell distances beyond the bond length (:func:`neighbour_radius_A`)
AUTO_RADIUS_SPREAD = 2.5


def first_shell_spread_A(positions_xyz_A: np.ndarray, bond_A: float | None = None) -> float:
    """Robust standard deviation (Å) of the pair distances of a model's first shell: the
    distances within ±(√2 − 1)/2 of the bond length (half-way to the second shell of a
    close-packed crystal), their median absolute deviation × 1.4826. The position noise of
    the model widens it (√2 × the per-axis error along each bond); 0 with too few pairs."""
    pos = np.asarray(positions_xyz_A, dtype=np.float64).reshape(-1, 3)
    if len(pos) < 2:
        return 0.0
    b = bond_length_A(pos) if bond_A is None else float(bond_A)
    half = AUTO_RADIUS_MAX_FACTOR - 1.0
    pairs = cKDTree(pos).query_pairs((1.0 + half) * b, output_type="ndarray")
    if len(pairs) < 20:
        return 0.0
    d = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
    d = d[d > (1.0 - half) * b]
    if len(d) < 20:
        return 0.0
    return float(1.4826 * np.median(np.abs(d - np.median(d))))


def neighbour_radius_A(positions_xyz_A: np.ndarray) -> float:
    """The neighbour radius of ``cleanup(radius_A="auto")`` and of the refinement's
    coordination checks (Å): the bond length b (:func:`aet.core.geometry.bond_length_A`)
    plus :data:`AUTO_RADIUS_SPREAD` × the measured spread σ of the model's first-shell
    distances (:func:`first_shell_spread_A`), within [:data:`AUTO_RADIUS_FACTOR`,
    :data:`AUTO_RADIUS_MAX_FACTOR`] × b.

    The radius follows the position noise of the model it judges: a precise model gets
    1.15 b, a noisy one up to half-way to the second shell. (A fixed 1.15 b on a low-dose
    model, abTEM 3 nm FePt at 2×10⁴ e/Å², σ = 0.27 Å: one true bond in ten was longer than
    the radius, and 19 of the 57 peaks the clean-up removed were true surface atoms.)"""
    pos = np.asarray(positions_xyz_A, dtype=np.float64).reshape(-1, 3)
    b = bond_length_A(pos)
    r = b + AUTO_RADIUS_SPREAD * first_shell_spread_A(pos, b)
    return float(min(max(r, AUTO_RADIUS_FACTOR * b), AUTO_RADIUS_MAX_FACTOR * b))


def _edge_groups(pos: np.ndarray, keep: np.ndarray, box_A, r: float) -> np.ndarray:
    """Indices of the kept atoms in bonded groups (within ``r``) that come within ``r`` of
    a face of ``box_A`` and are not the largest group."""
    box = np.asarray(box_A, dtype=np.float64)
    if box.shape != (2, 3) or not np.all(np.isfinite(box)) or np.any(box[1] <= box[0]):
        raise ValueError(f"box_A must be [[x0, y0, z0], [x1, y1, z1]] in Å with x1 > x0, "
                         f"y1 > y0, z1 > z0 (the volume's extent), got {box_A!r}")
    idx = np.flatnonzero(keep)
    if idx.size < 2:
        return np.zeros(0, dtype=np.int64)
    p = pos[idx]
    pairs = cKDTree(p).query_pairs(float(r), output_type="ndarray")
    g = sps.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                       shape=(idx.size, idx.size))
    _, label = connected_components(g, directed=False)
    size = np.bincount(label)
    near = (np.minimum(p - box[0], box[1] - p) < r).any(axis=1)
    touching = np.unique(label[near])
    drop = np.isin(label, touching[touching != np.argmax(size)])
    return idx[drop]


def cleanup(model: xr.Dataset, *, min_neighbours: int = 1, radius_A: float | str = 3.5,
            min_distance_A: float | None = None, box_A=None):
    """Drop isolated peaks, merge too-close pairs and drop artefacts at the volume's faces.

    Parameters
    ----------
    model : xarray.Dataset
    min_neighbours : int
        Atoms with fewer neighbours than this within ``radius_A`` (Å) are removed
        (isolated noise peaks outside the object).
    radius_A : float or "auto"
        Neighbour radius (Å). ``"auto"``: :func:`neighbour_radius_A`, 1.15–1.21 × the
        model's bond length (:func:`aet.core.geometry.bond_length_A`, the first peak of its
        pair distances), wider as its first-shell distances spread with the position noise;
        with ``min_neighbours=3`` this drops noise and support-film peaks outside a
        close-packed particle, while its surface atoms have ≥ 3 such neighbours.
    min_distance_A : float, optional
        Of two atoms closer than this (Å) only the one with the higher ``intensity`` (or the
        first) is kept.
    box_A : array_like, optional
        ``[[x0, y0, z0], [x1, y1, z1]]``: the extent (Å, voxel centres) of the reconstructed
        volume the atoms were traced in, for an isolated object (a particle) only. Groups of
        atoms bonded within ``radius_A`` that reach within ``radius_A`` of a face of that box
        and are not the largest group (the object) are dropped as edge artefacts: the voxels
        at the faces perpendicular to the tilt axis are crossed by fewer rays at high tilt
        and gather bright peaks there (abTEM 3 nm FePt particle at 1×10⁵ e/Å²: 81 peaks
        within 3 Å of the x and z faces after the coordination clean-up, none a true atom).

    Returns
    -------
    (xarray.Dataset, dict)
        The cleaned model (atom index renumbered) and ``{"removed": [old indices],
        "n_removed", "reason": {index: "isolated" | "too_close" | "edge"}}``.
    """
    ds = check_model(model)
    k = check_positive("min_neighbours", min_neighbours, integer=True, allow_zero=True)
    pos = model_positions(ds)
    n = len(pos)
    if isinstance(radius_A, str):
        if radius_A != "auto":
            raise ValueError(f"radius_A must be a length in Å or 'auto', got {radius_A!r}")
        if n < 2:
            raise ValueError(f"radius_A='auto' needs at least 2 atoms (the model has {n}); "
                             f"give radius_A in Å")
        r = neighbour_radius_A(pos)
    else:
        r = check_positive("radius_A", radius_A)
    reason: dict[int, str] = {}
    keep = np.ones(n, dtype=bool)
    if min_distance_A is not None and n > 1:
        md = check_positive("min_distance_A", min_distance_A)
        inten = np.asarray(ds["intensity"].values, dtype=np.float64) if "intensity" in ds \
            else -np.arange(n, dtype=np.float64)
        order = np.lexsort((np.arange(n), -inten))
        tree = cKDTree(pos)
        for i in order:
            if not keep[i]:
                continue
            for j in tree.query_ball_point(pos[i], md):
                if j != i and keep[j]:
                    keep[j] = False
                    reason[int(j)] = "too_close"
    if k > 0:
        coord = coordination_numbers(np.where(keep[:, None], pos, np.inf)[keep], r)
        idx = np.flatnonzero(keep)
        iso = idx[coord < k]
        keep[iso] = False
        reason.update({int(i): "isolated" for i in iso})
    if box_A is not None:
        edge = _edge_groups(pos, keep, box_A, r)
        keep[edge] = False
        reason.update({int(i): "edge" for i in edge})
    arrays = {v: ds[v].values[keep] for v in ds.data_vars
              if v not in ("position", "species") and ds[v].dims == ("atom",)}
    out = build_model_dataset(pos[keep], np.asarray(ds["species"].values)[keep],
                              arrays=arrays, attrs=dict(ds.attrs))
    removed = np.flatnonzero(~keep)
    return out, {"removed": removed.tolist(), "n_removed": int(removed.size),
                 "radius_A": float(r), "reason": {str(i): reason[int(i)] for i in removed}}
