"""Alignment of a single-axis tilt series (tilt axis = y, DESIGN.md).

Three measurements, each from per-projection reductions (a dask-backed series is reduced chunk
by chunk; the full stack is never loaded at once), then one lazy resampling:

* **tilt-axis in-plane rotation** α: the measured projection is the ideal one rotated in-plane by
  +α (counter-clockwise in (x, y)). Line sums taken perpendicular to the true axis agree for
  every projection of a single-axis series (each y-slice of the object keeps its mass), so α
  minimises the spread of the centred line profiles across projections.
* **common-line alignment along y**: the line sums along x of the de-rotated projections are
  registered to their mean profile (subpixel 1D cross-correlation), starting from centroids.
* **centre of mass across the axis (x)**: each projection's intensity centroid in x is moved to
  the tilt axis (x = 0), which places the object's centre of mass on the axis. The constant term
  of a fit ``x_com(θ) = x₀ + a cos θ + b sin θ`` is reported as the tilt-axis offset.

Sign convention: ``shift_x_A``/``shift_y_A`` are the measured displacements of each projection's
content (Å); the correction moves it back by −shift.
"""

from __future__ import annotations

import dask
import numpy as np
import xarray as xr
from scipy import ndimage

from ._common import (
    check_interpolation,
    check_series,
    finite_check_block,
    is_lazy,
    map_projections,
    pixel_size,
    shift_image,
)


