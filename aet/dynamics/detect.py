"""Nuclei of a registered time series found with the likelihood-ratio scan, time used jointly.

:func:`detect_series` is the default detector of :func:`aet.dynamics.track` for models that
carry species but no order array (what :func:`aet.run` and the atom pipeline produce):

1. **One classification across times.** The two species are the same intensity classes at
   every time: a model whose heavier species has the lower mean ``box_intensity``, or whose
   paired atoms disagree with the previous time for more than half of them, has its labels
   swapped (recorded in ``info["species_swapped"]``). Each atom's species error probability
   comes from its classification confidence (:func:`aet.dynamics.scan.
   species_error_probability`).
2. **One lattice.** The fcc lattice is fitted once, on the first (reference) model, and every
   time's sites come from that fit, so variant ``v`` means the same ordering at every time.
3. **Static scan** of every time (:func:`aet.dynamics.scan.region_scan` on
   :func:`~aet.dynamics.scan.ordered_llr`), with false-alarm probabilities from species-
   permuted copies of the same model (:func:`~aet.dynamics.scan.null_scores`).
4. **Change scan** of every step over the paired atoms
   (:func:`~aet.dynamics.scan.change_llr`, both directions), with null copies in which the
   pairs of measurements are permuted over the sites. A nucleus born or grown (or dissolved,
   shrunk) between the times shows as a compact, variant-consistent cluster of changed
   atoms, which is significant far below the static detection limit.
5. **Nuclei** at each time: significant static regions; significant change regions (born /
   grown nuclei at the later time, dissolved / shrunk ones at the earlier); and a nucleus
   found at one time is tested *as that region* at the neighbouring times (no scan, hence no
   multiple-testing penalty) and kept there when significant. Each region's boundary is then
   settled by growing it shell by shell over the atoms whose own species and whose ball
   (itself, first and second shells) favour the variant, and peeling the atoms with fewer
   than 4 neighbours inside (:meth:`_Time.refine`): the region stays compact and does not
   follow chains of matrix atoms that match the variant by chance.
6. **Moved atoms**: atoms left unpaired at two consecutive times are paired within two
   neighbour distances (``info["moved"]``): surface hops, reported as moved atoms and not as
   order changes.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sps
import xarray as xr
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .nuclei import NUCLEUS_COLUMNS, _describe, _empty_table, surface_atoms
from .scan import (
    change_llr,
    composition,
    expected_species,
    nearest_atoms,
    neighbour_matrix,
    null_scores,
    ordered_llr,
    region_scan,
    species_error_probability,
)

__all__ = ["SCAN_COLUMNS", "detect_series", "region_p_value", "track_scan"]

SCAN_COLUMNS = ("variant", "llr", "p_value", "found_by")


def _positions(ds: xr.Dataset) -> np.ndarray:
    pos = ds["position"].transpose("atom", "axis")
    if "axis" in ds.coords:
        pos = pos.sel(axis=["x", "y", "z"])
    return np.asarray(pos.values, dtype=np.float64)


def _species_pair(models, species):
    from ase.data import atomic_numbers

    if species is not None:
        if isinstance(species, str) or len(species) != 2:
            raise ValueError(f"species must be the two element symbols (light, heavy), got "
                             f"{species!r}")
        return tuple(str(s) for s in species)
    allsp = np.concatenate([np.asarray(m["species"].values).astype(str) for m in models])
    u, c = np.unique(allsp, return_counts=True)
    top = u[np.argsort(c)[::-1][:2]].tolist()
    if len(top) < 2:
        raise ValueError("the models hold a single species; the ordered phases need two "
                         "(pass species=('Fe', 'Pt') if they are labelled otherwise)")
    return tuple(sorted(top, key=lambda s: atomic_numbers.get(s, 0)))


def _sublattice_from_fit(pos, fit) -> np.ndarray:
    """fcc sublattice (0–3) of positions from one lattice fit; −1 off the fcc sites."""
    fr = np.linalg.solve(fit.cell, (pos - fit.origin_A).T).T
    par = (np.rint(2 * fr) % 2).astype(int)
    return np.select([~par.any(1), (par == [0, 1, 1]).all(1), (par == [1, 0, 1]).all(1),
                      (par == [1, 1, 0]).all(1)], [0, 1, 2, 3], -1)


def region_p_value(llr_column, region, *, species, error_prob, draws: int = 4000,
                   seed=0, make=None) -> float:
    """False-alarm probability of one *given* region (no scan): the fraction of random-alloy
    draws — the region's sites given the species and error probabilities of random atoms of
    the same model — whose summed evidence reaches the observed ``Σ_{i∈R} l_i``.
    ``make(idx)`` returns the ``(draws, |R|)`` evidence of the region's sites filled with the
    measurements of atoms ``idx``."""
    rng = np.random.default_rng(seed)
    obs = float(np.sum(llr_column[region]))
    n = len(species)
    idx = rng.integers(0, n, size=(draws, len(region)))
    sims = make(idx).sum(axis=1)
    return float((1 + np.count_nonzero(sims >= obs - 1e-9)) / (draws + 1))


class _Time:
    """Per-time arrays of the detector."""

    def __init__(self, ds, fit, species_AB, kind, eta, k_max, cutoff_A):
        self.pos = _positions(ds)
        self.n = self.pos.shape[0]
        self.sp = np.asarray(ds["species"].values).astype(str)
        self.eps, self.eps_source = species_error_probability(ds, species_AB=species_AB)
        self.sub = _sublattice_from_fit(self.pos, fit)
        self.AB = species_AB
        self.kind = kind
        self.eta = eta
        self.cA = composition(self.sp, self.eps, species_AB=species_AB)
        self.L, self.names = ordered_llr(self.sp, self.sub, self.eps, species_AB=species_AB,
                                         kind=kind, order_fraction=eta, composition_A=self.cA)
        self.expA, _ = expected_species(self.sub, kind=kind)
        self.knn = nearest_atoms(self.pos, k_max=k_max)
        self.pairs = cKDTree(self.pos).query_pairs(cutoff_A, output_type="ndarray")
        self.W = neighbour_matrix(self.pairs, self.n)
        # two-shell ball (first and second neighbours): the membership evidence of refine()
        self.W2 = neighbour_matrix(cKDTree(self.pos).query_pairs(
            cutoff_A * (np.sqrt(2) + np.sqrt(3)) / 2.4, output_type="ndarray"), self.n)
        self.deg = np.asarray(self.W.sum(axis=1)).ravel() - 1.0

    def llr_of(self, perm):
        return ordered_llr(self.sp[perm], self.sub, self.eps[perm], species_AB=self.AB,
                           kind=self.kind, order_fraction=self.eta, composition_A=self.cA)[0]

    def region_evidence(self, v, region, idx):
        """Evidence of variant ``v`` on ``region``'s sites filled with atoms ``idx``."""
        sp, eps = self.sp[idx], np.clip(self.eps[idx], 1e-6, 0.5)
        expA = self.expA[region, v][None, :]
        isA = sp == self.AB[0]
        valid = (self.sub[region] >= 0)[None, :] & (isA | (sp == self.AB[1]))
        c_e = np.where(expA, self.cA, 1 - self.cA)
        q = self.eta * (1 - eps) + (1 - self.eta) * eps
        r = c_e * (1 - eps) + (1 - c_e) * eps
        m = expA == isA
        out = np.where(m, np.log(q / r), np.log((1 - q) / (1 - r)))
        return np.where(valid, out, 0.0)

    def refine(self, atoms, v, *, rounds: int = 20, keep=None, core_bonds: int = 4):
        """Settle a region's boundary (see the module notes).

        1. Grow the region shell by shell over the atoms that belong to the variant locally:
           they match it and the mean evidence of their ball (itself, first and second
           shells) is positive (more than about half the ball is ordered), or it exceeds 0.4
           nats per atom whatever their own species (an interior species error).
        2. Add the matching atoms with at least half their neighbours inside (the rim).
        3. Peel, until none is left, the atoms with fewer than ``core_bonds`` neighbours
           inside (the region's ``core_bonds``-core).
        4. Keep the connected part that holds the most of the starting atoms.

        The matching atoms of ``keep`` stay whatever their ball and bonds (atoms that changed
        towards the variant: a small nucleus delineated by its changes, whose rim balls are
        mostly matrix).

        Step 3 keeps the region compact. A random 50/50 alloy next to a nucleus holds
        matching atoms on every side, and an atom one or two shells out whose ball reaches
        into the nucleus has positive ball evidence by chance: grown over single bonds, a
        region follows such atoms in chains out of a small nucleus (seed 1 of the abTEM
        two-time case: a 30-atom surface nucleus detected with 42 atoms, 5 of them more
        than a shell from the truth). An atom of a compact fcc cluster has at least 4
        neighbours in it (a vertex of a {100}-{111} polyhedron has 4 or 5; an atom on a
        close-packed facet 3 below it and its neighbours in the facet), while the atoms of a
        chain have one or two. Requiring 3 bonds already while growing cuts the same chains
        but stops a small nucleus found from its changes, whose changed atoms (the seeds of
        the growth) are scattered over half its sites, from growing over its unchanged atoms
        (the 30-atom birth of the atom-level two-time case, seed 2, came out with 13 atoms and
        was no longer found).
        """
        match = self.expA[:, v] == (self.sp == self.AB[0])
        valid = (self.L[:, v] != 0).astype(np.float64)
        mean = (self.W2 @ self.L[:, v]) / np.maximum(self.W2 @ valid, 1.0)
        member = (match & (mean > 0.0)) | (mean > 0.4)
        x = np.zeros(self.n, dtype=bool)
        x[atoms] = True
        x &= member
        fixed = np.zeros(self.n, dtype=bool)
        if keep is not None:
            keep = np.asarray(keep, dtype=np.int64)
            fixed[keep[match[keep]]] = True
            x |= fixed
        for _ in range(rounds):
            grown = x | (((self.W @ x.astype(np.float64)) > 0) & member)
            if np.array_equal(grown, x):
                break
            x = grown
        # the outer layer: matching atoms with at least half their neighbours inside (the
        # balls of a nucleus' rim atoms reach into the matrix, most at the surface)
        for _ in range(3):
            inside = self.W @ x.astype(np.float64) - x
            add = match & ~x & (inside >= 0.5 * self.deg) & (inside >= 4)
            if not add.any():
                break
            x = x | add
        # the core: peel the atoms held by fewer than core_bonds bonds (chain ends)
        while True:
            inside = self.W @ x.astype(np.float64) - x
            drop = x & ~fixed & (inside < core_bonds)
            if not drop.any():
                break
            x &= ~drop
        keep = self.pairs[x[self.pairs[:, 0]] & x[self.pairs[:, 1]]]
        g = sps.coo_matrix((np.ones(len(keep)), (keep[:, 0], keep[:, 1])),
                           shape=(self.n, self.n))
        _, comp = connected_components(g, directed=False)
        start = np.asarray(atoms, dtype=np.int64)
        start = start[x[start]]
        if start.size == 0:
            return start
        lab, cnt = np.unique(comp[start], return_counts=True)
        return np.flatnonzero(x & (comp == lab[np.argmax(cnt)]))


