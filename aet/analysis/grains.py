"""Grains and defects: local orientation, segmentation by orientation / phase / variant,
antiphase boundaries, antisite and swap defects, coordination and surface atoms.

Segmentation: every atom gets a local orientation from its first-shell bonds (the same triad
candidates + Kabsch fit as :func:`aet.analysis.fit_lattice`, on its own bonds only). Two bonded
atoms are in the same grain when their misorientation (smallest rotation angle over the 24 cubic
symmetry operations) is below ``misorientation_deg`` and — for an ordered ``kind`` — they have
the same phase label and chemical variant (:func:`aet.analysis.order_parameters`, fitted per
orientation grain). Grains are the connected components of that graph; components smaller than
``min_size`` atoms are merged into the grain most of their neighbours belong to.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sps
import xarray as xr
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ..core.geometry import kabsch_rotation
from ..core.schema import as_xarray
from .lattice import (
    _canonical_structure,
    _positions_species,
    default_cutoff,
    first_shell,
    nearest_neighbour_distance,
    nn_factor,
    orientation_from_bonds,
)
from .order import _canonical_kind, _Context, order_parameters, variant_table


def _base(ds) -> xr.Dataset:
    return as_xarray(ds, xr.Dataset)


def cubic_symmetry() -> np.ndarray:
    """The 24 proper rotations of the cube (3 × 3 matrices)."""
    ops = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            M = np.zeros((3, 3))
            M[np.arange(3), perm] = signs
            if np.linalg.det(M) > 0:
                ops.append(M)
    return np.array(ops)


def misorientation_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Cubic misorientation angle (deg) between stacks of rotations ``(n, 3, 3)``."""
    M = np.einsum("nji,njk->nik", Ra, Rb)  # Ra^T Rb
    tr = np.einsum("nij,oji->no", M, cubic_symmetry())  # trace(M O)
    c = np.clip((tr.max(axis=1) - 1) / 2, -1, 1)
    return np.degrees(np.arccos(c))


_batched_kabsch = kabsch_rotation  # one definition: aet.core.geometry


def _refine_from(R0, bhat, valid, vhat, cos_tol, n_iter=2):
    """Refine per-atom rotations from a start (3, 3) or (n, 3, 3); returns (R, matched frac)."""
    n = len(bhat)
    R = np.broadcast_to(R0, (n, 3, 3)).copy()
    frac = np.zeros(n)
    for _ in range(n_iter):
        dirs = np.einsum("nij,kj->nki", R, vhat)  # (n, 12, 3) ideal directions in sample
        dots = np.einsum("nbi,nki->nbk", bhat, dirs)
        k = dots.argmax(axis=2)
        c = np.take_along_axis(dots, k[..., None], axis=2)[..., 0]
        w = (valid & (c > cos_tol)).astype(np.float64)
        frac = w.sum(1) / np.maximum(valid.sum(1), 1)
        enough = w.sum(1) >= 3
        if enough.any():
            R[enough] = _batched_kabsch(vhat[k[enough]], bhat[enough], w[enough])
    return R, frac


def _geometry(ds, structure, cutoff_A):
    """(canonical structure, site geometry (L1_0/L1_2 → fcc), positions, nearest-neighbour
    distance, neighbour cutoff in Å (``cutoff_A`` or the geometry's default))."""
    structure = _canonical_structure(structure)
    geom = "fcc" if structure in ("L10", "L12") else structure
    pos, _ = _positions_species(ds)
    d_nn = nearest_neighbour_distance(pos, shell=8 if geom == "bcc" else 12)
    cut = default_cutoff(geom, d_nn) if cutoff_A is None else float(cutoff_A)
    return structure, geom, pos, d_nn, cut


