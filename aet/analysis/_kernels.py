"""Numba kernels of :mod:`aet.analysis` (plain arrays in and out; no package imports).

The splatting kernels run in parallel over z-planes of the grid (each plane is written by one
thread only, so there are no races); atoms are visited through a z-sorted index so each plane
only touches the atoms within ``radius`` of it.
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import jit, prange

N_MOMENTS = 22  # S0, S1 (3), S2 (6), Su (3), Sdu (9)


@jit(parallel=True)
def splat_moments(pos_xyz, disp_xyz, origin_zyx, spacing, shape_zyx, sigma, radius):
    """Gaussian-weighted moments of atom displacements on a regular grid.

    For every grid point r and every atom p within ``radius`` Å (weight
    ``w = exp(-|p - r|² / 2σ²)``, ``d = p - r`` in (x, y, z) Å) accumulate

    ``[Σw, Σw d (3), Σw d dᵀ (xx, xy, xz, yy, yz, zz), Σw u (3), Σw d_j u_i (j-major, 9)]``.

    ``origin_zyx`` is the Å coordinate of index 0 along (z, y, x); ``spacing`` (Å) is the
    grid step (same on all axes). Returns an array ``(nz, ny, nx, 22)`` float64.
    """
    nz, ny, nx = shape_zyx[0], shape_zyx[1], shape_zyx[2]
    out = np.zeros((nz, ny, nx, 22), dtype=np.float64)
    inv2s2 = 1.0 / (2.0 * sigma * sigma)
    r2max = radius * radius
    order = np.argsort(pos_xyz[:, 2])
    zs = np.empty(order.size, dtype=np.float64)
    for a in range(order.size):
        zs[a] = pos_xyz[order[a], 2]
    for k in prange(nz):
        zk = origin_zyx[0] + k * spacing
        lo = np.searchsorted(zs, zk - radius)
        hi = np.searchsorted(zs, zk + radius, side="right")
        for aa in range(lo, hi):
            a = order[aa]
            px = float(pos_xyz[a, 0])
            py = float(pos_xyz[a, 1])
            dz = float(pos_xyz[a, 2]) - zk
            rem = r2max - dz * dz
            if rem < 0:
                continue
            ux = float(disp_xyz[a, 0])
            uy = float(disp_xyz[a, 1])
            uz = float(disp_xyz[a, 2])
            wz = math.exp(-dz * dz * inv2s2)
            reach = math.sqrt(rem)
            j0 = max(int(math.ceil((py - reach - origin_zyx[1]) / spacing)), 0)
            j1 = min(int(math.floor((py + reach - origin_zyx[1]) / spacing)), ny - 1)
            for j in range(j0, j1 + 1):
                dy = py - (origin_zyx[1] + j * spacing)
                rem2 = rem - dy * dy
                if rem2 < 0:
                    continue
                wy = wz * math.exp(-dy * dy * inv2s2)
                reach2 = math.sqrt(rem2)
                i0 = max(int(math.ceil((px - reach2 - origin_zyx[2]) / spacing)), 0)
                i1 = min(int(math.floor((px + reach2 - origin_zyx[2]) / spacing)), nx - 1)
                for i in range(i0, i1 + 1):
                    dx = px - (origin_zyx[2] + i * spacing)
                    if dx * dx > rem2:
                        continue
                    w = wy * math.exp(-dx * dx * inv2s2)
                    out[k, j, i, 0] += w
                    out[k, j, i, 1] += w * dx
                    out[k, j, i, 2] += w * dy
                    out[k, j, i, 3] += w * dz
                    out[k, j, i, 4] += w * dx * dx
                    out[k, j, i, 5] += w * dx * dy
                    out[k, j, i, 6] += w * dx * dz
                    out[k, j, i, 7] += w * dy * dy
                    out[k, j, i, 8] += w * dy * dz
                    out[k, j, i, 9] += w * dz * dz
                    out[k, j, i, 10] += w * ux
                    out[k, j, i, 11] += w * uy
                    out[k, j, i, 12] += w * uz
                    out[k, j, i, 13] += w * dx * ux
                    out[k, j, i, 14] += w * dx * uy
                    out[k, j, i, 15] += w * dx * uz
                    out[k, j, i, 16] += w * dy * ux
                    out[k, j, i, 17] += w * dy * uy
                    out[k, j, i, 18] += w * dy * uz
                    out[k, j, i, 19] += w * dz * ux
                    out[k, j, i, 20] += w * dz * uy
                    out[k, j, i, 21] += w * dz * uz
    return out


@jit(parallel=True)
def splat_values(pos_xyz, values, origin_zyx, spacing, shape_zyx, sigma, radius):
    """Gaussian splat of per-atom scalars: returns ``(Σ w v, Σ w)`` on the grid, each
    ``(nz, ny, nx)`` float64 (Nadaraya–Watson numerator and denominator)."""
    nz, ny, nx = shape_zyx[0], shape_zyx[1], shape_zyx[2]
    num = np.zeros((nz, ny, nx), dtype=np.float64)
    den = np.zeros((nz, ny, nx), dtype=np.float64)
    inv2s2 = 1.0 / (2.0 * sigma * sigma)
    r2max = radius * radius
    order = np.argsort(pos_xyz[:, 2])
    zs = np.empty(order.size, dtype=np.float64)
    for a in range(order.size):
        zs[a] = pos_xyz[order[a], 2]
    for k in prange(nz):
        zk = origin_zyx[0] + k * spacing
        lo = np.searchsorted(zs, zk - radius)
        hi = np.searchsorted(zs, zk + radius, side="right")
        for aa in range(lo, hi):
            a = order[aa]
            px = float(pos_xyz[a, 0])
            py = float(pos_xyz[a, 1])
            dz = float(pos_xyz[a, 2]) - zk
            rem = r2max - dz * dz
            if rem < 0:
                continue
            v = float(values[a])
            wz = math.exp(-dz * dz * inv2s2)
            reach = math.sqrt(rem)
            j0 = max(int(math.ceil((py - reach - origin_zyx[1]) / spacing)), 0)
            j1 = min(int(math.floor((py + reach - origin_zyx[1]) / spacing)), ny - 1)
            for j in range(j0, j1 + 1):
                dy = py - (origin_zyx[1] + j * spacing)
                rem2 = rem - dy * dy
                if rem2 < 0:
                    continue
                wy = wz * math.exp(-dy * dy * inv2s2)
                reach2 = math.sqrt(rem2)
                i0 = max(int(math.ceil((px - reach2 - origin_zyx[2]) / spacing)), 0)
                i1 = min(int(math.floor((px + reach2 - origin_zyx[2]) / spacing)), nx - 1)
                for i in range(i0, i1 + 1):
                    dx = px - (origin_zyx[2] + i * spacing)
                    if dx * dx > rem2:
                        continue
                    w = wy * math.exp(-dx * dx * inv2s2)
                    num[k, j, i] += w * v
                    den[k, j, i] += w
    return num, den