_NULL_CACHE: OrderedDict = OrderedDict()
_NULL_CACHE_SIZE = 32


def _digest(*parts) -> str:
    """Key of a null calibration: the bytes of every array and the repr of every option."""
    h = hashlib.sha1()
    for x in parts:
        if isinstance(x, np.ndarray):
            h.update(str((x.dtype.str, x.shape)).encode())
            h.update(np.ascontiguousarray(x).tobytes())
        else:
            h.update(repr(x).encode())
    return h.hexdigest()


def _scan(L, knn, make_llr, *, n_null, seed, k_min, positions, local_composition=None,
          key=None, tail="gumbel"):
    """Candidates of one scan and their false-alarm probabilities (``tail`` as for
    :func:`~aet.dynamics.scan.null_scores`). The null tail of a particle is cached under
    ``key`` (a digest of everything the null draws depend on), so tracking the same models
    again — another threshold, another time window — reuses it."""
    cands = region_scan(L, knn, k_min=k_min, positions=positions,
                        local_composition=local_composition)
    full = None if key is None else _digest(*key, n_null, seed, k_min, tail)
    null = _NULL_CACHE.get(full) if full is not None else None
    if null is None:
        null = null_scores(make_llr, knn, n_permutations=n_null, seed=seed, k_min=k_min,
                           positions=positions, local_composition=local_composition, tail=tail)
        if full is not None:
            _NULL_CACHE[full] = null
            while len(_NULL_CACHE) > _NULL_CACHE_SIZE:
                _NULL_CACHE.popitem(last=False)
    else:
        _NULL_CACHE.move_to_end(full)
    for c in cands:
        c["p_value"] = float(null.p_value(c["score"]))
    return cands, null


