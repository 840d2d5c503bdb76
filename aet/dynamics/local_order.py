"""Variant-resolved local order: the order field that finds small nuclei in a noisy model.

Why not the per-atom order parameter itself
-------------------------------------------
:func:`aet.analysis.order_parameters` gives each atom the order of its 12 first-shell
neighbours at the variant chosen by a wider window. In a random (A1) 50/50 alloy that value has
a standard deviation of about 0.3 (a binomial of 12 neighbours), as large as the signal of a
nucleus of a few tens of atoms, and smoothing it afterwards mixes values taken at *different*
variants. Here the order is averaged per variant first, then the best variant is taken:

For variant ``v`` of a kind (the variant tables of :func:`aet.analysis.variant_table`), atom
``j`` on fcc sublattice ``σ_j`` matches when its species is the one ``v`` puts on ``σ_j``
(``m_vj``), and a random alloy matches with the probability ``b_vj = c(e_v(σ_j))`` (overall
fraction of that species). With Gaussian weights ``w_ij = exp(−d_ij² / 2σ²)`` over the atoms
within ``truncate · σ`` (the atom itself included, weight 1)::

    S_v(i) = Σ_j w_ij (m_vj − b_vj) / Σ_j w_ij (1 − b_vj)

which is the formula of :func:`aet.analysis.order_parameters` with its first shell replaced by
the Gaussian neighbourhood: 0 for a random alloy (in expectation), 1 for perfect order. The
local order is ``max_v S_v(i)`` and the *local variant* its ``argmax``. For ``"L12"`` the
stoichiometry (A3B or AB3) is chosen per atom from the Gaussian-weighted composition, as
``order_parameters`` does from its window.

Two atoms belong to one nucleus only when both are above the threshold **and share the local
variant** (:func:`aet.dynamics.find_nuclei` with ``variant=``): an ordered nucleus is one
variant, while a random alloy's maximum over variants changes variant from patch to patch (the
maximum over ~10 variants of the random field is above 0.3 on a connected network of atoms; the
single-variant regions are small, isolated blobs).

Detection limit (false positives)
---------------------------------
The random matrix still makes blobs of one variant above the threshold. Their size
distribution is measured on the model itself with its species randomly permuted (same
positions, surface and composition: a random A1 particle of the same composition) by
:func:`null_cluster_sizes`, and :func:`min_nucleus_size` returns the smallest nucleus size whose
expected number of random clusters per model is below a false-positive rate (default 1 %),
extrapolating the exponential tail of the null size distribution. In a 100 Å random 50/50
FePt particle (~38k atoms, σ = 3 Å) that size is ~85 detected atoms, and single perfectly
ordered L1_0 spheres are found 4/4 at 80 atoms, 1/4 at 60 and 0/4 at ≤ 40 atoms
(``benchmarks/bench_dynamics.py``): smaller nuclei are as large and as ordered as the clusters
a random alloy makes by chance.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sps
import xarray as xr
from scipy.spatial import cKDTree

from ..core.schema import as_xarray

__all__ = ["gaussian_weights", "local_order", "min_nucleus_size", "null_cluster_sizes",
           "variant_order",
           "variant_tables"]


def variant_tables(kind=("L10", "L12")) -> list[tuple[str, np.ndarray]]:
    """``[(name, table), ...]``: the variant tables of each kind (``"L12"`` gives both
    stoichiometries, ``"L12_A3B"`` and ``"L12_AB3"``). ``table`` is ``(n_variants, 4)`` bool,
    True where fcc sublattice σ holds species A (:func:`aet.analysis.variant_table`)."""
    from ..analysis import variant_table

    kinds = [kind] if isinstance(kind, str) else list(kind)
    if not kinds:
        raise ValueError("kind is empty; pass e.g. 'L10' or ('L10', 'L12')")
    out = []
    for k in kinds:
        key = str(k).replace("_", "").upper()
        names = {"L10": ["L10"], "L12": ["L12_A3B", "L12_AB3"], "L12A3B": ["L12_A3B"],
                 "L12AB3": ["L12_AB3"]}.get(key)
        if names is None:
            raise ValueError(f"kind must be L10, L12, L12_A3B or L12_AB3 (or a sequence of "
                             f"them), got {k!r}")
        out += [(n, variant_table(n)) for n in names if n not in [o[0] for o in out]]
    return out


def gaussian_weights(positions, *, sigma_A: float, truncate: float = 3.0) -> sps.csr_matrix:
    """Sparse ``(n, n)`` Gaussian weights ``exp(−d² / 2σ²)`` of the atom pairs within
    ``truncate · σ`` (Å), with 1 on the diagonal."""
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    if not (np.isfinite(sigma_A) and sigma_A > 0):
        raise ValueError(f"sigma_A must be a positive length in Å, got {sigma_A!r}")
    if not (np.isfinite(truncate) and truncate > 0):
        raise ValueError(f"truncate must be > 0 (in units of sigma_A), got {truncate!r}")
    n = pos.shape[0]
    pairs = cKDTree(pos).query_pairs(truncate * sigma_A, output_type="ndarray")
    d2 = ((pos[pairs[:, 0]] - pos[pairs[:, 1]]) ** 2).sum(1)
    w = np.exp(-d2 / (2.0 * sigma_A ** 2))
    i = np.concatenate([pairs[:, 0], pairs[:, 1], np.arange(n)])
    j = np.concatenate([pairs[:, 1], pairs[:, 0], np.arange(n)])
    return sps.csr_matrix((np.concatenate([w, w, np.ones(n)]), (i, j)), shape=(n, n))


def variant_order(species, sublattice, weights, *, species_AB, kind=("L10", "L12")
                  ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Variant-resolved local order of every atom (see the module notes for the formula).

    Parameters
    ----------
    species : (n,) array_like of str
    sublattice : (n,) array_like of int
        fcc sublattice 0–3 of each atom (``-1``: not on the fitted lattice; such atoms count
        neither as matching nor in the normalisation).
    weights : (n, n) sparse matrix
        Neighbourhood weights, e.g. :func:`gaussian_weights` (diagonal included).
    species_AB : (str, str)
        Species A and B of the variant tables (as ``order_parameters`` reports them in its
        attrs ``species_A``, ``species_B``).
    kind : str or sequence of str
        ``"L10"``, ``"L12"`` (both stoichiometries, chosen per atom by local composition),
        ``"L12_A3B"``, ``"L12_AB3"``.

    Returns
    -------
    order : (n,) float ndarray
        ``max_v S_v`` (NaN where the neighbourhood has no lattice atom).
    variant : (n,) int ndarray
        Index of the best variant in ``names`` (``-1`` where ``order`` is NaN).
    names : list of str
        ``"<kind>:<variant>"`` of each variant index (L1_0 ``2k + p``: c ∥ crystal axis k,
        pairing p; L1_2: corner sublattice).
    """
    sp = np.asarray(species).astype(str).reshape(-1)
    sub = np.asarray(sublattice).astype(np.int64).reshape(-1)
    if sub.shape != sp.shape:
        raise ValueError(f"sublattice has {sub.size} values but species has {sp.size}; pass one "
                         f"per atom")
    if weights.shape != (sp.size, sp.size):
        raise ValueError(f"weights must be ({sp.size}, {sp.size}), got {weights.shape}")
    A, B = species_AB
    isA, isB = sp == A, sp == B
    ok = (sub >= 0) & (isA | isB)
    nab = max(int(ok.sum()), 1)
    cA = float((isA & ok).sum()) / nab
    cB = 1.0 - cA
    W = sps.csr_matrix(weights)
    w_ok = W @ ok.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac_a = (W @ (isA & ok).astype(np.float64)) / w_ok
    best = np.full(sp.size, -np.inf)
    var = np.full(sp.size, -1, dtype=np.int64)
    names: list[str] = []
    sub_ok = np.where(ok, sub, 0)
    for name, table in variant_tables(kind):
        expA = table[:, sub_ok].T                                       # (n, V)
        match = np.where(expA, isA[:, None], isB[:, None]) & ok[:, None]
        base = np.where(expA, cA, cB) * ok[:, None]
        wm = W @ match.astype(np.float64)
        wb = W @ base
        with np.errstate(invalid="ignore", divide="ignore"):
            S = (wm - wb) / (w_ok[:, None] - wb)
        if name == "L12_A3B":
            S[~(frac_a >= 0.5)] = -np.inf
        elif name == "L12_AB3" and any(n == "L12_A3B" for n, _ in variant_tables(kind)):
            S[frac_a >= 0.5] = -np.inf
        S[~np.isfinite(S)] = -np.inf
        v = np.argmax(S, axis=1)
        s = S[np.arange(sp.size), v]
        better = s > best
        best = np.where(better, s, best)
        var = np.where(better, v + len(names), var)
        names += [f"{name}:{k}" for k in range(table.shape[0])]
    order = np.where(np.isfinite(best), best, np.nan)
    var[~np.isfinite(best)] = -1
    return order, var, names


