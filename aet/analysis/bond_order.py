"""Bond-orientational order (Steinhardt Q_l, Lechner–Dellago averaged) and partial radial
distribution functions.

Steinhardt, Nelson & Ronchetti, Phys. Rev. B 28, 784 (1983):
``q_lm(i) = (1/N_b) Σ_j Y_lm(r̂_ij)``, ``Q_l(i) = sqrt(4π/(2l+1) Σ_m |q_lm(i)|²)``.
Lechner & Dellago, J. Chem. Phys. 129, 114707 (2008): the averaged
``q̄_lm(i) = (1/(N_b+1)) Σ_{k ∈ {i} ∪ N(i)} q_lm(k)`` and ``Q̄_l`` from it.
Ideal first shells: fcc Q4 = 0.191, Q6 = 0.575; hcp 0.097, 0.485; bcc (8 neighbours) 0.509,
0.629; icosahedron Q6 = 0.663.
"""

from __future__ import annotations

import functools

import numpy as np
import xarray as xr
from scipy.spatial import ConvexHull, cKDTree
from scipy.special import sph_harm_y

from ..core.schema import as_xarray
from .lattice import _positions_species, default_cutoff, nearest_neighbour_distance


def _base(ds) -> xr.Dataset:
    return as_xarray(ds, xr.Dataset)


def steinhardt(ds, *, l_values=(4, 6), cutoff_A: float | None = None, averaged: bool = True
               ) -> xr.Dataset:
    """Per-atom Steinhardt ``Q_l`` (and averaged ``Qbar_l``) from first-shell bonds.

    Returns the model Dataset plus ``Q4``, ``Q6`` (…) and, with ``averaged``, ``Qbar4``,
    ``Qbar6``; NaN for atoms without neighbours. ``cutoff_A`` defaults to the fcc first-shell
    cutoff (1.21 × the first-shell distance).
    """
    pos, _ = _positions_species(ds)
    ls = [int(v) for v in np.atleast_1d(l_values)]
    if any(v < 0 for v in ls):
        raise ValueError(f"l_values must be non-negative integers, got {l_values!r}")
    if cutoff_A is None:
        cutoff_A = default_cutoff("fcc", nearest_neighbour_distance(pos))
    pairs = cKDTree(pos).query_pairs(float(cutoff_A), output_type="ndarray")
    i = np.r_[pairs[:, 0], pairs[:, 1]]
    j = np.r_[pairs[:, 1], pairs[:, 0]]
    b = pos[j] - pos[i]
    r = np.linalg.norm(b, axis=1)
    theta = np.arccos(np.clip(b[:, 2] / r, -1, 1))
    phi = np.arctan2(b[:, 1], b[:, 0])
    nb = np.bincount(i, minlength=len(pos)).astype(np.float64)
    out = _base(ds).copy()
    for lv in ls:
        m = np.arange(-lv, lv + 1)
        Y = sph_harm_y(lv, m[None, :], theta[:, None], phi[:, None])  # (bonds, 2l+1)
        q = np.zeros((len(pos), 2 * lv + 1), dtype=np.complex128)
        np.add.at(q, i, Y)
        with np.errstate(invalid="ignore", divide="ignore"):
            q = q / nb[:, None]
        pref = 4 * np.pi / (2 * lv + 1)
        out[f"Q{lv}"] = ("atom", np.sqrt(pref * np.sum(np.abs(q) ** 2, axis=1)))
        if averaged:
            qs = np.nan_to_num(q)
            qbar = qs.copy()
            np.add.at(qbar, i, qs[j])
            qbar = qbar / (nb[:, None] + 1)
            val = np.sqrt(pref * np.sum(np.abs(qbar) ** 2, axis=1))
            val[nb == 0] = np.nan
            out[f"Qbar{lv}"] = ("atom", val)
    return out


