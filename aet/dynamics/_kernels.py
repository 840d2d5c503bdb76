"""Numba kernels of :mod:`aet.dynamics` (plain arrays in/out; NumPy twins in
``tests/reference/dynamics.py``)."""

from __future__ import annotations

import math

import numpy as np

from .._jit import jit


@jit()
def gaussian_splat(idx_zyx, values, sigma_vox, radius_vox, num, den):
    """Accumulate Gaussian-weighted ``values`` and weights onto the grids ``num``/``den``.

    ``idx_zyx`` (n, 3) fractional voxel indices (z, y, x); each atom adds
    ``w = exp(-d² / (2 σ²))`` (``d`` in voxels) times its value to ``num`` and ``w`` to ``den``
    at every voxel with ``d² ≤ radius_vox²``. Serial on purpose: atoms overlap on the grid.
    """
    nz, ny, nx = num.shape
    inv2s2 = 1.0 / (2.0 * sigma_vox * sigma_vox)
    r2 = radius_vox * radius_vox
    for a in range(idx_zyx.shape[0]):
        pz = idx_zyx[a, 0]
        py = idx_zyx[a, 1]
        px = idx_zyx[a, 2]
        v = values[a]
        z0 = max(0, int(math.ceil(pz - radius_vox)))
        z1 = min(nz - 1, int(math.floor(pz + radius_vox)))
        y0 = max(0, int(math.ceil(py - radius_vox)))
        y1 = min(ny - 1, int(math.floor(py + radius_vox)))
        x0 = max(0, int(math.ceil(px - radius_vox)))
        x1 = min(nx - 1, int(math.floor(px + radius_vox)))
        for k in range(z0, z1 + 1):
            dz2 = (k - pz) * (k - pz)
            for j in range(y0, y1 + 1):
                dzy2 = dz2 + (j - py) * (j - py)
                if dzy2 > r2:
                    continue
                for i in range(x0, x1 + 1):
                    d2 = dzy2 + (i - px) * (i - px)
                    if d2 <= r2:
                        w = math.exp(-d2 * inv2s2)
                        num[k, j, i] += w * v
                        den[k, j, i] += w


def splat(idx_zyx: np.ndarray, values: np.ndarray, shape, sigma_vox: float,
          radius_vox: float) -> tuple[np.ndarray, np.ndarray]:
    """Call :func:`gaussian_splat` on fresh float64 grids of ``shape``; returns (num, den)."""
    num = np.zeros(tuple(int(s) for s in shape), dtype=np.float64)
    den = np.zeros_like(num)
    gaussian_splat(np.ascontiguousarray(idx_zyx, dtype=np.float64),
                   np.ascontiguousarray(values, dtype=np.float64), float(sigma_vox),
                   float(radius_vox), num, den)
    return num, den