def local_orientation(ds, *, structure: str = "fcc", cutoff_A: float | None = None,
                      min_neighbours: int = 4, tol_deg: float = 15.0,
                      max_orientations: int = 64) -> np.ndarray:
    """Per-atom crystal → sample rotation ``(n, 3, 3)`` from the atom's first-shell bonds.

    Seeded growth: the best-coordinated unexplained atom gives a reference orientation (triad
    candidates, :func:`~aet.analysis.lattice.orientation_from_bonds`); every unexplained atom
    whose bonds match that lattice (≥ 75 % within ``tol_deg``) gets its own Kabsch-refined
    rotation; repeat until no atom is left (at most ``max_orientations`` seeds). NaN for atoms
    with fewer than ``min_neighbours`` neighbours or never matched.
    """
    structure, geom, pos, d_nn, cut = _geometry(ds, structure, cutoff_A)
    n = len(pos)
    shell = first_shell(geom, 1.0)
    vhat = shell / np.linalg.norm(shell, axis=1, keepdims=True)
    kmax = len(shell) + 2
    dist, idx = cKDTree(pos).query(pos, k=min(kmax + 1, n), distance_upper_bound=cut)
    dist, idx = dist[:, 1:], idx[:, 1:]
    valid = np.isfinite(dist)
    nb = np.where(valid, idx, 0)
    b = pos[nb] - pos[:, None, :]
    bn = np.linalg.norm(b, axis=2, keepdims=True)
    bhat = np.where(valid[..., None], b / np.maximum(bn, 1e-12), 0.0)
    cnt = valid.sum(1)
    out = np.full((n, 3, 3), np.nan)
    todo = cnt >= min_neighbours
    cos_tol = np.cos(np.radians(tol_deg))
    centre = pos.mean(0)
    for _ in range(max_orientations):
        rem = np.flatnonzero(todo)
        if not len(rem):
            break
        dc = np.linalg.norm(pos[rem] - centre, axis=1)
        seed = rem[np.lexsort((dc, -cnt[rem]))[0]]
        bs = b[seed][valid[seed]]
        Rs, _ = orientation_from_bonds(bs, shell, seeds=[bs])
        R, frac = _refine_from(Rs, bhat[rem], valid[rem], vhat, cos_tol)
        acc = frac >= 0.75
        acc[rem == seed] = True
        out[rem[acc]] = R[acc]
        todo[rem[acc]] = False
    return out


def _merge_small(labels: np.ndarray, adj: sps.csr_matrix, min_size: int) -> np.ndarray:
    labels = labels.copy()
    for _ in range(5):
        counts = np.bincount(labels[labels >= 0], minlength=labels.max() + 1)
        small = np.flatnonzero((labels >= 0) & (counts[np.maximum(labels, 0)] < min_size))
        if not len(small):
            break
        changed = False
        for i in small:
            nb = adj.indices[adj.indptr[i]:adj.indptr[i + 1]]
            nb_l = labels[nb]
            nb_l = nb_l[(nb_l >= 0) & (counts[np.maximum(nb_l, 0)] >= min_size)]
            if len(nb_l):
                labels[i] = np.bincount(nb_l).argmax()
                changed = True
        if not changed:
            break
    counts = np.bincount(labels[labels >= 0], minlength=labels.max() + 1)
    labels[(labels >= 0) & (counts[np.maximum(labels, 0)] < min_size)] = -1
    # relabel 0..G-1 by size
    uniq, inv = np.unique(labels[labels >= 0], return_inverse=True)
    sizes = np.bincount(inv)
    rank = np.empty_like(sizes)
    rank[np.argsort(-sizes, kind="stable")] = np.arange(len(sizes))
    out = np.full_like(labels, -1)
    out[labels >= 0] = rank[inv]
    return out


