"""Refinement of an atomic model against the aligned projections, and per-atom uncertainty.

Forward model (``_kernels.projection_kernel``): atom ``j`` of species ``s`` is a 3D Gaussian of
peak height ``H_s`` and thermal variance ``B_s / 8π²`` (B-factor in Å²), convolved with a fixed
scattering/probe kernel (a sum of normalised 2D Gaussians, default one Gaussian of FWHM
0.8 Å). A projection at Euler angles (φ, θ, ψ) rotates the positions by
R = R_z(φ)·R_y(θ)·R_z(ψ) (DESIGN.md, active) and sums along z; images are sampled at pixel
centres (coordinate 0 Å at index ``n // 2``).

Fit: ½‖model − measured‖² (normalised by ½‖measured‖²) minimised with L-BFGS(-B) from SciPy
with analytic gradients from the Numba kernel — first ``H, B`` per species (positions fixed),
then all positions (``H, B`` fixed), for ``n_cycles`` cycles. The R-factor
Σ|model − measured| / Σ|measured| is recorded at every iteration and the best iterate is kept.

Alignment (optional, ``refine_alignment``): per-projection detector shifts ``(sx, sy)`` (Å; the
atoms of projection ``k`` land at ``R2_k · p + s_k``) and Euler-angle corrections ``δφ, δθ, δψ``
(deg) fitted against the same error, alternately with the heights/B-factors and jointly with the
positions. Gradients are analytic: ∂L/∂s_k is the sum over atoms of ∂L/∂(u, w) (minus the
image gradient of the projected model weighted by the residual), and ∂L/∂δ_k follows by the
chain rule ``Σ_j ∂L/∂(u_j, w_j) · (∂R2_k/∂δ) p_j`` with ∂R/∂δ in closed form. Gauge: a rigid 3D
translation of the model explains shifts ``R2_k t`` and a rigid rotation about y (z) explains a
common δθ (δψ); these directions are projected out of the alignment parameters, so the model
keeps the data's frame (shift corrections are orthogonal to every ``R2_k t``, angle
corrections have zero mean in θ and ψ; a common δφ — an in-plane tilt-axis rotation — is
measurable and kept); after each fit the translation the shifts still hold at the new angles
is moved into the model exactly. What no projection determines (δφ − δψ at θ = 0, where both
rotate about the beam) is pinned by a weak Tikhonov term relative to the data curvature
(``alignment_damping``).

Uncertainty: the 3×3 Gauss–Newton block of each atom ``F_j = Σ J_jᵀ J_j`` (the curvature of the
fit in that atom's position) scaled by the residual variance gives the Cramér–Rao covariance
``σ² F_j⁻¹``; or a bootstrap over projections re-fits the positions on resampled tilt series.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from ase.data import atomic_numbers
from scipy.optimize import minimize

from ..model._meta import euler_angles_of
from ..model._meta import rotation_matrices as _rotation_matrices
from ..model.atomicmodel import build_model_dataset
from . import _kernels as K
from ._common import check_model, check_positive, model_positions

__all__ = ["refine", "uncertainty", "projection_geometry", "ProjectionProblem",
           "rotation_derivatives"]

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


# ----------------------------------------------------------------------------- geometry
def projection_geometry(tilt_series: xr.DataArray) -> dict:
    """Euler angles (deg), rotation rows, pixel size and first-pixel coordinates (Å) of an
    aligned tilt series with dims ``(angle, y, x)``."""
    if hasattr(tilt_series, "data") and not isinstance(tilt_series, xr.DataArray) and \
            isinstance(tilt_series.data, xr.DataArray):
        tilt_series = tilt_series.data
    if not isinstance(tilt_series, xr.DataArray):
        raise TypeError(
            f"tilt_series must be an xarray.DataArray (angle, y, x) or an aet.TiltSeries, got "
            f"{type(tilt_series).__name__}"
        )
    if tuple(tilt_series.dims) != ("angle", "y", "x"):
        raise ValueError(
            f"tilt_series must have dims ('angle', 'y', 'x'), got {tuple(tilt_series.dims)}; "
            f"merge frames first (TiltSeries.register_frames())"
        )
    euler = euler_angles_of(tilt_series)
    R2 = _rotation_matrices(euler)[:, :2]
    x = np.asarray(tilt_series.coords["x"].values, dtype=np.float64)
    y = np.asarray(tilt_series.coords["y"].values, dtype=np.float64)
    px = float(tilt_series.attrs.get("pixel_size_A", x[1] - x[0] if len(x) > 1 else 1.0))
    return {"euler_deg": euler, "R2": np.ascontiguousarray(R2), "pixel_A": px,
            "x0": float(x[0]), "y0": float(y[0])}


_ANGLE_NAMES = ("phi", "theta", "psi")


def rotation_derivatives(euler_deg) -> np.ndarray:
    """``(n, 3, 3, 3)`` derivatives ∂R/∂(φ, θ, ψ) (per **radian**, index 1 = angle) of
    R = R_z(φ)·R_y(θ)·R_z(ψ) at ``(n, 3)`` Euler angles in degrees (closed form)."""
    e = np.radians(np.asarray(euler_deg, dtype=np.float64).reshape(-1, 3))
    n = e.shape[0]

    def rz(a, deriv):
        c, s = np.cos(a), np.sin(a)
        m = np.zeros((n, 3, 3))
        if deriv:
            m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = -s, -c, c, -s
        else:
            m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = c, -s, s, c, 1
        return m

    def ry(a, deriv):
        c, s = np.cos(a), np.sin(a)
        m = np.zeros((n, 3, 3))
        if deriv:
            m[:, 0, 0], m[:, 0, 2], m[:, 2, 0], m[:, 2, 2] = -s, c, -c, -s
        else:
            m[:, 0, 0], m[:, 0, 2], m[:, 2, 0], m[:, 2, 2], m[:, 1, 1] = c, s, -s, c, 1
        return m

    out = np.empty((n, 3, 3, 3))
    out[:, 0] = rz(e[:, 0], True) @ ry(e[:, 1], False) @ rz(e[:, 2], False)
    out[:, 1] = rz(e[:, 0], False) @ ry(e[:, 1], True) @ rz(e[:, 2], False)
    out[:, 2] = rz(e[:, 0], False) @ ry(e[:, 1], False) @ rz(e[:, 2], True)
    return out


def _check_refine_alignment(value) -> tuple[bool, tuple[int, ...]]:
    """``refine_alignment`` → (fit shifts?, indices of the fitted Euler angles)."""
    if value is None or value is False:
        return False, ()
    if isinstance(value, str):
        value = (value,)
    try:
        items = [str(v) for v in value]
    except TypeError:
        raise TypeError(
            f"refine_alignment must be a sequence of 'shifts', 'angles', 'phi', 'theta', "
            f"'psi' (or None), got {value!r}"
        ) from None
    bad = [v for v in items if v not in ("shifts", "angles", *_ANGLE_NAMES)]
    if bad:
        raise ValueError(
            f"refine_alignment: unknown entries {bad}; use any of 'shifts', 'angles' (= 'phi', "
            f"'theta', 'psi'), 'phi', 'theta', 'psi', e.g. refine_alignment=('shifts', 'theta')"
        )
    angles = set(_ANGLE_NAMES) if "angles" in items else {v for v in items if v != "shifts"}
    return "shifts" in items, tuple(i for i, a in enumerate(_ANGLE_NAMES) if a in angles)


def _kernel_arrays(kernel_fwhm_A) -> tuple[np.ndarray, np.ndarray]:
    """``kernel_fwhm_A``: a FWHM (Å) or a list of ``(weight, fwhm_A)``; → weights, σ²."""
    if isinstance(kernel_fwhm_A, (int, float, np.number)) and not isinstance(kernel_fwhm_A,
                                                                            bool):
        items = [(1.0, float(kernel_fwhm_A))]
    else:
        try:
            items = [(float(w), float(f)) for w, f in kernel_fwhm_A]
        except (TypeError, ValueError):
            raise TypeError(
                "kernel_fwhm_A must be a FWHM in Å or a list of (weight, fwhm_A) pairs"
            ) from None
    w = np.array([a for a, _ in items])
    f = np.array([b for _, b in items])
    if np.any(f < 0) or np.any(w <= 0) or not np.all(np.isfinite(w * f)):
        raise ValueError(f"kernel_fwhm_A needs weights > 0 and FWHMs ≥ 0 Å, got {items}")
    return w / w.sum(), (f / FWHM_PER_SIGMA) ** 2


class ProjectionProblem:
    """The least-squares problem of a model against a tilt series (arrays, no xarray).

    Parameters
    ----------
    measured : (n_proj, ny, nx) array
    geometry : dict from :func:`projection_geometry`
    species_index : (n_atoms,) int array into ``H``/``B``
    kernel_w, kernel_s2 : kernel weights and variances (Å²)
    cutoff : footprint half-width in Gaussian widths
    """

    def __init__(self, measured, geometry, species_index, kernel_w, kernel_s2, *,
                 cutoff: float = 4.0):
        self.meas = np.ascontiguousarray(measured, dtype=np.float64)
        self.geo = geometry
        self.sp = np.ascontiguousarray(species_index, dtype=np.int64)
        self.kw = np.ascontiguousarray(kernel_w, dtype=np.float64)
        self.ks2 = np.ascontiguousarray(kernel_s2, dtype=np.float64)
        self.cutoff = float(cutoff)
        self.norm = 0.5 * float((self.meas**2).sum()) or 1.0
        self.l1norm = float(np.abs(self.meas).sum()) or 1.0
        n_proj = self.meas.shape[0]
        # alignment state: content displacement (sx, sy) Å and Euler corrections (deg)
        self.shifts = np.zeros((n_proj, 2))
        self.d_euler = np.zeros((n_proj, 3))
        self.R2 = np.ascontiguousarray(geometry["R2"], dtype=np.float64)

    def set_alignment(self, shifts=None, d_euler=None):
        """Set the per-projection shifts ``(n_proj, 2)`` (Å) and Euler corrections
        ``(n_proj, 3)`` (deg) the model is evaluated with."""
        if shifts is not None:
            self.shifts = np.ascontiguousarray(shifts, dtype=np.float64).reshape(-1, 2)
        if d_euler is not None:
            self.d_euler = np.asarray(d_euler, dtype=np.float64).reshape(-1, 3).copy()
            if np.any(self.d_euler):
                self.R2 = np.ascontiguousarray(
                    _rotation_matrices(self.geo["euler_deg"] + self.d_euler)[:, :2])
            else:
                self.R2 = np.ascontiguousarray(self.geo["R2"], dtype=np.float64)

    def subset(self, proj_index) -> ProjectionProblem:
        geo = dict(self.geo)
        geo["R2"] = np.ascontiguousarray(self.geo["R2"][proj_index])
        geo["euler_deg"] = self.geo["euler_deg"][proj_index]
        sub = ProjectionProblem(self.meas[proj_index], geo, self.sp, self.kw, self.ks2,
                                cutoff=self.cutoff)
        sub.set_alignment(self.shifts[proj_index], self.d_euler[proj_index])
        return sub

    def evaluate(self, pos, H, B, mode: int, sp=None):
        g = self.geo
        # small problems: the serial kernel (thread start-up and barriers cost more than
        # they save, and a busy machine makes a parallel barrier wait for the slowest core)
        big = self.meas.shape[0] * len(pos) > 20_000
        fn = K.projection_kernel_parallel if big else K.projection_kernel
        return fn(
            np.ascontiguousarray(pos, dtype=np.float64), self.sp if sp is None else sp,
            np.ascontiguousarray(H, dtype=np.float64), np.ascontiguousarray(B, np.float64),
            self.kw, self.ks2, self.R2, self.shifts, self.meas, g["x0"], g["y0"],
            g["pixel_A"], self.cutoff, mode)

    def r_factor(self, pos, H, B) -> float:
        return self.evaluate(pos, H, B, 0)[1] / self.l1norm

    @staticmethod
    def _tracker():
        """Remembers every evaluated point's R-factor: the best one is kept, and the
        per-iteration callback reads the R-factor of the iterate without a new evaluation."""
        return {"R": np.inf, "x": None, "last_x": None, "last_R": np.nan}

    @staticmethod
    def _record(tr, x, R):
        tr["last_x"] = x.copy()
        tr["last_R"] = R
        if R < tr["R"]:
            tr["R"] = R
            tr["x"] = x.copy()

    # -- fits ----------------------------------------------------------------------------
    def initial_heights(self, pos, B) -> np.ndarray:
        """Linear least-squares heights for fixed positions and B (the model is linear in H):
        normal equations over the per-species unit-height images."""
        ns = len(B)
        basis = []
        for t in range(ns):
            Ht = np.zeros(ns)
            Ht[t] = 1.0
            basis.append(model_images(self, pos, Ht, B).ravel())
        M = np.array(basis)
        try:
            h = np.linalg.solve(M @ M.T + 1e-12 * np.eye(ns) * np.trace(M @ M.T),
                                M @ self.meas.ravel())
        except np.linalg.LinAlgError:
            h = np.ones(ns)
        good = np.isfinite(h) & (h > 0)
        fallback = np.nanmax(np.where(good, h, np.nan)) if np.any(good) else 1.0
        return np.where(good, h, fallback)

    def fit_heights_b(self, pos, H, B, *, max_iter: int, history: list, b_bounds):
        ns = len(H)
        best = self._tracker()

        def f(x):
            Hh, Bb = np.exp(x[:ns]), x[ns:]
            out = self.evaluate(pos, Hh, Bb, 2)
            self._record(best, x, out[1] / self.l1norm)
            grad = np.concatenate([out[3] * Hh, out[4]]) / self.norm
            return out[0] / self.norm, grad

        def cb(xk):
            R = best["last_R"] if np.array_equal(xk, best["last_x"]) else \
                self.r_factor(pos, np.exp(xk[:ns]), xk[ns:])
            history.append(("heights_b", float(R)))

        x0 = np.concatenate([np.log(H), B])
        bounds = [(None, None)] * ns + [b_bounds] * ns
        res = minimize(f, x0, jac=True, method="L-BFGS-B", bounds=bounds, callback=cb,
                       options={"maxiter": max_iter, "ftol": 1e-10, "gtol": 1e-8})
        x = best["x"] if best["x"] is not None else res.x
        return np.exp(x[:ns]), x[ns:].copy()

    def fit_positions(self, pos, H, B, *, max_iter: int, history: list | None,
                      max_move_A: float | None = None):
        """L-BFGS fit of all positions (heights, B and alignment fixed)."""
        return self.fit_geometry(pos, H, B, max_iter=max_iter, history=history,
                                 max_move_A=max_move_A)

    def _alignment_basis(self, pos, fit_shifts: bool, angle_idx: tuple[int, ...]):
        """Orthonormal basis ``Q`` (columns) of the gauge-free alignment subspace and the
        scale of each coordinate (Å of atom displacement per unit of the parameter).

        Coordinates: ``[sx_0..sx_{n-1}, sy_0..sy_{n-1}]`` (Å) then, per fitted angle, its
        ``n`` corrections (rad). Removed: the shifts ``R2_k t`` of a 3D translation ``t``;
        the mean δθ and δψ (rigid rotations about y and z).
        """
        n = self.meas.shape[0]
        blocks = []
        if fit_shifts:
            A = np.concatenate([self.R2[:, 0], self.R2[:, 1]], axis=0)  # (2n, 3)
            U, sv, _ = np.linalg.svd(A, full_matrices=True)
            rank = int(np.sum(sv > 1e-9 * max(sv.max(), 1e-300)))
            blocks.append(U[:, rank:])
        for a in angle_idx:
            if a == 0:
                blocks.append(np.eye(n))
            else:
                C = np.eye(n) - 1.0 / n
                U, sv, _ = np.linalg.svd(C)
                blocks.append(U[:, : n - 1])
        rows = sum(b.shape[0] for b in blocks)
        cols = sum(b.shape[1] for b in blocks)
        Q = np.zeros((rows, cols))
        r = c = 0
        for b in blocks:
            Q[r:r + b.shape[0], c:c + b.shape[1]] = b
            r += b.shape[0]
            c += b.shape[1]
        # scale each block so that a unit step moves atoms by ~1 Å and the curvature per
        # parameter is comparable to a position's (n_atoms atoms per projection vs n_proj
        # projections per atom)
        r_rms = float(np.sqrt(np.mean(np.sum((pos - pos.mean(0)) ** 2, axis=1)))) or 1.0
        c = math.sqrt(max(len(pos), 1) / n)
        scale = np.concatenate([np.full(2 * n if fit_shifts else 0, 1.0 / c),
                                np.full(n * len(angle_idx), 1.0 / (c * r_rms))])
        return Q, scale

    def _alignment_from_vector(self, a_vec, fit_shifts, angle_idx, shifts0, deuler0):
        n = self.meas.shape[0]
        sh = shifts0.copy()
        de = deuler0.copy()
        o = 0
        if fit_shifts:
            sh[:, 0] += a_vec[:n]
            sh[:, 1] += a_vec[n:2 * n]
            o = 2 * n
        for q, a in enumerate(angle_idx):
            de[:, a] += np.degrees(a_vec[o + q * n:o + (q + 1) * n])
        return sh, de

    def alignment_gradient(self, out, fit_shifts, angle_idx):
        """Gradient of the loss (kernel output ``out`` of mode ≥ 1) with respect to the
        alignment coordinates of :meth:`_alignment_basis` (shifts per Å, angles per rad)."""
        parts = []
        if fit_shifts:
            parts += [out[8][:, 0], out[8][:, 1]]
        if angle_idx:
            dR = rotation_derivatives(self.geo["euler_deg"] + self.d_euler)[:, :, :2, :]
            for a in angle_idx:
                parts.append(np.einsum("krc,krc->k", out[9], dR[:, a]))
        return np.concatenate(parts) if parts else np.zeros(0)

    def fit_geometry(self, pos, H, B, *, max_iter: int, history: list | None,
                     max_move_A: float | None = None, fit_pos: bool = True,
                     fit_shifts: bool = False, angle_idx: tuple[int, ...] = (),
                     alignment_damping: float = 1e-2, stage: str = "positions"):
        """One L-BFGS(-B) fit of the positions and/or the per-projection alignment (heights
        and B fixed). Returns the positions; the fitted alignment is left in the problem
        (:attr:`shifts`, :attr:`d_euler`).

        ``alignment_damping``: Tikhonov term ½ μ_k δ_k² on every fitted angle correction,
        μ_k = ``alignment_damping`` × the data's Gauss–Newton curvature along it (estimated
        from the per-atom position curvature and ∂R/∂δ); it fixes the combinations no
        projection determines (δφ − δψ at θ = 0) and shrinks the others by ~that fraction.
        """
        n = len(pos)
        fit_align = fit_shifts or bool(angle_idx)
        if not (fit_pos or fit_align):
            return np.array(pos, dtype=np.float64)
        shifts0, deuler0 = self.shifts.copy(), self.d_euler.copy()
        pos0 = np.asarray(pos, dtype=np.float64).ravel()
        if fit_align:
            Q, scale = self._alignment_basis(pos, fit_shifts, angle_idx)
        else:
            Q, scale = np.zeros((0, 0)), np.zeros(0)
        npos = pos0.size if fit_pos else 0
        if npos + Q.shape[1] == 0:  # e.g. a mean-free δθ of a single projection
            return np.array(pos, dtype=np.float64)
        best = self._tracker()
        mu = self._angle_damping(pos, H, B, angle_idx, alignment_damping)

        def unpack(x):
            p = x[:npos].reshape(n, 3) if fit_pos else pos0.reshape(n, 3)
            if fit_align:
                a_vec = (Q @ x[npos:]) * scale
                self.set_alignment(*self._alignment_from_vector(a_vec, fit_shifts, angle_idx,
                                                                shifts0, deuler0))
            return p

        def f(x):
            p = unpack(x)
            out = self.evaluate(p, H, B, 1)
            self._record(best, x, out[1] / self.l1norm)
            loss = out[0]
            g = [out[2].ravel()] if fit_pos else []
            if fit_align:
                ga = self.alignment_gradient(out, fit_shifts, angle_idx)
                if mu is not None:  # Tikhonov term on the total angle corrections (rad)
                    d = np.radians(self.d_euler[:, list(angle_idx)].T.ravel())
                    loss = loss + 0.5 * float(np.sum(mu * d * d))
                    ga[ga.size - d.size:] += mu * d
                g.append(Q.T @ (ga * scale))
            return loss / self.norm, np.concatenate(g) / self.norm

        x0 = np.concatenate([pos0 if fit_pos else np.zeros(0), np.zeros(Q.shape[1])])
        bounds = None
        if max_move_A is not None and fit_pos:
            bounds = list(zip(pos0 - max_move_A, pos0 + max_move_A)) + \
                [(None, None)] * Q.shape[1]
        cb = None
        if history is not None:
            def cb(xk):
                if np.array_equal(xk, best["last_x"]):
                    R = best["last_R"]
                else:
                    R = self.r_factor(unpack(xk), H, B)
                history.append((stage, float(R)))
        res = minimize(f, x0, jac=True, method="L-BFGS-B", bounds=bounds, callback=cb,
                       options={"maxiter": max_iter, "ftol": 1e-14, "gtol": 1e-12,
                                "maxcor": 20})
        x = best["x"] if best["x"] is not None else res.x
        p = unpack(x)
        if fit_shifts:
            p = self.translation_gauge(p)
        return p.copy()

    def _angle_damping(self, pos, H, B, angle_idx, damping):
        """Per-parameter Tikhonov weights ``(len(angle_idx) * n_proj,)`` (loss units per
        rad²) for the angle corrections, or None."""
        if not angle_idx or not damping:
            return None
        n_proj = self.meas.shape[0]
        F = self.evaluate(pos, H, B, 3)[5]
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

    def curvature_uncertainty(self, pos, H, B, n_params: int):
        """Cramér–Rao 1σ per axis ``(n_atoms, 3)`` in Å and the residual variance."""
        out = self.evaluate(pos, H, B, 3)
        n_pix = self.meas.size
        dof = max(n_pix - n_params, 1)
        var = 2.0 * out[0] / dof
        F = out[5]
        cov = np.full((len(pos), 3, 3), np.nan)
        ok = np.linalg.det(F) > 0
        cov[ok] = var * np.linalg.inv(F[ok])
        return np.sqrt(np.abs(np.diagonal(cov, axis1=1, axis2=2))), var


# ----------------------------------------------------------------------------- helpers
def _species_setup(ds: xr.Dataset):
    sp = np.asarray(ds["species"].values).astype(str)
    names = sorted(set(sp.tolist()), key=lambda s: atomic_numbers[s])
    index = np.array([names.index(s) for s in sp], dtype=np.int64)
    return names, index


def _initial_b(ds, names, index, b_init_A2):
    B = np.full(len(names), float(b_init_A2))
    if "b_factor" in ds:
        b = np.asarray(ds["b_factor"].values, dtype=np.float64)
        for s in range(len(names)):
            v = b[index == s]
            v = v[np.isfinite(v) & (v > 0)]
            if len(v):
                B[s] = float(np.median(v))
    return B


def _stored_hb(ds, names):
    a = ds.attrs
    if "refine_species" in a and "refine_height" in a and "refine_b_factor_A2" in a:
        sp = list(a["refine_species"])
        if all(s in sp for s in names):
            H = np.array([float(a["refine_height"][sp.index(s)]) for s in names])
            B = np.array([float(a["refine_b_factor_A2"][sp.index(s)]) for s in names])
            return H, B
    return None


def _measured(ts_da: xr.DataArray) -> np.ndarray:
    arr = np.asarray(ts_da.values, dtype=np.float64)  # projections are small: load them
    if not np.all(np.isfinite(arr)):
        raise ValueError("tilt_series contains non-finite values (NaN or inf); clean them first")
    return arr


def _residual_candidates(prob: ProjectionProblem, pos, H, B, index, *, spacing_A,
                         min_distance_A, threshold_frac):
    """Candidate new atoms: maxima of the point-wise back-projection (mean over projections,
    bilinear) of the residual ``measured − model`` on a grid around the model."""
    from scipy.ndimage import maximum_filter
    from scipy.spatial import cKDTree

    g = prob.geo
    n_proj, ny, nx = prob.meas.shape
    resid = prob.meas - model_images(prob, pos, H, B, sp=index)
    lo = pos.min(0) - 2.0
    hi = pos.max(0) + 2.0
    axes = [np.arange(lo[a], hi[a] + spacing_A, spacing_A) for a in range(3)]
    gx, gy, gz = np.meshgrid(*axes, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1)
    acc = np.zeros(len(pts))
    for k in range(n_proj):
        fx = (pts @ prob.R2[k, 0] + prob.shifts[k, 0] - g["x0"]) / g["pixel_A"]
        fy = (pts @ prob.R2[k, 1] + prob.shifts[k, 1] - g["y0"]) / g["pixel_A"]
        i0 = np.clip(np.floor(fx).astype(np.int64), 0, nx - 2)
        j0 = np.clip(np.floor(fy).astype(np.int64), 0, ny - 2)
        tx = np.clip(fx - i0, 0, 1)
        ty = np.clip(fy - j0, 0, 1)
        r = resid[k]
        acc += ((1 - ty) * ((1 - tx) * r[j0, i0] + tx * r[j0, i0 + 1])
                + ty * ((1 - tx) * r[j0 + 1, i0] + tx * r[j0 + 1, i0 + 1]))
    acc /= n_proj
    # projected peak of one atom of the lightest species (closed form at ρ = 0)
    v = B[0] / (8 * math.pi**2)
    peak = sum(w * H[0] * math.sqrt(2 * math.pi) * v**1.5 / (v + s2)
               for w, s2 in zip(prob.kw, prob.ks2))
    vol = acc.reshape(gx.shape)
    is_max = (vol == maximum_filter(vol, size=3)) & (vol > threshold_frac * peak)
    cand = np.stack([gx[is_max], gy[is_max], gz[is_max]], axis=1)
    cand = cand[np.argsort(-vol[is_max])]
    if len(cand) and len(pos):
        d, _ = cKDTree(pos).query(cand)
        cand = cand[d > min_distance_A]
    return cand


def model_images(prob: ProjectionProblem, pos, H, B, sp=None) -> np.ndarray:
    """Model projections ``(n_proj, ny, nx)`` of the problem's geometry and current alignment
    (the kernel's forward model without cut-off, separable in x and y; NumPy, for rendering
    and linear fits)."""
    n_proj, ny, nx = prob.meas.shape
    spi = prob.sp if sp is None else sp
    imgs = np.empty((n_proj, ny, nx))
    g = prob.geo
    xs = g["x0"] + np.arange(nx) * g["pixel_A"]
    ys = g["y0"] + np.arange(ny) * g["pixel_A"]
    for k in range(n_proj):
        img = np.zeros((ny, nx))
        uv = np.asarray(pos) @ prob.R2[k].T + prob.shifts[k]
        for s in range(len(H)):
            sel = spi == s
            if not np.any(sel):
                continue
            v = B[s] / (8 * math.pi**2)
            for w, s2 in zip(prob.kw, prob.ks2):
                S = v + s2
                a = w * H[s] * math.sqrt(2 * math.pi) * v**1.5 / S
                ex = np.exp(-(xs[None, :] - uv[sel, 0:1]) ** 2 / (2 * S))
                ey = np.exp(-(ys[None, :] - uv[sel, 1:2]) ** 2 / (2 * S))
                img += a * ey.T @ ex
        imgs[k] = img
    return imgs


# ----------------------------------------------------------------------------- public
def refine(model: xr.Dataset, tilt_series: xr.DataArray, *, kernel_fwhm_A=0.8,
           b_init_A2: float = 1.0, n_cycles: int = 2, max_iter: int = 60,
           fit_heights: bool = True, fit_positions: bool = True,
           max_move_A: float | None = 1.5, cutoff: float = 4.0,
           b_bounds_A2: tuple[float, float] = (0.02, 60.0), add_remove: bool = False,
           add_threshold: float = 0.5, min_distance_A: float = 2.0,
           uncertainty: bool = True, refine_alignment=None,
           use_stored_alignment: bool = True, alignment_damping: float = 1e-2):
    """Refine positions, heights and B-factors of an atomic model against aligned projections,
    optionally with the per-projection alignment.

    Parameters
    ----------
    model : xarray.Dataset
        Atomic-model dataset with classified species (positions (x, y, z) Å).
    tilt_series : xarray.DataArray
        Aligned projections, dims ``(angle, y, x)``, coords ``angle`` (θ, deg) and optional
        ``phi``/``psi`` (deg) on ``angle``, ``y``/``x`` in Å centred at ``n // 2``; the
        background should be removed (the model has no offset).
    kernel_fwhm_A : float or list of (weight, fwhm_A)
        The fixed scattering/probe kernel (normalised Gaussians); default 0.8 Å FWHM.
    b_init_A2 : float
        Initial B-factor (Å²) where the model carries none.
    n_cycles : int
        Cycles of (heights and B per species) then (all positions).
    max_iter : int
        L-BFGS iterations per stage.
    fit_heights, fit_positions : bool
        Which stages run.
    max_move_A : float or None
        Box bound on each coordinate's move from its start (Å); None: unbounded.
    cutoff : float
        Footprint half-width in Gaussian widths.
    b_bounds_A2 : (float, float)
        Bounds of the B-factors (Å²).
    add_remove : bool
        After refinement, remove atoms whose removal lowers the error and add atoms at
        maxima of the back-projected residual (as the lightest species) where that lowers it,
        then refine again. Off by default.
    add_threshold : float
        Residual back-projection maximum needed for a candidate, as a fraction of one
        lightest atom's back-projected peak.
    min_distance_A : float
        Candidates closer than this to an existing atom are not added.
    uncertainty : bool
        Store the Cramér–Rao ``uncertainty`` (Å, 3D: sqrt of the covariance trace) and
        ``uncertainty_x/_y/_z`` (Å, 1σ per axis).
    refine_alignment : sequence of str or None
        Also fit the alignment of each projection: ``"shifts"`` (detector shift sx, sy in Å:
        the measured image is the model's projection displaced by it), ``"angles"`` (all of
        δφ, δθ, δψ in degrees) or any of ``"phi"``, ``"theta"``, ``"psi"``; e.g.
        ``("shifts", "theta")``. Each cycle fits them alone after the heights/B-factors, then
        jointly with the positions. Gauge: the shifts a 3D translation of the model explains
        and the mean δθ and δψ (rigid rotations) are held out, so the model stays in the
        data's frame. Default None: the projections are taken as aligned.
    use_stored_alignment : bool
        Start from the per-projection alignment an earlier ``refine(refine_alignment=...)``
        stored in the model's attrs (when it has one value per projection), and keep it
        when ``refine_alignment`` is None. False: start from the tilt series as given.
    alignment_damping : float
        Relative Tikhonov damping of the angle corrections: each δ pays ½ μ δ² with μ this
        fraction of the data's curvature along it. Pins what no projection determines (at
        θ = 0 only δφ + δψ is measured) and shrinks the rest by about this fraction.

    Returns
    -------
    (xarray.Dataset, dict)
        Refined model (``b_factor`` per atom = its species' B; attrs ``refine_species``,
        ``refine_height``, ``refine_b_factor_A2``, ``kernel_fwhm_A``, and with
        ``refine_alignment`` ``refine_shift_x_A``/``refine_shift_y_A`` (Å) and
        ``refine_dphi_deg``/``refine_dtheta_deg``/``refine_dpsi_deg`` per projection) and a
        result with the R-factor before/after, its history per iteration (``stages`` names
        each entry: ``heights_b``, ``alignment``, ``positions``), the fitted H and B and, with
        ``refine_alignment``, the fitted ``shift_x_A``, ``shift_y_A``, ``dphi_deg``,
        ``dtheta_deg``, ``dpsi_deg`` per projection and their RMS (``rms_shift_A``,
        ``rms_dangle_deg``).
    """
    ds = check_model(model)
    geo = projection_geometry(tilt_series)
    meas = _measured(tilt_series if isinstance(tilt_series, xr.DataArray) else tilt_series.data)
    n_cycles = check_positive("n_cycles", n_cycles, integer=True)
    check_positive("alignment_damping", alignment_damping, allow_zero=True)
    max_iter = check_positive("max_iter", max_iter, integer=True)
    check_positive("cutoff", cutoff)
    if max_move_A is not None:
        check_positive("max_move_A", max_move_A)
    pos = model_positions(ds)
    if len(pos) == 0:
        raise ValueError("model has no atoms; trace atoms before refining")
    names, index = _species_setup(ds)
    fit_shifts, angle_idx = _check_refine_alignment(refine_alignment)
    fit_align = fit_shifts or bool(angle_idx)
    kw, ks2 = _kernel_arrays(kernel_fwhm_A)
    prob = ProjectionProblem(meas, geo, index, kw, ks2, cutoff=cutoff)
    used_stored = bool(use_stored_alignment) and _apply_stored_alignment(prob, ds.attrs)
    stored = _stored_hb(ds, names)
    if stored is not None:
        H, B = stored
    else:
        B = _initial_b(ds, names, index, b_init_A2)
        H = prob.initial_heights(pos, B)
    history: list = []
    r_start = prob.r_factor(pos, H, B)
    history.append(("start", r_start))

    def snapshot(r, pos, H, B):
        return (r, pos.copy(), H.copy(), B.copy(), prob.shifts.copy(), prob.d_euler.copy())

    best = snapshot(r_start, pos, H, B)
    start = pos.copy()
    n_added = n_removed = 0

    def run_cycles(pos, H, B, n_cyc):
        nonlocal best
        for _ in range(n_cyc):
            if fit_heights:
                H, B = prob.fit_heights_b(pos, H, B, max_iter=max_iter, history=history,
                                          b_bounds=tuple(b_bounds_A2))
            if fit_align:
                pos = prob.fit_geometry(pos, H, B, max_iter=max_iter, history=history,
                                        fit_pos=False, fit_shifts=fit_shifts,
                                        angle_idx=angle_idx, stage="alignment",
                                        alignment_damping=alignment_damping)
            if fit_positions:
                pos = prob.fit_geometry(pos, H, B, max_iter=max_iter, history=history,
                                        max_move_A=max_move_A, fit_shifts=fit_shifts,
                                        angle_idx=angle_idx, stage="positions",
                                        alignment_damping=alignment_damping)
            r = prob.r_factor(pos, H, B)
            if r < best[0] or len(pos) != len(best[1]):
                best = snapshot(r, pos, H, B)
        return pos, H, B

    def restore(b):
        prob.set_alignment(b[4], b[5])
        return b[1], b[2], b[3]

    pos, H, B = run_cycles(pos, H, B, n_cycles)
    pos, H, B = restore(best)
    if add_remove:
        pos, index, n_added, n_removed = _add_remove(prob, pos, index, H, B, names,
                                                     add_threshold=add_threshold,
                                                     min_distance_A=min_distance_A)
        prob.sp = index
        best = snapshot(prob.r_factor(pos, H, B), pos, H, B)
        pos, H, B = run_cycles(pos, H, B, 1)
        pos, H, B = restore(best)
    r_end = prob.r_factor(pos, H, B)
    history.append(("end", r_end))

    arrays = {}
    keep_src = n_added == 0 and n_removed == 0
    if keep_src:
        arrays = {k: ds[k].values for k in ds.data_vars
                  if k not in ("position", "species") and ds[k].dims == ("atom",)}
        arrays["displacement_A"] = np.linalg.norm(pos - start, axis=1)
    arrays["b_factor"] = B[index]
    result = {"r_factor_start": r_start, "r_factor": r_end,
              "r_factor_history": [float(r) for _, r in history],
              "stages": [s for s, _ in history], "species": names,
              "height": H.tolist(), "b_factor_A2": B.tolist(),
              "n_added": n_added, "n_removed": n_removed}
    align_attrs = {}
    if fit_align or used_stored:
        align_attrs = {"refine_shift_x_A": prob.shifts[:, 0].tolist(),
                       "refine_shift_y_A": prob.shifts[:, 1].tolist(),
                       **{f"refine_d{a}_deg": prob.d_euler[:, i].tolist()
                          for i, a in enumerate(_ANGLE_NAMES)}}
        result.update({k[len("refine_"):]: v for k, v in align_attrs.items()})
        result["started_from_stored_alignment"] = used_stored
        result["refine_alignment"] = (["shifts"] if fit_shifts else []) + \
            [_ANGLE_NAMES[i] for i in angle_idx]
        result["rms_shift_A"] = float(np.sqrt(np.mean(np.sum(prob.shifts**2, axis=1))))
        result["rms_dangle_deg"] = [float(np.sqrt(np.mean(prob.d_euler[:, i] ** 2)))
                                    for i in range(3)]
    if uncertainty:
        sig, var = prob.curvature_uncertainty(pos, H, B, 3 * len(pos) + 2 * len(names))
        arrays["uncertainty"] = np.sqrt((sig**2).sum(axis=1))
        for a, name in enumerate("xyz"):
            arrays[f"uncertainty_{name}"] = sig[:, a]
        result["residual_variance"] = var
    attrs = dict(ds.attrs)
    attrs.update({"refine_species": list(names), "refine_height": H.tolist(),
                  "refine_b_factor_A2": B.tolist(),
                  "kernel_fwhm_A": to_list_kernel(kernel_fwhm_A),
                  "refine_r_factor": float(r_end)})
    for k in [k for k in attrs if k.startswith(("refine_shift_", "refine_dp", "refine_dt"))]:
        del attrs[k]  # an earlier refinement's alignment does not describe this fit
    attrs.update(align_attrs)
    out = build_model_dataset(pos, np.array(names)[index], arrays=arrays, attrs=attrs)
    return out, result


def _apply_stored_alignment(prob: ProjectionProblem, attrs) -> bool:
    """Use the per-projection alignment a refinement with ``refine_alignment`` stored in the
    model's attrs, when it has one value per projection of this problem."""
    n = prob.meas.shape[0]
    keys = ["refine_shift_x_A", "refine_shift_y_A"] + [f"refine_d{a}_deg" for a in _ANGLE_NAMES]
    if not all(k in attrs and np.size(attrs[k]) == n for k in keys):
        return False
    vals = [np.asarray(attrs[k], dtype=np.float64).reshape(n) for k in keys]
    prob.set_alignment(np.stack(vals[:2], axis=1), np.stack(vals[2:], axis=1))
    return True


