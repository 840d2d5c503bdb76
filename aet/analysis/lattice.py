"""Ideal lattices and their robust fit to an atomic model (orientation, constants, origin, sites).

Frames and units: positions are (x, y, z) in Å in the model's (Volume) frame. A fitted lattice
is ``position ≈ origin_A + cell @ s`` where ``s`` is the site's fractional coordinate in the
*conventional* cell (integers + basis fraction) and ``cell`` (3 × 3) holds the cell vectors as
columns in Å. ``rotation`` (3 × 3, columns = crystal axes a, b, c in the sample frame) maps the
crystal frame to the sample frame; ``euler_deg`` is the same rotation as ZYZ Euler angles
(φ, θ, ψ) in degrees, ``R = R_z(φ) R_y(θ) R_z(ψ)`` (docs/conventions.rst).

Fit (iterative closest lattice point, IRLS with Huber weights):

1. nearest-neighbour distance ``d_nn`` = median distance of every atom to its nearest neighbour;
2. orientation from neighbour-bond directions: for a few well-coordinated seed atoms, every pair of
   ideal first-shell vectors whose angle matches a pair of the seed's bonds gives a candidate
   rotation (triad alignment); the candidate with the best mean cosine between the region's
   bonds and their nearest ideal direction (clipped at ``25°``) wins and is refined by a Kabsch
   fit of the matched bonds;
3. sites: every atom goes to its nearest ideal site (integer cell + basis site), then the affine
   ``(origin, cell)`` is re-fitted by weighted least squares with Huber weights (``huber_A``),
   the lattice is re-projected onto the structure's symmetry (polar decomposition → rotation;
   cubic: one ``a``; tetragonal L1_0 / hexagonal hcp: ``a`` and ``c``) and the loop repeats.
   Atoms farther than ``3 huber_A`` from their site get zero weight (trimmed: spurious or
   missing-atom artefacts of tracing do not pull the fit).

For the chemically ordered structures the geometry is fcc; the chemical variant (L1_0: which
crystal axis is ``c`` and which pair of fcc sublattices holds species A; L1_2: which sublattice
holds the minority species) is chosen by the largest occupancy agreement and the crystal axes are
permuted / the origin shifted so that the returned cell is the conventional cell of the ordered
phase (L1_0: ``c`` along crystal axis 3, species A on sublattices 0 and 3; L1_2: minority on
sublattice 0).

fcc-type sublattices (basis, fractional): 0 (0,0,0), 1 (0,½,½), 2 (½,0,½), 3 (½,½,0).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import numpy as np
import xarray as xr
from ase.data import atomic_numbers
from scipy.spatial import cKDTree

from ..core.geometry import kabsch_rotation
from ..core.geometry import nearest_neighbour_distance as _nn_distance
from ..core.schema import as_xarray

STRUCTURES = ("fcc", "bcc", "hcp", "L10", "L12")

FCC_BASIS = np.array([[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]], dtype=np.float64)
BCC_BASIS = np.array([[0, 0, 0], [.5, .5, .5]], dtype=np.float64)
HCP_BASIS = np.array([[0, 0, 0], [1 / 3, 2 / 3, .5]], dtype=np.float64)

# L1_0: species A on sublattices 0, 3 (the z = 0 planes), B on 1, 2
L10_A_SITES = (0, 3)
_TWO_PI = 2 * np.pi


def _canonical_structure(structure: str) -> str:
    key = str(structure).replace("_", "").replace(" ", "").lower()
    table = {"fcc": "fcc", "a1": "fcc", "bcc": "bcc", "a2": "bcc", "hcp": "hcp", "a3": "hcp",
             "l10": "L10", "l12": "L12"}
    if key not in table:
        raise ValueError(
            f"structure must be one of {list(STRUCTURES)}, got {structure!r}; pick the ideal "
            f"lattice to fit (L10/L12 are fcc-based ordered alloys)"
        )
    return table[key]


def crystal_cell(structure: str, a: float, c: float | None = None) -> np.ndarray:
    """Conventional cell (columns a1, a2, a3) in the crystal frame, Å."""
    structure = _canonical_structure(structure)
    if structure == "hcp":
        c = np.sqrt(8 / 3) * a if c is None else c
        return np.array([[a, -a / 2, 0], [0, a * np.sqrt(3) / 2, 0], [0, 0, c]], dtype=np.float64)
    c = a if c is None else c
    return np.diag([a, a, c]).astype(np.float64)


def basis(structure: str) -> np.ndarray:
    """Fractional basis of the conventional cell (rows)."""
    structure = _canonical_structure(structure)
    return {"fcc": FCC_BASIS, "L10": FCC_BASIS, "L12": FCC_BASIS, "bcc": BCC_BASIS,
            "hcp": HCP_BASIS}[structure]


def nn_factor(structure: str) -> float:
    """Lattice constant ``a`` divided by the nearest-neighbour distance."""
    structure = _canonical_structure(structure)
    return {"fcc": np.sqrt(2), "L10": np.sqrt(2), "L12": np.sqrt(2), "bcc": 2 / np.sqrt(3),
            "hcp": 1.0}[structure]


def first_shell(structure: str, a: float = 1.0, c: float | None = None) -> np.ndarray:
    """Ideal first-shell neighbour vectors (crystal frame, Å): fcc 12, bcc 8, hcp 12."""
    structure = _canonical_structure(structure)
    cell = crystal_cell(structure, a, c)
    b = basis(structure)
    rng = np.arange(-2, 3)
    cells = np.array(list(itertools.product(rng, rng, rng)), dtype=np.float64)
    vecs = []
    for site in b:  # neighbours of the site at b[0] = origin
        v = (cells + site) @ cell.T
        vecs.append(v)
    v = np.concatenate(vecs)
    d = np.linalg.norm(v, axis=1)
    v = v[d > 1e-9]
    d = d[d > 1e-9]
    dmin = d.min()
    return v[d < dmin * 1.02]


def default_cutoff(structure: str, d_nn: float) -> float:
    """First-shell cutoff (Å) between the first and second neighbour shells."""
    structure = _canonical_structure(structure)
    return d_nn * (1.077 if structure == "bcc" else 1.21)


@dataclasses.dataclass(frozen=True)
class LatticeFit:
    """Result of :func:`fit_lattice` for one region (grain).

    Attributes
    ----------
    structure : str
        ``"fcc"``, ``"bcc"``, ``"hcp"``, ``"L10"`` or ``"L12"``.
    a_A, c_A : float
        Fitted lattice constants (Å); ``c_A == a_A`` for cubic structures.
    rotation : (3, 3) ndarray
        Crystal → sample rotation; columns are the crystal axes in the (x, y, z) frame.
    origin_A : (3,) ndarray
        A lattice site (sublattice 0) near the centroid, (x, y, z) Å.
    cell : (3, 3) ndarray
        Affine least-squares cell (columns, Å) — includes any uniform strain.
    atoms : (n,) ndarray of int
        Indices (into the model) of the atoms of this region.
    sites : (n, 3) ndarray
        Fractional conventional-cell coordinate of each atom's site.
    sublattice : (n,) ndarray of int
        Basis index of each atom's site.
    residual_A : (n, 3) ndarray
        Position minus ideal site (the ideal lattice: ``origin + rotation @ crystal cell @ s``).
    inlier : (n,) ndarray of bool
        ``|residual| < 0.25 d_nn``.
    species : tuple of str
        (A, B) for the ordered structures: L1_0 A on sublattices 0 and 3; L1_2 the minority on
        sublattice 0 (``species[1]``); empty otherwise.
    """

    structure: str
    a_A: float
    c_A: float
    rotation: np.ndarray
    origin_A: np.ndarray
    cell: np.ndarray
    atoms: np.ndarray
    sites: np.ndarray
    sublattice: np.ndarray
    residual_A: np.ndarray
    inlier: np.ndarray
    species: tuple = ()
    label: int = 0

    @property
    def d_nn_A(self) -> float:
        return self.a_A / nn_factor(self.structure) if self.structure != "hcp" else self.a_A

    @property
    def ideal_cell(self) -> np.ndarray:
        """Cell (columns, Å) of the ideal lattice in the sample frame."""
        return self.rotation @ crystal_cell(self.structure, self.a_A, self.c_A)

    @property
    def euler_deg(self) -> np.ndarray:
        """ZYZ Euler angles (φ, θ, ψ) in degrees of :attr:`rotation`."""
        return rotation_to_euler_zyz_deg(self.rotation)

    def ideal_positions(self, *, a_A: float | None = None, c_A: float | None = None
                        ) -> np.ndarray:
        """Ideal site positions (x, y, z Å) of the region's atoms (optionally other a, c)."""
        a = self.a_A if a_A is None else float(a_A)
        c = (self.c_A * a / self.a_A) if c_A is None else float(c_A)
        cell = self.rotation @ crystal_cell(self.structure, a, c)
        return self.origin_A + self.sites @ cell.T

    def rms_residual_A(self) -> float:
        r = self.residual_A[self.inlier]
        return float(np.sqrt(np.mean(np.sum(r * r, axis=1)))) if len(r) else float("nan")

    def to_dict(self) -> dict:
        """JSON-able summary (no per-atom arrays)."""
        return {"structure": self.structure, "label": int(self.label), "a_A": self.a_A,
                "c_A": self.c_A, "euler_deg": self.euler_deg.tolist(),
                "rotation": self.rotation.tolist(), "origin_A": self.origin_A.tolist(),
                "n_atoms": int(len(self.atoms)), "inlier_fraction": float(self.inlier.mean())
                if len(self.inlier) else 0.0, "rms_residual_A": self.rms_residual_A(),
                "species": list(self.species)}