def grains(ds, *, kind: str | None = None, structure: str = "fcc",
           misorientation_deg_max: float = 5.0, min_size: int = 10, species=None,
           cutoff_A: float | None = None, ordered_threshold: float = 0.5) -> xr.Dataset:
    """Segment the model into grains by local orientation (and phase + variant for ``kind``).

    Parameters
    ----------
    ds : xarray.Dataset or AtomicModel
    kind : {"L10", "L12", "L12_A3B", "L12_AB3"}, optional
        Also split by chemical phase (ordered vs A1) and variant.
    structure : str
        Lattice of the local orientation fit (``"fcc"`` for the ordered fcc alloys).
    misorientation_deg_max : float
        Largest misorientation (deg) between bonded atoms of one grain.
    min_size : int
        Smaller components are merged into a neighbouring grain (else label -1).

    Returns
    -------
    xarray.Dataset
        The model Dataset plus ``grain`` (int, 0 = largest, -1 = unassigned),
        ``orientation_grain`` (segmentation by orientation only) and, for ``kind``, the
        ``order_*``, ``variant_*``, ``phase`` and ``sublattice`` arrays.
    """
    if not misorientation_deg_max > 0:
        raise ValueError(f"misorientation_deg_max must be > 0 deg, got {misorientation_deg_max!r}")
    if not (isinstance(min_size, (int, np.integer)) and min_size >= 1):
        raise ValueError(f"min_size must be a positive integer, got {min_size!r}")
    structure, geom, pos, d_nn, cut = _geometry(ds, structure, cutoff_A)
    n = len(pos)
    R = local_orientation(ds, structure=geom, cutoff_A=cut)
    pairs = cKDTree(pos).query_pairs(cut, output_type="ndarray")
    good = np.isfinite(R[:, 0, 0])
    i, j = pairs[:, 0], pairs[:, 1]
    ok = good[i] & good[j]
    mis = np.full(len(pairs), 180.0)
    mis[ok] = misorientation_deg(R[i[ok]], R[j[ok]])
    adj_all = sps.csr_matrix((np.ones(2 * len(pairs)), (np.r_[i, j], np.r_[j, i])),
                             shape=(n, n))
    keep = mis < misorientation_deg_max
    g = sps.csr_matrix((np.ones(keep.sum()), (i[keep], j[keep])), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    orient = _merge_small(lab, adj_all, min_size)
    out = _base(ds).copy()
    out["orientation_grain"] = ("atom", orient)
    if kind is None:
        out["grain"] = ("atom", orient)
        return out
    kind = _canonical_kind(kind)
    op = order_parameters(ds, kind, labels=orient, species=species,
                          ordered_threshold=ordered_threshold)
    name = "L12" if kind.startswith("L12") else "L10"
    var = op[f"variant_{name}"].values
    phase = op["phase"].values
    ordered = phase != "A1"
    same = (orient[i] == orient[j]) & (orient[i] >= 0)
    same &= ordered[i] == ordered[j]
    same &= ~ordered[i] | (var[i] == var[j])
    g = sps.csr_matrix((np.ones(same.sum()), (i[same], j[same])), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    lab[orient < 0] = -1
    out = op.copy()
    out["orientation_grain"] = ("atom", orient)
    out["grain"] = ("atom", _merge_small(lab, adj_all, min_size))
    return out


def coordination(ds, *, cutoff_A: float | None = None, structure: str = "fcc") -> np.ndarray:
    """Number of neighbours of each atom within ``cutoff_A`` (default: first-shell cutoff)."""
    structure = _canonical_structure(structure)
    geom = "fcc" if structure in ("L10", "L12") else structure
    pos, _ = _positions_species(ds)
    if cutoff_A is None:
        cutoff_A = default_cutoff(geom, nearest_neighbour_distance(
            pos, shell=8 if geom == "bcc" else 12))
    pairs = cKDTree(pos).query_pairs(float(cutoff_A), output_type="ndarray")
    return np.bincount(pairs.ravel(), minlength=len(pos)).astype(np.int64)


def defects(ds, kind: str = "L10", *, lattice=None, labels=None, species=None,
            cutoff_A: float | None = None, window_A: float | None = None,
            ordered_threshold: float = 0.5, surface_max_cn: int | None = None,
            min_domain: int = 20) -> xr.Dataset:
    """Point and planar chemical defects of an ordered fcc alloy, and surface atoms.

    * ``antisite``: the atom's species differs from the one its site should hold under its
      variant (chosen from its window, which excludes the atom and its first shell) while its own
      shell is ordered (order parameter ≥ ``ordered_threshold``);
    * ``swap_partner``: index of a bonded antisite of the other species (an A–B swap), else -1;
    * ordered domains: connected ordered atoms of one variant, at least ``min_domain`` atoms;
    * ``antiphase_boundary``: within two bonds of the atom lie atoms of two domains of the
      same c axis but opposite sublattice pairing (L1_0) / different corner sublattices (L1_2);
    * ``variant_boundary``: touches two domains of any variants;
    * ``coordination`` (first-shell count) and ``surface`` (``coordination ≤ surface_max_cn``;
      default 10 for fcc, 6 for bcc).

    Returns the model Dataset with these per-atom arrays and the order-parameter arrays.
    """
    kind = _canonical_kind(kind)
    if kind == "L12":
        raise ValueError("defects needs one stoichiometry: kind='L12_A3B' or 'L12_AB3'")
    ctx = _Context(ds, lattice=lattice, labels=labels, species=species, cutoff_A=cutoff_A,
                   window_A=window_A)
    op = order_parameters(ds, kind, lattice=ctx.fits if len(ctx.fits) > 1 else ctx.fits[0],
                          labels=None, species=species, cutoff_A=cutoff_A,
                          window_A=window_A, ordered_threshold=ordered_threshold) \
        if len(ctx.fits) == 1 else order_parameters(
            ds, kind, lattice={f.label: f for f in ctx.fits}, species=species,
            cutoff_A=cutoff_A, window_A=window_A, ordered_threshold=ordered_threshold)
    name = "L12" if kind.startswith("L12") else "L10"
    table = variant_table(kind)
    v = op[f"variant_{name}"].values
    s = op[f"order_{name}"].values
    fitted = (v >= 0) & (ctx.sub >= 0)
    expA = np.zeros(len(v), dtype=bool)
    expA[fitted] = table[v[fitted], ctx.sub[fitted]]
    wrong = np.where(expA, ~ctx.isA, ~ctx.isB) & fitted & (ctx.isA | ctx.isB)
    ordered = fitted & (np.nan_to_num(s, nan=-1) >= ordered_threshold)
    antisite = wrong & ordered
    nn = ctx.nn.tocoo()
    a, b = nn.row, nn.col
    partner = np.full(len(v), -1, dtype=np.int64)
    sw = antisite[a] & antisite[b] & (ctx.isA[a] != ctx.isA[b])
    partner[a[sw]] = b[sw]
    # boundaries: ordered domains = connected ordered atoms (S ≥ threshold) of one variant with
    # at least `min_domain` atoms; a boundary atom has atoms of two different domains within
    # two bonds
    keep = ordered[a] & ordered[b] & (v[a] == v[b])
    g = sps.csr_matrix((np.ones(keep.sum()), (a[keep], b[keep])), shape=(len(v), len(v)))
    _, dom = connected_components(g, directed=False)
    sizes = np.bincount(dom)
    dom = np.where(ordered & (sizes[dom] >= min_domain), dom, -1)
    vb = np.zeros(len(v), dtype=bool)
    apb = np.zeros(len(v), dtype=bool)
    one = (ctx.nn + sps.identity(len(v), format="csr")).tocsr()
    csr = (one @ one).tocsr()  # within two bonds: the disordered APB layer sits in between
    for i in range(len(v)):
        nb = csr.indices[csr.indptr[i]:csr.indptr[i + 1]]
        d = dom[nb]
        sel = d >= 0
        if sel.sum() < 2:
            continue
        d, vv = d[sel], v[nb][sel]
        if np.unique(d).size < 2:
            continue
        vb[i] = True
        # same c axis (L1_0) / any two corner sublattices (L1_2), different domains
        key = vv // 2 if name == "L10" else np.zeros_like(vv)
        for kk in np.unique(key):
            dd = d[key == kk]
            if np.unique(vv[key == kk]).size > 1 and np.unique(dd).size > 1:
                apb[i] = True
    cn = ctx.n_nn.astype(np.int64)
    if surface_max_cn is None:
        surface_max_cn = 10
    out = op.copy()
    out["antisite"] = ("atom", antisite)
    out["swap_partner"] = ("atom", partner)
    out["antiphase_boundary"] = ("atom", apb)
    out["variant_boundary"] = ("atom", vb)
    out["coordination"] = ("atom", cn)
    out["surface"] = ("atom", cn <= int(surface_max_cn))
    return out


def surface_atoms(ds, *, max_cn: int | None = None, structure: str = "fcc",
                  cutoff_A: float | None = None) -> np.ndarray:
    """Boolean per atom: first-shell coordination ≤ ``max_cn`` (default: 10 for fcc/hcp,
    6 for bcc, i.e. at least two bulk neighbours missing)."""
    structure = _canonical_structure(structure)
    cn = coordination(ds, cutoff_A=cutoff_A, structure=structure)
    if max_cn is None:
        max_cn = 6 if structure == "bcc" else 10
    return cn <= int(max_cn)


_ = nn_factor  # re-exported helpers used by callers of this module
