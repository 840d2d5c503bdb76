"""Per-atom position covariance of a refined model.

``"sandwich"`` (default): the per-atom 3×3 Gauss–Newton block ``F_j = Σ_k J_jkᵀ J_jk`` and the
spread of the per-projection gradients ``g_jk = J_jkᵀ r_k`` give the robust (cluster-sandwich)
covariance ``F_j⁻¹ (Σ_k g_jk g_jkᵀ) F_j⁻¹ · n/(n − 1)`` with the projections as clusters. It
measures what the data say about each atom's scatter directly: photon noise whatever its
distribution, and everything that makes projections disagree about an atom (residual
misalignment, the atom model's mismatch, neighbours' errors), where the plain Cramér–Rao
bound ``σ² F_j⁻¹`` assumes white noise of one variance and a correct model.

``"curvature"``: that Cramér–Rao bound with σ² the mean residual variance.
"""

from __future__ import annotations

import numpy as np

from .problem import FISHER, FISHER_K, G_POS_K, LOSS, MEAT, ProjectionProblem


def _inverse_blocks(F):
    cov = np.full(F.shape, np.nan)
    ok = np.all(np.isfinite(F), axis=(1, 2))
    ok[ok] = np.linalg.det(F[ok]) > 1e-12 * np.maximum(
        np.trace(F[ok], axis1=1, axis2=2) ** 3, 1e-300)
    cov[ok] = np.linalg.inv(F[ok])
    return cov


def position_covariance(prob: ProjectionProblem, pos, *, method: str = "jackknife",
                        n_params: int | None = None):
    """``(n_atoms, 3, 3)`` position covariance (Å²) and a dict of diagnostics."""
    out = prob.evaluate(pos, 3)
    F = out[FISHER]
    Finv = _inverse_blocks(F)
    n_proj = prob.meas.shape[0]
    n_pix = float(prob.w.sum())
    n_params = 3 * len(pos) if n_params is None else int(n_params)
    var = 2.0 * out[LOSS] / max(n_pix - n_params, 1.0)
    if method == "curvature":
        cov = var * Finv
    elif method == "pixels":
        cov = Finv @ out[MEAT] @ Finv
    elif method == "sandwich":
        gk = out[G_POS_K]
        meat = np.einsum("kja,kjb->jab", gk, gk) * (n_proj / max(n_proj - 1, 1))
        cov = Finv @ meat @ Finv
    elif method == "jackknife":
        gk = out[G_POS_K]
        Fk = out[FISHER_K]
        # δ_jk = (F_j − F_jk)⁻¹ g_jk: atom j's move when projection k is left out
        rest = F[None] - Fk
        ok = np.linalg.det(rest) > 1e-9 * np.maximum(np.linalg.det(F)[None], 1e-300)
        dlt = np.zeros_like(gk)
        dlt[ok] = np.linalg.solve(rest[ok], gk[ok][..., None])[..., 0]
        fallback = ~ok  # one projection holds (nearly) all of an axis: plain sandwich term
        dlt[fallback] = np.einsum("jab,kjb->kja", np.nan_to_num(Finv), gk)[fallback]
        cov = np.einsum("kja,kjb->jab", dlt, dlt) * ((n_proj - 1) / max(n_proj, 1))
        cov[~np.all(np.isfinite(Finv), axis=(1, 2))] = np.nan
    else:
        raise ValueError(f"method must be 'jackknife', 'sandwich', 'pixels', 'curvature' or "
                         f"'bootstrap', got {method!r}")
    return cov, {"residual_variance": float(var)}


def sigmas_of(cov) -> np.ndarray:
    """``(n, 3)`` 1σ per axis (Å) from ``(n, 3, 3)`` covariances."""
    return np.sqrt(np.abs(np.diagonal(cov, axis1=1, axis2=2)))