def to_list_kernel(kernel_fwhm_A):
    if isinstance(kernel_fwhm_A, (int, float, np.number)):
        return float(kernel_fwhm_A)
    return [[float(w), float(f)] for w, f in kernel_fwhm_A]


def _add_remove(prob, pos, index, H, B, names, *, add_threshold, min_distance_A):
    n_removed = 0
    out = prob.evaluate(pos, H, B, 4, sp=index)
    dot, nrm = out[6], out[7]
    dL = -dot + 0.5 * nrm  # change of ½‖r‖² when the atom is removed (r = model − meas)
    drop = dL < 0
    if np.any(drop):
        pos, index = pos[~drop], index[~drop]
        n_removed = int(drop.sum())
        prob.sp = index
    cand = _residual_candidates(prob, pos, H, B, index, spacing_A=0.4,
                                min_distance_A=min_distance_A, threshold_frac=add_threshold)
    n_added = 0
    before = prob.evaluate(pos, H, B, 0, sp=index)[0]
    for c in cand[:max(1, len(pos) // 10)]:  # at most 10 % new atoms per pass, strongest first
        trial_pos = np.vstack([pos, c[None]])
        trial_idx = np.append(index, 0)
        after = prob.evaluate(trial_pos, H, B, 0, sp=trial_idx)[0]
        if after < before:
            pos, index, before = trial_pos, trial_idx, after
            prob.sp = index
            n_added += 1
    return pos, index, n_added, n_removed


def uncertainty(model: xr.Dataset, tilt_series: xr.DataArray, *, method: str = "curvature",
                n_bootstrap: int = 20, seed=None, kernel_fwhm_A=None, cutoff: float = 4.0,
                max_iter: int = 40):
    """Per-atom 1σ position uncertainty (Å) of a refined model.

    Parameters
    ----------
    model : xarray.Dataset
        Refined model (uses the species heights/B-factors stored by :func:`refine`; fits
        them when absent).
    tilt_series : xarray.DataArray
        The aligned projections ``(angle, y, x)`` the model was refined against.
    method : {"curvature", "bootstrap"}
        ``"curvature"``: Cramér–Rao bound from the per-atom Gauss–Newton block scaled by the
        residual variance. ``"bootstrap"``: positions re-fitted on ``n_bootstrap`` tilt series
        resampled over projections (with replacement); the spread is the uncertainty.
    seed : int or numpy.random.Generator, optional
        Randomness of the bootstrap.

    The per-projection alignment a refinement with ``refine_alignment`` stored in the model's
    attrs (``refine_shift_x_A``, ...) is applied when it has one value per projection.

    Returns
    -------
    xarray.Dataset
        The model with ``uncertainty`` (Å, sqrt of the covariance trace, i.e. the expected
        3D error) and ``uncertainty_x/_y/_z`` (Å, per axis).
    """
    ds = check_model(model)
    if method not in ("curvature", "bootstrap"):
        raise ValueError(f"method must be 'curvature' or 'bootstrap', got {method!r}")
    geo = projection_geometry(tilt_series)
    meas = _measured(tilt_series if isinstance(tilt_series, xr.DataArray) else tilt_series.data)
    pos = model_positions(ds)
    names, index = _species_setup(ds)
    kf = ds.attrs.get("kernel_fwhm_A", 0.8) if kernel_fwhm_A is None else kernel_fwhm_A
    kw, ks2 = _kernel_arrays(kf)
    prob = ProjectionProblem(meas, geo, index, kw, ks2, cutoff=cutoff)
    _apply_stored_alignment(prob, ds.attrs)
    stored = _stored_hb(ds, names)
    if stored is None:
        B = _initial_b(ds, names, index, 1.0)
        H = prob.initial_heights(pos, B)
        H, B = prob.fit_heights_b(pos, H, B, max_iter=60, history=[], b_bounds=(0.02, 60.0))
    else:
        H, B = stored
    if method == "curvature":
        sig, _ = prob.curvature_uncertainty(pos, H, B, 3 * len(pos) + 2 * len(names))
    else:
        n_bootstrap = check_positive("n_bootstrap", n_bootstrap, integer=True)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        n_proj = meas.shape[0]
        samples = []
        for _ in range(n_bootstrap):
            pick = np.sort(rng.integers(0, n_proj, n_proj))
            sub = prob.subset(pick)
            samples.append(sub.fit_positions(pos, H, B, max_iter=max_iter, history=None))
        samples = np.array(samples)
        sig = samples.std(axis=0, ddof=1)
    out = ds.copy()
    out["uncertainty"] = ("atom", np.sqrt((sig**2).sum(axis=1)), {"units": "Å"})
    for a, name in enumerate("xyz"):
        out[f"uncertainty_{name}"] = ("atom", sig[:, a], {"units": "Å"})
    return out, {"method": method,
                 "median_uncertainty_A": float(np.nanmedian(np.sqrt((sig**2).sum(1))))}
