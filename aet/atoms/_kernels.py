"""Numba kernels of :mod:`aet.atoms`: plain arrays in, arrays out, no package imports.

Index conventions: volumes are ``(z, y, x)`` arrays; peak positions are integer voxel centres
``(z, y, x)`` plus a fractional offset. Each kernel is one serial compiled function (what dask
calls per chunk); the ``*_parallel`` names run it on aet's kernel thread pool over blocks of
an outer index (planes, peaks, projections) for in-memory calls, so no Numba ``prange`` twin
is compiled (see :mod:`aet._jit`). Slow NumPy twins live in ``tests/reference/atoms.py``.
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import jit, map_ranges, split_range

# ----------------------------------------------------------------------------- local maxima


@jit()
def _local_max_mask(vol, threshold, lo0, lo1, lo2, hi0, hi1, hi2, mask):
    """Set ``mask[k - lo0, j - lo1, i - lo2] = 1`` for every voxel ``(k, j, i)`` of the box
    ``[lo, hi)`` that is above ``threshold`` and a maximum of its 26-neighbourhood under the
    raster-order tie rule of :func:`local_maxima` (``mask`` uint8, the box's shape, zeroed).

    One pass that marks, not a count pass and a fill pass over a per-voxel helper: the
    helper's code was compiled three times (alone and inlined at both call sites)."""
    n0, n1, n2 = vol.shape
    for k in range(lo0, hi0):
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
                            before = (dk < 0) or (dk == 0 and dj < 0) or \
                                (dk == 0 and dj == 0 and di < 0)
                            if (not v > w) if before else (not v >= w):
                                ok = False
                                break
                        if not ok:
                            break
                    if not ok:
                        break
                if ok:
                    mask[k - lo0, j - lo1, i - lo2] = 1


def local_maxima(vol, threshold, lo0, lo1, lo2, hi0, hi1, hi2):
    """Voxels in ``[lo, hi)`` above ``threshold`` that are maxima of their 26-neighbourhood,
    as an ``(n, 3) int64`` array of ``(z, y, x)`` indices in raster order.

    Ties (plateaus) are broken by raster order: a voxel must be strictly greater than the
    neighbours that come before it in (z, y, x) raster order and ≥ the ones after it, so
    exactly one voxel of a flat plateau is kept, and the choice is the same whether the volume
    is processed whole or in chunks. Neighbours outside the array are ignored. The kernel
    (:func:`_local_max_mask`) marks them in a uint8 mask of the box; ``np.argwhere`` lists
    the marks in raster order.
    """
    lo = np.array([lo0, lo1, lo2], dtype=np.int64)
    n = [max(int(h) - int(low), 0) for low, h in zip(lo, (hi0, hi1, hi2))]
    mask = np.zeros(n, dtype=np.uint8)
    _local_max_mask(vol, threshold, int(lo0), int(lo1), int(lo2), int(lo0) + n[0],
                    int(lo1) + n[1], int(lo2) + n[2], mask)
    return (np.argwhere(mask) + lo).astype(np.int64, copy=False)


def local_maxima_parallel(vol, threshold, lo0, lo1, lo2, hi0, hi1, hi2):
    """:func:`local_maxima` on aet's kernel thread pool, over blocks of z-planes (same result:
    the planes' maxima in raster order)."""
    ranges = split_range(hi0 - lo0, min_chunk=2)
    if len(ranges) <= 1:
        return local_maxima(vol, threshold, lo0, lo1, lo2, hi0, hi1, hi2)
    parts = map_ranges(lambda a, b: local_maxima(vol, threshold, lo0 + a, lo1, lo2, lo0 + b,
                                                 hi1, hi2), ranges)
    return np.concatenate(parts, axis=0)

# ----------------------------------------------------------------------------- polynomial


@jit(no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _powers(x, emax, out):
    """``out[e] = x**e`` for ``0 ≤ e ≤ emax``, each as ``out[e // 2] * out[e - e // 2]``
    (the products Numba's integer power forms for e ≤ 4)."""
    out[0] = 1.0
    if emax >= 1:
        out[1] = x
    for e in range(2, emax + 1):
        out[e] = out[e // 2] * out[e - e // 2]


@jit(no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _poly_grad_hess(coef, exps, d, g, h):
    """Value, gradient and Hessian of sum_t coef[t] z^a y^b x^c at offset ``d`` (z, y, x)."""
    emax = np.int64(0)  # not the literal 0 (a second compiled _powers)
    for t in range(exps.shape[0]):
        for a in range(3):
            if exps[t, a] > emax:
                emax = exps[t, a]
    pw = np.empty((3, emax + 1))
    for a in range(3):
        _powers(d[a], emax, pw[a])
    # sums in scalars, written to g and h at the end (fewer array accesses to compile)
    val = 0.0
    g0 = g1 = g2 = 0.0
    h00 = h11 = h22 = h01 = h02 = h12 = 0.0
    for t in range(exps.shape[0]):
        e0, e1, e2 = exps[t, 0], exps[t, 1], exps[t, 2]
        ct = coef[t]
        p0 = pw[0, e0]
        p1 = pw[1, e1]
        p2 = pw[2, e2]
        val += ct * p0 * p1 * p2
        q0 = e0 * pw[0, e0 - 1] if e0 >= 1 else 0.0
        q1 = e1 * pw[1, e1 - 1] if e1 >= 1 else 0.0
        q2 = e2 * pw[2, e2 - 1] if e2 >= 1 else 0.0
        r0 = e0 * (e0 - 1) * pw[0, e0 - 2] if e0 >= 2 else 0.0
        r1 = e1 * (e1 - 1) * pw[1, e1 - 2] if e1 >= 2 else 0.0
        r2 = e2 * (e2 - 1) * pw[2, e2 - 2] if e2 >= 2 else 0.0
        g0 += ct * q0 * p1 * p2
        g1 += ct * p0 * q1 * p2
        g2 += ct * p0 * p1 * q2
        h00 += ct * r0 * p1 * p2
        h11 += ct * p0 * r1 * p2
        h22 += ct * p0 * p1 * r2
        h01 += ct * q0 * q1 * p2
        h02 += ct * q0 * p1 * q2
        h12 += ct * p0 * q1 * q2
    g[0] = g0
    g[1] = g1
    g[2] = g2
    h[0, 0] = h00
    h[1, 1] = h11
    h[2, 2] = h22
    h[0, 1] = h[1, 0] = h01
    h[0, 2] = h[2, 0] = h02
    h[1, 2] = h[2, 1] = h12
    return val


@jit(no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _newton_ascent(coef, exps, d, max_step, limit, n_steps):
    """Move ``d`` towards the maximum of the polynomial in steps clamped to ``max_step`` per
    axis (Newton where the Hessian is negative definite, else along the gradient); ``d``
    stays inside ``[-limit, limit]``. Returns the polynomial value at the end point."""
    g = np.empty(3)
    h = np.empty((3, 3))
    s = np.empty(3)
    for _ in range(n_steps):
        _poly_grad_hess(coef, exps, d, g, h)
        # h is symmetric; its entries and g as scalars (fewer array accesses to compile)
        h00, h01, h02 = h[0, 0], h[0, 1], h[0, 2]
        h11, h12, h22 = h[1, 1], h[1, 2], h[2, 2]
        g0, g1, g2 = g[0], g[1], g[2]
        # -h positive definite <=> leading minors of -h positive
        m1 = -h00
        m2 = h00 * h11 - h01 * h01
        det = (h00 * (h11 * h22 - h12 * h12)
               - h01 * (h01 * h22 - h12 * h02)
               + h02 * (h01 * h12 - h11 * h02))
        if m1 > 0.0 and m2 > 0.0 and -det > 0.0:
            # s = -h^-1 g  (Cramer's rule)
            inv00 = (h11 * h22 - h12 * h12) / det
            inv01 = (h02 * h12 - h01 * h22) / det
            inv02 = (h01 * h12 - h02 * h11) / det
            inv11 = (h00 * h22 - h02 * h02) / det
            inv12 = (h02 * h01 - h00 * h12) / det
            inv22 = (h00 * h11 - h01 * h01) / det
            s[0] = -(inv00 * g0 + inv01 * g1 + inv02 * g2)
            s[1] = -(inv01 * g0 + inv11 * g1 + inv12 * g2)
            s[2] = -(inv02 * g0 + inv12 * g1 + inv22 * g2)
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


@jit(no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _lstsq_householder(A, y, m, n, sol):
    """Least-squares solution of ``A[:m, :n] x = y[:m]`` (m ≥ n, full column rank) into
    ``sol[:n]`` by Householder QR; ``A`` and ``y`` are overwritten.

    As accurate as an SVD solver for a full-rank system (the error grows with cond(A), not
    cond(A)² as with normal equations) and compiled in a fraction of the time of Numba's
    ``np.linalg.lstsq`` (LAPACK bindings). A column that is zero below the diagonal
    contributes nothing (its coefficient is 0).
    """
    for j in range(n):
        s2 = 0.0
        for i in range(j, m):
            s2 += A[i, j] * A[i, j]
        nrm = math.sqrt(s2)
        if nrm == 0.0:
            continue
        x0 = A[j, j]
        alpha = -nrm if x0 >= 0.0 else nrm
        # reflector H = I - 2 v vᵀ / vᵀv with v = A[j:m, j] - alpha e_1 (kept in A[j:m, j])
        v0 = x0 - alpha
        A[j, j] = v0
        vtv = s2 - x0 * x0 + v0 * v0
        for c in range(j + 1, n):
            dot = 0.0
            for i in range(j, m):
                dot += A[i, j] * A[i, c]
            f = 2.0 * dot / vtv
            for i in range(j, m):
                A[i, c] -= f * A[i, j]
        dot = 0.0
        for i in range(j, m):
            dot += A[i, j] * y[i]
        f = 2.0 * dot / vtv
        for i in range(j, m):
            y[i] -= f * A[i, j]
        A[j, j] = alpha  # R's diagonal (the rest of column j below it is not read again)
    for j in range(n - 1, -1, -1):
        acc = y[j]
        for c in range(j + 1, n):
            acc -= A[j, c] * sol[c]
        sol[j] = acc / A[j, j] if A[j, j] != 0.0 else 0.0


@jit(no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _solve_small(M, b, x):
    """``x = M⁻¹ b`` for a small dense system by Gaussian elimination with partial pivoting
    (LAPACK's ``gesv`` algorithm, unblocked); ``M`` and ``b`` are overwritten. A singular
    system gives non-finite ``x`` (the caller rejects such a step)."""
    n = b.shape[0]
    for j in range(n):
        p = j
        big = abs(M[j, j])
        for i in range(j + 1, n):
            if abs(M[i, j]) > big:
                big = abs(M[i, j])
                p = i
        if p != j:
            for c in range(n):
                M[j, c], M[p, c] = M[p, c], M[j, c]
            b[j], b[p] = b[p], b[j]
        piv = M[j, j]
        if piv == 0.0:
            for i in range(n):
                x[i] = np.nan
            return
        for i in range(j + 1, n):
            f = M[i, j] / piv
            if f != 0.0:
                for c in range(j + 1, n):
                    M[i, c] -= f * M[j, c]
                b[i] -= f * b[j]
    for j in range(n - 1, -1, -1):
        acc = b[j]
        for c in range(j + 1, n):
            acc -= M[j, c] * x[c]
        x[j] = acc / M[j, j]


@jit(no_cpython_wrapper=True, no_cfunc_wrapper=True)
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
    use = np.empty(nt, dtype=np.int64)  # use[:nu] is written before it is read
    nu = np.int64(0)  # not the literal 0: a literal would type-specialise the call below
    emax = np.int64(0)  # not the literal 0 (a second compiled _powers)
    for t in range(nt):
        if exps[t, 0] < m0 and exps[t, 1] < m1 and exps[t, 2] < m2:
            use[nu] = t
            nu += 1
        for q in range(3):
            if exps[t, q] > emax:
                emax = exps[t, q]
    npts = m0 * m1 * m2
    A = np.empty((npts, nu))
    y = np.empty(npts)
    pa = np.empty(emax + 1)
    pb = np.empty(emax + 1)
    pc = np.empty(emax + 1)
    m = 0
    for a in range(lo0, hi0 + 1):
        _powers(float(a), emax, pa)
        for b in range(lo1, hi1 + 1):
            _powers(float(b), emax, pb)
            for c in range(lo2, hi2 + 1):
                _powers(float(c), emax, pc)
                sw = math.exp(-(a * a + b * b + c * c) / (4.0 * wsig * wsig))  # sqrt(weight)
                for u in range(nu):
                    t = use[u]
                    A[m, u] = sw * pa[exps[t, 0]] * pb[exps[t, 1]] * pc[exps[t, 2]]
                y[m] = sw * float(vol[c0 + a, c1 + b, c2 + c])
                m += 1
    sol = np.zeros(nu)
    _lstsq_householder(A, y, npts, nu, sol)
    for u in range(nu):
        coef[use[u]] = sol[u]
    return coef


@jit(no_cpython_wrapper=True, no_cfunc_wrapper=True)
def _gauss_cost(vol, c0, c1, c2, radius, q):
    """Σ (q[0] exp(-|r - q[1:4]|² / 2 q[4]²) + q[5] - vol)² over the window ``c ± radius``
    (clipped at the array border)."""
    n0, n1, n2 = vol.shape
    amp, m0, m1, m2, sig, bg = q[0], q[1], q[2], q[3], q[4], q[5]
    cst = 0.0
    for a in range(-radius, radius + 1):
        for b in range(-radius, radius + 1):
            for c in range(-radius, radius + 1):
                if not (0 <= c0 + a < n0 and 0 <= c1 + b < n1 and 0 <= c2 + c < n2):
                    continue
                da = a - m0
                db = b - m1
                dc = c - m2
                r2 = da * da + db * db + dc * dc
                e = math.exp(-r2 / (2.0 * sig * sig))
                res = amp * e + bg - float(vol[c0 + a, c1 + b, c2 + c])
                cst += res * res
    return cst


@jit(no_cpython_wrapper=True, no_cfunc_wrapper=True)
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
    M = np.empty((6, 6))
    rhs = np.empty(6)
    step = np.empty(6)

    cost = _gauss_cost(vol, c0, c1, c2, radius, p)
    ok = 0.0
    for _ in range(n_iter):
        for u in range(6):
            JTr[u] = 0.0
            for v in range(6):
                JTJ[u, v] = 0.0
        amp, m0, m1, m2, sig, bg = p[0], p[1], p[2], p[3], p[4], p[5]
        s2 = sig * sig
        for a in range(-radius, radius + 1):
            for b in range(-radius, radius + 1):
                for c in range(-radius, radius + 1):
                    if not (0 <= c0 + a < n0 and 0 <= c1 + b < n1 and 0 <= c2 + c < n2):
                        continue
                    da = a - m0
                    db = b - m1
                    dc = c - m2
                    r2 = da * da + db * db + dc * dc
                    e = math.exp(-r2 / (2.0 * s2))
                    res = amp * e + bg - float(vol[c0 + a, c1 + b, c2 + c])
                    jrow[0] = e
                    jrow[1] = amp * e * da / s2
                    jrow[2] = amp * e * db / s2
                    jrow[3] = amp * e * dc / s2
                    jrow[4] = amp * e * r2 / (s2 * sig)
                    jrow[5] = 1.0
                    for u in range(6):  # JᵀJ is symmetric: its upper triangle
                        JTr[u] += jrow[u] * res
                        for v in range(u, 6):
                            JTJ[u, v] += jrow[u] * jrow[v]
        improved = False
        for _t in range(8):
            for u in range(6):
                rhs[u] = -JTr[u]
                for v in range(6):
                    M[u, v] = JTJ[u, v] if v >= u else JTJ[v, u]
                M[u, u] += lam * (JTJ[u, u] + 1e-12)
            _solve_small(M, rhs, step)
            for u in range(6):
                pn[u] = p[u] + step[u]
            if pn[4] <= 0.05:
                lam *= 4.0
                continue
            cn = _gauss_cost(vol, c0, c1, c2, radius, pn)
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


def refine_peaks(vol, peaks, radius, exps, pinv, wsig, max_step, max_shift, n_recentre,
                 gauss, gauss_iter, sig0):
    """Sub-voxel refinement of integer peaks.

    Returns ``centre (n, 3) int64`` (the voxel the last fit was centred on), ``poly_delta``
    ``(n, 3)`` (offset of the polynomial maximum from ``centre``), ``gauss_delta (n, 3)``
    (offset of the Gaussian centre), ``info (n, 5)`` = [polynomial peak value, Gaussian
    amplitude, Gaussian width (voxels), Gaussian background, Gaussian fit ok (0/1)].
    Only voxels within ``radius + max_shift`` of the peak are ever read.

    The kernel (:func:`_refine_peaks`) fills arrays allocated here: allocations and returned
    arrays inside a kernel are code Numba compiles for it.
    """
    n = peaks.shape[0]
    centre = np.empty((n, 3), dtype=np.int64)
    pdelta = np.zeros((n, 3))
    gdelta = np.zeros((n, 3))
    info = np.zeros((n, 5))
    _refine_peaks(vol, peaks, radius, exps, pinv, wsig, max_step, max_shift, n_recentre,
                  gauss, gauss_iter, sig0, centre, pdelta, gdelta, info,
                  np.empty(3, dtype=np.int64), np.empty(3), np.empty(7))
    return centre, pdelta, gdelta, info


@jit()
def _refine_peaks(vol, peaks, radius, exps, pinv, wsig, max_step, max_shift, n_recentre,
                  gauss, gauss_iter, sig0, centre, pdelta, gdelta, info, c, d, out):
    """:func:`refine_peaks` into ``centre``, ``pdelta``, ``gdelta``, ``info`` (``info`` and
    ``gdelta`` zeroed); ``c`` (3, int64), ``d`` (3,) and ``out`` (7,) are scratch (``out``
    the Gaussian fit's result, every entry written by each fit)."""
    n = peaks.shape[0]
    n0, n1, n2 = vol.shape
    for i in range(n):
        for a in range(3):
            c[a] = peaks[i, a]
            d[a] = 0.0
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
        info[i, 0] = val
        good = False
        if gauss:
            c0, c1, c2 = c[0], c[1], c[2]
            vmin = 1e300
            for a in range(-radius, radius + 1):
                for b in range(-radius, radius + 1):
                    for cc in range(-radius, radius + 1):
                        if (0 <= c0 + a < n0 and 0 <= c1 + b < n1 and 0 <= c2 + cc < n2):
                            v = float(vol[c0 + a, c1 + b, c2 + cc])
                            if v < vmin:
                                vmin = v
            _gauss_fit(vol, c0, c1, c2, radius, d, val - vmin, sig0, vmin, gauss_iter, out)
            good = out[6] > 0.0 and out[0] > 0.0 and out[4] > 0.0
            for a in range(3):
                if abs(out[1 + a] - d[a]) > 1.0:
                    good = False
            info[i, 1] = out[0]
            info[i, 2] = out[4]
            info[i, 3] = out[5]
            info[i, 4] = 1.0 if good else 0.0
        for a in range(3):
            centre[i, a] = c[a]
            pdelta[i, a] = d[a]
            gdelta[i, a] = out[1 + a] if good else d[a]


def refine_peaks_parallel(vol, peaks, radius, exps, pinv, wsig, max_step, max_shift,
                          n_recentre, gauss, gauss_iter, sig0):
    """:func:`refine_peaks` on aet's kernel thread pool, over blocks of peaks (each peak is
    refined on its own: the same result as the serial call)."""
    ranges = split_range(peaks.shape[0], min_chunk=16)
    args = (radius, exps, pinv, wsig, max_step, max_shift, n_recentre, gauss, gauss_iter, sig0)
    if len(ranges) <= 1:
        return refine_peaks(vol, peaks, *args)
    parts = map_ranges(lambda a, b: refine_peaks(vol, peaks[a:b], *args), ranges)
    return tuple(np.concatenate([p[q] for p in parts], axis=0) for q in range(4))

# ----------------------------------------------------------------------------- greedy


def greedy_accept(order, indptr, indices):
    """Greedy non-maximum suppression: walk candidates in ``order`` (best first), accept one
    unless an accepted candidate is among its neighbours (CSR ``indptr``/``indices``).
    Returns the accepted mask. The kernel (:func:`_greedy_state`) fills a state array
    allocated here and the mask is taken here: an allocation and an array comparison inside
    a kernel are code Numba compiles for it."""
    state = np.zeros(order.shape[0])  # 0 free, 1 accepted, 2 suppressed
    _greedy_state(order, indptr, indices, state)
    return state == 1


@jit()
def _greedy_state(order, indptr, indices, state):
    """:func:`greedy_accept`'s walk: ``state`` (zeroed) becomes 1 (accepted) or 2
    (suppressed) for the candidates reached."""
    n = order.shape[0]
    for t in range(n):
        i = order[t]
        if state[i] != 0:
            continue
        state[i] = 1
        for q in range(indptr[i], indptr[i + 1]):
            j = indices[q]
            if state[j] == 0:
                state[j] = 2

# ----------------------------------------------------------------------------- projections
def profile_kernel(pos, sp, C, S, gamma, eps, ref, offset, R2, shifts, meas, w, hw, x0, y0,
                   px, cutoff, mode, pos_alt, sp_alt, img_out):
    """Model projections of atoms with learned radial profiles and a power-law response.

    Atom ``j`` of species ``s = sp[j]`` (``s < 0``: absent) adds to the linear image of
    projection ``k`` the profile Σ_g C[s, g] exp(-ρ² / 2 S[g]) centred at
    ``(u, w) = R2[k] · p_j + shifts[k]`` (Å), each term cut at ``cutoff`` · √S[g]; the model
    image is ``M = ref ((L / ref + eps)^gamma − eps^gamma) + offset[k]`` (``ref`` a fixed
    intensity scale that keeps ``C`` and ``gamma`` decoupled), sampled at pixel centres
    ``x = x0 + i px``, ``y = y0 + j px``. Loss = ½ Σ w (M − meas)²; also Σ w |M − meas| and
    the held-out loss ½ Σ hw (M − meas)².

    ``mode``: 0 losses only; 1 + gradients: positions, C, gamma, offsets, per projection
    ∂L/∂shifts[k] and ∂L/∂R2[k]; 4 as 1 without the profile gradient (g_C zeros; the
    Gaussians of zero amplitude, which move nothing, are skipped: the positions and
    alignment fits' mode); 2 the profile's Gauss–Newton system instead of the atom
    loop: gradients of C, gamma, offsets, Σ_k Jᵀ w J over (C, gamma) (``nb + 1`` square,
    ``nb = ns · ng``, index ``s · ng + g``), per projection Σ w J (the coupling to the
    offset) and Σ w; 3 + per-atom 3×3 Gauss–Newton blocks and the per-projection
    position gradients; 5 + for every atom the exact change of the loss and of the held-out
    loss when atom ``j`` is replaced by one of species ``sp_alt[j]`` at ``pos_alt[j]``
    (``sp_alt[j] = -1``: removed; ``sp[j] < 0``: added; ``sp_alt[j] < -1``: atom ``j`` not
    tested, zeros), and Σ hw Δm², Σ hw M Δm² (the
    variance of the held-out change under pixel noise of variance a + b M). The model image
    M is written into ``img_out`` when it has the shape of ``meas`` (else it is ignored).

    Returns ``(loss, l1, hold, g_pos (n, 3), g_C (ns, ng), g_gamma, g_offset (n_proj,),
    F (n, 3, 3), g_pos_k (n_proj, n, 3), d_loss (n,), d_hold (n,), var_hold (n, 2),
    g_shifts (n_proj, 2), g_R2 (n_proj, 2, 3), JtwJ (nb + 1, nb + 1), Jtw (n_proj, nb + 1),
    sum_w (n_proj,), moments (5,), F_k (n_proj, n, 3, 3), meat (n, 3, 3))``: F_k the
    per-projection blocks of F and meat Σ (w r dM/dL)² J_jᵀ J_j (mode 3); the moments
    Σ w, Σ w M, Σ w M², Σ w r², Σ w M r² (for a noise model r² ≈ a + b M); what a mode does
    not compute is zeros (per-atom arrays of length 1).

    The compiled kernel is :func:`_profile_kernel`, which returns these outputs packed into
    fewer arrays (each returned array is code to compile); this unpacks them. The 3- and
    4-dimensional arrays (F, g_pos_k, F_k, meat and the kernel's per-projection channel
    scratch) are allocated here and filled by the kernel: each rank of ``np.zeros`` inside a
    kernel is an allocation routine Numba compiles of its own.
    """
    nproj, ny, nx = meas.shape
    nf = pos.shape[0] if mode == 3 else 1
    nfk = nproj if mode == 3 else 1
    fis = np.zeros((nf, 3, 3))
    gpos_k = np.zeros((nfk, nf, 3))
    fis_k = np.zeros((nfk, nf, 3, 3))
    meat = np.zeros((nf, 3, 3))
    chan = (np.empty((C.shape[0] * C.shape[1], ny, nx)) if mode == 2
            else np.empty((1, 1, 1)))
    sc, pk, gpos, gC, d5, jtj, jtw_k = _profile_kernel(
        pos, sp, C, S, gamma, eps, ref, offset, R2, shifts, meas, w, hw, x0, y0, px, cutoff,
        mode, pos_alt, sp_alt, img_out, fis, gpos_k, fis_k, meat, chan)
    return (float(sc[0]), float(sc[1]), float(sc[2]), gpos, gC, float(sc[3]),
            pk[:, 4].copy(), fis, gpos_k, d5[:, 0].copy(), d5[:, 1].copy(), d5[:, 2:4].copy(),
            pk[:, 5:7].copy(), pk[:, 7:13].copy().reshape(nproj, 2, 3), jtj, jtw_k,
            pk[:, 13].copy(), sc[4:9].copy(), fis_k, meat)


@jit()
def _profile_kernel(pos, sp, C, S, gamma, eps, ref, offset, R2, shifts, meas, w, hw, x0, y0,
                    px, cutoff, mode, pos_alt, sp_alt, img_out, fis, gpos_k, fis_k, meat, chan):
    """:func:`profile_kernel`'s outputs packed: ``(sc, pk, g_pos, g_C, d5, JtwJ, Jtw)``;
    ``F``, ``g_pos_k``, ``F_k`` and ``meat`` (zeroed, the shapes :func:`profile_kernel`
    gives them) are added into; ``chan`` is scratch of shape ``(nb, ny, nx)`` in mode 2
    (zeroed here per projection), ``(1, 1, 1)`` otherwise; ``sc`` = [loss, l1, hold, g_gamma,
    moments (5)], ``pk[k]`` = [loss, l1, hold, g_gamma, g_offset, g_shifts (2), g_R2 (2×3
    row-major), sum_w] of projection ``k``, ``d5[j]`` = [d_loss, d_hold, var_hold (2)]."""
    nproj, ny, nx = meas.shape
    n = pos.shape[0]
    ns = C.shape[0]
    ng = C.shape[1]
    rad = np.empty(ng, dtype=np.int64)
    radmax = 0
    for g in range(ng):
        rad[g] = int(math.ceil(cutoff * math.sqrt(S[g]) / px))
        if rad[g] > radmax:
            radmax = rad[g]
    win = 2 * radmax + 1
    epsg = eps ** gamma
    leps = math.log(eps)
    sc = np.zeros(9)
    pk = np.zeros((nproj, 14))
    # sums over projections are accumulated in projection order (per-projection partial
    # sums first where a projection adds several terms), as NumPy's sum over axis 0 would
    # add per-projection arrays, without compiling Numba's ``sum(axis=...)`` for every rank
    n1 = n if mode >= 1 else 1
    gpos = np.zeros((n1, 3))
    gC = np.zeros((ns, ng))
    n5 = n if mode == 5 else 1
    d5 = np.zeros((n5, 4))
    nb = ns * ng
    keep_img = img_out.shape[0] == nproj and img_out.shape[1] == ny and img_out.shape[2] == nx
    np2 = nb + 1 if mode == 2 else 1
    jtj = np.zeros((np2, np2))
    jtw_k = np.zeros((nproj, np2))
    for k in range(nproj):  # serial; blocks of projections run on the pool
        gC_p = np.zeros((ns, ng))   # this projection's partial sums
        mom_p = np.zeros(5)
        jtj_p = np.zeros((np2, np2))
        lin = np.zeros((ny, nx))
        for a in range(chan.shape[0]):
            for jj in range(chan.shape[1]):
                for ii in range(chan.shape[2]):
                    chan[a, jj, ii] = 0.0
        jrow = np.empty(nb + 1)
        ex = np.empty((ng, win))
        ey = np.empty((ng, win))
        uu = np.empty(n)
        ww = np.empty(n)
        # this projection's rows and shift as scalars (fewer array accesses to compile)
        r00, r01, r02 = R2[k, 0, 0], R2[k, 0, 1], R2[k, 0, 2]
        r10, r11, r12 = R2[k, 1, 0], R2[k, 1, 1], R2[k, 1, 2]
        t0, t1 = shifts[k, 0], shifts[k, 1]
        rk = R2[k]
        for j in range(n):
            p0, p1, p2 = pos[j, 0], pos[j, 1], pos[j, 2]
            uu[j] = r00 * p0 + r01 * p1 + r02 * p2 + t0
            ww[j] = r10 * p0 + r11 * p1 + r12 * p2 + t1
            s = sp[j]
            if s < 0:
                continue
            ci = int(round((uu[j] - x0) / px))
            cj = int(round((ww[j] - y0) / px))
            for g in range(ng):
                c = C[s, g]
                if c == 0.0 and mode != 2:
                    continue
                r = rad[g]
                i_lo = max(ci - r, 0)
                i_hi = min(ci + r + 1, nx)
                j_lo = max(cj - r, 0)
                j_hi = min(cj + r + 1, ny)
                for ii in range(i_lo, i_hi):
                    dx = x0 + ii * px - uu[j]
                    ex[g, ii - i_lo] = math.exp(-dx * dx / (2.0 * S[g]))
                for jj in range(j_lo, j_hi):
                    dy = y0 + jj * px - ww[j]
                    ey[g, jj - j_lo] = math.exp(-dy * dy / (2.0 * S[g]))
                a = s * ng + g
                for jj in range(j_lo, j_hi):
                    e_y = ey[g, jj - j_lo]
                    for ii in range(i_lo, i_hi):
                        e = e_y * ex[g, ii - i_lo]
                        lin[jj, ii] += c * e
                        if mode == 2:
                            chan[a, jj, ii] += e
        rho = np.empty((ny, nx))  # w · r · dM/dL
        dd = np.empty((ny, nx))   # w · (dM/dL)²  (mode 3)
        res = np.empty((ny, nx))  # r (mode 5)
        pwa = np.empty((ny, nx))  # (L / ref + eps)^gamma (mode 5: one power per pixel less)
        lk = 0.0
        l1 = 0.0
        hk = 0.0
        gg = 0.0
        go = 0.0
        for jj in range(ny):
            for ii in range(nx):
                lp = lin[jj, ii]
                if lp < 0.0:
                    lp = 0.0
                lp = lp / ref + eps
                pw = lp ** gamma
                r = ref * (pw - epsg) + offset[k] - meas[k, jj, ii]
                wt = w[k, jj, ii]
                lk += 0.5 * wt * r * r
                l1 += wt * abs(r)
                mv = r + meas[k, jj, ii]
                if keep_img:
                    img_out[k, jj, ii] = mv
                mom_p[0] += wt
                mom_p[1] += wt * mv
                mom_p[2] += wt * mv * mv
                mom_p[3] += wt * r * r
                mom_p[4] += wt * mv * r * r
                hk += 0.5 * hw[k, jj, ii] * r * r
                if mode >= 1:
                    fp = gamma * pw / lp
                    rho[jj, ii] = wt * r * fp
                    dgam = ref * (pw * math.log(lp) - epsg * leps)
                    gg += wt * r * dgam
                    go += wt * r
                    if mode == 2 and wt != 0.0:
                        # Gauss-Newton normal matrix of (C, gamma; offset k)
                        for a in range(nb):
                            jrow[a] = fp * chan[a, jj, ii]
                            gC_p[a // ng, a % ng] += wt * r * jrow[a]
                        jrow[nb] = dgam
                        for a in range(nb + 1):
                            ja = wt * jrow[a]
                            if ja == 0.0:
                                continue
                            jtw_k[k, a] += ja
                            for b in range(a, nb + 1):
                                jtj_p[a, b] += ja * jrow[b]
                        pk[k, 13] += wt
                    if mode == 3:
                        dd[jj, ii] = wt * fp * fp
                    elif mode == 5:
                        res[jj, ii] = r
                        pwa[jj, ii] = pw
        pk[k, 0] = lk
        pk[k, 1] = l1
        pk[k, 2] = hk
        for a in range(5):
            sc[4 + a] += mom_p[a]
        if mode == 0:
            continue
        pk[k, 3] = gg
        pk[k, 4] = go
        if mode == 2:
            for a in range(nb + 1):
                for b in range(a):
                    jtj_p[a, b] = jtj_p[b, a]
            for a in range(nb + 1):
                for b in range(nb + 1):
                    jtj[a, b] += jtj_p[a, b]
            for a in range(ns):
                for b in range(ng):
                    gC[a, b] += gC_p[a, b]
            continue
        bu = np.empty((win, win))
        dxs = np.empty(win)
        bw = np.empty((win, win))
        ba = np.empty((win + 2 * radmax + 2, win + 2 * radmax + 2))
        for j in range(n):
            s = sp[j]
            ci = int(round((uu[j] - x0) / px))
            cj = int(round((ww[j] - y0) / px))
            if mode == 5:
                # exact loss changes of replacing atom j (window holding both versions)
                p0, p1, p2 = pos_alt[j, 0], pos_alt[j, 1], pos_alt[j, 2]
                ua = r00 * p0 + r01 * p1 + r02 * p2 + t0
                wa = r10 * p0 + r11 * p1 + r12 * p2 + t1
                sa = sp_alt[j]
                if (sa < 0 and s < 0) or sa < -1:
                    continue  # nothing to replace, or not asked (sp_alt < -1)
                cia = int(round((ua - x0) / px)) if sa >= 0 else ci
                cja = int(round((wa - y0) / px)) if sa >= 0 else cj
                if s < 0:
                    ci = cia
                    cj = cja
                i_lo = max(min(ci, cia) - radmax, 0)
                i_hi = min(max(ci, cia) + radmax + 1, nx)
                j_lo = max(min(cj, cja) - radmax, 0)
                j_hi = min(max(cj, cja) + radmax + 1, ny)
                if i_hi - i_lo > ba.shape[1] or j_hi - j_lo > ba.shape[0]:
                    # the alternative is further than the buffer: clip (a far move is not a
                    # local test)
                    i_hi = min(i_hi, i_lo + ba.shape[1])
                    j_hi = min(j_hi, j_lo + ba.shape[0])
                for jj in range(j_lo, j_hi):
                    for ii in range(i_lo, i_hi):
                        ba[jj - j_lo, ii - i_lo] = 0.0
                for g in range(ng):
                    r2c = 2.0 * S[g]
                    for sign in range(2):
                        # sign 0: remove the current atom, 1: add the alternative
                        sg = s if sign == 0 else sa
                        if sg < 0:
                            continue
                        amp = -C[sg, g] if sign == 0 else C[sg, g]
                        uc = uu[j] if sign == 0 else ua
                        wc = ww[j] if sign == 0 else wa
                        ic = ci if sign == 0 else cia
                        jc = cj if sign == 0 else cja
                        a_lo = max(ic - rad[g], i_lo)
                        a_hi = min(ic + rad[g] + 1, i_hi)
                        b_lo = max(jc - rad[g], j_lo)
                        b_hi = min(jc + rad[g] + 1, j_hi)
                        for ii in range(a_lo, a_hi):
                            dx = x0 + ii * px - uc
                            ex[g, ii - a_lo] = math.exp(-dx * dx / r2c)
                        for jj in range(b_lo, b_hi):
                            dy = y0 + jj * px - wc
                            e_y = amp * math.exp(-dy * dy / r2c)
                            for ii in range(a_lo, a_hi):
                                ba[jj - j_lo, ii - i_lo] += e_y * ex[g, ii - a_lo]
                dl = 0.0
                dh = 0.0
                vh0 = 0.0
                vh1 = 0.0
                for jj in range(j_lo, j_hi):
                    for ii in range(i_lo, i_hi):
                        da = ba[jj - j_lo, ii - i_lo]
                        if da == 0.0:
                            continue
                        lq = lin[jj, ii] + da
                        if lq < 0.0:
                            lq = 0.0
                        dm = ref * ((lq / ref + eps) ** gamma - pwa[jj, ii])
                        r = res[jj, ii]
                        q = (r + dm) * (r + dm) - r * r
                        dl += 0.5 * w[k, jj, ii] * q
                        dh += 0.5 * hw[k, jj, ii] * q
                        q = hw[k, jj, ii] * dm * dm
                        vh0 += q
                        vh1 += q * (r + meas[k, jj, ii])
                d5[j, 0] += dl
                d5[j, 1] += dh
                d5[j, 2] += vh0
                d5[j, 3] += vh1
                continue
            if s < 0:
                continue
            gu = 0.0
            gw = 0.0
            if mode == 3:
                for a in range(win):
                    for b in range(win):
                        bu[a, b] = 0.0
                        bw[a, b] = 0.0
            for g in range(ng):
                c = C[s, g]
                if c == 0.0 and mode == 4:
                    continue  # no image, no position gradient (G_C is not asked for)
                r = rad[g]
                i_lo = max(ci - r, 0)
                i_hi = min(ci + r + 1, nx)
                j_lo = max(cj - r, 0)
                j_hi = min(cj + r + 1, ny)
                for ii in range(i_lo, i_hi):
                    dx = x0 + ii * px - uu[j]
                    dxs[ii - i_lo] = dx
                    ex[g, ii - i_lo] = math.exp(-dx * dx / (2.0 * S[g]))
                for jj in range(j_lo, j_hi):
                    dy = y0 + jj * px - ww[j]
                    ey[g, jj - j_lo] = math.exp(-dy * dy / (2.0 * S[g]))
                # separable sums: per window row, Σ_x ρ e_x and Σ_x ρ e_x dx, then the row's
                # e_y (and dy) outside the inner loop
                gc = 0.0
                su = 0.0
                sw = 0.0
                inv = 1.0 / S[g]
                for jj in range(j_lo, j_hi):
                    dy = y0 + jj * px - ww[j]
                    e_y = ey[g, jj - j_lo]
                    s0 = 0.0
                    s1 = 0.0
                    for ii in range(i_lo, i_hi):
                        t = rho[jj, ii] * ex[g, ii - i_lo]
                        s0 += t
                        s1 += t * dxs[ii - i_lo]
                    gc += e_y * s0
                    su += e_y * s1
                    sw += e_y * dy * s0
                    if mode == 3:
                        ce = c * e_y * inv
                        for ii in range(i_lo, i_hi):
                            v = ce * ex[g, ii - i_lo]
                            bu[jj - cj + radmax, ii - ci + radmax] += v * dxs[ii - i_lo]
                            bw[jj - cj + radmax, ii - ci + radmax] += v * dy
                gu += c * inv * su
                gw += c * inv * sw
                if mode != 4:
                    gC_p[s, g] += gc
            for a in range(3):
                v = gu * rk[0, a] + gw * rk[1, a]
                gpos[j, a] += v
                if mode == 3:
                    gpos_k[k, j, a] = v
                pk[k, 7 + a] += gu * pos[j, a]
                pk[k, 10 + a] += gw * pos[j, a]
            pk[k, 5] += gu
            pk[k, 6] += gw
            if mode == 3:
                fuu = 0.0
                fuw = 0.0
                fww = 0.0
                muu = 0.0
                muw = 0.0
                mww = 0.0
                i_lo = max(ci - radmax, 0)
                i_hi = min(ci + radmax + 1, nx)
                j_lo = max(cj - radmax, 0)
                j_hi = min(cj + radmax + 1, ny)
                for jj in range(j_lo, j_hi):
                    for ii in range(i_lo, i_hi):
                        du = bu[jj - cj + radmax, ii - ci + radmax]
                        dw = bw[jj - cj + radmax, ii - ci + radmax]
                        d = dd[jj, ii]
                        fuu += d * du * du
                        fuw += d * du * dw
                        fww += d * dw * dw
                        q = rho[jj, ii] * rho[jj, ii]
                        muu += q * du * du
                        muw += q * du * dw
                        mww += q * dw * dw
                for a in range(3):
                    for b in range(3):
                        ua, wa, ub, wb = rk[0, a], rk[1, a], rk[0, b], rk[1, b]
                        fk = fuu * ua * ub + fuw * (ua * wb + wa * ub) + fww * wa * wb
                        fis_k[k, j, a, b] = fk
                        fis[j, a, b] += fk
                        meat[j, a, b] += muu * ua * ub + muw * (ua * wb + wa * ub) + mww * wa * wb
        for a in range(ns):
            for b in range(ng):
                gC[a, b] += gC_p[a, b]
    for k in range(nproj):
        for a in range(4):
            sc[a] += pk[k, a]
    return sc, pk, gpos, gC, d5, jtj, jtw_k


# outputs of profile_kernel that are sums over projections / per-projection arrays
_PROFILE_SUMMED = (0, 1, 2, 3, 4, 5, 7, 9, 10, 11, 14, 17, 19)
_PROFILE_PER_PROJECTION = (6, 12, 13, 15, 16)


def profile_kernel_parallel(pos, sp, C, S, gamma, eps, ref, offset, R2, shifts, meas, w, hw,
                            x0, y0, px, cutoff, mode, pos_alt, sp_alt, img_out):
    """:func:`profile_kernel` on aet's kernel thread pool, over blocks of projections; the
    blocks' sums are added in block order (equal to the serial call up to rounding) and the
    per-projection outputs concatenated."""
    ranges = split_range(meas.shape[0], per_thread=2)
    args = (pos, sp, C, S, gamma, eps, ref, offset, R2, shifts, meas, w, hw, x0, y0, px, cutoff,
            mode, pos_alt, sp_alt, img_out)
    if len(ranges) <= 1:
        return profile_kernel(*args)
    keep_img = img_out.shape == meas.shape

    def block(a, b):
        return profile_kernel(pos, sp, C, S, gamma, eps, ref, offset[a:b], R2[a:b],
                              shifts[a:b], meas[a:b], w[a:b], hw[a:b], x0, y0, px, cutoff,
                              mode, pos_alt, sp_alt, img_out[a:b] if keep_img else img_out)

    parts = map_ranges(block, ranges)
    out = list(parts[0])
    for q in _PROFILE_SUMMED:
        for p in parts[1:]:
            out[q] = out[q] + p[q]
    for q in _PROFILE_PER_PROJECTION:
        out[q] = np.concatenate([p[q] for p in parts], axis=0)
    if mode == 3:  # per-projection position gradients and Gauss–Newton blocks
        for q in (8, 18):
            out[q] = np.concatenate([p[q] for p in parts], axis=0)
    return tuple(out)


# ----------------------------------------------------------------------------- back-projection
@jit()
def _backproject_bilinear(resid, R2, shifts, x0, y0, px, pts, lo, hi, acc):
    nproj, ny, nx = resid.shape
    for i in range(lo, hi):
        p0, p1, p2 = pts[i, 0], pts[i, 1], pts[i, 2]
        v = 0.0
        for k in range(nproj):
            fx = (p0 * R2[k, 0, 0] + p1 * R2[k, 0, 1] + p2 * R2[k, 0, 2] + shifts[k, 0]
                  - x0) / px
            fy = (p0 * R2[k, 1, 0] + p1 * R2[k, 1, 1] + p2 * R2[k, 1, 2] + shifts[k, 1]
                  - y0) / px
            i0 = min(max(int(math.floor(fx)), 0), nx - 2)
            j0 = min(max(int(math.floor(fy)), 0), ny - 2)
            tx = min(max(fx - i0, 0.0), 1.0)
            ty = min(max(fy - j0, 0.0), 1.0)
            v += ((1.0 - ty) * ((1.0 - tx) * resid[k, j0, i0] + tx * resid[k, j0, i0 + 1])
                  + ty * ((1.0 - tx) * resid[k, j0 + 1, i0] + tx * resid[k, j0 + 1, i0 + 1]))
        acc[i] = v


def backproject_bilinear(resid, R2, shifts, x0, y0, px, pts):
    """Sum over projections of the images ``resid`` (n_proj, ny, nx) sampled bilinearly at
    the points ``pts`` (n, 3) (Å): projection ``k`` sees point ``p`` at
    ``(R2[k] · p + shifts[k] − (x0, y0)) / px`` pixels (column, row), the sample cell
    clamped to the image and the fractions to [0, 1] (edge pixels continue outwards).
    Runs on aet's kernel thread pool over blocks of points."""
    resid = np.ascontiguousarray(resid, dtype=np.float64)
    R2 = np.ascontiguousarray(R2, dtype=np.float64)
    shifts = np.ascontiguousarray(shifts, dtype=np.float64)
    pts = np.ascontiguousarray(pts, dtype=np.float64)
    acc = np.zeros(len(pts))

    def block(lo, hi):
        _backproject_bilinear(resid, R2, shifts, float(x0), float(y0), float(px), pts, lo,
                              hi, acc)

    map_ranges(block, split_range(len(pts), min_chunk=4096))
    return acc
