"""The forward model of the refinement and its least-squares problem (arrays, no xarray).

Atom model (``_kernels.profile_kernel``): atom ``j`` of species ``s`` adds to the *linear*
image of projection ``k`` a radial profile learned from the data, a sum of fixed-width
Gaussians with per-species amplitudes ``C[s, g] ≥ 0``:

    a_s(ρ) = Σ_g C[s, g] exp(−ρ² / 2σ_g²),  ρ = |x − (R2_k · p_j + s_k)|,

(σ_g a geometric ladder, default 0.25–1.27 Å: wide enough for the probe tails, narrow enough
for a sharp column), and the measured image is the detector's response to the summed linear
image ``L`` plus a per-projection offset:

    M = ref · ((L / ref + ε)^γ − ε^γ) + b_k.

``γ`` is fitted from the data (columns of n atoms grow as n^γ, which a linear model can only
mimic by moving atoms); ``ref`` is a fixed intensity scale (the 99.9th percentile of the
data) that keeps ``C`` and ``γ`` decoupled, ``ε = 10⁻³`` keeps dM/dL finite at L = 0. For a
column of identical atoms the model is exact whatever γ and profile (``(n a)^γ = n^γ a^γ``).

Loss: ½ Σ w (M − measured)² over the *training* pixels; a seeded random fraction
(``holdout``) of the pixels is held out (``hw``) and only ever used to judge the fit.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize

from ...core.meta import rotation_matrices
from .. import _kernels as K
from .alignment import alignment_basis, alignment_from_vector, rotation_derivatives

DEFAULT_SIGMAS_A = (0.25, 0.375, 0.56, 0.84, 1.27)
# the positions/alignment fits stop when their last STOP_WINDOW iterations together lowered
# the loss by less than STOP_CHI2 units of χ² (ΔL / (L / n_pixels), the residual taken as
# noise: an overestimate of the noise, so the rule stops late rather than early). Measured
# on abTEM 3 nm FePt, 1e5 e/Å², seed 0 (the five fits of aet.run's refinement, 60
# iterations each before): they stop after 54, 60, 45, 35, 28 iterations (a quarter fewer);
# recall, precision and species unchanged, RMSD 14.636 -> 14.645 pm, err/σ 1.272 -> 1.272.
# (STOP_CHI2 = 1: 46, 53, 40, 29, 15 iterations, RMSD 14.659 pm.)
STOP_WINDOW = 5
STOP_CHI2 = 0.3
EPS = 1e-3
GAMMA_BOUNDS = (0.5, 3.0)

# indices into the kernel's output tuple
LOSS, L1, HOLD, G_POS, G_C, G_GAMMA, G_OFFSET, FISHER, G_POS_K, D_LOSS, D_HOLD, V_HOLD, \
    G_SHIFTS, G_R2, JTJ, JTW, NW, MOMENTS, FISHER_K, MEAT = range(20)


def holdout_pixels(shape, fraction: float, seed=0) -> np.ndarray:
    """The refinement's held-out pixels: a seeded random ``fraction`` of a tilt series'
    ``(angle, y, x)`` pixels (True = held out). :func:`aet.run` draws them before the
    reconstruction and leaves them out of it, so that nothing the refinement starts from has
    seen them."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng.random(tuple(shape)) < fraction


