"""Numba kernels of the projectors: plain arrays in, arrays out, radians/pixel units only.

Geometry (DESIGN.md): a projection at Euler angles (φ, θ, ψ) is the object rotated by
R = R_z(φ)·R_y(θ)·R_z(ψ) (active) and summed along z. The rotated object is V'(r') = V(Rᵀ r'),
so detector pixel (u, v) (x', y' relative to the detector centre) integrates V along the ray
r = Rᵀ (u, v, t) + c for every integer t (unit steps, t = 0 on the detector plane through the
volume centre c = (n_x // 2, n_y // 2, n_z // 2)). V is interpolated (tri/bi)linearly with
zero outside the box; only the samples that touch the box are visited, so the sum equals the
sum over all integers t.

Two layouts:

- general Euler angles: volume ``(z, y, x)`` and projections ``(angle, v, u)``; the back
  projector is the exact adjoint (scatter with the same weights).
- single tilt axis (φ = ψ = 0, tilt about y): each y-slice is an independent 2D problem. The
  kernels use a *y-innermost* layout, volume ``(z, x, y)`` and projections ``(angle, u, y)``, so
  the interpolation weights of a (θ, u, t) sample are computed once and applied to a contiguous
  run of y values (SIMD, one pass over memory).

``*_par`` variants parallelise with ``prange`` (in-memory calls); the plain ones are serial and
are what dask calls per chunk.
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import jit, prange

# --------------------------------------------------------------------------------------------
# single axis, y-innermost layout


@jit()
def _ray_range(a0, da, n):
    """Integer t range [lo, hi] where a0 + t*da lies in (-1, n) (hi < lo when empty)."""
    if abs(da) < 1e-12:
        if a0 > -1.0 and a0 < n:
            return -(1 << 30), 1 << 30
        return 1, 0
    t1 = (-1.0 - a0) / da
    t2 = (n - a0) / da
    if t1 > t2:
        t1, t2 = t2, t1
    return int(math.floor(t1)), int(math.ceil(t2))


@jit()
def _fp_sa_block(vol, cos_t, sin_t, out, y0, y1):
    """Forward projection of y in [y0, y1): vol (nz, nx, ny) -> out (n, nd, ny) (accumulates)."""
    nz, nx, _ = vol.shape
    n, nd, _ = out.shape
    cz = nz // 2
    cx = nx // 2
    cd = nd // 2
    for a in range(n):
        c = cos_t[a]
        s = sin_t[a]
        for d in range(nd):
            u = d - cd
            ax = u * c + cx  # x = ax - t*s
            az = u * s + cz  # z = az + t*c
            lo1, hi1 = _ray_range(ax, -s, nx)
            lo2, hi2 = _ray_range(az, c, nz)
            lo = max(lo1, lo2)
            hi = min(hi1, hi2)
            o = out[a, d]
            for t in range(lo, hi + 1):
                fx = ax - t * s
                fz = az + t * c
                ix = int(math.floor(fx))
                iz = int(math.floor(fz))
                if ix < -1 or ix >= nx or iz < -1 or iz >= nz:
                    continue
                wx = np.float32(fx - ix)
                wz = np.float32(fz - iz)
                w00 = (np.float32(1.0) - wz) * (np.float32(1.0) - wx)
                w01 = (np.float32(1.0) - wz) * wx
                w10 = wz * (np.float32(1.0) - wx)
                w11 = wz * wx
                if ix >= 0 and iz >= 0 and ix < nx - 1 and iz < nz - 1:
                    r00 = vol[iz, ix]
                    r01 = vol[iz, ix + 1]
                    r10 = vol[iz + 1, ix]
                    r11 = vol[iz + 1, ix + 1]
                    for y in range(y0, y1):
                        o[y] += w00 * r00[y] + w01 * r01[y] + w10 * r10[y] + w11 * r11[y]
                else:
                    for dz in range(2):
                        jz = iz + dz
                        if jz < 0 or jz >= nz:
                            continue
                        for dx in range(2):
                            jx = ix + dx
                            if jx < 0 or jx >= nx:
                                continue
                            w = (wz if dz else np.float32(1.0) - wz) * \
                                (wx if dx else np.float32(1.0) - wx)
                            r = vol[jz, jx]
                            for y in range(y0, y1):
                                o[y] += w * r[y]


@jit()
def _bp_sa_block(proj, cos_t, sin_t, vol, y0, y1):
    """Exact adjoint of :func:`_fp_sa_block`: proj (n, nd, ny) -> vol (nz, nx, ny) (accumulates)."""
    nz, nx, _ = vol.shape
    n, nd, _ = proj.shape
    cz = nz // 2
    cx = nx // 2
    cd = nd // 2
    for a in range(n):
        c = cos_t[a]
        s = sin_t[a]
        for d in range(nd):
            u = d - cd
            ax = u * c + cx
            az = u * s + cz
            lo1, hi1 = _ray_range(ax, -s, nx)
            lo2, hi2 = _ray_range(az, c, nz)
            lo = max(lo1, lo2)
            hi = min(hi1, hi2)
            p = proj[a, d]
            for t in range(lo, hi + 1):
                fx = ax - t * s
                fz = az + t * c
                ix = int(math.floor(fx))
                iz = int(math.floor(fz))
                if ix < -1 or ix >= nx or iz < -1 or iz >= nz:
                    continue
                wx = np.float32(fx - ix)
                wz = np.float32(fz - iz)
                w00 = (np.float32(1.0) - wz) * (np.float32(1.0) - wx)
                w01 = (np.float32(1.0) - wz) * wx
                w10 = wz * (np.float32(1.0) - wx)
                w11 = wz * wx
                if ix >= 0 and iz >= 0 and ix < nx - 1 and iz < nz - 1:
                    r00 = vol[iz, ix]
                    r01 = vol[iz, ix + 1]
                    r10 = vol[iz + 1, ix]
                    r11 = vol[iz + 1, ix + 1]
                    for y in range(y0, y1):
                        py = p[y]
                        r00[y] += w00 * py
                        r01[y] += w01 * py
                        r10[y] += w10 * py
                        r11[y] += w11 * py
                else:
                    for dz in range(2):
                        jz = iz + dz
                        if jz < 0 or jz >= nz:
                            continue
                        for dx in range(2):
                            jx = ix + dx
                            if jx < 0 or jx >= nx:
                                continue
                            w = (wz if dz else np.float32(1.0) - wz) * \
                                (wx if dx else np.float32(1.0) - wx)
                            r = vol[jz, jx]
                            for y in range(y0, y1):
                                r[y] += w * p[y]


@jit()
def fp_single_axis(vol, cos_t, sin_t, out):
    """Serial single-axis forward projection (vol (nz, nx, ny) -> out (n, nd, ny), adds)."""
    _fp_sa_block(vol, cos_t, sin_t, out, 0, vol.shape[2])


@jit()
def bp_single_axis(proj, cos_t, sin_t, vol):
    """Serial single-axis back projection (adjoint; proj (n, nd, ny) -> vol (nz, nx, ny), adds)."""
    _bp_sa_block(proj, cos_t, sin_t, vol, 0, vol.shape[2])


@jit(parallel=True)
def fp_single_axis_par(vol, cos_t, sin_t, out):
    """Parallel :func:`fp_single_axis`: one projection per task, whole y rows (long contiguous
    runs are what makes the inner loop fast)."""
    n = cos_t.shape[0]
    ny = vol.shape[2]
    for a in prange(n):
        _fp_sa_block(vol, cos_t[a:a + 1], sin_t[a:a + 1], out[a:a + 1], 0, ny)


@jit(parallel=True)
def bp_single_axis_par(proj, cos_t, sin_t, vol, acc):
    """Parallel :func:`bp_single_axis`: the projections are dealt round-robin to
    ``acc.shape[0] + 1`` tasks; task 0 adds into ``vol``, task k into ``acc[k - 1]`` (zeroed
    here); the partial volumes are then summed into ``vol``."""
    n = cos_t.shape[0]
    ny = vol.shape[2]
    ntask = acc.shape[0] + 1
    for k in prange(ntask):
        if k == 0:
            for a in range(0, n, ntask):
                _bp_sa_block(proj[a:a + 1], cos_t[a:a + 1], sin_t[a:a + 1], vol, 0, ny)
        else:
            acc[k - 1][...] = 0
            for a in range(k, n, ntask):
                _bp_sa_block(proj[a:a + 1], cos_t[a:a + 1], sin_t[a:a + 1], acc[k - 1], 0, ny)
    nz = vol.shape[0]
    for iz in prange(nz):
        for k in range(ntask - 1):
            vol[iz] += acc[k, iz]


# --------------------------------------------------------------------------------------------
# general Euler angles, (z, y, x) layout


@jit()
def _fp_row(vol, M, out_row, v, nxd, cvd, cud):
    """One detector row ``v`` of one projection; M = Rᵀ (3, 3) acting on (x, y, z)."""
    nz, ny, nx = vol.shape
    cz = nz // 2
    cy = ny // 2
    cx = nx // 2
    dx = M[0, 2]
    dy = M[1, 2]
    dz = M[2, 2]
    vv = v - cvd
    for ud in range(nxd):
        u = ud - cud
        ax = M[0, 0] * u + M[0, 1] * vv + cx
        ay = M[1, 0] * u + M[1, 1] * vv + cy
        az = M[2, 0] * u + M[2, 1] * vv + cz
        lo1, hi1 = _ray_range(ax, dx, nx)
        lo2, hi2 = _ray_range(ay, dy, ny)
        lo3, hi3 = _ray_range(az, dz, nz)
        lo = max(lo1, max(lo2, lo3))
        hi = min(hi1, min(hi2, hi3))
        acc = 0.0
        for t in range(lo, hi + 1):
            fx = ax + t * dx
            fy = ay + t * dy
            fz = az + t * dz
            ix = int(math.floor(fx))
            iy = int(math.floor(fy))
            iz = int(math.floor(fz))
            if ix < -1 or ix >= nx or iy < -1 or iy >= ny or iz < -1 or iz >= nz:
                continue
            wx = fx - ix
            wy = fy - iy
            wz = fz - iz
            if ix >= 0 and iy >= 0 and iz >= 0 and ix < nx - 1 and iy < ny - 1 and iz < nz - 1:
                c00 = vol[iz, iy, ix] * (1 - wx) + vol[iz, iy, ix + 1] * wx
                c01 = vol[iz, iy + 1, ix] * (1 - wx) + vol[iz, iy + 1, ix + 1] * wx
                c10 = vol[iz + 1, iy, ix] * (1 - wx) + vol[iz + 1, iy, ix + 1] * wx
                c11 = vol[iz + 1, iy + 1, ix] * (1 - wx) + vol[iz + 1, iy + 1, ix + 1] * wx
                acc += (c00 * (1 - wy) + c01 * wy) * (1 - wz) + (c10 * (1 - wy) + c11 * wy) * wz
            else:
                for kz in range(2):
                    jz = iz + kz
                    if jz < 0 or jz >= nz:
                        continue
                    gz = wz if kz else 1 - wz
                    for ky in range(2):
                        jy = iy + ky
                        if jy < 0 or jy >= ny:
                            continue
                        gy = wy if ky else 1 - wy
                        for kx in range(2):
                            jx = ix + kx
                            if jx < 0 or jx >= nx:
                                continue
                            gx = wx if kx else 1 - wx
                            acc += gz * gy * gx * vol[jz, jy, jx]
        out_row[ud] += acc


@jit()
def _bp_row(row, M, vol, v, nxd, cvd, cud):
    """Adjoint of :func:`_fp_row`: scatter one detector row into ``vol`` (adds)."""
    nz, ny, nx = vol.shape
    cz = nz // 2
    cy = ny // 2
    cx = nx // 2
    dx = M[0, 2]
    dy = M[1, 2]
    dz = M[2, 2]
    vv = v - cvd
    for ud in range(nxd):
        val = row[ud]
        if val == 0:
            continue
        u = ud - cud
        ax = M[0, 0] * u + M[0, 1] * vv + cx
        ay = M[1, 0] * u + M[1, 1] * vv + cy
        az = M[2, 0] * u + M[2, 1] * vv + cz
        lo1, hi1 = _ray_range(ax, dx, nx)
        lo2, hi2 = _ray_range(ay, dy, ny)
        lo3, hi3 = _ray_range(az, dz, nz)
        lo = max(lo1, max(lo2, lo3))
        hi = min(hi1, min(hi2, hi3))
        for t in range(lo, hi + 1):
            fx = ax + t * dx
            fy = ay + t * dy
            fz = az + t * dz
            ix = int(math.floor(fx))
            iy = int(math.floor(fy))
            iz = int(math.floor(fz))
            if ix < -1 or ix >= nx or iy < -1 or iy >= ny or iz < -1 or iz >= nz:
                continue
            wx = fx - ix
            wy = fy - iy
            wz = fz - iz
            for kz in range(2):
                jz = iz + kz
                if jz < 0 or jz >= nz:
                    continue
                gz = (wz if kz else 1 - wz) * val
                for ky in range(2):
                    jy = iy + ky
                    if jy < 0 or jy >= ny:
                        continue
                    gy = gz * (wy if ky else 1 - wy)
                    for kx in range(2):
                        jx = ix + kx
                        if jx < 0 or jx >= nx:
                            continue
                        vol[jz, jy, jx] += gy * (wx if kx else 1 - wx)


@jit()
def fp_euler(vol, Ms, out):
    """Serial general forward projection: vol (nz, ny, nx), Ms (n, 3, 3) = Rᵀ per angle,
    out (n, nyd, nxd) (adds)."""
    n, nyd, nxd = out.shape
    for a in range(n):
        for v in range(nyd):
            _fp_row(vol, Ms[a], out[a, v], v, nxd, nyd // 2, nxd // 2)


@jit(parallel=True)
def fp_euler_par(vol, Ms, out):
    """Parallel :func:`fp_euler` over (angle, detector row)."""
    n, nyd, nxd = out.shape
    for k in prange(n * nyd):
        a = k // nyd
        v = k - a * nyd
        _fp_row(vol, Ms[a], out[a, v], v, nxd, nyd // 2, nxd // 2)


@jit()
def bp_euler(proj, Ms, vol):
    """Serial general back projection (exact adjoint of :func:`fp_euler`, adds into vol)."""
    n, nyd, nxd = proj.shape
    for a in range(n):
        for v in range(nyd):
            _bp_row(proj[a, v], Ms[a], vol, v, nxd, nyd // 2, nxd // 2)


@jit(parallel=True)
def bp_euler_par(proj, Ms, acc):
    """Parallel back projection: ``acc`` (n_threads, nz, ny, nx) holds one accumulator per
    thread (rows are dealt round-robin); the caller sums ``acc`` over its first axis."""
    n, nyd, nxd = proj.shape
    nth = acc.shape[0]
    for th in prange(nth):
        for k in range(th, n * nyd, nth):
            a = k // nyd
            v = k - a * nyd
            _bp_row(proj[a, v], Ms[a], acc[th], v, nxd, nyd // 2, nxd // 2)