# --------------------------------------------------------------------------- measurements
def _profiles_one(img: np.ndarray, alphas_deg: np.ndarray, oversample: int) -> np.ndarray:
    """Line profiles along the ideal y for every trial rotation α: ``(len(alphas), ny·os)``.

    Pixel (y, x) (centred) of a projection rotated by +α sits at ideal y₀ = −x sin α + y cos α;
    the pixel's value is split linearly between the two nearest of the oversampled bins.
    """
    finite_check_block(img, "align")
    ny, nx = img.shape
    y = (np.arange(ny) - ny // 2)[:, None].astype(np.float64)
    x = (np.arange(nx) - nx // 2)[None, :].astype(np.float64)
    v = np.asarray(img, dtype=np.float64).ravel()
    nb = ny * oversample
    out = np.zeros((len(alphas_deg), nb))
    for k, a in enumerate(np.radians(alphas_deg)):
        y0 = ((-x * np.sin(a) + y * np.cos(a)) * oversample + nb // 2).ravel()
        i0 = np.floor(y0).astype(np.int64)
        f = y0 - i0
        ok0 = (i0 >= 0) & (i0 < nb)
        ok1 = (i0 + 1 >= 0) & (i0 + 1 < nb)
        out[k] = (np.bincount(i0[ok0], v[ok0] * (1 - f[ok0]), minlength=nb)
                  + np.bincount(i0[ok1] + 1, v[ok1] * f[ok1], minlength=nb))
    return out


def _com_one(img: np.ndarray, alpha_deg: float) -> np.ndarray:
    """Intensity centroid (y, x) in pixels from the centre, in the frame de-rotated by α."""
    finite_check_block(img, "align")
    ny, nx = img.shape
    y = (np.arange(ny) - ny // 2)[:, None].astype(np.float64)
    x = (np.arange(nx) - nx // 2)[None, :].astype(np.float64)
    a = np.radians(alpha_deg)
    x0 = x * np.cos(a) + y * np.sin(a)
    y0 = -x * np.sin(a) + y * np.cos(a)
    w = np.asarray(img, dtype=np.float64)
    tot = w.sum()
    if tot == 0:
        return np.array([np.nan, np.nan, 0.0])
    return np.array([(w * y0).sum() / tot, (w * x0).sum() / tot, tot])


def _per_projection(da: xr.DataArray, func, n_out, **kw) -> np.ndarray:
    """Run ``func(img, **kw) -> array`` on every projection and return the stacked results
    (computed chunk by chunk for dask input)."""
    if not is_lazy(da):
        vals = np.asarray(da.values)
        return np.stack([func(vals[i], **kw) for i in range(vals.shape[0])])
    arr = da.data.rechunk({1: -1, 2: -1})

    def blockfunc(block):
        return np.stack([func(block[i], **kw) for i in range(block.shape[0])])

    parts = [dask.delayed(blockfunc)(b) for b in arr.to_delayed().ravel()]
    return np.concatenate(dask.compute(*parts), axis=0)


def _shift_rows(P: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Rows of ``P`` sampled at ``y + s`` (content moved by −s), Fourier interpolation."""
    k = np.fft.fftfreq(P.shape[1])[None, :]
    return np.fft.ifft(np.fft.fft(P, axis=1) * np.exp(2j * np.pi * k * np.asarray(s)[:, None]),
                       axis=1).real


def _register_1d(ref: np.ndarray, p: np.ndarray, upsample: int = 100) -> float:
    """Displacement (bins) of ``p`` relative to ``ref`` (subpixel cross-correlation)."""
    from skimage.registration import phase_cross_correlation

    s, _, _ = phase_cross_correlation(ref - ref.mean(), p - p.mean(),
                                      upsample_factor=upsample, normalization=None)
    return -float(s[0])


def _align_profiles(P: np.ndarray, n_iter: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Register 1D profiles ``(n, m)`` to their mean: returns (displacements, aligned)."""
    m = P.shape[1]
    c = np.arange(m) - m // 2
    tot = P.sum(axis=1)
    tot = np.where(tot == 0, 1.0, tot)
    d = (P * c).sum(axis=1) / tot  # centroids
    for _ in range(n_iter):
        A = _shift_rows(P, d)
        ref = A.mean(axis=0)
        d = d + np.array([_register_1d(ref, a) for a in A])
        d = d - d.mean() + ((P * c).sum(axis=1) / tot).mean()  # gauge: mean centroid
    return d, _shift_rows(P, d)


def _profile_spread(P: np.ndarray) -> float:
    """Relative spread of the profiles after centring each on its centroid."""
    m = P.shape[1]
    tot = P.sum(axis=1)
    tot = np.where(tot == 0, 1.0, tot)
    A = _shift_rows(P, (P * (np.arange(m) - m // 2)).sum(axis=1) / tot)
    ref = A.mean(axis=0)
    return float(np.sum((A - ref) ** 2) / max(np.sum(ref**2), 1e-300))


def estimate_tilt_axis_rotation(da: xr.DataArray, *, max_deg: float = 5.0,
                                step_deg: float = 0.5, oversample: int = 1) -> dict:
    """Estimate the in-plane rotation α (degrees) of the tilt axis from the common-line
    condition (a single-axis series' line profiles along the axis agree).

    Returns a dict with ``tilt_axis_rotation_deg`` and the objective curve (``alphas_deg``,
    ``spread``). The data are reduced per projection (lazy-friendly).
    """
    da = check_series(da, func="estimate_tilt_axis_rotation", frames="forbid", min_angles=2)
    coarse = np.arange(-max_deg, max_deg + 1e-9, step_deg)
    P = _per_projection(da, _profiles_one, len(coarse), alphas_deg=coarse,
                        oversample=oversample)
    J = np.array([_profile_spread(P[:, k]) for k in range(len(coarse))])
    k0 = int(np.argmin(J))
    fine = coarse[k0] + np.linspace(-step_deg, step_deg, 11)
    Pf = _per_projection(da, _profiles_one, len(fine), alphas_deg=fine, oversample=oversample)
    Jf = np.array([_profile_spread(Pf[:, k]) for k in range(len(fine))])
    k1 = int(np.argmin(Jf))
    lo, hi = max(k1 - 2, 0), min(k1 + 3, len(fine))
    cf = np.polyfit(fine[lo:hi], Jf[lo:hi], 2)
    best = -cf[1] / (2 * cf[0]) if cf[0] > 0 else fine[k1]
    best = float(np.clip(best, fine[0], fine[-1]))
    return {"tilt_axis_rotation_deg": best,
            "alphas_deg": np.concatenate([coarse, fine]).tolist(),
            "spread": np.concatenate([J, Jf]).tolist()}


def tilt_axis_offset(shift_x_A, angles_deg) -> float:
    """Constant term x₀ (Å) of the fit ``shift_x(θ) = x₀ + a cos θ + b sin θ``."""
    t = np.radians(np.asarray(angles_deg, dtype=float))
    A = np.stack([np.ones_like(t), np.cos(t), np.sin(t)], axis=1)
    coef, *_ = np.linalg.lstsq(A, np.asarray(shift_x_A, dtype=float), rcond=None)
    return float(coef[0])


# --------------------------------------------------------------------------- correction
def _transform_one(img, s_y, s_x, *, alpha_deg, interpolation):
    """out(p) = in(R(α)(p + s)) — de-rotate by α and move the content back by s (pixels)."""
    finite_check_block(img, "align")
    img = np.asarray(img, dtype=np.float64)
    if alpha_deg == 0.0:
        return shift_image(img, (-float(s_y), -float(s_x)), interpolation=interpolation)
    ny, nx = img.shape
    yy, xx = np.meshgrid(np.arange(ny) - ny // 2 + float(s_y),
                         np.arange(nx) - nx // 2 + float(s_x), indexing="ij")
    a = np.radians(alpha_deg)
    src_x = xx * np.cos(a) - yy * np.sin(a) + nx // 2
    src_y = xx * np.sin(a) + yy * np.cos(a) + ny // 2
    return ndimage.map_coordinates(img, [src_y, src_x], order=3, mode="nearest")


def apply_alignment(da: xr.DataArray, *, shift_x_A, shift_y_A, tilt_axis_rotation_deg=0.0,
                    interpolation: str = "fourier") -> xr.DataArray:
    """De-rotate every projection by the tilt-axis rotation and move its content back by the
    given displacements (Å, one per projection). Lazy for dask input (per projection)."""
    px = pixel_size(da)
    n = da.sizes["angle"]
    sx = np.broadcast_to(np.asarray(shift_x_A, dtype=float), (n,)) / px
    sy = np.broadcast_to(np.asarray(shift_y_A, dtype=float), (n,)) / px
    sxa = xr.DataArray(sx, dims=("angle",))
    sya = xr.DataArray(sy, dims=("angle",))
    out = map_projections(da, _transform_one, sya, sxa, out_dtype=np.float64,
                          alpha_deg=float(tilt_axis_rotation_deg), interpolation=interpolation)
    return out.transpose(*da.dims)


def align(da: xr.DataArray, *, tilt_axis: str | float | None = "estimate",
          x: str | None = "com", y: str | None = "common_line", max_rotation_deg: float = 5.0,
          shifts=None, interpolation: str = "fourier", n_iter: int = 3):
    """Align a single-axis tilt series: tilt-axis rotation, common-line y, centre-of-mass x.

    Parameters
    ----------
    da : xarray.DataArray
        ``(angle, y, x)`` with coords in Å centred at ``n // 2`` (frames merged), ≥ 2 angles,
        background removed (the centre of mass is intensity-weighted).
    tilt_axis : "estimate", float or None
        In-plane rotation α of the tilt axis in degrees (measured image = ideal rotated by +α,
        counter-clockwise in (x, y)); ``"estimate"`` measures it (common-line condition),
        ``None``/0 leaves the axis along y.
    x : {"com", None}
        Centre-of-mass alignment across the axis (x), or none.
    y : {"common_line", "com", None}
        Registration of the line sums along x (subpixel 1D correlation), their centroids only,
        or none.
    max_rotation_deg : float
        Search range of the tilt-axis rotation (±).
    shifts : (array, array), optional
        Known displacements ``(shift_x_A, shift_y_A)`` per projection: skip the measurement and
        only apply them (fully lazy for dask input).
    interpolation : {"fourier", "spline"}
        Shift interpolation (rotations always use cubic splines).
    n_iter : int
        Iterations of the profile registration.

    Returns
    -------
    xarray.DataArray, dict
        The aligned series (float64, lazy when ``da`` is) with per-angle coords ``shift_x_A``,
        ``shift_y_A`` (measured displacements, Å; added to earlier ones when present) and
        attrs ``tilt_axis_rotation_deg``; the dict holds the shifts, ``tilt_axis_rotation_deg``
        and ``tilt_axis_offset_A``.
    """
    da = check_series(da, func="align", frames="forbid", min_angles=2)
    check_interpolation(interpolation, "align")
    if x not in ("com", None):
        raise ValueError(f"align: x must be 'com' or None, got {x!r}")
    if y not in ("common_line", "com", None):
        raise ValueError(f"align: y must be 'common_line', 'com' or None, got {y!r}")
    if "phi" in da.coords or "psi" in da.coords:
        e = np.concatenate([np.ravel(da.coords[c].values) for c in ("phi", "psi")
                            if c in da.coords])
        if np.any(e != 0):
            raise ValueError("align: the series has non-zero Euler φ/ψ; align() handles "
                             "single-axis series — use projection_matching() instead")
    px = pixel_size(da)
    angles = np.asarray(da.angle.values, dtype=float)
    n = angles.size
    result: dict = {}
    if shifts is not None:
        sx_A, sy_A = (np.broadcast_to(np.asarray(s, dtype=float), (n,)).copy() for s in shifts)
        alpha = 0.0 if tilt_axis in (None, "estimate") else float(tilt_axis)
        if tilt_axis == "estimate":
            raise ValueError("align: pass tilt_axis=<degrees> or None together with shifts; "
                             "estimating it needs the measurement that shifts skips")
    else:
        if tilt_axis == "estimate":
            est = estimate_tilt_axis_rotation(da, max_deg=max_rotation_deg)
            alpha = est["tilt_axis_rotation_deg"]
            result["rotation_search"] = {"alphas_deg": est["alphas_deg"],
                                         "spread": est["spread"]}
        elif tilt_axis is None:
            alpha = 0.0
        else:
            alpha = float(tilt_axis)
        com = _per_projection(da, _com_one, 3, alpha_deg=alpha)
        if np.any(com[:, 2] == 0):
            bad = np.flatnonzero(com[:, 2] == 0).tolist()
            raise ValueError(f"align: projection(s) {bad} sum to zero (empty or all-zero "
                             f"images); remove them with ts.isel(angle=[...])")
        sx = com[:, 1] if x == "com" else np.zeros(n)
        if y == "common_line":
            P = _per_projection(da, _profiles_one, 1, alphas_deg=np.array([alpha]),
                                oversample=1)[:, 0]
            sy, _ = _align_profiles(P, n_iter=n_iter)
        elif y == "com":
            sy = com[:, 0]
        else:
            sy = np.zeros(n)
        sx_A, sy_A = sx * px, sy * px
    out = apply_alignment(da, shift_x_A=sx_A, shift_y_A=sy_A, tilt_axis_rotation_deg=alpha,
                          interpolation=interpolation)
    prev_x = da.coords["shift_x_A"].values if "shift_x_A" in da.coords else 0.0
    prev_y = da.coords["shift_y_A"].values if "shift_y_A" in da.coords else 0.0
    out = out.assign_coords(shift_x_A=("angle", sx_A + prev_x),
                            shift_y_A=("angle", sy_A + prev_y))
    out.attrs["tilt_axis_rotation_deg"] = float(alpha) + float(
        da.attrs.get("tilt_axis_rotation_deg", 0.0))
    result.update({
        "shift_x_A": sx_A.tolist(), "shift_y_A": sy_A.tolist(),
        "tilt_axis_rotation_deg": float(alpha),
        "tilt_axis_offset_A": tilt_axis_offset(sx_A, angles),
    })
    return out, result