class ProjectionProblem:
    """The least-squares problem of a model against a tilt series.

    Parameters
    ----------
    measured : (n_proj, ny, nx) array
    geometry : dict from :func:`~aet.atoms.refinement.projection_geometry`
    species_index : (n_atoms,) int array into the rows of the profile amplitudes
    n_species : int
    sigmas_A : sequence of float
        Widths (Å) of the Gaussians the radial profiles are built from.
    cutoff : float
        Footprint half-width of each Gaussian in its widths.
    holdout : float
        Fraction of pixels held out of the fit (:func:`holdout_pixels` with ``seed``), 0 for
        none.
    held : bool array of ``measured``'s shape, optional
        The held-out pixels themselves (replaces ``holdout`` and ``seed``).
    """

    def __init__(self, measured, geometry, species_index, n_species: int,
                 sigmas_A=DEFAULT_SIGMAS_A, *, cutoff: float = 3.5, holdout: float = 0.0,
                 seed=0, held=None):
        self.meas = np.ascontiguousarray(measured, dtype=np.float64)
        self.geo = geometry
        self.sp = np.ascontiguousarray(species_index, dtype=np.int64)
        # each atom's index in the model the problem was built from (-1: added since), so
        # what was measured of the atoms before (the classification's intensities) follows
        # them through removals and additions
        self.origin = np.arange(self.sp.size, dtype=np.int64)
        self.ns = int(n_species)
        self.sigmas = np.asarray(sigmas_A, dtype=np.float64).reshape(-1)
        self.S = np.ascontiguousarray(self.sigmas**2)
        self.cutoff = float(cutoff)
        n_proj = self.meas.shape[0]
        self.holdout = float(holdout)
        if held is not None:
            held = np.asarray(held, dtype=bool)
            self.holdout = float(held.mean())
        elif self.holdout > 0:
            held = holdout_pixels(self.meas.shape, self.holdout, seed)
        else:
            held = np.zeros(self.meas.shape, dtype=bool)
        self.hw = np.ascontiguousarray(held, dtype=np.float64)
        self.w = np.ascontiguousarray(1.0 - self.hw)
        self.norm = 0.5 * float((self.w * self.meas**2).sum()) or 1.0
        self.hnorm = 0.5 * float((self.hw * self.meas**2).sum()) or 1.0
        self.l1norm = float((self.w * np.abs(self.meas)).sum()) or 1.0
        self.n_train = float(self.w.sum())
        ref = float(np.percentile(self.meas, 99.9))
        self.ref = ref if ref > 0 else (float(np.abs(self.meas).max()) or 1.0)
        self.eps = EPS
        # model state
        self.C = np.zeros((self.ns, len(self.S)))
        self.gamma = 1.0
        self.offset = np.zeros(n_proj)
        self.shifts = np.zeros((n_proj, 2))
        self.d_euler = np.zeros((n_proj, 3))
        self.R2 = np.ascontiguousarray(geometry["R2"], dtype=np.float64)

    # -- state -----------------------------------------------------------------------------
    def set_alignment(self, shifts=None, d_euler=None):
        """Set the per-projection shifts ``(n_proj, 2)`` (Å) and Euler corrections
        ``(n_proj, 3)`` (deg) the model is evaluated with."""
        if shifts is not None:
            self.shifts = np.ascontiguousarray(shifts, dtype=np.float64).reshape(-1, 2)
        if d_euler is not None:
            self.d_euler = np.asarray(d_euler, dtype=np.float64).reshape(-1, 3).copy()
            if np.any(self.d_euler):
                self.R2 = np.ascontiguousarray(
                    rotation_matrices(self.geo["euler_deg"] + self.d_euler)[:, :2])
            else:
                self.R2 = np.ascontiguousarray(self.geo["R2"], dtype=np.float64)

    def state(self) -> dict:
        """A copy of everything but the positions (profile, response, offsets, alignment)."""
        return {"C": self.C.copy(), "gamma": float(self.gamma), "offset": self.offset.copy(),
                "shifts": self.shifts.copy(), "d_euler": self.d_euler.copy(),
                "sp": self.sp.copy(), "origin": self.origin.copy()}

    def restore(self, st: dict):
        self.C = st["C"].copy()
        self.gamma = st["gamma"]
        self.offset = st["offset"].copy()
        self.sp = st["sp"].copy()
        self.origin = st["origin"].copy()
        self.set_alignment(st["shifts"], st["d_euler"])

    def keep_atoms(self, keep):
        """Keep the atoms where ``keep`` (bool, one per atom) is True: species and origins."""
        keep = np.asarray(keep, dtype=bool)
        self.sp = np.ascontiguousarray(self.sp[keep])
        self.origin = self.origin[keep]

    def add_atoms(self, species_index):
        """Append new atoms of the given species indices (origin −1)."""
        new = np.asarray(species_index, dtype=np.int64).reshape(-1)
        self.sp = np.concatenate([self.sp, new])
        self.origin = np.concatenate([self.origin, np.full(new.size, -1, np.int64)])

    def subset(self, proj_index) -> ProjectionProblem:
        """The same problem (and state) on a subset of the projections."""
        geo = dict(self.geo)
        geo["R2"] = np.ascontiguousarray(self.geo["R2"][proj_index])
        geo["euler_deg"] = self.geo["euler_deg"][proj_index]
        sub = ProjectionProblem(self.meas[proj_index], geo, self.sp, self.ns, self.sigmas,
                                cutoff=self.cutoff)
        sub.w = np.ascontiguousarray(self.w[proj_index])
        sub.hw = np.ascontiguousarray(self.hw[proj_index])
        sub.ref, sub.C, sub.gamma = self.ref, self.C.copy(), self.gamma
        sub.offset = self.offset[proj_index].copy()
        sub.set_alignment(self.shifts[proj_index], self.d_euler[proj_index])
        return sub

    # -- evaluation ------------------------------------------------------------------------
    def evaluate(self, pos, mode: int = 0, *, sp=None, C=None, gamma=None, offset=None,
                 pos_alt=None, sp_alt=None, img_out=None):
        """The kernel's outputs (see ``_kernels.profile_kernel``) at positions ``pos``."""
        g = self.geo
        n = len(pos)
        # small problems: the serial kernel (thread start-up and barriers cost more than
        # they save, and a busy machine makes a parallel barrier wait for the slowest core)
        big = self.meas.shape[0] * n > 20_000
        fn = K.profile_kernel_parallel if big else K.profile_kernel
        if pos_alt is None:
            pos_alt = np.zeros((1, 3))
            sp_alt = np.zeros(1, dtype=np.int64)
        return fn(
            np.ascontiguousarray(pos, dtype=np.float64), self.sp if sp is None else
            np.ascontiguousarray(sp, dtype=np.int64),
            np.ascontiguousarray(self.C if C is None else C, dtype=np.float64), self.S,
            float(self.gamma if gamma is None else gamma), self.eps, self.ref,
            np.ascontiguousarray(self.offset if offset is None else offset, dtype=np.float64),
            self.R2, self.shifts, self.meas, self.w, self.hw, g["x0"], g["y0"], g["pixel_A"],
            self.cutoff, mode, np.ascontiguousarray(pos_alt, dtype=np.float64),
            np.ascontiguousarray(sp_alt, dtype=np.int64),
            np.zeros((1, 1, 1)) if img_out is None else img_out)

    def r_factor(self, pos) -> float:
        """Σ w |M − measured| / Σ w |measured| on the training pixels."""
        return self.evaluate(pos)[L1] / self.l1norm

    def losses(self, pos) -> tuple[float, float]:
        """(training loss / ½Σ w meas², held-out loss / ½Σ hw meas²)."""
        out = self.evaluate(pos)
        return out[LOSS] / self.norm, out[HOLD] / self.hnorm

    def peak_height(self, s: int) -> float:
        """Model image value at the centre of one isolated atom of species ``s``."""
        lin = float(self.C[s].sum())
        return self.ref * ((lin / self.ref + self.eps) ** self.gamma - self.eps**self.gamma)

    # -- profile ---------------------------------------------------------------------------
    def initial_profile(self, pos, *, fit_offset: bool = True, history: list | None = None):
        """Start the profile: the linear response (γ = 1), equal amplitudes, then the
        Gauss–Newton fit of the amplitudes (and offsets), which the linear model makes a
        linear least-squares problem (solved in the first step, up to the bounds C ≥ 0)."""
        self.gamma = 1.0
        self.C = np.full(self.C.shape, 0.1 * self.ref / self.C.shape[1])
        self.offset = np.zeros(len(self.offset))
        self.fit_profile(pos, fit_gamma=False, fit_offset=fit_offset, max_iter=6,
                         history=history)
        # a species without atoms (or without signal) keeps a profile: the mean one
        for s in range(self.ns):
            if not np.any(self.C[s] > 0):
                self.C[s] = self.C.mean(axis=0) if np.any(self.C > 0) else \
                    np.full(self.C.shape[1], 1e-3 * self.ref)

    def fit_profile(self, pos, *, fit_gamma: bool = True, fit_offset: bool = True,
                    max_iter: int = 20, history: list | None = None, tol: float = 1e-7):
        """Levenberg–Marquardt fit of the amplitudes (≥ 0, active set), γ (bounded) and the
        offsets at fixed positions, on the exact Gauss–Newton system from the kernel."""
        ns, ng = self.C.shape
        nb = ns * ng
        n_proj = len(self.offset)
        p = nb + 1 + n_proj
        lam = 1e-6
        loss = self.evaluate(pos, 0)[LOSS]
        r_fac = np.nan
        for _ in range(max_iter):
            out = self.evaluate(pos, 2)
            H = np.zeros((p, p))
            H[:nb + 1, :nb + 1] = out[JTJ]
            H[:nb + 1, nb + 1:] = out[JTW].T
            H[nb + 1:, :nb + 1] = out[JTW]
            H[np.arange(nb + 1, p), np.arange(nb + 1, p)] = out[NW]
            g = np.concatenate([out[G_C].ravel(), [out[G_GAMMA]], out[G_OFFSET]])
            x = np.concatenate([self.C.ravel(), [self.gamma], self.offset])
            free = np.ones(p, bool)
            free[:nb] = ~((x[:nb] <= 0) & (g[:nb] > 0))  # at the bound and pushed into it
            if not fit_gamma:
                free[nb] = False
            if not fit_offset:
                free[nb + 1:] = False
            Hf = H[np.ix_(free, free)]
            diag = np.maximum(np.diag(Hf), 1e-12 * max(float(np.max(np.diag(Hf))), 1e-300))
            new_loss = np.inf
            for _t in range(8):
                try:
                    step = np.linalg.solve(Hf + lam * np.diag(diag), -g[free])
                except np.linalg.LinAlgError:
                    lam *= 10.0
                    continue
                xn = x.copy()
                xn[free] += step
                xn[:nb] = np.maximum(xn[:nb], 0.0)
                xn[nb] = min(max(xn[nb], GAMMA_BOUNDS[0]), GAMMA_BOUNDS[1])
                Cn, gn, on = xn[:nb].reshape(ns, ng), float(xn[nb]), xn[nb + 1:]
                trial = self.evaluate(pos, 0, C=Cn, gamma=gn, offset=on)
                new_loss = trial[LOSS]
                if new_loss < loss:
                    self.C, self.gamma, self.offset = Cn, gn, on.copy()
                    r_fac = trial[L1] / self.l1norm
                    lam = max(lam / 10.0, 1e-9)
                    break
                lam *= 10.0
            if not new_loss < loss:
                break
            if history is not None:
                history.append(("profile", float(r_fac)))
            done = (loss - new_loss) <= tol * loss
            loss = new_loss
            if done:
                break

    # -- positions and alignment -----------------------------------------------------------
    def alignment_gradient(self, out, fit_shifts, angle_idx):
        """Gradient of the loss (kernel output ``out`` of mode ≥ 1) with respect to the
        alignment coordinates of :func:`alignment_basis` (shifts per Å, angles per rad)."""
        parts = []
        if fit_shifts:
            parts += [out[G_SHIFTS][:, 0], out[G_SHIFTS][:, 1]]
        if angle_idx:
            dR = rotation_derivatives(self.geo["euler_deg"] + self.d_euler)[:, :, :2, :]
            for a in angle_idx:
                parts.append(np.einsum("krc,krc->k", out[G_R2], dR[:, a]))
        return np.concatenate(parts) if parts else np.zeros(0)

    def fit_geometry(self, pos, *, max_iter: int, history: list | None,
                     max_move_A: float | None = None, fit_pos: bool = True,
                     fit_shifts: bool = False, angle_idx: tuple[int, ...] = (),
                     alignment_damping: float = 1e-2, stage: str = "positions", anchor=None):
        """One L-BFGS(-B) fit of the positions and/or the per-projection alignment (profile
        fixed). Returns the positions; the fitted alignment is left in the problem.

        Positions are scaled per coordinate by the square root of their Gauss–Newton
        curvature (a diagonal preconditioner: heavy and light atoms, x/y and the
        missing-wedge z converge alike); ``max_move_A`` bounds each coordinate's move from
        ``anchor`` (default: the start). ``alignment_damping``: Tikhonov term ½ μ_k δ_k² on
        every fitted angle correction, μ_k = ``alignment_damping`` × the data's Gauss–Newton
        curvature along it; it fixes the combinations no projection determines (δφ − δψ at
        θ = 0) and shrinks the others by ~that fraction. The fit stops after ``max_iter``
        iterations, or earlier when its last ``STOP_WINDOW`` iterations together lowered the
        loss by less than ``STOP_CHI2`` units of χ² (the noise variance estimated by the
        mean squared residual).
        """
        n = len(pos)
        fit_align = fit_shifts or bool(angle_idx)
        if not (fit_pos or fit_align):
            return np.array(pos, dtype=np.float64)
        shifts0, deuler0 = self.shifts.copy(), self.d_euler.copy()
        pos0 = np.asarray(pos, dtype=np.float64).ravel()
        if fit_align:
            Q, scale = alignment_basis(self.R2, pos, fit_shifts, angle_idx)
        else:
            Q, scale = np.zeros((0, 0)), np.zeros(0)
        npos = pos0.size if fit_pos else 0
        if npos + Q.shape[1] == 0:  # e.g. a mean-free δθ of a single projection
            return np.array(pos, dtype=np.float64)
        F = None
        if fit_pos or (angle_idx and alignment_damping):
            F = self.evaluate(pos, 3)[FISHER]
        if fit_pos:
            d = np.sqrt(np.maximum(np.diagonal(F, axis1=1, axis2=2), 0.0)).ravel()
            pscale = 1.0 / np.maximum(d, 1e-3 * max(float(np.median(d)), 1e-300))
            pscale = pscale / float(np.median(pscale))  # a unit step ~ a typical Å
        else:
            pscale = np.zeros(0)
        mu = self._angle_damping(F, pos, angle_idx, alignment_damping)
        best = {"f": np.inf, "x": None, "last_x": None, "last_R": np.nan, "last_f": np.inf}

        def unpack(x):
            p = (pos0 + x[:npos] * pscale).reshape(n, 3) if fit_pos else pos0.reshape(n, 3)
            if fit_align:
                a_vec = (Q @ x[npos:]) * scale
                self.set_alignment(*alignment_from_vector(a_vec, fit_shifts, angle_idx,
                                                          shifts0, deuler0))
            return p

        def f(x):
            p = unpack(x)
            out = self.evaluate(p, 4)  # gradients of positions and alignment only
            loss = out[LOSS]
            g = [out[G_POS].ravel() * pscale] if fit_pos else []
            if fit_align:
                ga = self.alignment_gradient(out, fit_shifts, angle_idx)
                if mu is not None:  # Tikhonov term on the total angle corrections (rad)
                    dd = np.radians(self.d_euler[:, list(angle_idx)].T.ravel())
                    loss = loss + 0.5 * float(np.sum(mu * dd * dd))
                    ga[ga.size - dd.size:] += mu * dd
                g.append(Q.T @ (ga * scale))
            val = loss / self.norm
            best["last_x"], best["last_R"] = x.copy(), out[L1] / self.l1norm
            best["last_f"] = val
            if val < best["f"]:
                best["f"], best["x"] = val, x.copy()
            return val, np.concatenate(g) / self.norm

        x0 = np.zeros(npos + Q.shape[1])
        bounds = None
        if max_move_A is not None and fit_pos:
            a = pos0 if anchor is None else np.asarray(anchor, dtype=np.float64).ravel()
            lo = (a - max_move_A - pos0) / pscale
            hi = (a + max_move_A - pos0) / pscale
            bounds = list(zip(np.minimum(lo, 0.0), np.maximum(hi, 0.0))) + \
                [(None, None)] * Q.shape[1]
        trail: list = []  # the loss after each iteration

        def cb(xk):
            last = np.array_equal(xk, best["last_x"])
            if history is not None:
                R = best["last_R"] if last else self.r_factor(unpack(xk))
                history.append((stage, float(R)))
            if last:
                trail.append(best["last_f"])
                if len(trail) > STOP_WINDOW and (trail[-1 - STOP_WINDOW] - trail[-1]) * \
                        self.n_train < STOP_CHI2 * trail[-1]:
                    raise StopIteration  # the last iterations gained less than noise

        res = minimize(f, x0, jac=True, method="L-BFGS-B", bounds=bounds, callback=cb,
                       options={"maxiter": max_iter, "ftol": 1e-14, "gtol": 1e-12,
                                "maxcor": 20})
        x = best["x"] if best["x"] is not None else res.x
        p = unpack(x)
        if fit_shifts:
            p = self.translation_gauge(p)
        return p.copy()

    def _angle_damping(self, F, pos, angle_idx, damping):
        """Per-parameter Tikhonov weights ``(len(angle_idx) * n_proj,)`` (loss units per
        rad²) for the angle corrections, or None."""
        if not angle_idx or not damping:
            return None
        n_proj = self.meas.shape[0]
        # mean curvature of the loss per Å of image displacement, one atom, one projection
        a = float(np.mean(np.trace(F, axis1=1, axis2=2))) / (2.0 * n_proj)
        dR = rotation_derivatives(self.geo["euler_deg"] + self.d_euler)[:, :, :2, :]
        p = np.asarray(pos, dtype=np.float64)
        mu = [a * (np.einsum("krc,jc->kjr", dR[:, i], p) ** 2).sum(axis=(1, 2))
              for i in angle_idx]
        return float(damping) * np.concatenate(mu)

    def translation_gauge(self, pos):
        """Move the part of the shifts a rigid 3D translation ``t`` explains (``R2_k t`` at
        the current angles) into the model: shifts − R2 t, positions + t (the model images
        are unchanged). Returns the moved positions."""
        A = np.concatenate([self.R2[:, 0], self.R2[:, 1]], axis=0)
        b = np.concatenate([self.shifts[:, 0], self.shifts[:, 1]])
        t = np.linalg.lstsq(A, b, rcond=None)[0]
        self.set_alignment(self.shifts - np.einsum("krc,c->kr", self.R2, t))
        return np.asarray(pos, dtype=np.float64) + t

    def model_image(self, pos, *, sp=None) -> np.ndarray:
        """The kernel's model projections ``(n_proj, ny, nx)`` at ``pos`` (with the cut-off
        the fit uses)."""
        img = np.empty(self.meas.shape)
        self.evaluate(pos, 0, sp=sp, img_out=img)
        return img

    def noise_model(self, pos, *, sp=None, n_bins: int = 24,
                    image=None) -> tuple[float, float]:
        """``(a, b)`` of the pixel noise variance ``a + b M`` (M the model image: read-out
        plus counting noise), robust: the median of the training residuals² in bins of M
        (÷ 0.455, the median of χ²₁), so that misfit of a few atoms does not pass for
        noise; a, b ≥ 0. ``image``: the model image at ``pos`` when already computed."""
        img = self.model_image(pos, sp=sp) if image is None else image
        sel = self.w > 0
        m = img[sel]
        r2 = (m - self.meas[sel]) ** 2
        edges = np.unique(np.quantile(m, np.linspace(0, 1, n_bins + 1)))
        idx = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, len(edges) - 2)
        cnt = np.bincount(idx, minlength=len(edges) - 1)
        ok = np.flatnonzero(cnt >= 20)
        if len(ok) == 0:
            return float(np.median(r2) / 0.455), 0.0
        # per-bin medians from one sort by bin (the same values as a median per mask)
        order = np.argsort(idx, kind="stable")
        ms, rs = m[order], r2[order]
        start = np.concatenate([[0], np.cumsum(cnt)])
        mx = np.array([np.median(ms[start[b]:start[b + 1]]) for b in ok])
        vy = np.array([np.median(rs[start[b]:start[b + 1]]) / 0.455 for b in ok])
        wb = cnt[ok].astype(float)
        A = np.stack([np.ones_like(mx), mx], 1) * np.sqrt(wb)[:, None]
        a, b = np.linalg.lstsq(A, vy * np.sqrt(wb), rcond=None)[0]
        if a < 0 or b < 0:
            if b < 0:
                a, b = float(np.average(vy, weights=wb)), 0.0
            else:
                a, b = 0.0, float(np.sum(wb * vy * mx) / max(np.sum(wb * mx * mx), 1e-300))
        return float(a), float(b)

    def replacement_test(self, pos, pos_alt, sp_alt, sp=None, noise=None,
                         energy: bool = False):
        """Exact change of the training and held-out losses (relative units) when each atom
        alone is replaced by ``(pos_alt[j], sp_alt[j])`` (species −1: absent; −2: atom not
        tested, its numbers zero), and the
        standard deviation of the held-out change under the pixel noise of
        :meth:`noise_model` (``noise``: its ``(a, b)`` when already known). ``energy``:
        also ½ Σ hw Δm² / ½ Σ hw meas², the held-out energy of the image change itself
        (relative units; on the training pixels it is the same fraction of the training
        norm, the held-out pixels being a random sample)."""
        img = np.empty(self.meas.shape) if noise is None else None
        out = self.evaluate(pos, 5, sp=sp, pos_alt=pos_alt, sp_alt=sp_alt, img_out=img)
        # the noise model from the model image this call computed anyway (no second pass)
        a, b = self.noise_model(pos, sp=sp, image=img) if noise is None else noise
        var = a * out[V_HOLD][:, 0] + b * out[V_HOLD][:, 1]
        res = (out[D_LOSS] / self.norm, out[D_HOLD] / self.hnorm,
               np.sqrt(np.maximum(var, 0.0)) / self.hnorm)
        if energy:
            res = (*res, 0.5 * out[V_HOLD][:, 0] / self.hnorm)
        return res