def detect_series(models: Sequence[xr.Dataset], matches, *, kind=("L10", "L12"),
                  false_alarm_rate: float = 0.01, change_false_alarm_rate: float = 0.001,
                  order_fraction: float = 0.95, n_null: int = 30, null_seed=0,
                  k_min: int = 8, k_max: int = 250, min_atoms: int = 8,
                  species=None, hop_radius_A: float | None = None):
    """Find the nuclei of every time of a registered series (see the module notes).

    Parameters
    ----------
    models : sequence of xarray.Dataset
        Registered models (one frame), one per time.
    matches : sequence of (ia, ib)
        Paired atoms of each step (:func:`aet.dynamics.register_series`).
    kind : str or sequence of str
        Ordered phases looked for (default L1_0 and L1_2).
    false_alarm_rate : float
        A nucleus is reported when the probability that a random alloy of this particle shows
        any region as strong is at most this (per model; default 1 %).
    change_false_alarm_rate : float
        The same for a cluster of changes between two times (default 0.1 %; every noisy pair
        of models has scattered species changes).
    order_fraction : float
        Fraction of a nucleus' sites holding the variant's species under the alternative.
    n_null : int
        Null copies per scan.
    null_seed : int
    k_min, k_max : int
        Smallest and largest scan sphere (atoms).
    min_atoms : int
        Smallest nucleus reported.
    species : (str, str), optional
        The two species, light first (default: the two most common).
    hop_radius_A : float, optional
        Largest hop of an unpaired atom (default 2 nearest-neighbour distances).

    Returns
    -------
    labels : list of (n_t,) int ndarrays
    tables : list of pandas.DataFrame
        :data:`aet.dynamics.NUCLEUS_COLUMNS` plus :data:`SCAN_COLUMNS`: ``variant`` (name),
        ``llr`` (summed log-likelihood ratio, nats), ``p_value`` (false-alarm probability)
        and ``found_by`` (``"static"``, ``"change"``, ``"other time"``).
    info : dict
        ``changes`` (per step: significant change regions, with ``direction``, ``variant``,
        ``atoms_from``/``atoms_to`` indices, ``score``, ``p_value``), ``moved`` (DataFrame of
        moved atoms), ``species_swapped``, ``error_source``, ``static_threshold`` and
        ``change_threshold`` (scores at the false-alarm rates), ``variant_names``.
    """
    from ..analysis import fit_lattice

    nt = len(models)
    AB = _species_pair(models, species)
    # 1. one classification: swap inverted labels
    models = list(models)
    swapped = [False] * nt
    for t, ds in enumerate(models):
        sp = np.asarray(ds["species"].values).astype(str)
        if "box_intensity" in ds:
            x = np.asarray(ds["box_intensity"].values, dtype=np.float64)
            if (sp == AB[0]).any() and (sp == AB[1]).any() and \
                    np.median(x[sp == AB[1]]) < np.median(x[sp == AB[0]]):
                swapped[t] = True
        if t > 0 and not swapped[t]:
            ia, ib = matches[t - 1]
            prev = np.asarray(models[t - 1]["species"].values).astype(str)[ia]
            if ia.size and np.mean(prev == sp[ib]) < 0.5:
                swapped[t] = True
        if swapped[t]:
            sw = np.where(sp == AB[0], AB[1], np.where(sp == AB[1], AB[0], sp))
            models[t] = ds.assign(species=("atom", sw))
    fit = fit_lattice(models[0], "fcc")
    cutoff = 1.2 * fit.d_nn_A
    T = [_Time(ds, fit, AB, kind, order_fraction, k_max, cutoff) for ds in models]
    names = T[0].names
    rng = np.random.default_rng(null_seed)
    seeds = rng.integers(0, 2**31, size=3 * nt)
    # 3. static scans
    static, static_thr = [], []
    for t, tm in enumerate(T):
        cands, tail = _scan(tm.L, tm.knn, tm.llr_of, n_null=n_null, seed=int(seeds[t]),
                            k_min=k_min, positions=tm.pos,
                            local_composition=(tm.sp == AB[0], np.isin(tm.sp, AB)),
                            key=("static", tm.sp, tm.eps, tm.sub, tm.pos, tm.cA, kind,
                                 order_fraction, k_max))
        static.append(cands)
        static_thr.append(tail.threshold(false_alarm_rate))
    # 4. change scans
    changes, change_thr, pair_data = [], [], []
    for s in range(1, nt):
        ia, ib = (np.asarray(x, dtype=np.int64) for x in matches[s - 1])
        a, b = T[s - 1], T[s]
        sub = b.sub[ib]
        pos = b.pos[ib]
        knn = nearest_atoms(pos, k_max=k_max)
        s1, s2, e1, e2 = a.sp[ia], b.sp[ib], a.eps[ia], b.eps[ib]
        cA = composition(np.r_[s1, s2], np.r_[e1, e2], species_AB=AB)
        pair_data.append({"ia": ia, "ib": ib, "s1": s1, "s2": s2, "e1": e1, "e2": e2,
                          "sub": sub, "rho": {}, "cA": cA})
        regs, thr = [], {}
        for direction in ("order", "disorder"):
            U, _, rho = change_llr(s1, s2, sub, e1, e2, species_AB=AB, kind=kind,
                                   order_fraction=order_fraction, direction=direction,
                                   composition_A=cA)
            pair_data[-1]["rho"][direction] = rho
            pair_data[-1][direction] = U

            def make(perm, direction=direction, rho=rho, s1=s1, s2=s2, sub=sub, e1=e1, e2=e2,
                     cA=cA):
                return change_llr(s1[perm], s2[perm], sub, e1[perm], e2[perm], species_AB=AB,
                                  kind=kind, order_fraction=order_fraction, composition_A=cA,
                                  background_change=rho, direction=direction)[0]

            cands, tail = _scan(U, knn, make, n_null=n_null,
                                seed=int(seeds[nt + 2 * (s - 1) + (direction == "order")]),
                                k_min=k_min, positions=pos,
                                key=("change", direction, s1, s2, e1, e2, sub, pos, cA, rho,
                                     kind, order_fraction, k_max), tail="peaks")
            thr[direction] = tail.threshold(change_false_alarm_rate)
            for c in cands:
                if c["p_value"] <= change_false_alarm_rate:
                    regs.append({"step": s, "direction": direction, "variant": c["variant"],
                                 "variant_name": names[c["variant"]], "score": c["score"],
                                 "p_value": c["p_value"], "atoms_from": ia[c["atoms"]],
                                 "atoms_to": ib[c["atoms"]], "background_change": rho,
                                 "changed": U[c["atoms"], c["variant"]] > 0})
        # a birth of v also reads as the dissolution of its antiphase variant (and so on):
        # overlapping change regions compete, the stronger explanation wins
        regs.sort(key=lambda r: -r["score"])
        taken = np.zeros(b.n, dtype=bool)
        kept = []
        for r in regs:
            if taken[r["atoms_to"]].any():
                continue
            taken[r["atoms_to"]] = True
            kept.append(r)
        changes.append(kept)
        change_thr.append(thr)
    # 5. nuclei per time
    nuc: list[list[dict]] = [[] for _ in range(nt)]

    def add(t, v, atoms, score, p, how):
        atoms = np.unique(np.asarray(atoms, dtype=np.int64))
        for nu in nuc[t]:
            if nu["variant"] == v and np.isin(atoms, nu["atoms"]).any() or \
                    nu["variant"] == v and _touch(T[t], atoms, nu["atoms"]):
                nu["atoms"] = np.union1d(nu["atoms"], atoms)
                if how == "change":
                    nu["keep"] = np.union1d(nu.get("keep", atoms[:0]), atoms)
                if p < nu["p_value"]:
                    nu["p_value"], nu["found_by"] = p, how
                return nu
        nu = {"variant": v, "atoms": atoms, "p_value": p, "found_by": how}
        if how == "change":
            nu["keep"] = atoms
        nuc[t].append(nu)
        return nu

    for t in range(nt):
        for c in static[t]:
            if c["p_value"] <= false_alarm_rate:
                add(t, c["variant"], c["atoms"], c["score"], c["p_value"], "static")
    for s in range(1, nt):
        for r in changes[s - 1]:
            t, atoms = (s, r["atoms_to"]) if r["direction"] == "order" else (s - 1,
                                                                            r["atoms_from"])
            # the atoms that changed: the nucleus grows from them over its unchanged atoms
            atoms = atoms[r["changed"] & (T[t].L[atoms, r["variant"]] > 0)]
            if atoms.size:
                add(t, r["variant"], atoms, r["score"], r["p_value"], "change")
    # adjacent same-variant candidates of some significance (p ≤ 0.1) join a nucleus they
    # touch (an elongated or irregular nucleus is covered by several spheres)
    for t in range(nt):
        for nu in nuc[t]:
            for c in static[t]:
                if c["variant"] == nu["variant"] and c["p_value"] <= 0.01 and \
                        _touch(T[t], c["atoms"], nu["atoms"]):
                    nu["atoms"] = np.union1d(nu["atoms"], c["atoms"])
            nu["atoms"] = T[t].refine(nu["atoms"], nu["variant"], keep=nu.get("keep"))
    # a nucleus tested as that region at the neighbouring times
    for t in range(nt):
        for nu in list(nuc[t]):
            for t2 in (t - 1, t + 1):
                if not 0 <= t2 < nt:
                    continue
                ia, ib = matches[min(t, t2)]
                src, dst = (ia, ib) if t2 > t else (ib, ia)
                lut = np.full(T[t].n, -1, dtype=np.int64)
                lut[src] = dst
                there = lut[nu["atoms"]]
                there = there[there >= 0]
                if there.size < min_atoms:
                    continue
                v = nu["variant"]
                if any(o["variant"] == v and np.isin(there, o["atoms"]).mean() > 0.3
                       for o in nuc[t2]):
                    continue
                col = T[t2].L[:, v]
                if col[there].sum() <= 0:
                    continue
                p = region_p_value(col, there, species=T[t2].sp, error_prob=T[t2].eps,
                                   seed=int(seeds[t]) + t2,
                                   make=lambda idx, v=v, th=there, t2=t2:
                                   T[t2].region_evidence(v, th, idx))
                if p <= false_alarm_rate:
                    o = add(t2, v, there, float(col[there].sum()), p, "other time")
                    o["atoms"] = T[t2].refine(o["atoms"], v)
    # labels and tables
    labels, tables = [], []
    for t, tm in enumerate(T):
        lab = np.full(tm.n, -1, dtype=np.int64)
        items = []
        for nu in nuc[t]:
            llr = float(tm.L[nu["atoms"], nu["variant"]].sum())
            items.append((llr, nu))
        items.sort(key=lambda x: -x[0])
        kept = []
        for _llr, nu in items:
            free = nu["atoms"][lab[nu["atoms"]] < 0]
            if free.size < min_atoms:
                continue
            lab[free] = len(kept)
            kept.append((float(tm.L[free, nu["variant"]].sum()), nu, free))
        # numbering by size like find_nuclei
        order = sorted(range(len(kept)), key=lambda i: (-kept[i][2].size,
                                                        *np.round(tm.pos[kept[i][2]].mean(0), 6)))
        lab[:] = -1
        surface = surface_atoms(tm.pos, d_nn_A=fit.d_nn_A) if kept else None
        rows = []
        match = tm.expA == (tm.sp == AB[0])[:, None]
        ball_match = (tm.W @ match.astype(np.float64)) / (tm.deg + 1.0)[:, None]
        for k, i in enumerate(order):
            llr, nu, atoms = kept[i]
            lab[atoms] = k
            o = np.clip(2.0 * ball_match[:, nu["variant"]] - 1.0, 0.0, 1.0)
            row = _describe(k, atoms, tm.pos, o, surface, fit.d_nn_A ** 3 / np.sqrt(2), 0.1,
                            2, 0.5)
            row.update({"variant": names[nu["variant"]], "llr": llr,
                        "p_value": float(nu["p_value"]), "found_by": nu["found_by"]})
            rows.append(row)
        cols = list(NUCLEUS_COLUMNS) + list(SCAN_COLUMNS)
        tb = pd.DataFrame(rows, columns=cols) if rows else _empty_scan_table()
        tb.attrs.update({"static_threshold_llr": float(static_thr[t]),
                         "false_alarm_rate": false_alarm_rate,
                         "error_source": tm.eps_source, "species_swapped": swapped[t]})
        labels.append(lab)
        tables.append(tb)
    moved = _moved(T, matches, hop_radius_A if hop_radius_A is not None else 2 * fit.d_nn_A)

    def change_test(step, v, atoms, direction, draws=4000):
        """Summed change evidence of a *given* set of paired atoms (indices at time ``step``
        for ``"order"``, at ``step − 1`` for ``"disorder"``) and its false-alarm probability
        under "these atoms did not change": the measurement of the time the set was *not*
        chosen on (the earlier one for ``"order"``, whose set comes from the later time's
        nucleus, and the reverse) redrawn as the other time's species, flipped with the
        probability that either measurement is wrong. Conditioning on the time that chose the
        set keeps that choice from passing for a change."""
        d = pair_data[step - 1]
        key = d["ib"] if direction == "order" else d["ia"]
        pos_of = np.full(max(T[step].n, T[step - 1].n), -1, dtype=np.int64)
        pos_of[key] = np.arange(key.size)
        k = pos_of[np.asarray(atoms, dtype=np.int64)]
        k = k[k >= 0]
        if k.size == 0:
            return 0.0, 1.0, k
        obs = float(d[direction][k, v].sum())
        g = np.random.default_rng(int(seeds[0]) + step)
        e1, e2 = d["e1"][k], d["e2"][k]
        flip_p = e1 + e2 - 2 * e1 * e2
        flip = g.random(k.size * draws) < np.tile(flip_p, draws)
        other = {AB[0]: AB[1], AB[1]: AB[0]}
        if direction == "order":   # the set was chosen on the later time: keep it, redraw s1
            s2 = np.tile(d["s2"][k], draws)
            s1 = np.where(flip, np.vectorize(other.get, otypes=[s2.dtype])(s2), s2)
        else:                      # chosen on the earlier time: keep it, redraw s2
            s1 = np.tile(d["s1"][k], draws)
            s2 = np.where(flip, np.vectorize(other.get, otypes=[s1.dtype])(s1), s1)
        U = change_llr(s1, s2, np.tile(d["sub"][k], draws), np.tile(e1, draws),
                       np.tile(e2, draws), species_AB=AB, kind=kind, composition_A=d["cA"],
                       order_fraction=order_fraction, background_change=d["rho"][direction],
                       direction=direction)[0][:, v]
        sims = U.reshape(draws, k.size).sum(axis=1)
        return obs, float((1 + np.count_nonzero(sims >= obs - 1e-9)) / (draws + 1)), k

    info = {"changes": changes, "moved": moved, "species_swapped": swapped,
            "error_source": [tm.eps_source for tm in T],
            "static_threshold": [float(x) for x in static_thr],
            "change_threshold": change_thr, "variant_names": names, "species": AB,
            "change_test": change_test, "neighbours": [tm.W for tm in T],
            "d_nn_A": float(fit.d_nn_A)}
    return labels, tables, info