def _model_inputs(ds, *, lattice=None, labels=None, species=None):
    """Positions, species, sublattice and (A, B) of a model Dataset (fcc fit of the analysis
    package, unless the model already carries ``sublattice`` and attrs ``species_A/B``, as the
    output of :func:`local_order` does)."""
    from ..analysis import order_parameters

    have = "sublattice" in ds and "species_A" in ds.attrs and "species_B" in ds.attrs
    if have and lattice is None and labels is None and species is None:
        res = ds
    else:
        res = order_parameters(ds, "L10", lattice=lattice, labels=labels, species=species)
    pos = res["position"].transpose("atom", "axis")
    if "axis" in res.coords:
        pos = pos.sel(axis=["x", "y", "z"])
    return (np.asarray(pos.values, dtype=np.float64), np.asarray(res["species"].values).astype(str),
            np.asarray(res["sublattice"].values, dtype=np.int64),
            (str(res.attrs["species_A"]), str(res.attrs["species_B"])))


def local_order(ds, *, kind=("L10", "L12"), sigma_A: float = 3.0, truncate: float = 3.0,
                lattice=None, labels=None, species=None) -> xr.Dataset:
    """Variant-resolved local order of a model (see the module notes).

    Parameters
    ----------
    ds : xarray.Dataset or AtomicModel
        Model with two species; positions (x, y, z) in Å.
    kind : str or sequence of str
        Ordered phase(s): ``"L10"``, ``"L12"`` (both stoichiometries), ``"L12_A3B"``,
        ``"L12_AB3"``; default ``("L10", "L12")``.
    sigma_A : float
        Gaussian σ of the neighbourhood (Å; default 3 Å ≈ 0.8 a of FePt: the random-alloy
        noise of the field falls as 1/√N_eff with N_eff ≈ 85 atoms at σ = 3 Å, while a
        nucleus of ≳ 100 atoms keeps a core of order ≳ 0.9).
    truncate : float
        Neighbourhood radius in units of σ.
    lattice, labels, species
        Options of :func:`aet.analysis.order_parameters` (the fcc fit that gives each atom its
        sublattice).

    Returns
    -------
    xarray.Dataset
        The model plus per-atom ``local_order`` (float), ``local_variant`` (int, index into
        ``attrs["local_variant_names"]``) and ``sublattice``; attrs ``local_order_sigma_A``,
        ``local_order_kind``, ``species_A``, ``species_B``.
    """
    return _local_order(ds, kind=kind, sigma_A=sigma_A, truncate=truncate, lattice=lattice,
                        labels=labels, species=species)[0]


