"""Slow, obviously-correct NumPy twins of the :mod:`aet.dynamics` kernels."""

from __future__ import annotations

import numpy as np


def gaussian_splat_reference(idx_zyx, values, shape, sigma_vox, radius_vox):
    """Dense evaluation: every voxel against every atom (no windows, no loops to get wrong)."""
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    vox = np.stack([g.ravel() for g in grids], axis=1)                     # (V, 3) z, y, x
    d2 = ((vox[:, None, :] - np.asarray(idx_zyx, float)[None, :, :]) ** 2).sum(-1)  # (V, n)
    w = np.where(d2 <= radius_vox ** 2, np.exp(-d2 / (2.0 * sigma_vox ** 2)), 0.0)
    num = (w * np.asarray(values, float)[None, :]).sum(1).reshape(shape)
    den = w.sum(1).reshape(shape)
    return num, den


def variant_order_reference(positions, species, sublattice, tables, species_ab, sigma_A,
                            truncate, l12_split):
    """Atom by atom, variant by variant: S_v(i) = Σ_j w (m − b) / Σ_j w (1 − b) over the atoms
    j within truncate·σ of i (i included), best variant; ``tables`` is a list of
    (name, (V, 4) bool) and ``l12_split`` masks A3B variants where the weighted fraction of A is
    < 0.5 and AB3 variants where it is ≥ 0.5. Returns the best value, its variant and every
    variant's value (n, V)."""
    pos = np.asarray(positions, float)
    sp = np.asarray(species).astype(str)
    sub = np.asarray(sublattice)
    A, B = species_ab
    ok = (sub >= 0) & ((sp == A) | (sp == B))
    cA = np.sum((sp == A) & ok) / ok.sum()
    n = len(sp)
    best = np.full(n, -np.inf)
    var = np.full(n, -1)
    n_var = sum(t.shape[0] for _, t in tables)
    S_all = np.full((n, n_var), -np.inf)
    for i in range(n):
        d = np.sqrt(((pos - pos[i]) ** 2).sum(1))
        near = np.flatnonzero(d <= truncate * sigma_A)
        w = np.exp(-d[near] ** 2 / (2 * sigma_A ** 2))
        nok = ok[near]
        fa = np.sum(w * ((sp[near] == A) & nok)) / np.sum(w * nok)
        k0 = 0
        for name, table in tables:
            for v in range(table.shape[0]):
                num = den = 0.0
                for j, wj in zip(near, w):
                    if not ok[j]:
                        continue
                    want = A if table[v, sub[j]] else B
                    b = cA if want == A else 1 - cA
                    num += wj * ((sp[j] == want) - b)
                    den += wj * (1 - b)
                s = num / den
                if l12_split and ((name == "L12_A3B" and fa < 0.5) or
                                  (name == "L12_AB3" and fa >= 0.5)):
                    s = -np.inf
                S_all[i, k0 + v] = s
                if s > best[i]:
                    best[i], var[i] = s, k0 + v
            k0 += table.shape[0]
    return best, var, S_all