def rotation_to_euler_zyz_deg(R: np.ndarray) -> np.ndarray:
    """ZYZ Euler angles (deg) with ``R = R_z(φ) R_y(θ) R_z(ψ)``."""
    R = np.asarray(R, dtype=np.float64)
    theta = np.arccos(np.clip(R[2, 2], -1, 1))
    if abs(np.sin(theta)) > 1e-8:
        phi = np.arctan2(R[1, 2], R[0, 2])
        psi = np.arctan2(R[2, 1], -R[2, 0])
    else:  # gimbal lock: put everything in phi
        phi = np.arctan2(R[1, 0], R[0, 0]) if R[2, 2] > 0 else np.arctan2(-R[1, 0], -R[0, 0])
        psi = 0.0
    return np.degrees([phi, theta, psi])


# --------------------------------------------------------------------------- helpers
def _positions_species(ds) -> tuple[np.ndarray, np.ndarray]:
    ds = as_xarray(ds, xr.Dataset)
    if not isinstance(ds, xr.Dataset) or "position" not in ds:
        raise TypeError(
            f"expected an AtomicModel or its xarray.Dataset (variables 'position', 'species'), "
            f"got {type(ds).__name__}"
        )
    pos = np.asarray(ds["position"].transpose("atom", "axis").values, dtype=np.float64)
    sp = np.asarray(ds["species"].values).astype(str)
    return pos, sp


