"""Numba kernels of :mod:`aet.atoms`: plain arrays in, arrays out, no package imports.

Index conventions: volumes are ``(z, y, x)`` arrays; peak positions are integer voxel centres
``(z, y, x)`` plus a fractional offset. Each kernel has a serial variant (what dask calls per
chunk) and, where it pays, a ``prange`` variant for in-memory calls. Slow NumPy twins live in
``tests/reference/atoms.py``.
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import jit, prange

# ----------------------------------------------------------------------------- local maxima


def _local_maxima_impl(vol, threshold, lo0, lo1, lo2, hi0, hi1, hi2):
    """Voxels in ``[lo, hi)`` above ``threshold`` that are maxima of their 26-neighbourhood.

    Ties (plateaus) are broken by raster order: a voxel must be strictly greater than the
    neighbours that come before it in (z, y, x) raster order and ≥ the ones after it, so
    exactly one voxel of a flat plateau is kept, and the choice is the same whether the volume
    is processed whole or in chunks. Neighbours outside the array are ignored.
    """
    n0, n1, n2 = vol.shape
    nz = max(hi0 - lo0, 0)
    counts = np.zeros(nz, dtype=np.int64)
    for kk in prange(nz):
        k = lo0 + kk
        c = 0
        for j in range(lo1, hi1):
            for i in range(lo2, hi2):
                v = vol[k, j, i]
                if not v > threshold:
                    continue
                ok = True
                for dk in range(-1, 2):
                    kn = k + dk
                    if kn < 0 or kn >= n0:
                        continue
                    for dj in range(-1, 2):
                        jn = j + dj
                        if jn < 0 or jn >= n1:
                            continue
                        for di in range(-1, 2):
                            inn = i + di
                            if inn < 0 or inn >= n2:
                                continue
                            if dk == 0 and dj == 0 and di == 0:
                                continue
                            w = vol[kn, jn, inn]
                            before = (dk < 0) or (dk == 0 and dj < 0) or (
                                dk == 0 and dj == 0 and di < 0)
                            if before:
                                if not v > w:
                                    ok = False
                            elif not v >= w:
                                ok = False
                            if not ok:
                                break
                        if not ok:
                            break
                    if not ok:
                        break
                if ok:
                    c += 1
        counts[kk] = c
    starts = np.zeros(nz + 1, dtype=np.int64)
    for kk in range(nz):
        starts[kk + 1] = starts[kk] + counts[kk]
    out = np.empty((starts[nz], 3), dtype=np.int64)
    for kk in prange(nz):
        k = lo0 + kk
        c = starts[kk]
        for j in range(lo1, hi1):
            for i in range(lo2, hi2):
                v = vol[k, j, i]
                if not v > threshold:
                    continue
                ok = True
                for dk in range(-1, 2):
                    kn = k + dk
                    if kn < 0 or kn >= n0:
                        continue
                    for dj in range(-1, 2):
                        jn = j + dj
                        if jn < 0 or jn >= n1:
                            continue
                        for di in range(-1, 2):
                            inn = i + di
                            if inn < 0 or inn >= n2:
                                continue
                            if dk == 0 and dj == 0 and di == 0:
                                continue
                            w = vol[kn, jn, inn]
                            before = (dk < 0) or (dk == 0 and dj < 0) or (
                                dk == 0 and dj == 0 and di < 0)
                            if before:
                                if not v > w:
                                    ok = False
                            elif not v >= w:
                                ok = False
                            if not ok:
                                break
                        if not ok:
                            break
                    if not ok:
                        break
                if ok:
                    out[c, 0] = k
                    out[c, 1] = j
                    out[c, 2] = i
                    c += 1
    return out


local_maxima = jit()(_local_maxima_impl)
local_maxima_parallel = jit(parallel=True)(_local_maxima_impl)

# ----------------------------------------------------------------------------- polynomial


@jit()
def _poly_grad_hess(coef, exps, d, g, h):
    """Value, gradient and Hessian of sum_t coef[t] z^a y^b x^c at offset ``d`` (z, y, x)."""
    val = 0.0
    for a in range(3):
        g[a] = 0.0
        for b in range(3):
            h[a, b] = 0.0
    for t in range(exps.shape[0]):
        e0, e1, e2 = exps[t, 0], exps[t, 1], exps[t, 2]
        ct = coef[t]
        p0 = d[0] ** e0
        p1 = d[1] ** e1
        p2 = d[2] ** e2
        val += ct * p0 * p1 * p2
        q0 = e0 * d[0] ** (e0 - 1) if e0 >= 1 else 0.0
        q1 = e1 * d[1] ** (e1 - 1) if e1 >= 1 else 0.0
        q2 = e2 * d[2] ** (e2 - 1) if e2 >= 1 else 0.0
        r0 = e0 * (e0 - 1) * d[0] ** (e0 - 2) if e0 >= 2 else 0.0
        r1 = e1 * (e1 - 1) * d[1] ** (e1 - 2) if e1 >= 2 else 0.0
        r2 = e2 * (e2 - 1) * d[2] ** (e2 - 2) if e2 >= 2 else 0.0
        g[0] += ct * q0 * p1 * p2
        g[1] += ct * p0 * q1 * p2
        g[2] += ct * p0 * p1 * q2
        h[0, 0] += ct * r0 * p1 * p2
        h[1, 1] += ct * p0 * r1 * p2
        h[2, 2] += ct * p0 * p1 * r2
        h[0, 1] += ct * q0 * q1 * p2
        h[0, 2] += ct * q0 * p1 * q2
        h[1, 2] += ct * p0 * q1 * q2
    h[1, 0] = h[0, 1]
    h[2, 0] = h[0, 2]
    h[2, 1] = h[1, 2]
    return val


@jit()
def _newton_ascent(coef, exps, d, max_step, limit, n_steps):
    """Move ``d`` towards the maximum of the polynomial in steps clamped to ``max_step`` per
    axis (Newton where the Hessian is negative definite, else along the gradient); ``d``
    stays inside ``[-limit, limit]``. Returns the polynomial value at the end point."""
    g = np.empty(3)
    h = np.empty((3, 3))
    s = np.empty(3)
    for _ in range(n_steps):
        _poly_grad_hess(coef, exps, d, g, h)
        # -h positive definite <=> leading minors of -h positive
        m1 = -h[0, 0]
        m2 = h[0, 0] * h[1, 1] - h[0, 1] * h[1, 0]
        det = (h[0, 0] * (h[1, 1] * h[2, 2] - h[1, 2] * h[2, 1])
               - h[0, 1] * (h[1, 0] * h[2, 2] - h[1, 2] * h[2, 0])
               + h[0, 2] * (h[1, 0] * h[2, 1] - h[1, 1] * h[2, 0]))
        if m1 > 0.0 and m2 > 0.0 and -det > 0.0:
            # s = -h^-1 g  (Cramer's rule)
            for a in range(3):
                s[a] = 0.0
            inv00 = (h[1, 1] * h[2, 2] - h[1, 2] * h[2, 1]) / det
            inv01 = (h[0, 2] * h[2, 1] - h[0, 1] * h[2, 2]) / det
            inv02 = (h[0, 1] * h[1, 2] - h[0, 2] * h[1, 1]) / det
            inv11 = (h[0, 0] * h[2, 2] - h[0, 2] * h[2, 0]) / det
            inv12 = (h[0, 2] * h[1, 0] - h[0, 0] * h[1, 2]) / det
            inv22 = (h[0, 0] * h[1, 1] - h[0, 1] * h[1, 0]) / det
            s[0] = -(inv00 * g[0] + inv01 * g[1] + inv02 * g[2])
            s[1] = -(inv01 * g[0] + inv11 * g[1] + inv12 * g[2])
            s[2] = -(inv02 * g[0] + inv12 * g[1] + inv22 * g[2])
        else:
            for a in range(3):
                s[a] = g[a]
        big = 0.0
        for a in range(3):
            if s[a] > max_step:
                s[a] = max_step
            elif s[a] < -max_step:
                s[a] = -max_step
            nd = d[a] + s[a]
            if nd > limit:
                nd = limit
            elif nd < -limit:
                nd = -limit
            s[a] = nd - d[a]
            d[a] = nd
            if abs(s[a]) > big:
                big = abs(s[a])
        if big < 1e-9:
            break
    return _poly_grad_hess(coef, exps, d, g, h)


@jit()
def _fit_poly(vol, c0, c1, c2, radius, exps, pinv, wsig):
    """Coefficients of the Gaussian-weighted (width ``wsig`` voxels, centred on the voxel
    ``c``) least-squares 4th-order polynomial through the window ``c ± radius``."""
    n0, n1, n2 = vol.shape
    nt = exps.shape[0]
    inside = (c0 - radius >= 0 and c0 + radius < n0 and c1 - radius >= 0
              and c1 + radius < n1 and c2 - radius >= 0 and c2 + radius < n2)
    coef = np.zeros(nt)
    if inside:
        m = 0
        for a in range(-radius, radius + 1):
            for b in range(-radius, radius + 1):
                for c in range(-radius, radius + 1):
                    v = float(vol[c0 + a, c1 + b, c2 + c])
                    for t in range(nt):
                        coef[t] += pinv[t, m] * v
                    m += 1
        return coef
    # window clipped by the array border: solve the weighted problem on the points present,
    # keeping only the monomials the clipped grid determines (exponent < samples per axis)
    lo0 = max(-radius, -c0)
    hi0 = min(radius, n0 - 1 - c0)
    lo1 = max(-radius, -c1)
    hi1 = min(radius, n1 - 1 - c1)
    lo2 = max(-radius, -c2)
    hi2 = min(radius, n2 - 1 - c2)
    m0 = hi0 - lo0 + 1
    m1 = hi1 - lo1 + 1
    m2 = hi2 - lo2 + 1
    use = np.zeros(nt, dtype=np.int64)
    nu = 0
    for t in range(nt):
        if exps[t, 0] < m0 and exps[t, 1] < m1 and exps[t, 2] < m2:
            use[nu] = t
            nu += 1
    npts = m0 * m1 * m2
    A = np.empty((npts, nu))
    y = np.empty(npts)
    m = 0
    for a in range(lo0, hi0 + 1):
        for b in range(lo1, hi1 + 1):
            for c in range(lo2, hi2 + 1):
                sw = math.exp(-(a * a + b * b + c * c) / (4.0 * wsig * wsig))  # sqrt(weight)
                for u in range(nu):
                    t = use[u]
                    A[m, u] = sw * float(a) ** exps[t, 0] * float(b) ** exps[t, 1] * \
                        float(c) ** exps[t, 2]
                y[m] = sw * float(vol[c0 + a, c1 + b, c2 + c])
                m += 1
    sol = np.linalg.lstsq(A, y, -1.0)[0]
    for u in range(nu):
        coef[use[u]] = sol[u]
    return coef


@jit()
def _gauss_fit(vol, c0, c1, c2, radius, d_init, amp0, sig0, bg0, n_iter, out):
    """Levenberg–Marquardt fit of ``A exp(-|r - m|² / 2s²) + b`` over the window
    ``c ± radius`` (clipped at the array border); ``out = [A, m0, m1, m2, s, b, ok]``."""
    n0, n1, n2 = vol.shape
    p = np.empty(6)
    p[0] = amp0
    p[1] = d_init[0]
    p[2] = d_init[1]
    p[3] = d_init[2]
    p[4] = sig0
    p[5] = bg0
    lam = 1e-3
    JTJ = np.empty((6, 6))
    JTr = np.empty(6)
    jrow = np.empty(6)
    pn = np.empty(6)

    def cost_of(q):
        cst = 0.0
        for a in range(-radius, radius + 1):
            for b in range(-radius, radius + 1):
                for c in range(-radius, radius + 1):
                    if not (0 <= c0 + a < n0 and 0 <= c1 + b < n1 and 0 <= c2 + c < n2):
                        continue
                    r2 = (a - q[1]) ** 2 + (b - q[2]) ** 2 + (c - q[3]) ** 2
                    e = math.exp(-r2 / (2.0 * q[4] * q[4]))
                    res = q[0] * e + q[5] - float(vol[c0 + a, c1 + b, c2 + c])
                    cst += res * res
        return cst

    cost = cost_of(p)
    ok = 0.0
    for _ in range(n_iter):
        for u in range(6):
            JTr[u] = 0.0
            for v in range(6):
                JTJ[u, v] = 0.0
        for a in range(-radius, radius + 1):
            for b in range(-radius, radius + 1):
                for c in range(-radius, radius + 1):
                    if not (0 <= c0 + a < n0 and 0 <= c1 + b < n1 and 0 <= c2 + c < n2):
                        continue
                    da = a - p[1]
                    db = b - p[2]
                    dc = c - p[3]
                    r2 = da * da + db * db + dc * dc
                    s2 = p[4] * p[4]
                    e = math.exp(-r2 / (2.0 * s2))
                    res = p[0] * e + p[5] - float(vol[c0 + a, c1 + b, c2 + c])
                    jrow[0] = e
                    jrow[1] = p[0] * e * da / s2
                    jrow[2] = p[0] * e * db / s2
                    jrow[3] = p[0] * e * dc / s2
                    jrow[4] = p[0] * e * r2 / (s2 * p[4])
                    jrow[5] = 1.0
                    for u in range(6):
                        JTr[u] += jrow[u] * res
                        for v in range(6):
                            JTJ[u, v] += jrow[u] * jrow[v]
        improved = False
        for _t in range(8):
            M = JTJ.copy()
            for u in range(6):
                M[u, u] += lam * (JTJ[u, u] + 1e-12)
            step = np.linalg.solve(M, -JTr)
            for u in range(6):
                pn[u] = p[u] + step[u]
            if pn[4] <= 0.05:
                lam *= 4.0
                continue
            cn = cost_of(pn)
            if cn < cost:
                big = 0.0
                for u in range(1, 4):
                    if abs(step[u]) > big:
                        big = abs(step[u])
                for u in range(6):
                    p[u] = pn[u]
                cost = cn
                lam = max(lam / 3.0, 1e-9)
                improved = True
                if big < 1e-7:
                    ok = 1.0
                break
            lam *= 4.0
        if not improved:
            ok = 1.0  # no descent direction left: at a (local) minimum
            break
        if ok > 0.0:
            break
    for u in range(6):
        out[u] = p[u]
    out[6] = ok
    return out


def _refine_peaks_impl(vol, peaks, radius, exps, pinv, wsig, max_step, max_shift, n_recentre,
                       gauss, gauss_iter, sig0):
    """Sub-voxel refinement of integer peaks.

    Returns ``centre (n, 3) int64`` (the voxel the last fit was centred on), ``poly_delta``
    ``(n, 3)`` (offset of the polynomial maximum from ``centre``), ``gauss_delta (n, 3)``
    (offset of the Gaussian centre), ``info (n, 5)`` = [polynomial peak value, Gaussian
    amplitude, Gaussian width (voxels), Gaussian background, Gaussian fit ok (0/1)].
    Only voxels within ``radius + max_shift`` of the peak are ever read.
    """
    n = peaks.shape[0]
    centre = np.empty((n, 3), dtype=np.int64)
    pdelta = np.zeros((n, 3))
    gdelta = np.zeros((n, 3))
    info = np.zeros((n, 5))
    n0, n1, n2 = vol.shape
    for i in prange(n):
        c = np.empty(3, dtype=np.int64)
        for a in range(3):
            c[a] = peaks[i, a]
        d = np.zeros(3)
        val = 0.0
        for _ in range(n_recentre):
            coef = _fit_poly(vol, c[0], c[1], c[2], radius, exps, pinv, wsig)
            val = _newton_ascent(coef, exps, d, max_step, radius - 0.5, 30)
            moved = False
            for a in range(3):
                sh = 0
                if d[a] > 0.5:
                    sh = 1
                elif d[a] < -0.5:
                    sh = -1
                nc = c[a] + sh
                if sh != 0 and abs(nc - peaks[i, a]) <= max_shift and 0 <= nc < vol.shape[a]:
                    c[a] = nc
                    d[a] -= sh
                    moved = True
            if not moved:
                break
        for a in range(3):
            centre[i, a] = c[a]
            pdelta[i, a] = d[a]
        info[i, 0] = val
        if gauss:
            vmin = 1e300
            for a in range(-radius, radius + 1):
                for b in range(-radius, radius + 1):
                    for cc in range(-radius, radius + 1):
                        if (0 <= c[0] + a < n0 and 0 <= c[1] + b < n1 and 0 <= c[2] + cc < n2):
                            v = float(vol[c[0] + a, c[1] + b, c[2] + cc])
                            if v < vmin:
                                vmin = v
            out = np.empty(7)
            _gauss_fit(vol, c[0], c[1], c[2], radius, d, val - vmin, sig0, vmin, gauss_iter,
                       out)
            good = out[6] > 0.0 and out[0] > 0.0 and out[4] > 0.0
            for a in range(3):
                if abs(out[1 + a] - d[a]) > 1.0:
                    good = False
            if good:
                for a in range(3):
                    gdelta[i, a] = out[1 + a]
            else:
                for a in range(3):
                    gdelta[i, a] = d[a]
            info[i, 1] = out[0]
            info[i, 2] = out[4]
            info[i, 3] = out[5]
            info[i, 4] = 1.0 if good else 0.0
        else:
            for a in range(3):
                gdelta[i, a] = d[a]
    return centre, pdelta, gdelta, info


refine_peaks = jit()(_refine_peaks_impl)
refine_peaks_parallel = jit(parallel=True)(_refine_peaks_impl)

# ----------------------------------------------------------------------------- greedy


@jit()
def greedy_accept(order, indptr, indices):
    """Greedy non-maximum suppression: walk candidates in ``order`` (best first), accept one
    unless an accepted candidate is among its neighbours (CSR ``indptr``/``indices``)."""
    n = order.shape[0]
    state = np.zeros(n, dtype=np.int8)  # 0 free, 1 accepted, 2 suppressed
    for t in range(n):
        i = order[t]
        if state[i] != 0:
            continue
        state[i] = 1
        for q in range(indptr[i], indptr[i + 1]):
            j = indices[q]
            if state[j] == 0:
                state[j] = 2
    return state == 1
