"""Shared test phantoms."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def amorphous_slab(rng, lo, hi, *, d_min: float, density: float = 0.12) -> np.ndarray:
    """Random positions (Å) in the box ``lo``–``hi``, ``density`` per Å³ before thinning, thinned
    so that no two are closer than ``d_min`` Å (an amorphous-like film)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    cand = rng.uniform(lo, hi, (int(density * np.prod(hi - lo)), 3))
    keep = np.ones(len(cand), bool)
    for i, j in sorted(cKDTree(cand).query_pairs(d_min)):
        if keep[i] and keep[j]:
            keep[j] = False
    return cand[keep]