def nearest_neighbour_distance(pos: np.ndarray, *, shell: int = 12) -> float:
    """First-shell neighbour distance (Å): the median over atoms of the median distance to
    their ``shell`` nearest neighbours (robust to position noise, unlike the nearest one);
    :func:`aet.core.geometry.nearest_neighbour_distance` with ``k=shell``."""
    return _nn_distance(pos, k=shell)


_kabsch = kabsch_rotation  # one definition: aet.core.geometry


def _triad(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    e1 = u / np.linalg.norm(u)
    e3 = np.cross(u, v)
    e3 /= np.linalg.norm(e3)
    e2 = np.cross(e3, e1)
    return np.stack([e1, e2, e3], axis=1)


def orientation_from_bonds(bonds: np.ndarray, shell: np.ndarray, *, seeds: Sequence[np.ndarray],
                           tol_deg: float = 25.0) -> tuple[np.ndarray, float]:
    """Crystal → sample rotation that best aligns ideal ``shell`` directions with ``bonds``.

    ``bonds`` (B, 3) are bond vectors of the region (Å); ``seeds`` are lists of bond vectors of
    single well-coordinated atoms used to propose candidates. Returns (R, score).
    """
    vhat = shell / np.linalg.norm(shell, axis=1, keepdims=True)
    bhat = bonds / np.linalg.norm(bonds, axis=1, keepdims=True)
    cos_tol = np.cos(np.radians(tol_deg))
    ideal_cos = vhat @ vhat.T
    best_R, best_score = np.eye(3), -1.0
    bscore = bhat if len(bhat) <= 1500 else \
        bhat[np.random.default_rng(0).choice(len(bhat), 1500, replace=False)]
    trials = []
    for seed in seeds:
        s = seed / np.linalg.norm(seed, axis=1, keepdims=True)
        for a in range(min(len(s), 3)):
            cosu = s @ s[a]
            # a second bond not collinear with the first
            cand = np.flatnonzero(np.abs(cosu) < 0.9)
            if len(cand):
                trials.append((s[a], s[cand[0]]))
    for u, v in trials:
        c_uv = float(u @ v)
        ii, jj = np.nonzero((np.abs(ideal_cos - c_uv) < 0.2) & (np.abs(ideal_cos) < 0.95))
        if not len(ii):
            continue
        Tu = _triad(u, v)
        Rs = np.stack([Tu @ _triad(vhat[i], vhat[j]).T for i, j in zip(ii, jj)])
        # score each candidate on (a subsample of) the region's bonds
        rv = np.einsum("cij,kj->cki", Rs, vhat).reshape(-1, 3)
        dots = (rv @ bscore.T).reshape(len(Rs), len(vhat), len(bscore))
        score = np.clip(dots.max(axis=1), cos_tol, 1.0).mean(axis=1)
        c = int(np.argmax(score))
        if score[c] > best_score:
            best_score, best_R = float(score[c]), Rs[c]
    # refine on matched bonds (Kabsch, shell vectors scaled to bond lengths)
    R = best_R
    for _ in range(5):
        dots = bhat @ (R @ vhat.T)
        k = dots.argmax(axis=1)
        ok = dots[np.arange(len(k)), k] > cos_tol
        if ok.sum() < 3:
            break
        R = _kabsch(vhat[k[ok]], bhat[ok])
    return R, best_score


def _assign_sites(pos, origin, cell, bas):
    inv = np.linalg.inv(cell)
    f = (pos - origin) @ inv.T  # fractional (n, 3)
    best = None
    for k, b in enumerate(bas):
        n = np.round(f - b)
        r = (f - b - n) @ cell.T
        d = np.sum(r * r, axis=1)
        if best is None:
            best = (d, np.repeat(k, len(pos)), n + b)
        else:
            m = d < best[0]
            best[0][m] = d[m]
            best[1][m] = k
            best[2][m] = (n + b)[m]
    return best[2], best[1]


def _symmetrise(structure, cell_fit, R_prev):
    """Nearest cell of the structure's symmetry: rotation (polar) and constants a, c."""
    C0 = crystal_cell(structure, 1.0, None if structure != "L10" else 1.0)
    if structure == "hcp":
        C0 = crystal_cell("hcp", 1.0)
    M = cell_fit @ np.linalg.inv(C0)
    U, _, Vt = np.linalg.svd(M)
    R = U @ Vt
    if np.linalg.det(R) < 0:
        U[:, -1] *= -1
        R = U @ Vt
    Cc = R.T @ cell_fit  # cell in the crystal frame
    norms = np.linalg.norm(Cc, axis=0)
    if structure in ("fcc", "bcc", "L12"):
        a = c = float(norms.mean())
    elif structure == "L10":
        a, c = float(norms[:2].mean()), float(norms[2])
    else:  # hcp
        a, c = float(norms[:2].mean()), float(norms[2])
    return R, a, c


def _huber_weights(r: np.ndarray, delta: float, trim: float | None = None) -> np.ndarray:
    """Huber IRLS weights (1 below ``delta``, ``delta/|r|`` above) and, beyond ``trim``, 0:
    atoms that sit nowhere near a site (tracing errors) do not pull the lattice."""
    d = np.linalg.norm(r, axis=1)
    w = np.ones_like(d)
    m = d > delta
    w[m] = delta / d[m]
    if trim is not None:
        w[d > trim] = 0.0
    return w


def _fit_region(pos, sp, structure, *, a_A, c_A, huber_A, n_iter, species, label, idx):
    geom = "fcc" if structure in ("L10", "L12") else structure
    d_nn = (nearest_neighbour_distance(pos, shell=8 if geom == "bcc" else 12)
            if a_A is None else a_A / nn_factor(geom))
    cutoff = default_cutoff(geom, d_nn)
    tree = cKDTree(pos)
    pairs = tree.query_pairs(cutoff, output_type="ndarray")
    if len(pairs) < 3:
        raise ValueError(
            f"region {label}: only {len(pairs)} neighbour bonds within {cutoff:.2f} Å; a lattice "
            f"fit needs a crystalline region of at least a few unit cells"
        )
    bonds = pos[pairs[:, 1]] - pos[pairs[:, 0]]
    bonds = np.concatenate([bonds, -bonds])
    shell = first_shell(geom, 1.0)
    if geom == "hcp":  # atoms of the two sublattices see mirrored shells: use both
        mirror = shell * np.array([1.0, -1.0, 1.0])
        shell = np.unique(np.round(np.concatenate([shell, mirror]), 9), axis=0)
    # seeds: most-coordinated atoms nearest to the centroid
    cn = np.bincount(pairs.ravel(), minlength=len(pos))
    centre = pos.mean(0)
    dist_c = np.linalg.norm(pos - centre, axis=1)
    order = np.lexsort((dist_c, -cn))
    nbrs = tree.query_ball_point(pos[order[:4]], cutoff)
    seeds = [pos[np.array([j for j in nb if j != i])] - pos[i]
             for i, nb in zip(order[:4], nbrs) if len(nb) > 2]
    if len(bonds) > 6000:  # a subsample is plenty to score candidates
        sel = np.random.default_rng(0).choice(len(bonds), 6000, replace=False)
        bonds_s = bonds[sel]
    else:
        bonds_s = bonds
    R, _ = orientation_from_bonds(bonds_s, shell, seeds=seeds)
    a0 = d_nn * nn_factor(geom)
    a, c = a0, (None if geom != "hcp" else np.sqrt(8 / 3) * a0)
    if geom == "hcp" and c_A is not None:
        c = float(c_A)
    bas = basis(geom)
    cell = R @ crystal_cell(geom, a, c)
    origin = pos[order[0]].copy()
    delta = huber_A if huber_A is not None else 0.1 * d_nn
    starts = [(origin, cell, bas)]
    if geom == "hcp":  # the other stacking (mirrored basis) for the seed's sublattice
        starts.append((origin, cell, np.array([[0, 0, 0], [2 / 3, 1 / 3, .5]])))
    best = None
    for o0, c0, b0 in starts:
        o1, c1 = _icp(pos, o0, c0, b0, delta, n_iter)
        s1, _ = _assign_sites(pos, o1, c1, b0)
        med = np.median(np.linalg.norm(pos - o1 - s1 @ c1.T, axis=1))
        if best is None or med < best[0]:
            best = (med, o1, c1, b0)
    _, origin, cell, b0 = best
    if b0 is not bas:  # shift the origin so the standard basis describes the lattice
        origin = origin + cell @ b0[1]
    sites, sub = _assign_sites(pos, origin, cell, bas)
    cell_fit = cell
    R, a, c = _symmetrise(geom, cell_fit, R)
    if a_A is not None:
        a = float(a_A)
        c = float(c_A) if c_A is not None else (a * np.sqrt(8 / 3) if geom == "hcp" else a)
    # origin consistent with the ideal (symmetrised) cell: weighted mean offset
    ideal = sites @ (R @ crystal_cell(geom, a, c)).T
    w = _huber_weights(pos - origin - ideal, delta, trim=3 * delta)
    origin = np.sum((pos - ideal) * w[:, None], axis=0) / max(w.sum(), 1e-12)
    chem_species: tuple = ()
    if structure in ("L10", "L12"):
        R_old = R
        R, origin, sites, sub, a, c, chem_species = _chemical_variant(
            structure, pos, sp, R, origin, sites, sub, a, species)
        P = np.round(R_old.T @ R)  # crystal-axis permutation of the chosen variant
        cell_fit = cell_fit @ P
        if structure == "L10" and a_A is None:
            Cc = R.T @ cell_fit
            norms = np.linalg.norm(Cc, axis=0)
            # c along crystal axis 3 after the permutation
            a, c = float(norms[:2].mean()), float(norms[2])
        elif structure == "L10" and c_A is not None:
            c = float(c_A)
    ideal_cell = R @ crystal_cell(geom, a, c)
    # origin consistent with the final ideal cell (Huber-weighted mean offset)
    ideal = sites @ ideal_cell.T
    w = _huber_weights(pos - origin - ideal, delta, trim=3 * delta)
    origin = np.sum((pos - ideal) * w[:, None], axis=0) / max(w.sum(), 1e-12)
    # shift the origin to the sublattice-0 site nearest the centroid
    shift = np.round(np.linalg.solve(ideal_cell, centre - origin))
    origin = origin + ideal_cell @ shift
    sites = sites - shift
    resid = pos - origin - sites @ ideal_cell.T
    inlier = np.linalg.norm(resid, axis=1) < 0.25 * d_nn
    return LatticeFit(structure=structure, a_A=float(a), c_A=float(c), rotation=R,
                      origin_A=origin, cell=cell_fit, atoms=idx, sites=sites,
                      sublattice=sub.astype(np.int64), residual_A=resid, inlier=inlier,
                      species=chem_species, label=int(label))


def _icp(pos, origin, cell, bas, delta, n_iter):
    """Closest-site assignment + Huber-weighted affine least squares, iterated."""
    for _ in range(n_iter):
        sites, _ = _assign_sites(pos, origin, cell, bas)
        resid = pos - origin - sites @ cell.T
        w = _huber_weights(resid, delta, trim=3 * delta)
        X = np.concatenate([np.ones((len(pos), 1)), sites], axis=1)
        sw = np.sqrt(w)[:, None]
        coef, *_ = np.linalg.lstsq(X * sw, pos * sw, rcond=None)
        new_origin, new_cell = coef[0], coef[1:].T
        if np.linalg.cond(new_cell) > 1e3:
            break
        origin, cell = new_origin, new_cell
    return origin, cell


# fcc cell permutations that map crystal axis k onto axis 3 (proper rotations)
_AXIS_TO_C = {
    2: np.eye(3),
    0: np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]], dtype=np.float64),  # new (a,b,c) = (y,z,x)
    1: np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=np.float64),  # new (a,b,c) = (z,x,y)
}


