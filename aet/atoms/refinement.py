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

__all__ = ["refine", "uncertainty", "projection_geometry", "ProjectionProblem"]

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

    def subset(self, proj_index) -> ProjectionProblem:
        geo = dict(self.geo)
        geo["R2"] = np.ascontiguousarray(self.geo["R2"][proj_index])
        geo["euler_deg"] = self.geo["euler_deg"][proj_index]
        return ProjectionProblem(self.meas[proj_index], geo, self.sp, self.kw, self.ks2,
                                 cutoff=self.cutoff)

    def evaluate(self, pos, H, B, mode: int, sp=None):
        g = self.geo
        # small problems: the serial kernel (thread start-up and barriers cost more than
        # they save, and a busy machine makes a parallel barrier wait for the slowest core)
        big = self.meas.shape[0] * len(pos) > 20_000
        fn = K.projection_kernel_parallel if big else K.projection_kernel
        return fn(
            np.ascontiguousarray(pos, dtype=np.float64), self.sp if sp is None else sp,
            np.ascontiguousarray(H, dtype=np.float64), np.ascontiguousarray(B, np.float64),
            self.kw, self.ks2, g["R2"], self.meas, g["x0"], g["y0"], g["pixel_A"],
            self.cutoff, mode)

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
        n = len(pos)
        best = self._tracker()

        def f(x):
            out = self.evaluate(x.reshape(n, 3), H, B, 1)
            self._record(best, x, out[1] / self.l1norm)
            return out[0] / self.norm, out[2].ravel() / self.norm

        x0 = np.asarray(pos, dtype=np.float64).ravel()
        bounds = None
        if max_move_A is not None:
            bounds = list(zip(x0 - max_move_A, x0 + max_move_A))
        cb = None
        if history is not None:
            def cb(xk):
                R = best["last_R"] if np.array_equal(xk, best["last_x"]) else \
                    self.r_factor(xk.reshape(n, 3), H, B)
                history.append(("positions", float(R)))
        res = minimize(f, x0, jac=True, method="L-BFGS-B", bounds=bounds, callback=cb,
                       options={"maxiter": max_iter, "ftol": 1e-14, "gtol": 1e-12,
                                "maxcor": 20})
        x = best["x"] if best["x"] is not None else res.x
        return x.reshape(n, 3).copy()

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
        fx = (pts @ g["R2"][k, 0] - g["x0"]) / g["pixel_A"]
        fy = (pts @ g["R2"][k, 1] - g["y0"]) / g["pixel_A"]
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
    """Model projections ``(n_proj, ny, nx)`` of the problem's geometry (the kernel's forward
    model without cut-off, separable in x and y; NumPy, for rendering and linear fits)."""
    n_proj, ny, nx = prob.meas.shape
    spi = prob.sp if sp is None else sp
    imgs = np.empty((n_proj, ny, nx))
    g = prob.geo
    xs = g["x0"] + np.arange(nx) * g["pixel_A"]
    ys = g["y0"] + np.arange(ny) * g["pixel_A"]
    for k in range(n_proj):
        img = np.zeros((ny, nx))
        uv = np.asarray(pos) @ g["R2"][k].T
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
           uncertainty: bool = True):
    """Refine positions, heights and B-factors of an atomic model against aligned projections.

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

    Returns
    -------
    (xarray.Dataset, dict)
        Refined model (``b_factor`` per atom = its species' B; attrs ``refine_species``,
        ``refine_height``, ``refine_b_factor_A2``, ``kernel_fwhm_A``) and a result with the
        R-factor before/after, its history per iteration and the fitted H and B.
    """
    ds = check_model(model)
    geo = projection_geometry(tilt_series)
    meas = _measured(tilt_series if isinstance(tilt_series, xr.DataArray) else tilt_series.data)
    n_cycles = check_positive("n_cycles", n_cycles, integer=True)
    max_iter = check_positive("max_iter", max_iter, integer=True)
    check_positive("cutoff", cutoff)
    if max_move_A is not None:
        check_positive("max_move_A", max_move_A)
    pos = model_positions(ds)
    if len(pos) == 0:
        raise ValueError("model has no atoms; trace atoms before refining")
    names, index = _species_setup(ds)
    kw, ks2 = _kernel_arrays(kernel_fwhm_A)
    prob = ProjectionProblem(meas, geo, index, kw, ks2, cutoff=cutoff)
    stored = _stored_hb(ds, names)
    if stored is not None:
        H, B = stored
    else:
        B = _initial_b(ds, names, index, b_init_A2)
        H = prob.initial_heights(pos, B)
    history: list = []
    r_start = prob.r_factor(pos, H, B)
    history.append(("start", r_start))
    best = (r_start, pos.copy(), H.copy(), B.copy())
    start = pos.copy()
    n_added = n_removed = 0

    def run_cycles(pos, H, B, n_cyc):
        nonlocal best
        for _ in range(n_cyc):
            if fit_heights:
                H, B = prob.fit_heights_b(pos, H, B, max_iter=max_iter, history=history,
                                          b_bounds=tuple(b_bounds_A2))
            if fit_positions:
                pos = prob.fit_positions(pos, H, B, max_iter=max_iter, history=history,
                                         max_move_A=max_move_A)
            r = prob.r_factor(pos, H, B)
            if r < best[0] and len(pos) == len(best[1]):
                best = (r, pos.copy(), H.copy(), B.copy())
            elif len(pos) != len(best[1]):
                best = (r, pos.copy(), H.copy(), B.copy())
        return pos, H, B

    pos, H, B = run_cycles(pos, H, B, n_cycles)
    r_fit, pos, H, B = best
    if add_remove:
        pos, index, n_added, n_removed = _add_remove(prob, pos, index, H, B, names,
                                                     add_threshold=add_threshold,
                                                     min_distance_A=min_distance_A)
        prob.sp = index
        best = (prob.r_factor(pos, H, B), pos.copy(), H.copy(), B.copy())
        pos, H, B = run_cycles(pos, H, B, 1)
        _, pos, H, B = best
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
    out = build_model_dataset(pos, np.array(names)[index], arrays=arrays, attrs=attrs)
    return out, result


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
