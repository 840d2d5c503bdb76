"""Numba kernels of :mod:`aet.analysis` (plain arrays in and out; no package imports)."""

from __future__ import annotations

import math

import numpy as np

from .._jit import jit

N_MOMENTS = 22  # S0, S1 (3), S2 (6), Su (3), Sdu (9)


@jit()
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
    reach = int(math.ceil(radius / spacing)) + 1
    for a in range(pos_xyz.shape[0]):
        px = pos_xyz[a, 0]
        py = pos_xyz[a, 1]
        pz = pos_xyz[a, 2]
        ux = disp_xyz[a, 0]
        uy = disp_xyz[a, 1]
        uz = disp_xyz[a, 2]
        cz = int(round((pz - origin_zyx[0]) / spacing))
        cy = int(round((py - origin_zyx[1]) / spacing))
        cx = int(round((px - origin_zyx[2]) / spacing))
        for k in range(max(cz - reach, 0), min(cz + reach + 1, nz)):
            dz = pz - (origin_zyx[0] + k * spacing)
            for j in range(max(cy - reach, 0), min(cy + reach + 1, ny)):
                dy = py - (origin_zyx[1] + j * spacing)
                for i in range(max(cx - reach, 0), min(cx + reach + 1, nx)):
                    dx = px - (origin_zyx[2] + i * spacing)
                    r2 = dx * dx + dy * dy + dz * dz
                    if r2 > r2max:
                        continue
                    w = math.exp(-r2 * inv2s2)
                    o = out[k, j, i]
                    o[0] += w
                    o[1] += w * dx
                    o[2] += w * dy
                    o[3] += w * dz
                    o[4] += w * dx * dx
                    o[5] += w * dx * dy
                    o[6] += w * dx * dz
                    o[7] += w * dy * dy
                    o[8] += w * dy * dz
                    o[9] += w * dz * dz
                    o[10] += w * ux
                    o[11] += w * uy
                    o[12] += w * uz
                    o[13] += w * dx * ux
                    o[14] += w * dx * uy
                    o[15] += w * dx * uz
                    o[16] += w * dy * ux
                    o[17] += w * dy * uy
                    o[18] += w * dy * uz
                    o[19] += w * dz * ux
                    o[20] += w * dz * uy
                    o[21] += w * dz * uz
    return out


@jit()
def splat_values(pos_xyz, values, origin_zyx, spacing, shape_zyx, sigma, radius):
    """Gaussian splat of per-atom scalars: returns ``(Σ w v, Σ w)`` on the grid, each
    ``(nz, ny, nx)`` float64 (Nadaraya–Watson numerator and denominator)."""
    nz, ny, nx = shape_zyx[0], shape_zyx[1], shape_zyx[2]
    num = np.zeros((nz, ny, nx), dtype=np.float64)
    den = np.zeros((nz, ny, nx), dtype=np.float64)
    inv2s2 = 1.0 / (2.0 * sigma * sigma)
    r2max = radius * radius
    reach = int(math.ceil(radius / spacing)) + 1
    for a in range(pos_xyz.shape[0]):
        px = pos_xyz[a, 0]
        py = pos_xyz[a, 1]
        pz = pos_xyz[a, 2]
        v = values[a]
        cz = int(round((pz - origin_zyx[0]) / spacing))
        cy = int(round((py - origin_zyx[1]) / spacing))
        cx = int(round((px - origin_zyx[2]) / spacing))
        for k in range(max(cz - reach, 0), min(cz + reach + 1, nz)):
            dz = pz - (origin_zyx[0] + k * spacing)
            for j in range(max(cy - reach, 0), min(cy + reach + 1, ny)):
                dy = py - (origin_zyx[1] + j * spacing)
                for i in range(max(cx - reach, 0), min(cx + reach + 1, nx)):
                    dx = px - (origin_zyx[2] + i * spacing)
                    r2 = dx * dx + dy * dy + dz * dz
                    if r2 > r2max:
                        continue
                    w = math.exp(-r2 * inv2s2)
                    num[k, j, i] += w * v
                    den[k, j, i] += w
    return num, den