def _local_order(ds, *, kind, sigma_A, truncate=3.0, lattice=None, labels=None, species=None):
    """:func:`local_order` and what a null distribution of it reuses: (Dataset, (species,
    sublattice, (A, B), weights, positions))."""
    base = as_xarray(ds, xr.Dataset)
    pos, sp, sub, ab = _model_inputs(base, lattice=lattice, labels=labels, species=species)
    W = gaussian_weights(pos, sigma_A=sigma_A, truncate=truncate)
    order, var, names = variant_order(sp, sub, W, species_AB=ab, kind=kind)
    out = base.copy()
    out["local_order"] = ("atom", order)
    out["local_variant"] = ("atom", var)
    out["sublattice"] = ("atom", sub)
    out.attrs = dict(out.attrs)
    out.attrs.update({"local_order_sigma_A": float(sigma_A), "local_order_truncate": truncate,
                      "local_order_kind": [kind] if isinstance(kind, str) else list(kind),
                      "local_variant_names": names, "species_A": ab[0], "species_B": ab[1]})
    return out, (sp, sub, ab, W, pos)


def _cluster_sizes(pairs, order, variant, threshold, n):
    from scipy.sparse.csgraph import connected_components

    hi = np.nan_to_num(order, nan=-np.inf) >= threshold
    keep = pairs[hi[pairs[:, 0]] & hi[pairs[:, 1]] & (variant[pairs[:, 0]] == variant[pairs[:, 1]])]
    g = sps.coo_matrix((np.ones(len(keep)), (keep[:, 0], keep[:, 1])), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    comp = np.where(hi, comp, -1)
    ids, counts = np.unique(comp[comp >= 0], return_counts=True)
    peaks = np.zeros(ids.size)
    if ids.size:
        lut = np.full(comp.max() + 1, -1)
        lut[ids] = np.arange(ids.size)
        np.maximum.at(peaks, lut[comp[comp >= 0]], order[comp >= 0])
    return counts, peaks


def null_cluster_sizes(models, *, n_permutations: int = 20, kind=("L10", "L12"),
                       sigma_A: float = 3.0, truncate: float = 3.0, threshold: float = 0.3,
                       cutoff_A: float | None = None, seed=0) -> pd.DataFrame:
    """Clusters a random alloy makes: the null distribution of nucleus sizes.

    For each permutation, one of ``models`` (in turn) gets its species randomly permuted over
    its atoms (same positions, sublattices, surface and composition: a random A1 particle of
    the same composition and shape) and its variant-resolved local order (:func:`local_order`
    with ``kind``, ``sigma_A``) is cut at ``threshold`` into same-variant connected clusters,
    as :func:`aet.dynamics.find_nuclei` does with ``variant=``.

    Parameters
    ----------
    models : xarray.Dataset / AtomicModel or a sequence of them
        The measured model(s); permutations cycle through them.
    n_permutations : int
        Number of random-alloy realisations.
    kind, sigma_A, truncate, threshold
        As in :func:`local_order` and :func:`aet.dynamics.find_nuclei`.
    cutoff_A : float, optional
        Connectivity distance; default ``1.2 × nearest_neighbour_distance`` (as find_nuclei).
    seed : int or Generator

    Returns
    -------
    pandas.DataFrame
        One row per null cluster: ``permutation``, ``model``, ``n_atoms``, ``peak_order``;
        ``attrs``: ``n_permutations``, ``n_atoms`` (per model), and the options.
    """
    from .nuclei import nearest_neighbour_distance

    if isinstance(models, xr.Dataset) or hasattr(models, "data"):
        models = [models]
    models = list(models)
    if not models:
        raise ValueError("models is empty; pass at least one model")
    if isinstance(n_permutations, bool) or int(n_permutations) != n_permutations or \
            n_permutations < 1:
        raise ValueError(f"n_permutations must be a whole number >= 1, got {n_permutations!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    prepared = []
    for m in models:
        if isinstance(m, tuple):  # (species, sublattice, (A, B), weights, positions)
            sp, sub, ab, W, pos = m
        else:
            base = as_xarray(m, xr.Dataset)
            pos, sp, sub, ab = _model_inputs(base)
            W = gaussian_weights(pos, sigma_A=sigma_A, truncate=truncate)
        cut = 1.2 * nearest_neighbour_distance(pos) if cutoff_A is None else float(cutoff_A)
        pairs = cKDTree(pos).query_pairs(cut, output_type="ndarray")
        prepared.append((sp, sub, ab, W, pairs))
    rows = []
    for k in range(int(n_permutations)):
        mi = k % len(prepared)
        sp, sub, ab, W, pairs = prepared[mi]
        order, var, _ = variant_order(rng.permutation(sp), sub, W, species_AB=ab, kind=kind)
        counts, peaks = _cluster_sizes(pairs, order, var, threshold, sp.size)
        rows += [(k, mi, int(c), float(p)) for c, p in zip(counts, peaks)]
    out = pd.DataFrame(rows, columns=["permutation", "model", "n_atoms", "peak_order"])
    out.attrs.update({"n_permutations": int(n_permutations), "threshold": float(threshold),
                      "sigma_A": float(sigma_A), "kind": [kind] if isinstance(kind, str)
                      else list(kind), "n_atoms": [int(p[0].size) for p in prepared]})
    return out


def min_nucleus_size(null: pd.DataFrame, *, false_positive_rate: float = 0.01,
                     min_peak_order: float | None = None, tail_fraction: float = 0.05,
                     floor: int = 13) -> tuple[int, dict]:
    """Smallest nucleus size (atoms) a random alloy exceeds with probability below a rate.

    ``λ(m)``, the expected number of random clusters of at least ``m`` atoms per model, is
    counted from :func:`null_cluster_sizes` (``#{clusters ≥ m} / n_permutations``). Cluster
    sizes of a random field have an exponential tail, so ``log λ(m)`` is fitted by a straight
    line over the largest clusters (the top ``tail_fraction`` of them, at least 10) and solved
    for ``λ(m*) = false_positive_rate``; that extrapolates below the ``1 / n_permutations``
    that the permutations resolve directly. The result is never below the size the counts
    themselves require (one more than the ``(⌊rate · K⌋ + 1)``-th largest null cluster, i.e.
    the largest one when ``K < 1 / rate``) and at least ``floor`` (13: an atom with its first
    shell).

    Parameters
    ----------
    null : pandas.DataFrame
        Output of :func:`null_cluster_sizes`.
    false_positive_rate : float
        Allowed expected number of random clusters per model (≈ the probability that a model
        shows any phantom nucleus).
    min_peak_order : float, optional
        Count only the null clusters whose peak order reaches this (when nuclei are also
        required to reach it).
    tail_fraction : float
        Fraction of the largest null clusters used for the tail fit.
    floor : int
        Smallest size returned.

    Returns
    -------
    min_atoms : int
    info : dict
        ``rate_per_model`` (λ at the returned size, from the fit), ``tail_slope_per_atom``,
        ``largest_null_cluster``, ``n_null_clusters``, ``n_permutations``.
    """
    if not 0 < false_positive_rate < 1:
        raise ValueError(f"false_positive_rate must be in (0, 1), got {false_positive_rate!r}")
    if "n_atoms" not in getattr(null, "columns", ()) or "n_permutations" not in null.attrs:
        raise TypeError("null must be the DataFrame returned by null_cluster_sizes")
    K = int(null.attrs["n_permutations"])
    sizes = null["n_atoms"].to_numpy()
    if min_peak_order is not None:
        sizes = sizes[null["peak_order"].to_numpy() >= min_peak_order]
    sizes = np.sort(sizes)[::-1]
    info = {"n_permutations": K, "n_null_clusters": int(sizes.size),
            "largest_null_cluster": int(sizes[0]) if sizes.size else 0}
    if sizes.size == 0:
        info.update(rate_per_model=0.0, tail_slope_per_atom=float("nan"))
        return int(floor), info
    n_tail = int(min(sizes.size, max(10, np.ceil(tail_fraction * sizes.size))))
    tail = sizes[:n_tail]
    lam = np.arange(1, n_tail + 1) / K                  # λ(m) at m = tail[r-1]: r clusters ≥ m
    if n_tail >= 3 and np.ptp(tail) > 0:
        slope, icpt = np.polyfit(tail.astype(float), np.log(lam), 1)
    else:
        slope, icpt = -np.inf, 0.0
    if slope < 0 and np.isfinite(slope):
        m_star = (np.log(false_positive_rate) - icpt) / slope
        rate = lambda m: float(np.exp(icpt + slope * m))  # noqa: E731
    else:  # no decreasing tail to extrapolate: beyond every null cluster
        m_star = sizes[0] + 1
        rate = lambda m: 0.0 if m > sizes[0] else 1.0 / K  # noqa: E731
    m = int(np.ceil(m_star))
    # never below what the permutations show directly: more than rate·K clusters of size ≥ m
    # were seen for every m up to the (⌊rate·K⌋ + 1)-th largest null cluster
    r = int(np.floor(false_positive_rate * K))
    if r < sizes.size:
        m = max(m, int(sizes[r]) + 1)
    m = max(m, int(floor))
    info.update(rate_per_model=rate(m), tail_slope_per_atom=float(slope))
    return m, info