def _sublattice_of(sites: np.ndarray) -> np.ndarray:
    """fcc basis index of fractional site coordinates (0..3)."""
    h = np.mod(np.round(sites * 2), 2).astype(np.int64)  # parity of 2*s per axis
    # (0,0,0)->0, (0,1,1)->1, (1,0,1)->2, (1,1,0)->3
    return h[:, 0] * 2 + h[:, 1]


def binary_species(sp: np.ndarray, species=None) -> tuple[str, str]:
    """(A, B): the two species, lighter first unless given."""
    if species is not None:
        species = [str(s) for s in species]
        if len(species) != 2:
            raise ValueError(f"species must name two elements (A, B), got {species!r}")
        return species[0], species[1]
    uniq = sorted(set(sp.tolist()) - {"X"}, key=lambda s: atomic_numbers[s])
    if len(uniq) < 2:
        raise ValueError(
            f"chemical order needs two species but the model has {uniq}; classify the atoms "
            f"first or pass species=('Fe', 'Pt')"
        )
    counts = {s: int(np.sum(sp == s)) for s in uniq}
    top = sorted(uniq, key=lambda s: -counts[s])[:2]
    top = sorted(top, key=lambda s: atomic_numbers[s])
    return top[0], top[1]


def _chemical_variant(structure, pos, sp, R, origin, sites, sub, a, species):
    A, B = binary_species(sp, species)
    isA = sp == A
    isB = sp == B
    best = None
    for axis in (0, 1, 2):
        P = _AXIS_TO_C[axis]  # crystal coordinates: new = P^T old
        R2 = R @ P
        s2 = sites @ P  # fractional coords in the permuted cell
        for shift in FCC_BASIS:
            s3 = s2 - shift
            sub3 = _sublattice_of(s3)
            if structure == "L10":
                onA = np.isin(sub3, L10_A_SITES)
                score = np.sum(isA & onA) + np.sum(isB & ~onA)
                chem = (A, B)
            else:
                nA, nB = int(isA.sum()), int(isB.sum())
                minority, majority = (isB, isA) if nB <= nA else (isA, isB)
                on0 = sub3 == 0
                score = np.sum(minority & on0) + np.sum(majority & ~on0)
                chem = (A, B) if nB <= nA else (B, A)
            if best is None or score > best[0]:
                best = (score, R2, origin + a * (R2 @ shift), s3, sub3, chem)
            if structure == "L12":
                break  # L1_2 is cubic: the axis permutation does not matter
    _, R2, o2, s3, sub3, chem = best
    return R2, o2, s3, sub3, a, a, chem