def _basis_images(prob: ProjectionProblem, k: int, pos, sp=None) -> np.ndarray:
    """``(n_species, n_gauss, ny, nx)`` linear images of projection ``k`` with unit
    amplitudes (dense, no cut-off)."""
    ny, nx = prob.meas.shape[1:]
    g = prob.geo
    xs = g["x0"] + np.arange(nx) * g["pixel_A"]
    ys = g["y0"] + np.arange(ny) * g["pixel_A"]
    spi = prob.sp if sp is None else sp
    uv = np.asarray(pos, dtype=np.float64) @ prob.R2[k].T + prob.shifts[k]
    out = np.zeros((prob.ns, len(prob.S), ny, nx))
    for s in range(prob.ns):
        sel = spi == s
        if not np.any(sel):
            continue
        for gi, S in enumerate(prob.S):
            ex = np.exp(-(xs[None, :] - uv[sel, 0:1]) ** 2 / (2 * S))
            ey = np.exp(-(ys[None, :] - uv[sel, 1:2]) ** 2 / (2 * S))
            out[s, gi] = ey.T @ ex
    return out


def model_images(prob: ProjectionProblem, pos, *, sp=None, linear: bool = False) -> np.ndarray:
    """Model projections ``(n_proj, ny, nx)`` of the problem's profile, response, offsets
    and alignment (the kernel's forward model without cut-off; NumPy, for rendering and
    linear fits). ``linear``: the linear image ``L`` before the response and offset."""
    n_proj, ny, nx = prob.meas.shape
    imgs = np.empty((n_proj, ny, nx))
    for k in range(n_proj):
        lin = np.einsum("sg,sgyx->yx", prob.C, _basis_images(prob, k, pos, sp=sp))
        if linear:
            imgs[k] = lin
        else:
            lp = np.maximum(lin, 0.0) / prob.ref + prob.eps
            imgs[k] = prob.ref * (lp**prob.gamma - prob.eps**prob.gamma) + prob.offset[k]
    return imgs


def profile_curve(C_row, sigmas_A, r_A) -> np.ndarray:
    """The linear radial profile Σ_g C_g exp(−r²/2σ_g²) at radii ``r_A`` (Å)."""
    r = np.asarray(r_A, dtype=np.float64)[..., None]
    return (np.asarray(C_row) * np.exp(-r**2 / (2 * np.asarray(sigmas_A) ** 2))).sum(-1)


def fwhm_of_profile(C_row, sigmas_A, gamma, ref, eps=EPS) -> float:
    """FWHM (Å) of one isolated atom's image (profile through the response)."""
    r = np.linspace(0.0, 4.0 * float(np.max(sigmas_A)), 4001)
    lin = profile_curve(C_row, sigmas_A, r)
    img = (lin / ref + eps) ** gamma - eps**gamma
    if img[0] <= 0:
        return float("nan")
    i = int(np.argmax(img < 0.5 * img[0]))
    return 2.0 * float(r[i]) if i > 0 else float("nan")

