"""Slow, plain-NumPy twins of the kernels in ``aet/atoms/_kernels.py``.

Written for clarity, not speed: whole-window least squares with ``numpy.linalg.lstsq``,
explicit loops over candidates, dense projection images.
"""

from __future__ import annotations

import numpy as np

from aet.testing.phantoms import rotation_matrix_zyz


# ----------------------------------------------------------------------------- tracing
def local_maxima_reference(vol, threshold, lo, hi) -> np.ndarray:
    """26-neighbour maxima in ``[lo, hi)`` above ``threshold``; strict against neighbours
    earlier in raster order, non-strict against later ones (out-of-array ignored)."""
    v = np.asarray(vol, dtype=np.float64)
    pad = np.pad(v, 1, constant_values=-np.inf)
    core = pad[1:-1, 1:-1, 1:-1]
    ok = core > threshold
    for dz in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dz == dy == dx == 0:
                    continue
                nb = pad[1 + dz:pad.shape[0] - 1 + dz, 1 + dy:pad.shape[1] - 1 + dy,
                         1 + dx:pad.shape[2] - 1 + dx]
                before = (dz, dy, dx) < (0, 0, 0)
                ok &= (core > nb) if before else (core >= nb)
    sel = np.zeros_like(ok)
    sel[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return np.argwhere(ok & sel).astype(np.int64)


def _poly_terms(d, exps):
    return np.prod(np.asarray(d, float)[None, :] ** exps, axis=1)


def _poly_grad_hess(coef, exps, d):
    d = np.asarray(d, float)
    val = float(coef @ _poly_terms(d, exps))
    g = np.zeros(3)
    h = np.zeros((3, 3))
    for t, e in enumerate(exps):
        for a in range(3):
            if e[a] >= 1:
                ea = e.copy()
                ea[a] -= 1
                g[a] += coef[t] * e[a] * np.prod(d ** ea)
            for b in range(3):
                eb = e.copy()
                if a == b:
                    if e[a] >= 2:
                        eb[a] -= 2
                        h[a, a] += coef[t] * e[a] * (e[a] - 1) * np.prod(d ** eb)
                elif e[a] >= 1 and e[b] >= 1:
                    eb[a] -= 1
                    eb[b] -= 1
                    h[a, b] += coef[t] * e[a] * e[b] * np.prod(d ** eb)
    return val, g, h


def _window(vol, c, radius):
    pts, vals = [], []
    for a in range(-radius, radius + 1):
        for b in range(-radius, radius + 1):
            for cc in range(-radius, radius + 1):
                q = (c[0] + a, c[1] + b, c[2] + cc)
                if all(0 <= q[i] < vol.shape[i] for i in range(3)):
                    pts.append((a, b, cc))
                    vals.append(float(vol[q]))
    return np.array(pts, float), np.array(vals)


def fit_poly_reference(vol, c, radius, exps, wsig):
    pts, vals = _window(vol, c, radius)
    n_per_axis = np.array([len(np.unique(pts[:, a])) for a in range(3)])
    use = np.all(exps < n_per_axis[None, :], axis=1)  # monomials the clipped grid determines
    A = np.prod(pts[:, None, :] ** exps[None, use], axis=2)
    sw = np.exp(-(pts**2).sum(1) / (4 * wsig**2))
    coef = np.zeros(len(exps))
    coef[use] = np.linalg.lstsq(A * sw[:, None], vals * sw, rcond=None)[0]
    return coef


def _ascend(coef, exps, d, max_step, limit, n_steps):
    for _ in range(n_steps):
        _, g, h = _poly_grad_hess(coef, exps, d)
        if np.all(np.linalg.eigvalsh(h) < 0):
            s = -np.linalg.solve(h, g)
        else:
            s = g.copy()
        s = np.clip(s, -max_step, max_step)
        nd = np.clip(d + s, -limit, limit)
        s = nd - d
        d[:] = nd
        if np.abs(s).max() < 1e-9:
            break
    return _poly_grad_hess(coef, exps, d)[0]


def _gauss_fit(vol, c, radius, d0, amp0, sig0, bg0, n_iter):
    pts, vals = _window(vol, c, radius)

    def model(p):
        r2 = ((pts - p[1:4]) ** 2).sum(1)
        return p[0] * np.exp(-r2 / (2 * p[4] ** 2)) + p[5]

    p = np.array([amp0, *d0, sig0, bg0], float)
    cost = float(((model(p) - vals) ** 2).sum())
    lam, ok = 1e-3, False
    for _ in range(n_iter):
        dd = pts - p[1:4]
        r2 = (dd**2).sum(1)
        s2 = p[4] ** 2
        e = np.exp(-r2 / (2 * s2))
        J = np.stack([e, p[0] * e * dd[:, 0] / s2, p[0] * e * dd[:, 1] / s2,
                      p[0] * e * dd[:, 2] / s2, p[0] * e * r2 / (s2 * p[4]),
                      np.ones_like(e)], axis=1)
        res = model(p) - vals
        JTJ, JTr = J.T @ J, J.T @ res
        improved = False
        for _t in range(8):
            step = np.linalg.solve(JTJ + lam * np.diag(np.diag(JTJ) + 1e-12), -JTr)
            pn = p + step
            if pn[4] <= 0.05:
                lam *= 4
                continue
            cn = float(((model(pn) - vals) ** 2).sum())
            if cn < cost:
                p, cost = pn, cn
                lam = max(lam / 3, 1e-9)
                improved = True
                ok = np.abs(step[1:4]).max() < 1e-7
                break
            lam *= 4
        if not improved:
            ok = True
            break
        if ok:
            break
    return p, ok


def refine_peaks_reference(vol, peaks, radius, exps, wsig, max_step, max_shift, n_recentre,
                           gauss, gauss_iter, sig0):
    """Twin of ``_kernels.refine_peaks`` (same outputs)."""
    n = len(peaks)
    centre = np.zeros((n, 3), np.int64)
    pdelta, gdelta, info = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros((n, 5))
    for i, pk in enumerate(np.asarray(peaks)):
        c = pk.copy()
        d = np.zeros(3)
        val = 0.0
        for _ in range(n_recentre):
            coef = fit_poly_reference(vol, c, radius, exps, wsig)
            val = _ascend(coef, exps, d, max_step, radius - 0.5, 30)
            sh = np.where(d > 0.5, 1, np.where(d < -0.5, -1, 0))
            nc = c + sh
            allowed = (sh != 0) & (np.abs(nc - pk) <= max_shift) & (nc >= 0) & \
                (nc < np.array(vol.shape))
            if not allowed.any():
                break
            c = np.where(allowed, nc, c)
            d = d - np.where(allowed, sh, 0)
        centre[i], pdelta[i], info[i, 0] = c, d, val
        gdelta[i] = d
        if gauss:
            _, vals = _window(vol, c, radius)
            vmin = vals.min()
            p, ok = _gauss_fit(vol, c, radius, d, val - vmin, sig0, vmin, gauss_iter)
            good = ok and p[0] > 0 and p[4] > 0 and np.all(np.abs(p[1:4] - d) <= 1.0)
            if good:
                gdelta[i] = p[1:4]
            info[i, 1:5] = p[0], p[4], p[5], float(good)
    return centre, pdelta, gdelta, info


def greedy_accept_reference(order, positions, min_distance):
    """Accepted mask: walk ``order``; accept unless within ``min_distance`` (strictly closer
    or equal, as ``cKDTree.query_pairs``) of an already accepted candidate."""
    acc = []
    for i in order:
        if all(np.linalg.norm(positions[i] - positions[j]) > min_distance for j in acc):
            acc.append(i)
    mask = np.zeros(len(positions), bool)
    mask[acc] = True
    return mask


# ----------------------------------------------------------------------------- refinement
def _pixel_axes(shape_yx, pixel_A):
    ny, nx = shape_yx
    return (np.arange(nx) - nx // 2) * pixel_A, (np.arange(ny) - ny // 2) * pixel_A


def profile_projections_reference(pos_xyz, species_index, C, sigmas_A, gamma, eps, ref,
                                  offset, euler_deg, shape_yx, pixel_A, shifts_xy=None,
                                  linear=False):
    """Dense model projections ``(n_proj, ny, nx)`` (no cut-off) of atoms with radial
    profiles Σ_g C[s, g] exp(−ρ²/2σ_g²) (species −1: absent), through the response
    ``ref ((L / ref + eps)^gamma − eps^gamma) + offset[k]`` (``linear``: L only).

    Projection k: positions rotated by R = Rz(φ)Ry(θ)Rz(ψ), (x, y) rows, displaced by
    ``shifts_xy[k]``; pixel centres at (i − n // 2) · pixel_A.
    """
    xs, ys = _pixel_axes(shape_yx, pixel_A)
    out = np.zeros((len(euler_deg), len(ys), len(xs)))
    for k, e in enumerate(np.asarray(euler_deg, float)):
        R = rotation_matrix_zyz(*np.radians(e))
        uv = np.asarray(pos_xyz, float) @ R.T
        if shifts_xy is not None:
            uv[:, :2] += np.asarray(shifts_xy, float)[k]
        lin = np.zeros((len(ys), len(xs)))
        for j in range(len(pos_xyz)):
            s = species_index[j]
            if s < 0:
                continue
            r2 = (xs[None, :] - uv[j, 0]) ** 2 + (ys[:, None] - uv[j, 1]) ** 2
            for c, sg in zip(C[s], sigmas_A):
                lin += c * np.exp(-r2 / (2 * sg**2))
        if linear:
            out[k] = lin
        else:
            out[k] = ref * ((np.maximum(lin, 0) / ref + eps) ** gamma - eps**gamma) + offset[k]
    return out


def profile_loss_reference(pos_xyz, species_index, C, sigmas_A, gamma, eps, ref, offset,
                           euler_deg, measured, pixel_A, w, hw, shifts_xy=None):
    """(½ Σ w r², Σ w |r|, ½ Σ hw r²) of the dense model, r = model − measured."""
    m = profile_projections_reference(pos_xyz, species_index, C, sigmas_A, gamma, eps, ref,
                                      offset, euler_deg, measured.shape[1:], pixel_A,
                                      shifts_xy=shifts_xy)
    r = m - measured
    return (0.5 * float((w * r**2).sum()), float((w * np.abs(r)).sum()),
            0.5 * float((hw * r**2).sum()))


def backproject_bilinear_reference(resid, R2, shifts, x0, y0, px, pts):
    """Σ_k of bilinear samples of ``resid[k]`` at ``(R2[k] · p + shifts[k] − (x0, y0)) / px``
    (cell clamped to the image, fractions to [0, 1]), one projection at a time."""
    n_proj, ny, nx = resid.shape
    acc = np.zeros(len(pts))
    for k in range(n_proj):
        fx = (pts @ R2[k, 0] + shifts[k, 0] - x0) / px
        fy = (pts @ R2[k, 1] + shifts[k, 1] - y0) / px
        i0 = np.clip(np.floor(fx).astype(np.int64), 0, nx - 2)
        j0 = np.clip(np.floor(fy).astype(np.int64), 0, ny - 2)
        tx = np.clip(fx - i0, 0, 1)
        ty = np.clip(fy - j0, 0, 1)
        r = resid[k]
        acc += ((1 - ty) * ((1 - tx) * r[j0, i0] + tx * r[j0, i0 + 1])
                + ty * ((1 - tx) * r[j0 + 1, i0] + tx * r[j0 + 1, i0 + 1]))
    return acc
