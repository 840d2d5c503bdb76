"""Numba kernels of :mod:`aet.analysis` (plain arrays in and out; no package imports).

The splatting kernels fill a range of z-planes of the grid; :func:`splat_moments` and
:func:`splat_values` run them on aet's kernel thread pool over blocks of planes (each plane is
written by one thread only, so there are no races, and the result does not depend on the
number of threads). Atoms are visited through a z-sorted index (sorted with NumPy, not in the
kernel: Numba's sort and search compile slowly) so each plane only touches the atoms within
``radius`` of it. Twins: ``tests/reference/analysis.py``.
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import jit, map_ranges, split_range

N_MOMENTS = 22  # S0, S1 (3), S2 (6), Su (3), Sdu (9)


def _plane_index(pos_xyz, origin_zyx, spacing, nz, radius):
    """Atoms sorted by z (stable) and, per plane k, the range ``[lo[k], hi[k])`` of sorted atoms
    whose z lies within ``radius`` of the plane."""
    z = pos_xyz[:, 2]
    order = np.argsort(z, kind="stable").astype(np.int64)
    zs = z[order]
    zk = origin_zyx[0] + np.arange(nz) * spacing
    lo = np.searchsorted(zs, zk - radius).astype(np.int64)
    hi = np.searchsorted(zs, zk + radius, side="right").astype(np.int64)
    return order, lo, hi


def _splat_args(pos_xyz, origin_zyx, spacing, shape_zyx, sigma, radius):
    pos = np.ascontiguousarray(pos_xyz, dtype=np.float64)
    origin = np.ascontiguousarray(origin_zyx, dtype=np.float64)
    shape = tuple(int(n) for n in np.asarray(shape_zyx).reshape(3))
    order, lo, hi = _plane_index(pos, origin, float(spacing), shape[0], float(radius))
    return pos, origin, shape, order, lo, hi


def splat_moments(pos_xyz, disp_xyz, origin_zyx, spacing, shape_zyx, sigma, radius):
    """Gaussian-weighted moments of atom displacements on a regular grid.

    For every grid point r and every atom p within ``radius`` Å (weight
    ``w = exp(-|p - r|² / 2σ²)``, ``d = p - r`` in (x, y, z) Å) accumulate

    ``[Σw, Σw d (3), Σw d dᵀ (xx, xy, xz, yy, yz, zz), Σw u (3), Σw d_j u_i (j-major, 9)]``.

    ``origin_zyx`` is the Å coordinate of index 0 along (z, y, x); ``spacing`` (Å) is the
    grid step (same on all axes). Returns an array ``(nz, ny, nx, 22)`` float64.
    """
    pos, origin, shape, order, lo, hi = _splat_args(pos_xyz, origin_zyx, spacing, shape_zyx,
                                                    sigma, radius)
    disp = np.ascontiguousarray(disp_xyz, dtype=np.float64)
    out = np.zeros((*shape, N_MOMENTS), dtype=np.float64)
    map_ranges(lambda a, b: _splat_moments_planes(pos, disp, order, lo, hi, origin,
                                                  float(spacing), float(sigma), float(radius),
                                                  a, b, out), split_range(shape[0]))
    return out


@jit()
def _splat_moments_planes(pos_xyz, disp_xyz, order, lo, hi, origin_zyx, spacing, sigma,
                          radius, k0, k1, out):
    """Planes ``k0 ≤ k < k1`` of :func:`splat_moments` into ``out`` (adds)."""
    ny, nx = out.shape[1], out.shape[2]
    inv2s2 = 1.0 / (2.0 * sigma * sigma)
    r2max = radius * radius
    for k in range(k0, k1):
        zk = origin_zyx[0] + k * spacing
        for aa in range(lo[k], hi[k]):
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


def splat_values(pos_xyz, values, origin_zyx, spacing, shape_zyx, sigma, radius):
    """Gaussian splat of per-atom scalars: returns ``(Σ w v, Σ w)`` on the grid, each
    ``(nz, ny, nx)`` float64 (Nadaraya–Watson numerator and denominator)."""
    pos, origin, shape, order, lo, hi = _splat_args(pos_xyz, origin_zyx, spacing, shape_zyx,
                                                    sigma, radius)
    vals = np.ascontiguousarray(values, dtype=np.float64)
    num = np.zeros(shape, dtype=np.float64)
    den = np.zeros(shape, dtype=np.float64)
    map_ranges(lambda a, b: _splat_values_planes(pos, vals, order, lo, hi, origin,
                                                 float(spacing), float(sigma), float(radius),
                                                 a, b, num, den), split_range(shape[0]))
    return num, den


@jit()
def _splat_values_planes(pos_xyz, values, order, lo, hi, origin_zyx, spacing, sigma, radius,
                         k0, k1, num, den):
    """Planes ``k0 ≤ k < k1`` of :func:`splat_values` into ``num``, ``den`` (adds)."""
    ny, nx = num.shape[1], num.shape[2]
    inv2s2 = 1.0 / (2.0 * sigma * sigma)
    r2max = radius * radius
    for k in range(k0, k1):
        zk = origin_zyx[0] + k * spacing
        for aa in range(lo[k], hi[k]):
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
