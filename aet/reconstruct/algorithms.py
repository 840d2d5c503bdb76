"""Real-space reconstruction algorithms on a :class:`~aet.reconstruct.projector.Projector`.

All functions work in the projector's internal layout (float32, C-contiguous) and return the
volume in that layout plus a convergence record. They are called by
:func:`aet.reconstruct.reconstruct`, which handles the xarray/dask side.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.fft as sfft

from . import _kernels as K
from ._common import progress_bar
from .projector import Projector

FILTERS = ("ramp", "shepp-logan", "hann")


def angular_weights(theta_deg: np.ndarray) -> np.ndarray:
    """Angular spacing Δθ (radians) that each projection stands for (trapezoid rule over the
    sorted tilt angles; the end projections get half a gap on their outer side)."""
    th = np.radians(np.asarray(theta_deg, dtype=np.float64))
    if th.size == 1:
        return np.array([np.pi])
    order = np.argsort(th)
    s = th[order]
    gaps = np.diff(s)
    w = np.empty_like(s)
    w[1:-1] = 0.5 * (gaps[:-1] + gaps[1:])
    w[0] = gaps[0]
    w[-1] = gaps[-1]
    out = np.empty_like(w)
    out[order] = w
    return out


def ramp_filter(n: int, kind: str = "ramp") -> np.ndarray:
    """Frequency response (length ``n``, FFT order) of the FBP filter in cycles/pixel.

    The ramp is the FFT of the band-limited spatial kernel (h[0] = 1/4, h[odd k] = −1/(πk)²),
    which has the correct (non-zero) DC term; ``shepp-logan`` multiplies by sinc(ν),
    ``hann`` by 0.5 + 0.5 cos(2πν).
    """
    k = np.arange(n)
    k = np.where(k <= n // 2, k, k - n)
    h = np.zeros(n)
    h[0] = 0.25
    odd = k % 2 == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    H = np.real(np.fft.fft(h))
    nu = np.fft.fftfreq(n)
    if kind == "shepp-logan":
        H = H * np.sinc(nu)
    elif kind == "hann":
        H = H * (0.5 + 0.5 * np.cos(2 * np.pi * nu))
    elif kind != "ramp":
        raise ValueError(f"filter must be one of {FILTERS}, got {kind!r}")
    return H


def wbp(op: Projector, b: np.ndarray, *, filter: str = "ramp", positivity: bool = False):
    """Weighted (filtered) back projection.

    Each projection is filtered along the detector x axis (perpendicular to the tilt axis) and
    back-projected with the angular weight Δθ it stands for: f = Σ Δθ_i Aᵢᵀ (h * b_i). Exact
    for a full 180° single-axis series; for Euler angles with small φ, ψ the same formula is a
    good approximation.
    """
    axis = 1 if op.single_axis else 2
    n = b.shape[axis]
    npad = int(2 ** np.ceil(np.log2(2 * n)))
    H = ramp_filter(npad, filter).astype(np.float32)
    shape = [1, 1, 1]
    shape[axis] = npad // 2 + 1
    Hr = H[: npad // 2 + 1].reshape(shape)
    F = sfft.rfft(b, n=npad, axis=axis, workers=-1)
    F *= Hr
    q = sfft.irfft(F, n=npad, axis=axis, workers=-1)
    q = np.ascontiguousarray(np.take(q, np.arange(n), axis=axis), dtype=np.float32)
    q *= angular_weights(op.euler[:, 1]).astype(np.float32)[:, None, None]
    x = op.adjoint(q)
    if positivity:
        np.maximum(x, 0, out=x)
    return x, {"filter": filter}


def _constrain(x, positivity, support):
    if support is not None:
        x *= support
    if positivity:
        np.maximum(x, 0, out=x)
    return x


def _r1(res, b_abs_sum):
    return float(np.abs(res).sum() / b_abs_sum) if b_abs_sum > 0 else float("nan")


HOLDOUT_BY = ("pixels", "projections")


class _Holdout:
    """Early stopping by cross-validation: a ``fraction`` of the data is left out of the data
    term; the iterate whose residual on it is lowest is kept, and the iterations stop after
    ``patience`` iterations without improvement (noise is being fitted).

    ``by="pixels"``: random detector pixels (``seed``). ``by="projections"``: whole projections,
    every m-th by tilt angle (m = round(1 / fraction), interleaved from the middle of the first
    gap, at least one). A held-out pixel is predicted by its fitted neighbours, so its residual
    keeps falling after the error against the object has started to grow (noise amplified along
    poorly measured directions barely shows in the measured ones); a held-out projection tests
    the object between the measured angles and stops nearer the error minimum (RESIRE, measured
    at 128³ × 47, ±69°, 2 % noise: error minimum 0.272 at 33 iterations; 5 % of the pixels pick
    47 with 0.313, 1/8 of the projections 36 with 0.281, and 0.275 after ``refit``)."""

    def __init__(self, shape, fraction, seed, patience, by="pixels", theta=None):
        if by == "pixels":
            rng = np.random.default_rng(seed)
            self.hold = (rng.random(shape) < fraction).astype(np.float32)
        else:
            n = shape[0]
            m = max(2, int(round(1.0 / fraction)))
            order = np.argsort(np.arange(n) if theta is None else np.asarray(theta))
            self.hold = np.zeros(shape, np.float32)
            self.hold[order[m // 2::m]] = 1.0
        self.fit = np.float32(1.0) - self.hold
        self.n = max(1.0, float(self.hold.sum()))
        self.patience = int(patience)
        self.best = np.inf
        self.best_x = None
        self.best_it = -1
        self.bad = 0
        self.record = []

    def update(self, res, x, it) -> bool:
        h = float(np.sqrt(np.sum(np.square(res * self.hold, dtype=np.float32)) / self.n))
        self.record.append(h)
        if h < self.best:
            self.best, self.best_it, self.bad = h, it, 0
            if self.best_x is None:
                self.best_x = x.copy()
            else:
                self.best_x[...] = x
        else:
            self.bad += 1
        return self.patience > 0 and self.bad >= self.patience


def _holdout_for(b, holdout, seed, patience, by="pixels", theta=None):
    if not holdout:
        return None
    if not 0 < holdout < 0.5:
        raise ValueError(f"holdout must be a fraction in (0, 0.5), got {holdout!r}")
    if by not in HOLDOUT_BY:
        raise ValueError(f"holdout_by must be one of {HOLDOUT_BY}, got {by!r}")
    if by == "projections" and b.shape[0] < 4:
        raise ValueError(f"holdout_by='projections' needs at least 4 projections, got "
                         f"{b.shape[0]}; use holdout_by='pixels'")
    return _Holdout(b.shape, holdout, seed, patience, by, theta)


def sirt(op: Projector, b: np.ndarray, *, n_iter: int = 100, relaxation: float = 1.0,
         positivity: bool = True, support=None, x0=None, tol: float = 0.0, holdout: float = 0.0,
         patience: int = 5, seed=0, progress=None, callback=None, holdout_by: str = "pixels",
         refit: bool = False):
    """SIRT: x ← x + λ C Aᵀ R (b − A x), R = 1/(A 1), C = 1/(Aᵀ 1) (+ positivity/support).

    ``holdout`` > 0: early stopping on that fraction of left-out detector pixels or projections
    (``holdout_by``), optionally ``refit`` on all the data (see :func:`resire`).
    """
    if holdout and refit:
        return _refit(sirt, op, b, n_iter=n_iter, relaxation=relaxation, positivity=positivity,
                      support=support, x0=x0, tol=tol, holdout=holdout, patience=patience,
                      seed=seed, progress=progress, callback=callback, holdout_by=holdout_by)
    ho = _holdout_for(b, holdout, seed, patience, holdout_by, op.euler[:, 1])
    ones_v = np.ones(op.internal_volume_shape, np.float32)
    row = op.forward(ones_v)
    R = np.where(row > 1e-6, 1.0 / np.maximum(row, 1e-6), 0.0).astype(np.float32)
    if ho is not None:
        R *= ho.fit
    col = op.adjoint(R > 0) if ho is not None else op.adjoint(
        np.ones(op.internal_projection_shape, np.float32))
    C = np.where(col > 1e-6, relaxation / np.maximum(col, 1e-6), 0.0).astype(np.float32)
    x = np.zeros(op.internal_volume_shape, np.float32) if x0 is None else x0.copy()
    bsum = float(np.abs(b).sum())
    record = []
    ax = np.empty(op.internal_projection_shape, np.float32)
    g = np.empty(op.internal_volume_shape, np.float32)
    t0 = time.perf_counter()
    with progress_bar(n_iter, "SIRT", progress) as bar:
        for it in range(n_iter):
            op.forward(x, out=ax)
            np.subtract(b, ax, out=ax)
            record.append(_r1(ax, bsum))
            if ho is not None and ho.update(ax, x, it):
                break
            ax *= R
            op.adjoint(ax, out=g)
            g *= C
            x += g
            _constrain(x, positivity, support)
            if callback is not None:
                callback(it, x)
            bar.update()
            if tol and it > 0 and abs(record[-2] - record[-1]) < tol * record[-1]:
                break
    rec = {"r1": record, "n_iter": len(record), "time_s": time.perf_counter() - t0}
    if ho is not None:
        x = ho.best_x
        rec.update(holdout_rms=ho.record, best_iteration=ho.best_it + 1)
    return x, rec


def lipschitz_bound(op: Projector, weight=None) -> float:
    """An upper bound of ‖AᵀWA‖ (Schur test for a non-negative operator: max of AᵀWA·1).

    For a single tilt axis every y-slice is the same 2D problem, so when ``weight`` does not
    vary along y (none, or a field-of-view mask along x) AᵀWA·1 is the same in every slice
    and one slice gives the bound (the same numbers, 1/ny of an iteration's work instead of a
    whole one: an out-of-core block of 64 slices paid a 31st iteration for it)."""
    nz, ny, nx = op.volume_shape
    if op.single_axis and ny > 1 and (
            weight is None or np.array_equal(weight, np.broadcast_to(weight[..., :1],
                                                                     weight.shape))):
        row = Projector(op.euler, (nz, 1, nx), detector_shape=(1, op.detector_shape[1]),
                        parallel=False, single_axis=True)
        return lipschitz_bound(row, None if weight is None else
                               np.ascontiguousarray(weight[..., :1]))
    p = op.forward(np.ones(op.internal_volume_shape, np.float32))
    if weight is not None:
        p *= weight
    return float(op.adjoint(p).max())


def resire(op: Projector, b: np.ndarray, *, n_iter: int = 50, step: float = 1.0,
           positivity: bool = True, support=None, weight=None, accelerate: bool = True,
           x0=None, tol: float = 0.0, holdout: float = 0.0, patience: int = 5, seed=0,
           progress=None, callback=None, holdout_by: str = "pixels", refit: bool = False,
           subsets: int = 1):
    """RESIRE: gradient descent on ½ Σ_θ ‖W (A_θ O − b_θ)‖² with positivity and support.

    The step is ``step / L`` with L = max(AᵀWA·1) ≥ ‖AᵀWA‖, which for a single tilt axis is
    ≈ (number of projections) × (object size along the beam) — the normalisation of the RESIRE
    paper — so ``step`` ∈ (0, 2) converges. ``accelerate`` adds Nesterov/FISTA momentum
    (same fixed point, far fewer iterations); ``weight`` (0/1 per detector pixel, internal
    projection layout) restricts the data term to the measured field of view.

    ``holdout`` > 0 leaves that fraction of detector pixels (random, ``seed``) out of the data
    term and returns the iterate with the lowest RMS residual on them, stopping after
    ``patience`` iterations without improvement — unregularised least squares semi-converges
    on noisy data, and this picks the stopping point from the data themselves.
    ``holdout_by="projections"`` leaves out whole projections (every 1/``holdout``-th by angle)
    instead, which stops nearer the error minimum (see ``_Holdout``); ``refit`` then runs again
    on all the data for the chosen number of iterations (about twice the time; the data left
    out no longer cost accuracy).

    ``subsets`` > 1 (or ``"auto"``): ordered subsets, :func:`resire_os` (``n_iter`` counts
    passes over all projections; ``tol`` is not used there).
    """
    if subsets != 1:
        return resire_os(op, b, n_iter=n_iter, subsets=subsets, step=step,
                         positivity=positivity, support=support, weight=weight,
                         accelerate=accelerate, x0=x0, holdout=holdout, holdout_by=holdout_by,
                         patience=patience, refit=refit, progress=progress, callback=callback)
    if holdout and refit:
        return _refit(resire, op, b, n_iter=n_iter, step=step, positivity=positivity,
                      support=support, weight=weight, accelerate=accelerate, x0=x0, tol=tol,
                      holdout=holdout, patience=patience, seed=seed, progress=progress,
                      callback=callback, holdout_by=holdout_by)
    ho = _holdout_for(b, holdout, seed, patience, holdout_by, op.euler[:, 1])
    given = weight  # the caller's pixels out of the data term stay out of the stopping rule
    if ho is not None:
        weight = ho.fit if weight is None else weight * ho.fit
    L = lipschitz_bound(op, weight)
    if L <= 0:
        raise ValueError("the projection geometry sees no voxel (A·1 = 0); check the shapes")
    s = np.float32(step / L)
    x = np.zeros(op.internal_volume_shape, np.float32) if x0 is None else \
        np.ascontiguousarray(x0, dtype=np.float32).copy()
    y = x.copy()
    bsum = float(np.abs(b if weight is None else b * weight).sum())
    res = np.empty(op.internal_projection_shape, np.float32)
    g = np.empty(op.internal_volume_shape, np.float32)
    xf, yf, gf = x.reshape(-1), y.reshape(-1), g.reshape(-1)
    sup_f = (np.zeros(0, np.float32) if support is None else
             np.ascontiguousarray(support, dtype=np.float32).reshape(-1))
    step_kernel = K.fista_step_par if op.parallel else K.fista_step
    record = []
    tk = 1.0
    t0 = time.perf_counter()
    with progress_bar(n_iter, "RESIRE", progress) as bar:
        for it in range(n_iter):
            op.forward(y, out=res)
            res -= b
            if given is not None and ho is not None:
                res *= given
            if ho is not None and ho.update(res, y, it):
                break
            if weight is not None:
                res *= weight
            record.append(_r1(res, bsum))
            op.adjoint(res, out=g)
            beta = 0.0
            if accelerate:
                tk1 = 0.5 * (1 + np.sqrt(1 + 4 * tk * tk))
                beta = (tk - 1) / tk1
                tk = tk1
            # x ← P(y − s·g), y ← x + β(x − x_previous): one fused pass over the volume
            step_kernel(xf, yf, gf, s, np.float32(beta), bool(positivity), sup_f,
                        sup_f.size > 0)
            if callback is not None:
                callback(it, x)
            bar.update()
            if tol and it > 0 and abs(record[-2] - record[-1]) < tol * record[-1]:
                break
    rec = {"r1": record, "n_iter": len(record), "step": float(step), "lipschitz": L,
           "time_s": time.perf_counter() - t0}
    if ho is not None:
        x = _constrain(ho.best_x, positivity, support)
        rec.update(holdout_rms=ho.record, best_iteration=ho.best_it)
    return x, rec


def auto_subsets(n_projections: int) -> int:
    """Ordered subsets for ``n_projections`` fitted projections: about 6 projections per
    subset, 1 to 8 subsets. Measured at 128³ × 47 (±69°, 2 % noise, RESIRE with momentum,
    error inside the particle): the minimum 0.272 comes after 32 passes with 1 subset, 16 with
    2, 8 with 4 (0.271), 4 with 8 (0.268); a pass costs the same, so 4-8× less time."""
    return int(max(1, min(8, n_projections // 6)))


def holdout_projections(theta_deg, fraction) -> np.ndarray:
    """Indices of held-out projections: every m-th by tilt angle (m = round(1 / ``fraction``),
    at least 2), starting in the middle of the first gap (as ``_Holdout`` does)."""
    m = max(2, int(round(1.0 / fraction)))
    return np.sort(np.argsort(np.asarray(theta_deg), kind="stable")[m // 2::m])


def resire_os(op: Projector, b: np.ndarray, *, n_iter: int = 50, subsets="auto",
              step: float = 1.0, positivity: bool = True, support=None, weight=None,
              accelerate: bool = True, x0=None, holdout: float = 0.0,
              holdout_by: str = "projections", patience: int = 5, refit: bool = False,
              max_updates: int | None = None, progress=None, callback=None):
    """RESIRE with ordered subsets and momentum (OS-FISTA).

    The objective of :func:`resire`, but each update takes the gradient of one subset of the
    projections (tilt angles dealt round-robin in angle order, so every subset spans the tilt
    range) with step ``step / L_k`` (L_k = max(A_kᵀW A_k·1) of that subset), and Nesterov
    momentum runs across updates. A pass over the subsets costs one :func:`resire` iteration
    and makes ``subsets`` updates: on noisy data the error minimum comes about ``subsets``
    times sooner at the same depth (:func:`auto_subsets`). OS does not converge to the
    least-squares solution (it cycles near it); early stopping never gets there.

    ``holdout`` > 0 (whole projections, ``holdout_by="projections"``): those projections
    (:func:`holdout_projections`) are left out of every subset; after each update the RMS
    residual on them is measured (a forward projection of the held-out angles only, 1/8 of a
    pass for ``holdout`` = 0.125) and the update with the lowest is kept; the run stops
    ``patience`` updates after it. ``refit`` then runs again on all projections for the chosen
    number of updates. ``n_iter`` is the most passes, ``max_updates`` the most updates;
    ``callback(k, x)`` is called after update k = 1, 2, ...
    """
    if holdout and holdout_by != "projections":
        raise ValueError(f"ordered subsets stop on held-out whole projections; pass "
                         f"holdout_by='projections' (got {holdout_by!r}) or subsets=1")
    n = op.n_angles
    theta = op.euler[:, 1]
    if holdout:
        if not 0 < holdout < 0.5:
            raise ValueError(f"holdout must be a fraction in (0, 0.5), got {holdout!r}")
        if n < 4:
            raise ValueError(f"holdout_by='projections' needs at least 4 projections, got "
                             f"{n}; use holdout_by='pixels' with subsets=1")
        held = holdout_projections(theta, holdout)
    else:
        held = np.zeros(0, np.int64)
    fit = np.setdiff1d(np.arange(n), held)
    if isinstance(subsets, str):
        if subsets != "auto":
            raise ValueError(f"subsets must be a positive integer or 'auto', got {subsets!r}")
        m = auto_subsets(len(fit))
    else:
        m = int(subsets)
        if m < 1:
            raise ValueError(f"subsets must be a positive integer or 'auto', got {subsets!r}")
    m = min(m, len(fit))
    t0 = time.perf_counter()
    order = fit[np.argsort(theta[fit], kind="stable")]
    groups = [np.sort(order[k::m]) for k in range(m)]
    ops = [op.subset(gr) for gr in groups]
    bs = [np.ascontiguousarray(b[gr]) for gr in groups]
    ws = [None if weight is None else np.ascontiguousarray(weight[gr]) for gr in groups]
    Ls = [lipschitz_bound(o, w) for o, w in zip(ops, ws)]
    if min(Ls) <= 0:
        raise ValueError("the projection geometry sees no voxel (A·1 = 0); check the shapes")
    steps = [np.float32(step / L) for L in Ls]
    if len(held):
        op_h = op.subset(held)
        b_h = np.ascontiguousarray(b[held])
        w_h = None if weight is None else np.ascontiguousarray(weight[held])
        r_h = np.empty(op_h.internal_projection_shape, np.float32)
        n_h = float(b_h.size if w_h is None else max(1.0, float(w_h.sum())))
    x = np.zeros(op.internal_volume_shape, np.float32) if x0 is None else \
        np.ascontiguousarray(x0, dtype=np.float32).copy()
    y = x.copy()
    g = np.empty_like(x)
    xf, yf, gf = x.reshape(-1), y.reshape(-1), g.reshape(-1)
    sup_f = (np.zeros(0, np.float32) if support is None else
             np.ascontiguousarray(support, dtype=np.float32).reshape(-1))
    step_kernel = K.fista_step_par if op.parallel else K.fista_step
    res = [np.empty(o.internal_projection_shape, np.float32) for o in ops]
    bsum = float(sum(np.abs(bk if wk is None else bk * wk).sum() for bk, wk in zip(bs, ws)))
    record, ho_record = [], []
    best, best_k, best_x, bad = np.inf, 0, None, 0
    tk = 1.0
    k = 0
    limit = np.inf if max_updates is None else int(max_updates)
    with progress_bar(n_iter, "RESIRE-OS", progress) as bar:
        for _ in range(n_iter):
            r1 = 0.0
            stop = False
            for j in range(m):
                r = res[j]
                ops[j].forward(y, out=r)
                r -= bs[j]
                if ws[j] is not None:
                    r *= ws[j]
                r1 += float(np.abs(r).sum())
                ops[j].adjoint(r, out=g)
                beta = 0.0
                if accelerate:
                    tk1 = 0.5 * (1 + np.sqrt(1 + 4 * tk * tk))
                    beta = (tk - 1) / tk1
                    tk = tk1
                # x ← P(y − s·g), y ← x + β(x − x_previous): one fused pass over the volume
                step_kernel(xf, yf, gf, steps[j], np.float32(beta), bool(positivity), sup_f,
                            sup_f.size > 0)
                k += 1
                if callback is not None:
                    callback(k, x)
                if len(held):
                    op_h.forward(x, out=r_h)
                    r_h -= b_h
                    if w_h is not None:
                        r_h *= w_h
                    h = float(np.sqrt(np.sum(np.square(r_h, dtype=np.float32)) / n_h))
                    ho_record.append(h)
                    if h < best:
                        best, best_k, bad = h, k, 0
                        if best_x is None:
                            best_x = x.copy()
                        else:
                            best_x[...] = x
                    else:
                        bad += 1
                        stop = patience > 0 and bad >= patience
                if stop or k >= limit:
                    stop = True
                    break
            record.append(r1 / bsum if bsum > 0 else float("nan"))
            bar.update()
            if stop:
                break
    rec = {"r1": record, "n_iter": len(record), "updates": k, "subsets": m,
           "step": float(step), "time_s": time.perf_counter() - t0}
    if len(held):
        x = best_x
        rec.update(holdout_rms=ho_record, best_update=best_k, best_iteration=best_k / m,
                   held_out=[int(i) for i in held])
        if refit:
            x, rec2 = resire_os(op, b, n_iter=-(-best_k // m) + 1, subsets=m, step=step,
                                positivity=positivity, support=support, weight=weight,
                                accelerate=accelerate, x0=x0, max_updates=best_k,
                                progress=progress, callback=callback)
            rec.update(refit=True, refit_updates=rec2["updates"],
                       time_s=rec["time_s"] + rec2["time_s"])
    return x, rec


def _refit(solver, op, b, *, n_iter, callback, **kw):
    """Choose the iteration count on held-out data, then iterate that often on all of it."""
    _, rec = solver(op, b, n_iter=n_iter, **kw)
    # best_iteration counts updates for RESIRE, updates + 1 for SIRT (its record's convention)
    k = max(1, int(rec["best_iteration"]) - (solver is sirt))
    kw.update(holdout=0.0, patience=0)
    x, rec2 = solver(op, b, n_iter=k, callback=callback, **kw)
    rec2.update(holdout_rms=rec["holdout_rms"], best_iteration=k, refit=True,
                holdout_n_iter=rec["n_iter"], time_s=rec["time_s"] + rec2["time_s"])
    return x, rec2


def r1_per_projection(op: Projector, x: np.ndarray, b: np.ndarray, weight=None) -> np.ndarray:
    """R1_θ = Σ|A_θ x − b_θ| / Σ|b_θ| for every projection (internal layouts)."""
    res = op.forward(x) - b
    bb = np.abs(b)
    if weight is not None:
        res *= weight
        bb = bb * weight
    num = np.abs(res).reshape(len(res), -1).sum(1)
    den = bb.reshape(len(bb), -1).sum(1)
    return np.where(den > 0, num / np.maximum(den, 1e-30), np.nan)