def _empty_scan_table() -> pd.DataFrame:
    tb = _empty_table()
    for c, dt in zip(SCAN_COLUMNS, ("object", "float64", "float64", "object")):
        tb[c] = pd.Series(dtype=dt)
    return tb


def _touch(tm, a, b) -> bool:
    """Do atom sets ``a`` and ``b`` of one time share an atom or a bond?"""
    x = np.zeros(tm.n, dtype=bool)
    x[b] = True
    return bool(((tm.W[np.asarray(a)] @ x.astype(np.float64)) > 0).any())


def _moved(T, matches, radius) -> pd.DataFrame:
    rows = []
    for s in range(1, len(T)):
        ia, ib = matches[s - 1]
        ua = np.setdiff1d(np.arange(T[s - 1].n), ia)
        ub = np.setdiff1d(np.arange(T[s].n), ib)
        if ua.size and ub.size:
            from scipy.optimize import linear_sum_assignment

            d = np.linalg.norm(T[s - 1].pos[ua][:, None] - T[s].pos[ub][None], axis=2)
            cost = np.where(d <= radius, d, 1e6)
            r, c = linear_sum_assignment(cost)
            ok = cost[r, c] <= radius
            for i, j in zip(r[ok], c[ok]):
                rows.append({"step": s, "atom_from": int(ua[i]), "atom_to": int(ub[j]),
                             "distance_A": float(d[i, j]),
                             "species_from": T[s - 1].sp[ua[i]], "species_to": T[s].sp[ub[j]]})
    return pd.DataFrame(rows, columns=["step", "atom_from", "atom_to", "distance_A",
                                       "species_from", "species_to"])


