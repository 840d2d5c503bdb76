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