def rdf(ds, *, r_max_A: float = 10.0, dr_A: float = 0.05, pairs=None, volume_A3=None
        ) -> xr.Dataset:
    """Partial radial distribution functions ``g_ab(r)`` of a finite model.

    ``g_ab(r) = n_ab(r) / (N_a 4π r² dr ρ_b)``: ``n_ab`` counts ordered a–b pairs at distance
    r (both directions for a ≠ b counted once per a-atom), ``ρ_b = N_b / V`` with ``V`` the
    convex-hull volume of the model (or ``volume_A3``). A finite particle has g → 0 beyond its
    size; peak positions and first-shell integrals are what to compare. The cumulative
    coordination ``n_ab(<r)`` per a-atom is returned as ``cn_<a>_<b>``.

    Returns an ``xarray.Dataset`` along ``r`` (bin centres, Å) with ``g_<a>_<b>`` and
    ``cn_<a>_<b>`` for every species pair (a ≤ b by atomic number), plus ``g_all``.
    """
    from ase.data import atomic_numbers

    pos, sp = _positions_species(ds)
    if not (r_max_A > 0 and dr_A > 0 and dr_A < r_max_A):
        raise ValueError(f"need 0 < dr_A < r_max_A, got dr_A={dr_A!r}, r_max_A={r_max_A!r}")
    edges = np.arange(0, r_max_A + dr_A / 2, dr_A)
    rc = 0.5 * (edges[1:] + edges[:-1])
    shell = 4 * np.pi * rc ** 2 * dr_A
    V = float(volume_A3) if volume_A3 is not None else (
        ConvexHull(pos).volume if len(pos) >= 4 else 1.0)
    pr = cKDTree(pos).query_pairs(float(r_max_A), output_type="ndarray")
    d = np.linalg.norm(pos[pr[:, 0]] - pos[pr[:, 1]], axis=1)
    elems = sorted(set(sp.tolist()), key=lambda s: atomic_numbers[s])
    if pairs is None:
        pairs = [(a, b) for k, a in enumerate(elems) for b in elems[k:]]
    data = {}
    n = len(pos)
    hist_all = np.histogram(d, edges)[0] * 2.0
    data["g_all"] = ("r", hist_all / (n * shell * n / V))
    for a, b in pairs:
        na, nb = np.sum(sp == a), np.sum(sp == b)
        if na == 0 or nb == 0:
            raise ValueError(f"pairs names species {a!r}/{b!r} absent from the model "
                             f"(has {elems})")
        sa, sb = sp[pr[:, 0]], sp[pr[:, 1]]
        sel_ab = (sa == a) & (sb == b)
        sel_ba = (sa == b) & (sb == a)
        # counts of b-neighbours around a-atoms (ordered pairs)
        h = np.histogram(d[sel_ab | sel_ba], edges)[0].astype(np.float64)
        if a == b:
            h = 2 * h
        data[f"g_{a}_{b}"] = ("r", h / (na * shell * nb / V))
        data[f"cn_{a}_{b}"] = ("r", np.cumsum(h) / na)
    return xr.Dataset(data, coords={"r": ("r", rc, {"units": "Å"})},
                      attrs={"dr_A": float(dr_A), "volume_A3": V})


TYPES = ("fcc", "hcp", "bcc", "ico")


@functools.cache
def _reference_qbar(kind: str) -> tuple[float, float]:
    """(Q̄4, Q̄6) of the centre atom of a perfect structure, same cutoff rule as the model."""
    from ase.build import bulk
    from ase.cluster import Icosahedron

    from ..core.schema import build_model_dataset

    if kind == "ico":
        at = Icosahedron("Cu", noshells=5)
    elif kind == "hcp":
        at = bulk("Mg", "hcp", a=3.0, c=3.0 * np.sqrt(8 / 3)).repeat((6, 6, 4))
    elif kind == "bcc":
        at = bulk("Fe", "bcc", a=3.0, cubic=True).repeat((5, 5, 5))
    else:
        at = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((4, 4, 4))
    pos = at.positions - at.positions.mean(0)
    ds = steinhardt(build_model_dataset(pos, "Cu"), averaged=True)
    c = int(np.argmin(np.linalg.norm(pos, axis=1)))
    return float(ds["Qbar4"].values[c]), float(ds["Qbar6"].values[c])


def structure_types(ds, *, types=TYPES, tolerance: float = 0.06,
                    cutoff_A: float | None = None) -> xr.Dataset:
    """Local structure type per atom from the averaged bond order (Q̄4, Q̄6).

    Each atom gets the type (``"fcc"``, ``"hcp"``, ``"bcc"``, ``"ico"``) whose perfect-structure
    (Q̄4, Q̄6) — computed with the same first-shell cutoff rule — is nearest, if closer than
    ``tolerance``; else ``"other"`` (disorder, surface). Lechner & Dellago (2008) show the
    averaged parameters separate these structures far better than Q4/Q6.

    The ``"ico"`` reference is the centre atom of a 5-shell Mackay icosahedron (whose outer
    shells are twinned fcc, so only icosahedral centres match it).

    Returns the model Dataset with ``Q4, Q6, Qbar4, Qbar6`` and ``structure_type``.
    """
    bad = [t for t in types if t not in TYPES]
    if bad or not len(types):
        raise ValueError(f"types must be a non-empty subset of {list(TYPES)}, got {types!r}")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance!r}")
    out = steinhardt(ds, cutoff_A=cutoff_A, averaged=True)
    q = np.stack([out["Qbar4"].values, out["Qbar6"].values], axis=1)
    refs = np.array([_reference_qbar(t) for t in types])
    d = np.linalg.norm(q[:, None, :] - refs[None], axis=2)
    d = np.where(np.isfinite(d), d, np.inf)
    k = np.argmin(d, axis=1)
    best = d[np.arange(len(k)), k]
    labels = np.array(list(types))[k]
    out["structure_type"] = ("atom", np.where(best < tolerance, labels, "other"))
    return out