def _ids(xs) -> str:
    return " ".join(str(int(x)) for x in sorted(xs))


def track_scan(models: Sequence[xr.Dataset], matches, *, times_min, min_overlap_atoms: int = 3,
               min_overlap_fraction: float = 0.2, min_change_atoms: int = 3, **detect_kw):
    """Detect (:func:`detect_series`) and track the nuclei of a registered series; events
    from the evidence of change.

    Links, births, dissolutions, merges and divisions come from the atom overlap of nuclei at
    consecutive times (:func:`aet.dynamics.track_nuclei`). A one-to-one link is a
    ``growth`` when a significant change region towards the nucleus' variant
    (``direction="order"``) adds at least ``min_change_atoms`` atoms to it, a ``shrinkage``
    when a significant region away from it removes as many, a ``fluctuation`` when both
    happen, and no event otherwise — a boundary that moves by chance is not a growth.

    Every event has ``confidence`` (1 − the false-alarm probability of the evidence it rests
    on: the nuclei's detection for births, dissolutions, merges and divisions, the change
    region's for growth, shrinkage and fluctuation) and ``atoms`` (the ``atom_identity`` of
    the atoms involved: the nucleus born or dissolved, the atoms gained or lost).

    Returns
    -------
    result : TrackResult
        With ``events`` columns ``confidence`` and ``atoms``, nuclei columns
        :data:`SCAN_COLUMNS`, ``params["moved"]`` (moved atoms) and ``params["changes"]``.
    """
    from .tracking import EVENT_TYPES, track_nuclei

    labels, tables, info = detect_series(models, matches, **detect_kw)
    W_of = info["neighbours"]
    change_alpha = float(detect_kw.get("change_false_alarm_rate", 0.001))
    res = track_nuclei(labels, tables, matches, times_min=times_min,
                       min_overlap_atoms=min_overlap_atoms,
                       min_overlap_fraction=min_overlap_fraction,
                       min_change_atoms=10**9, change_fraction=0.0)
    ident = [np.asarray(m["atom_identity"].values) if "atom_identity" in m else
             np.arange(m.sizes["atom"]) for m in models]
    names = info["variant_names"]
    pv = {(int(r.time_index), int(r.nucleus)): float(r.p_value)
          for r in res.nuclei.itertuples(index=False)}
    rows = []
    for e in res.events.to_dict("records"):
        s = int(e["step"])
        nf = [int(x) for x in str(e["nuclei_from"]).split()]
        nto = [int(x) for x in str(e["nuclei_to"]).split()]
        ps = [pv[(s - 1, k)] for k in nf] + [pv[(s, k)] for k in nto]
        atoms = (np.concatenate([ident[s][labels[s] == k] for k in nto]) if nto else
                 np.concatenate([ident[s - 1][labels[s - 1] == k] for k in nf]))
        rows.append({**e, "confidence": 1.0 - max(ps), "atoms": np.sort(atoms)})
    base = {c: None for c in res.events.columns}
    behaviour = {}
    for lk in res.links.to_dict("records"):
        s = int(lk["step"])
        p, c = int(lk["nucleus_from"]), int(lk["nucleus_to"])
        if (res.links[(res.links["step"] == s)]["nucleus_from"] == p).sum() != 1 or \
                (res.links[(res.links["step"] == s)]["nucleus_to"] == c).sum() != 1:
            continue
        var = tables[s].loc[tables[s]["nucleus"] == c, "variant"].iloc[0]
        v = names.index(var)
        in_p, in_c = labels[s - 1] == p, labels[s] == c
        ia, ib = matches[s - 1]
        fwd = np.full(labels[s - 1].size, -1, dtype=np.int64)
        fwd[ia] = ib
        bwd = np.full(labels[s].size, -1, dtype=np.int64)
        bwd[ib] = ia
        # gained: paired atoms of c whose partner was outside p's body; lost: the reverse
        # (each chosen on the neighbours at the other time, not on the atom's own species
        # there, which is what the test is about)
        g_idx = np.flatnonzero(in_c & (bwd >= 0))
        frac_p = (W_of[s - 1] @ in_p.astype(np.float64)) / np.maximum(
            np.asarray(W_of[s - 1].sum(axis=1)).ravel(), 1.0)
        g_idx = g_idx[frac_p[bwd[g_idx]] < 0.5]
        # lost: paired atoms of p whose partner is outside c's body (fewer than half of its
        # ball in c); gained: atoms of c whose partner was outside p's body
        l_idx = np.flatnonzero(in_p & (fwd >= 0))
        frac_c = (W_of[s] @ in_c.astype(np.float64)) / np.maximum(
            np.asarray(W_of[s].sum(axis=1)).ravel(), 1.0)
        l_idx = l_idx[frac_c[fwd[l_idx]] < 0.5]
        gain, loss, pg, pl = set(), set(), 1.0, 1.0
        if g_idx.size >= min_change_atoms:
            _, pg, _ = info["change_test"](s, v, g_idx, "order")
            if pg <= change_alpha:
                gain = set(ident[s][g_idx].tolist())
        if l_idx.size >= min_change_atoms:
            _, pl, _ = info["change_test"](s, v, l_idx, "disorder")
            if pl <= change_alpha:
                loss = set(ident[s - 1][l_idx].tolist())
        kind = ("fluctuation" if gain and loss else "growth" if gain else
                "shrinkage" if loss else None)
        if kind is None:
            continue
        tr = int(lk["track_from"])
        behaviour.setdefault(tr, set()).add(kind)
        rows.append({**base, "step": s, "time_from_min": lk["time_from_min"],
                     "time_to_min": lk["time_to_min"], "event": kind, "nuclei_from": str(p),
                     "nuclei_to": str(c), "tracks_from": str(tr),
                     "tracks_to": str(int(lk["track_to"])),
                     "n_atoms_from": int(lk["n_from"]), "n_atoms_to": int(lk["n_to"]),
                     "confidence": 1.0 - max(pg if gain else 0.0, pl if loss else 0.0),
                     "atoms": np.array(sorted(gain | loss), dtype=np.int64)})
    order = {e: i for i, e in enumerate(EVENT_TYPES)}
    events = pd.DataFrame(rows, columns=list(res.events.columns) + ["confidence", "atoms"])
    if len(events):
        events = events.sort_values(["step", "event", "nuclei_from", "nuclei_to"],
                                    key=lambda c: c.map(order) if c.name == "event" else c,
                                    kind="stable").reset_index(drop=True)
    tracks = res.tracks.copy()
    if len(tracks):
        tracks["behaviour"] = [
            ("fluctuation" if "fluctuation" in behaviour.get(t, ()) or
             {"growth", "shrinkage"} <= behaviour.get(t, set()) else
             "growth" if "growth" in behaviour.get(t, ()) else
             "shrinkage" if "shrinkage" in behaviour.get(t, ()) else "stable")
            for t in tracks["track"].tolist()]
    moved = info["moved"].copy()
    if len(moved):
        moved["identity_from"] = [int(ident[s - 1][a]) for s, a in
                                  zip(moved["step"], moved["atom_from"])]
    params = {**res.params, "detector": "scan", "moved": moved,
              "changes": [[{k: v for k, v in r.items()} for r in st] for st in info["changes"]],
              "species_swapped": info["species_swapped"], "error_source": info["error_source"],
              "static_threshold": info["static_threshold"],
              "change_threshold": info["change_threshold"], "min_change_atoms": min_change_atoms,
              **{k: v for k, v in detect_kw.items()}}
    import dataclasses

    return dataclasses.replace(res, events=events, tracks=tracks, params=params)
