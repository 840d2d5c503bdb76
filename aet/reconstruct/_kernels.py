"""Numba kernels of the projectors: plain arrays in, arrays out, radians/pixel units only.

Geometry (docs/conventions.rst): a projection at Euler angles (φ, θ, ψ) is the object rotated by
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
def _sa_block(vol, cos_t, sin_t, proj, y0, y1, adjoint):
    """Single-axis projection of y in [y0, y1), vol (nz, nx, ny) and proj (n, nd, ny):
    ``proj += P vol`` (forward, ``adjoint`` False) or its exact adjoint ``vol += Pᵀ proj``
    (back projection: the same samples and weights, scattered). One kernel for the pair: the
    ray geometry and weights are shared code, compiled once for both directions.

    The y loops run over row views ``[y0:y1]`` from index 0, not over ``range(y0, y1)``:
    with a start that is not the constant 0 Numba keeps its negative-index wrap-around in
    the loop, and LLVM then does not vectorise it when the kernel is called from Python
    (the serial entry points below; 1.5× the CPU time at 512² × 64 rows × 47 projections)
    — inside a jitted caller that passes 0 it was, which is why only the serial calls paid."""
    nz, nx, _ = vol.shape
    m = y1 - y0
    n, nd, _ = proj.shape
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
            o = proj[a, d, y0:y1]
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
                    r00 = vol[iz, ix, y0:y1]
                    r01 = vol[iz, ix + 1, y0:y1]
                    r10 = vol[iz + 1, ix, y0:y1]
                    r11 = vol[iz + 1, ix + 1, y0:y1]
                    if adjoint:
                        for y in range(m):
                            py = o[y]
                            r00[y] += w00 * py
                            r01[y] += w01 * py
                            r10[y] += w10 * py
                            r11[y] += w11 * py
                    else:
                        for y in range(m):
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
                            r = vol[jz, jx, y0:y1]
                            if adjoint:
                                for y in range(m):
                                    r[y] += w * o[y]
                            else:
                                for y in range(m):
                                    o[y] += w * r[y]


# The serial entry points are plain Python calls of the block kernels, not jitted wrappers: a
# jitted caller links its callee's code into its own module and optimises and compiles it
# again (a one-line wrapper cost ~0.25 s of a cold demo's compile CPU each).
def fp_single_axis(vol, cos_t, sin_t, out):
    """Serial single-axis forward projection (vol (nz, nx, ny) -> out (n, nd, ny), adds)."""
    _sa_block(vol, cos_t, sin_t, out, 0, vol.shape[2], False)


def bp_single_axis(proj, cos_t, sin_t, vol):
    """Serial single-axis back projection (adjoint; proj (n, nd, ny) -> vol (nz, nx, ny), adds)."""
    _sa_block(vol, cos_t, sin_t, proj, 0, vol.shape[2], True)


@jit(parallel=True)
def fp_single_axis_par(vol, cos_t, sin_t, out):
    """Parallel :func:`fp_single_axis`: one projection per task, whole y rows (long contiguous
    runs are what makes the inner loop fast)."""
    n = cos_t.shape[0]
    ny = vol.shape[2]
    for a in prange(n):
        _sa_block(vol, cos_t[a:a + 1], sin_t[a:a + 1], out[a:a + 1], 0, ny, False)


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
                _sa_block(vol, cos_t[a:a + 1], sin_t[a:a + 1], proj[a:a + 1], 0, ny, True)
        else:
            acc[k - 1][...] = 0
            for a in range(k, n, ntask):
                _sa_block(acc[k - 1], cos_t[a:a + 1], sin_t[a:a + 1], proj[a:a + 1], 0, ny,
                          True)
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


# --------------------------------------------------------------------------------------------
# general Euler angles, shear-warp factorisation
#
# The ray of detector pixel (u, v) is r(t) = e + t·d with e = Rᵀ(u, v, 0), d = Rᵀ(0, 0, 1)
# (volume voxel units, relative to the centre). Pick the principal axis k of d (|d_k| largest)
# and name the other two (a, b). Stepping from slice to slice along k instead of in unit steps
# along t, the line integral is (1/|d_k|)·Σ_k V(k, A + kc·s_a, B + kc·s_b), where kc = k − n_k//2,
# s_a = d_a/d_k, s_b = d_b/d_k and (A, B) is where the ray crosses the central slice, an affine
# function of (u, v). So one projection is
#
#   1. the *shear*: every slice k is shifted by (kc·s_a, kc·s_b) and added into an
#      intermediate image I(A, B) — bilinear in the slice, but with the same weights for the
#      whole slice, so the inner loop is a contiguous, vectorisable 4-tap stencil;
#   2. the *warp*: P(u, v) = I(A(u, v), B(u, v)) / |d_k|, a 2D resampling by cubic
#      convolution (Keys, a = -1/2): O(n²) per projection against O(n³) for the shear, and far
#      less blur than a second bilinear step (the result stays close to trilinear ray casting).
#
# The volume is read in a layout (k, a, b) with b innermost and a one-voxel zero border in a
# and b ("padded"), so the stencil needs no bounds tests: z-principal (z, y, x), y-principal
# (y, z, x), x-principal (x, z, y). The intermediate image of projection j lives in
# a flat float32 buffer ``ibuf`` from offset geo[j, 12], C-contiguous (NA + 2·SW_BORDER,
# NB + 2·SW_BORDER) with a zero border (contiguous rows are what lets the stencil vectorise);
# I[ia, ib] = ipad[ia + SW_BORDER, ib + SW_BORDER] sits at A = ia + a0, B = ib + b0.
# ``geo`` holds per projection (float64):
#   0 s_a, 1 s_b, 2 a0, 3 b0, 4 NA, 5 NB, 6 dA/du, 7 dA/dv, 8 dB/du, 9 dB/dv,
#   10 weight/|d_k|, 11 projection index, 12 offset of its intermediate image in ``ibuf``.
# Rows of ``geo`` are *entries* (a projection sliced along one axis): one per projection,
# two with weights summing to 1 near a 45° tie of two axes (continuity in the angles); they
# are in projection order, ``estart[j]:estart[j + 1]`` are projection j's. Shears run per
# entry; a blended projection's warps run after all shears (both add into its image).
# The back projector runs the transposed steps in reverse order: scatter of the warp, then a
# gather over each volume slice (parallel over slices, no write conflicts).


# zero border (pixels) of the intermediate images: the cubic warp reads floor(A) - 1 ... + 2
SW_BORDER = 3


@jit()
def sw_shift_params(geo_j, kc, ca, cb):
    """Integer offsets and bilinear weights of slice ``kc`` (relative) for one projection."""
    fa = geo_j[2] + ca + kc * geo_j[0]
    fb = geo_j[3] + cb + kc * geo_j[1]
    ja = int(math.floor(fa))
    jb = int(math.floor(fb))
    wa = np.float32(fa - ja)
    wb = np.float32(fb - jb)
    one = np.float32(1.0)
    return ja, jb, (one - wa) * (one - wb), (one - wa) * wb, wa * (one - wb), wa * wb


@jit()
def keys_weights(t):
    """Cubic convolution (Keys, a = -1/2, Catmull-Rom) weights of taps -1, 0, 1, 2 at
    fractional offset ``t`` in [0, 1) (float32; they sum to 1)."""
    t = np.float32(t)
    h = np.float32(0.5)
    w0 = ((-h * t + np.float32(1.0)) * t - h) * t
    w1 = (np.float32(1.5) * t - np.float32(2.5)) * t * t + np.float32(1.0)
    w2 = ((np.float32(-1.5) * t + np.float32(2.0)) * t + h) * t
    w3 = (h * t - h) * t * t
    return w0, w1, w2, w3


@jit()
def _ipad(ibuf, geo, j):
    """C-contiguous (NA + 2·SW_BORDER, NB + 2·SW_BORDER) intermediate image of projection j
    (a view of the flat buffer ``ibuf``; its start offset is ``geo[j, 12]``)."""
    h = int(geo[j, 4]) + 2 * SW_BORDER
    w = int(geo[j, 5]) + 2 * SW_BORDER
    o = int(geo[j, 12])
    return ibuf[o:o + h * w].reshape((h, w))


@jit()
def _sw_shear_fp(vp, geo_j, ipad, k0, k1):
    """Add the sheared slices k0 ≤ k < k1 of ``vp`` (nk, na+2, nb+2) into ``ipad`` (interior)."""
    nk, na2, nb2 = vp.shape
    na = na2 - 2
    nb = nb2 - 2
    NA = int(geo_j[4])
    NB = int(geo_j[5])
    ck = nk // 2
    ca = na // 2
    cb = nb // 2
    B = SW_BORDER
    for k in range(k0, k1):
        ja, jb, w00, w01, w10, w11 = sw_shift_params(geo_j, k - ck, ca, cb)
        lo_a = max(0, -ja - 1)
        hi_a = min(NA, na - ja)
        lo_b = max(0, -jb - 1)
        hi_b = min(NB, nb - jb)
        m = hi_b - lo_b
        if m <= 0:
            continue
        c0 = lo_b + jb + 1
        for ia in range(lo_a, hi_a):
            # row slices so that the inner index is the loop counter (no wrap-around test:
            # the loop vectorises)
            r0 = vp[k, ia + ja + 1, c0:c0 + m + 1]
            r1 = vp[k, ia + ja + 2, c0:c0 + m + 1]
            row = ipad[ia + B, lo_b + B:lo_b + B + m]
            for i in range(m):
                row[i] += (w00 * r0[i] + w01 * r0[i + 1]
                           + w10 * r1[i] + w11 * r1[i + 1])


@jit()
def _sw_warp_fp(ipad, geo_j, out2d):
    """out2d (nyd, nxd) += I(A(u, v), B(u, v)) / |d_k| (cubic convolution, zero outside)."""
    nyd, nxd = out2d.shape
    cvd = nyd // 2
    cud = nxd // 2
    NA = int(geo_j[4])
    NB = int(geo_j[5])
    a0 = geo_j[2]
    b0 = geo_j[3]
    scale = np.float32(geo_j[10])
    B = SW_BORDER
    for vd in range(nyd):
        v = vd - cvd
        fa0 = geo_j[7] * v - a0
        fb0 = geo_j[9] * v - b0
        orow = out2d[vd]
        for ud in range(nxd):
            u = ud - cud
            fa = fa0 + geo_j[6] * u
            fb = fb0 + geo_j[8] * u
            ia = int(math.floor(fa))
            ib = int(math.floor(fb))
            if ia < -2 or ia > NA or ib < -2 or ib > NB:
                continue
            a0w, a1w, a2w, a3w = keys_weights(fa - ia)
            b0w, b1w, b2w, b3w = keys_weights(fb - ib)
            c = ib + B - 1
            r = ia + B - 1
            acc = (a0w * (b0w * ipad[r, c] + b1w * ipad[r, c + 1] + b2w * ipad[r, c + 2]
                          + b3w * ipad[r, c + 3])
                   + a1w * (b0w * ipad[r + 1, c] + b1w * ipad[r + 1, c + 1]
                            + b2w * ipad[r + 1, c + 2] + b3w * ipad[r + 1, c + 3])
                   + a2w * (b0w * ipad[r + 2, c] + b1w * ipad[r + 2, c + 1]
                            + b2w * ipad[r + 2, c + 2] + b3w * ipad[r + 2, c + 3])
                   + a3w * (b0w * ipad[r + 3, c] + b1w * ipad[r + 3, c + 1]
                            + b2w * ipad[r + 3, c + 2] + b3w * ipad[r + 3, c + 3]))
            orow[ud] += scale * acc


@jit()
def _sw_warp_bp(row_img, geo_j, ipad):
    """Adjoint of :func:`_sw_warp_fp`: scatter (nyd, nxd) into ``ipad`` (zeroed here; the
    border is cleared afterwards: the forward warp reads it as zero)."""
    nyd, nxd = row_img.shape
    cvd = nyd // 2
    cud = nxd // 2
    NA = int(geo_j[4])
    NB = int(geo_j[5])
    a0 = geo_j[2]
    b0 = geo_j[3]
    scale = np.float32(geo_j[10])
    B = SW_BORDER
    ipad[...] = 0
    for vd in range(nyd):
        v = vd - cvd
        fa0 = geo_j[7] * v - a0
        fb0 = geo_j[9] * v - b0
        prow = row_img[vd]
        for ud in range(nxd):
            val = prow[ud] * scale
            if val == 0:
                continue
            u = ud - cud
            fa = fa0 + geo_j[6] * u
            fb = fb0 + geo_j[8] * u
            ia = int(math.floor(fa))
            ib = int(math.floor(fb))
            if ia < -2 or ia > NA or ib < -2 or ib > NB:
                continue
            a0w, a1w, a2w, a3w = keys_weights(fa - ia)
            b0w, b1w, b2w, b3w = keys_weights(fb - ib)
            c = ib + B - 1
            r = ia + B - 1
            for m, wa in ((0, a0w), (1, a1w), (2, a2w), (3, a3w)):
                g = wa * val
                ipad[r + m, c] += b0w * g
                ipad[r + m, c + 1] += b1w * g
                ipad[r + m, c + 2] += b2w * g
                ipad[r + m, c + 3] += b3w * g
    for ib in range(NB + 2 * B):
        for m in range(B):
            ipad[m, ib] = 0
            ipad[NA + B + m, ib] = 0
    for ia in range(NA + 2 * B):
        for m in range(B):
            ipad[ia, m] = 0
            ipad[ia, NB + B + m] = 0


@jit()
def _sw_shear_bp(ibuf, geo, idx, vk, k0, k1):
    """Adjoint of :func:`_sw_shear_fp` for slices k0 ≤ k < k1 of ``vk`` (nk, na, nb), unpadded,
    summed over the projections ``idx`` (adds): a gather from each intermediate image.
    Projection-major within the block of slices: an intermediate image is read from memory
    once per block and reused from cache for its neighbouring slices."""
    nk, na, nb = vk.shape
    ck = nk // 2
    ca = na // 2
    cb = nb // 2
    B = SW_BORDER
    for q in range(idx.shape[0]):
        for k in range(k0, k1):
            j = idx[q]
            g = geo[j]
            NA = int(g[4])
            NB = int(g[5])
            ja, jb, w00, w01, w10, w11 = sw_shift_params(g, k - ck, ca, cb)
            ip = _ipad(ibuf, geo, j)
            # padded row r = real row + 1 takes I rows r - ja - 1 (w0·) and r - ja - 2 (w1·),
            # columns likewise; I[i] = ip[i + B], zero for i outside [0, NA): the border
            lo_r = max(1, ja + 2 - B)
            hi_r = min(na, ja + NA + B)
            lo_c = max(1, jb + 2 - B)
            hi_c = min(nb, jb + NB + B)
            sa = B - ja - 1
            sb = B - jb - 1
            m = hi_c - lo_c + 1
            if m <= 0:
                continue
            c0 = lo_c + sb - 1
            for r in range(lo_r, hi_r + 1):
                p0 = ip[r + sa, c0:c0 + m + 1]
                p1 = ip[r + sa - 1, c0:c0 + m + 1]
                o = vk[k, r - 1, lo_c - 1:lo_c - 1 + m]
                for i in range(m):
                    o[i] += (w00 * p0[i + 1] + w01 * p0[i]
                             + w10 * p1[i + 1] + w11 * p1[i])


@jit()
def _fp_sw_group(vp, geo, idx, q0, q1, ibuf):
    """Projections idx[q0:q1] together, slice-major: each slice is read from memory once for
    the whole group and reused from cache (the intermediate images of a small group and one
    slice fit in L2)."""
    nk = vp.shape[0]
    for q in range(q0, q1):
        _ipad(ibuf, geo, idx[q])[...] = 0
    for k in range(nk):
        for q in range(q0, q1):
            j = idx[q]
            _sw_shear_fp(vp, geo[j], _ipad(ibuf, geo, j), k, k + 1)


@jit()
def _pick(axis, a2, a1, a0):
    """The array of principal axis ``axis`` (2 = z, 1 = y, 0 = x)."""
    if axis == 2:
        return a2
    if axis == 1:
        return a1
    return a0


@jit()
def _fp_sw_task(vpz, vpy, vpx, geo, estart, order, tasks, t, ibuf, out):
    """Shear the entries of task t, then warp those that are their projection's only entry
    (no other task writes that detector image)."""
    q0 = tasks[t, 1]
    q1 = tasks[t, 2]
    _fp_sw_group(_pick(tasks[t, 0], vpz, vpy, vpx), geo, order, q0, q1, ibuf)
    for q in range(q0, q1):
        e = order[q]
        j = int(geo[e, 11])
        if estart[j + 1] - estart[j] == 1:
            _sw_warp_fp(_ipad(ibuf, geo, e), geo[e], out[j])


@jit()
def _fp_sw_blended_warps(geo, estart, ibuf, out):
    """Warp the projections with two entries (blended axes; a few at most), serially."""
    for j in range(out.shape[0]):
        if estart[j + 1] - estart[j] > 1:
            for e in range(estart[j], estart[j + 1]):
                _sw_warp_fp(_ipad(ibuf, geo, e), geo[e], out[j])


@jit()
def fp_shearwarp(vpz, vpy, vpx, geo, estart, order, tasks, ibuf, out):
    """Serial shear-warp forward projection (adds into ``out`` (n, nyd, nxd)).

    ``vpz``, ``vpy``, ``vpx``: the padded volume in the layout of each principal axis (a
    dummy where no entry uses it); ``order``: entry indices grouped by axis; ``tasks``
    (ntask, 3) int64: (axis, q0, q1) — entries ``order[q0:q1]`` share that axis and are
    sheared slice by slice together."""
    for t in range(tasks.shape[0]):
        _fp_sw_task(vpz, vpy, vpx, geo, estart, order, tasks, t, ibuf, out)
    _fp_sw_blended_warps(geo, estart, ibuf, out)


@jit(parallel=True)
def fp_shearwarp_par(vpz, vpy, vpx, geo, estart, order, tasks, ibuf, out):
    """Parallel :func:`fp_shearwarp`: one parallel region, a group of entries per task."""
    for t in prange(tasks.shape[0]):
        _fp_sw_task(vpz, vpy, vpx, geo, estart, order, tasks, t, ibuf, out)
    _fp_sw_blended_warps(geo, estart, ibuf, out)


@jit()
def _bp_sw_task(ibuf, geo, order, ktasks, t, vkz, vky, vkx):
    ax = ktasks[t, 0]
    _sw_shear_bp(ibuf, geo, order[ktasks[t, 3]:ktasks[t, 4]], _pick(ax, vkz, vky, vkx),
                 ktasks[t, 1], ktasks[t, 2])


@jit()
def _bp_sw_warps(proj, geo, estart, ibuf, j):
    for e in range(estart[j], estart[j + 1]):
        _sw_warp_bp(proj[j], geo[e], _ipad(ibuf, geo, e))


@jit()
def bp_shearwarp(proj, geo, estart, order, ktasks, ibuf, vkz, vky, vkx):
    """Serial adjoint of :func:`fp_shearwarp` (adds): the transposed warps, then the gathers
    into ``vkz``/``vky``/``vkx`` (unpadded principal-axis layouts; ``vkz`` is (z, y, x)).
    ``ktasks`` (ntask, 5) int64: (axis, k0, k1, q0, q1) — slices [k0, k1) of that axis's
    volume gather from entries ``order[q0:q1]``."""
    for j in range(proj.shape[0]):
        _bp_sw_warps(proj, geo, estart, ibuf, j)
    for t in range(ktasks.shape[0]):
        _bp_sw_task(ibuf, geo, order, ktasks, t, vkz, vky, vkx)


@jit(parallel=True)
def bp_shearwarp_par(proj, geo, estart, order, ktasks, ibuf, vkz, vky, vkx):
    """Parallel :func:`bp_shearwarp`: warps in parallel over projections, then the gathers in
    parallel over blocks of slices (each slice written by one task: no conflicts)."""
    for j in prange(proj.shape[0]):
        _bp_sw_warps(proj, geo, estart, ibuf, j)
    for t in prange(ktasks.shape[0]):
        _bp_sw_task(ibuf, geo, order, ktasks, t, vkz, vky, vkx)


@jit()
def pad_permute(vol, axis, vp):
    """Copy ``vol`` (z, y, x) into the padded principal-axis layout ``vp`` (interior only; the
    zero border is the caller's): axis 2 → (z, y, x), 1 → (y, z, x), 0 → (x, z, y). Serial:
    a copy is memory-bound, and a parallel region costs more than it saves on a busy machine."""
    nz, ny, nx = vol.shape
    for z in range(nz):
        if axis == 2:
            for y in range(ny):
                for x in range(nx):
                    vp[z, y + 1, x + 1] = vol[z, y, x]
        elif axis == 1:
            for y in range(ny):
                for x in range(nx):
                    vp[y, z + 1, x + 1] = vol[z, y, x]
        else:
            for x in range(nx):
                for y in range(ny):
                    vp[x, z + 1, y + 1] = vol[z, y, x]


@jit()
def permute_add(vk, axis, vol):
    """Add ``vk`` in the (unpadded) principal-axis layout of ``axis`` into ``vol`` (z, y, x)."""
    nz, ny, nx = vol.shape
    for z in range(nz):
        if axis == 2:
            for y in range(ny):
                for x in range(nx):
                    vol[z, y, x] += vk[z, y, x]
        elif axis == 1:
            for y in range(ny):
                for x in range(nx):
                    vol[z, y, x] += vk[y, z, x]
        else:
            for y in range(ny):
                for x in range(nx):
                    vol[z, y, x] += vk[x, z, y]


# --------------------------------------------------------------------------------------------
# the gradient step of RESIRE with positivity, support and momentum, fused (one pass)


@jit()
def _fista_step_range(x, y, g, step, beta, positivity, support, use_support, i0, i1):
    """Voxels i0 ≤ i < i1 of the flat arrays: x_new = P(y − step·g) (P: zero outside the
    support, clip below 0 with ``positivity``), y = x_new + beta·(x_new − x), x = x_new.
    Loops over views from index 0, so that it vectorises (see :func:`_sa_block`; 2.7× faster
    called from Python); ``support`` has size 0 when not ``use_support`` (never read)."""
    xs = x[i0:i1]
    ys = y[i0:i1]
    gs = g[i0:i1]
    ss = support[i0:i1]
    for i in range(i1 - i0):
        xn = ys[i] - step * gs[i]
        if use_support:
            xn *= ss[i]
        if positivity and xn < 0:
            xn = np.float32(0.0)
        ys[i] = xn + beta * (xn - xs[i])
        xs[i] = xn


def fista_step(x, y, g, step, beta, positivity, support, use_support):
    """Serial fused RESIRE update of flat float32 arrays ``x``, ``y`` (in place) from the
    gradient ``g``; ``support`` is a flat float32 0/1 mask used when ``use_support``. A plain
    Python call of the range kernel (no jitted wrapper to compile, see :func:`fp_single_axis`)."""
    _fista_step_range(x, y, g, step, beta, positivity, support, use_support, 0, x.shape[0])


@jit(parallel=True)
def fista_step_par(x, y, g, step, beta, positivity, support, use_support):
    """Parallel :func:`fista_step` over blocks of 2¹⁶ voxels."""
    n = x.shape[0]
    nb = (n + 65535) // 65536
    for b in prange(nb):
        _fista_step_range(x, y, g, step, beta, positivity, support, use_support,
                          b * 65536, min(n, (b + 1) * 65536))