def fit_lattice(ds, structure: str = "fcc", *, labels=None, region=None,
                a_A: float | None = None,
                c_A: float | None = None, species=None, huber_A: float | None = None,
                n_iter: int = 8, min_atoms: int = 20):
    """Fit an ideal lattice (orientation, constants, origin, site of every atom) to a model.

    Parameters
    ----------
    ds : xarray.Dataset or AtomicModel
        The atomic model (positions (x, y, z) in Å).
    structure : {"fcc", "bcc", "hcp", "L10", "L12"}
        Ideal lattice. ``L10``/``L12`` fit the fcc geometry and choose the chemical variant
        from the occupancy (see the module notes).
    labels : (n_atoms,) array_like of int, optional
        Region (grain) label per atom; each label ``≥ 0`` with at least ``min_atoms`` atoms is
        fitted on its own (``-1`` = not fitted). Default: one region, all atoms.
    region : (n_atoms,) bool array or int indices, optional
        Fit only these atoms (one fit; ``LatticeFit.atoms`` indexes the whole model).
    a_A, c_A : float, optional
        Fix the lattice constants (Å) instead of fitting them (``c_A``: L1_0 / hcp).
    species : (A, B), optional
        The two species of an ordered structure (default: the two most common, lighter first).
    huber_A : float, optional
        Huber threshold on the site residual (Å); default ``0.1 d_nn``.
    n_iter : int
        Closest-site / least-squares iterations.
    min_atoms : int
        Smallest region that is fitted.

    Returns
    -------
    LatticeFit or dict of int -> LatticeFit
        One fit (no ``labels``) or one per label.

    Examples
    --------
    >>> import numpy as np
    >>> from ase.build import bulk
    >>> import aet
    >>> at = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((4, 4, 4))
    >>> fit = fit_lattice(aet.AtomicModel(at.positions, "Cu").data, "fcc")
    >>> round(fit.a_A, 4)
    3.6
    """
    structure = _canonical_structure(structure)
    pos, sp = _positions_species(ds)
    for name, v in (("a_A", a_A), ("c_A", c_A)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive lattice constant in Å, got {v!r}")
    if not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
    if region is not None:
        if labels is not None:
            raise ValueError("pass either labels= (one fit per label) or region= (one fit), "
                             "not both")
        reg = np.asarray(region)
        if reg.dtype == bool:
            if reg.shape != (len(pos),):
                raise ValueError(f"region mask has shape {reg.shape}; pass one bool per atom "
                                 f"({len(pos)}) or atom indices")
            idx = np.flatnonzero(reg)
        else:
            idx = np.unique(reg.astype(np.int64).ravel())
            if idx.size and (idx.min() < 0 or idx.max() >= len(pos)):
                raise ValueError(f"region indices must be in [0, {len(pos)})")
        if len(idx) < min_atoms:
            raise ValueError(f"region has {len(idx)} atoms but a lattice fit needs at least "
                             f"min_atoms={min_atoms}")
        return _fit_region(pos[idx], sp[idx], structure, a_A=a_A, c_A=c_A, huber_A=huber_A,
                           n_iter=n_iter, species=species, label=0, idx=idx)
    if labels is None:
        if len(pos) < min_atoms:
            raise ValueError(
                f"the model has {len(pos)} atoms but a lattice fit needs at least "
                f"min_atoms={min_atoms}"
            )
        return _fit_region(pos, sp, structure, a_A=a_A, c_A=c_A, huber_A=huber_A,
                           n_iter=n_iter, species=species, label=0,
                           idx=np.arange(len(pos)))
    labels = np.asarray(labels)
    if labels.shape != (len(pos),):
        raise ValueError(
            f"labels has shape {labels.shape} but the model has {len(pos)} atoms; pass one "
            f"integer label per atom (-1 = skip)"
        )
    out = {}
    for lab in np.unique(labels):
        if lab < 0:
            continue
        idx = np.flatnonzero(labels == lab)
        if len(idx) < min_atoms:
            continue
        out[int(lab)] = _fit_region(pos[idx], sp[idx], structure, a_A=a_A, c_A=c_A,
                                    huber_A=huber_A, n_iter=n_iter, species=species,
                                    label=int(lab), idx=idx)
    return out


def lattice_arrays(ds, fit) -> xr.Dataset:
    """Model Dataset with per-atom lattice arrays from one fit or a dict of fits.

    Adds ``sublattice`` (int, -1 where not fitted), ``site_a``, ``site_b``, ``site_c``
    (fractional conventional-cell coordinates), ``lattice_residual_A`` (``|position − ideal site|``)
    and ``lattice_region`` (the fit's label).
    """
    pos, _ = _positions_species(ds)
    n = len(pos)
    fits = [fit] if isinstance(fit, LatticeFit) else list(fit.values())
    sub = np.full(n, -1, dtype=np.int64)
    region = np.full(n, -1, dtype=np.int64)
    sites = np.full((n, 3), np.nan)
    res = np.full(n, np.nan)
    for f in fits:
        sub[f.atoms] = f.sublattice
        region[f.atoms] = f.label
        sites[f.atoms] = f.sites
        res[f.atoms] = np.linalg.norm(f.residual_A, axis=1)
    ds = as_xarray(ds, xr.Dataset)
    out = ds.copy()
    out["sublattice"] = ("atom", sub)
    out["lattice_region"] = ("atom", region)
    for j, nm in enumerate(("site_a", "site_b", "site_c")):
        out[nm] = ("atom", sites[:, j])
    out["lattice_residual_A"] = ("atom", res, {"units": "Å"})
    return out
