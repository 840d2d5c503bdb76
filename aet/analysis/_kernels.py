"""Numba kernels of :mod:`aet.analysis` (plain arrays in and out; no package imports).

One splatting kernel (:func:`_splat_planes`) fills a range of z-planes of the grid with
Gaussian-weighted products of the offset and per-atom values; :func:`splat_moments` and
:func:`splat_values` are two choices of those products (one compiled kernel serves both: two
kernels cost a cold run twice the compiling) and run it on aet's kernel thread pool over blocks
of planes (each plane is
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
    disp = np.ascontiguousarray(disp_xyz, dtype=np.float64).reshape(-1, 3)
    return _splat(pos_xyz, disp, 4, origin_zyx, spacing, shape_zyx, sigma, radius)


def splat_values(pos_xyz, values, origin_zyx, spacing, shape_zyx, sigma, radius):
    """Gaussian splat of per-atom scalars: returns ``(Σ w v, Σ w)`` on the grid, each
    ``(nz, ny, nx)`` float64 (Nadaraya–Watson numerator and denominator)."""
    vals = np.ascontiguousarray(values, dtype=np.float64).reshape(-1, 1)
    out = _splat(pos_xyz, vals, 1, origin_zyx, spacing, shape_zyx, sigma, radius)
    return np.ascontiguousarray(out[..., 1]), np.ascontiguousarray(out[..., 0])


def _splat(pos_xyz, vals, nd, origin_zyx, spacing, shape_zyx, sigma, radius):
    """:func:`_splat_planes` over the whole grid on the kernel thread pool."""
    pos, origin, shape, order, lo, hi = _splat_args(pos_xyz, origin_zyx, spacing, shape_zyx,
                                                    sigma, radius)
    n_out = nd * (nd + 1) // 2 + nd * vals.shape[1]
    out = np.zeros((*shape, n_out), dtype=np.float64)
    map_ranges(lambda a, b: _splat_planes(pos, vals, nd, order, lo, hi, origin, float(spacing),
                                          float(sigma), float(radius), np.empty(4), a, b, out),
               split_range(shape[0]))
    return out


@jit()
def _splat_planes(pos_xyz, vals, nd, order, lo, hi, origin_zyx, spacing, sigma, radius, p,
                  k0, k1, out):
    """Planes ``k0 ≤ k < k1`` of a Gaussian splat into ``out`` (nz, ny, nx, n_out) (adds).

    With ``p = (1, dx, dy, dz)`` (offset ``d = atom - grid point``, Å) truncated to its first
    ``nd`` entries, and ``v`` the atom's row of ``vals`` (n_atoms, nv), every atom within
    ``radius`` adds, in this order, ``w p_a p_b`` for ``a ≤ b < nd`` (row-major) and then
    ``w p_a v_m`` for ``a < nd``, ``m < nv`` (a-major), each product evaluated left to right.
    ``nd = 4`` gives the 22 moments of :func:`splat_moments`, ``nd = 1`` the pair ``(Σw, Σwv)``
    of :func:`splat_values`. ``p`` is a float64 scratch array of 4 entries."""
    ny, nx = out.shape[1], out.shape[2]
    nv = vals.shape[1]
    inv2s2 = 1.0 / (2.0 * sigma * sigma)
    r2max = radius * radius
    p[0] = 1.0
    for k in range(k0, k1):
        zk = origin_zyx[0] + k * spacing
        for aa in range(lo[k], hi[k]):
            at = order[aa]
            px = float(pos_xyz[at, 0])
            py = float(pos_xyz[at, 1])
            dz = float(pos_xyz[at, 2]) - zk
            rem = r2max - dz * dz
            if rem < 0:
                continue
            p[3] = dz
            wz = math.exp(-dz * dz * inv2s2)
            reach = math.sqrt(rem)
            j0 = max(int(math.ceil((py - reach - origin_zyx[1]) / spacing)), 0)
            j1 = min(int(math.floor((py + reach - origin_zyx[1]) / spacing)), ny - 1)
            for j in range(j0, j1 + 1):
                dy = py - (origin_zyx[1] + j * spacing)
                rem2 = rem - dy * dy
                if rem2 < 0:
                    continue
                p[2] = dy
                wy = wz * math.exp(-dy * dy * inv2s2)
                reach2 = math.sqrt(rem2)
                i0 = max(int(math.ceil((px - reach2 - origin_zyx[2]) / spacing)), 0)
                i1 = min(int(math.floor((px + reach2 - origin_zyx[2]) / spacing)), nx - 1)
                for i in range(i0, i1 + 1):
                    dx = px - (origin_zyx[2] + i * spacing)
                    if dx * dx > rem2:
                        continue
                    p[1] = dx
                    w = wy * math.exp(-dx * dx * inv2s2)
                    c = 0
                    for a in range(nd):
                        wa = w * p[a]
                        for b in range(a, nd):
                            out[k, j, i, c] += wa * p[b]
                            c += 1
                    for a in range(nd):
                        wa = w * p[a]
                        for m in range(nv):
                            out[k, j, i, c] += wa * vals[at, m]
                            c += 1
