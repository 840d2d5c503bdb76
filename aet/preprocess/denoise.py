"""Denoising of projections: BM3D with a variance-stabilising transform, NLM fallback.

Noise model. ADF-STEM counts are Poisson (plus detector read noise); after frame averaging the
variance of a merged image is close to ``var = a · I + b``. With ``noise="poisson"`` (or
``"auto"`` when :func:`~aet.preprocess.register_frames` measured ``a``, ``b`` from the frame
spread) the generalised Anscombe transform turns it into unit-variance Gaussian noise,
BM3D denoises at σ = 1, and the closed-form unbiased inverse (Mäkitalo & Foi 2011/2013) maps back.
Otherwise σ is estimated per projection from the data (median absolute deviation of the finest
diagonal wavelet coefficients, :func:`skimage.restoration.estimate_sigma`).
"""

from __future__ import annotations

import threading

import numpy as np
import xarray as xr

from ._common import check_series, finite_check_block, map_projections
from .background import BACKGROUND_COORD, has_background_removed


def anscombe(x: np.ndarray, *, gain: float = 1.0, read_var: float = 0.0) -> np.ndarray:
    """Generalised Anscombe transform for ``var(x) = gain · x + read_var``: unit variance.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> round(float(anscombe(rng.poisson(30.0, 200_000).astype(float)).std()), 2)
    1.0
    """
    y = np.asarray(x, dtype=np.float64) / gain + read_var / gain**2
    return 2.0 * np.sqrt(np.maximum(y + 3.0 / 8.0, 0.0))


def inverse_anscombe(z: np.ndarray, *, gain: float = 1.0, read_var: float = 0.0) -> np.ndarray:
    """Closed-form approximation of the exact unbiased inverse of :func:`anscombe`."""
    z = np.maximum(np.asarray(z, dtype=np.float64), 0.8)
    s = np.sqrt(1.5)
    y = 0.25 * z**2 + 0.25 * s / z - 11.0 / 8.0 / z**2 + 0.625 * s / z**3 - 0.125
    y = np.maximum(y, 0.0)
    return gain * (y - read_var / gain**2)


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Gaussian noise σ of one image from the MAD of its finest diagonal wavelet coefficients."""
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(np.asarray(image, dtype=np.float64)))


# the bm3d binary's thread pool aborts the process when entered from two threads at once
# (dask's threaded scheduler): serialise the calls (bm3d is itself multi-threaded).
_BM3D_LOCK = threading.Lock()


def _bm3d(img: np.ndarray, sigma: float, profile: str) -> np.ndarray:
    import bm3d

    with _BM3D_LOCK:
        out = bm3d.bm3d(img, sigma_psd=sigma, profile=profile)
    return np.asarray(out, dtype=np.float64)


def _nlm(img: np.ndarray, sigma: float, h: float, patch_size: int, patch_distance: int):
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(img, h=h * sigma, sigma=sigma, fast_mode=True,
                            patch_size=patch_size, patch_distance=patch_distance)


def _denoise_one(img, slope, icpt, level, *, method, noise, sigma, strength, profile,
                 patch_size, patch_distance):
    finite_check_block(img, "denoise")
    img = np.asarray(img, dtype=np.float64)
    if not np.any(img):
        return img.copy()
    vst = noise == "poisson"
    # the variance model refers to the raw intensities: add back what remove_background took
    lev = float(level) if vst and np.isfinite(level) else 0.0
    img = img + lev
    if vst:
        gain, rv = float(slope), float(icpt)
        if not (np.isfinite(gain) and gain > 0):
            # no measured model: assume counts (gain 1); subtract nothing
            gain, rv = 1.0, 0.0
        rv = rv if np.isfinite(rv) else 0.0
        z = anscombe(img, gain=gain, read_var=rv)
        s = 1.0
    else:
        z = img
        s = float(sigma) if sigma is not None else estimate_noise_sigma(img)
    s = s * strength
    if s <= 0:
        return img - lev
    if method == "bm3d":
        den = _bm3d(z, s, profile)
    else:
        den = _nlm(z, s, 0.8, patch_size, patch_distance)
    return inverse_anscombe(den, gain=gain, read_var=rv) - lev if vst else den


def denoise(da: xr.DataArray, *, method: str = "bm3d", noise: str = "auto",
            sigma: float | None = None, strength: float = 1.0, profile: str = "np",
            patch_size: int = 5, patch_distance: int = 6):
    """Denoise every projection independently (lazy per projection for dask input).

    Parameters
    ----------
    da : xarray.DataArray
        ``(angle, y, x)`` (or with ``frame``: every frame is denoised), coords in Å.
    method : {"bm3d", "nlm"}
        BM3D (``bm3d`` package) or scikit-image's fast non-local means.
    noise : {"auto", "poisson", "gaussian"}
        ``"poisson"``: variance ∝ intensity; uses the generalised Anscombe transform with
        ``var = noise_var_slope · I + noise_var_intercept`` from the coords written by
        :func:`register_frames` (gain 1, i.e. raw counts, when absent). ``"gaussian"``: σ from
        ``sigma`` or estimated per projection (wavelet MAD). ``"auto"``: ``"poisson"`` when the
        noise-model coords are present, else ``"gaussian"``. When the background was removed
        first (``background_level`` coord, :func:`remove_background`), the Poisson model adds
        the recorded level back before the transform and subtracts it after, so the order of
        the two steps does not matter.
    sigma : float, optional
        Gaussian noise σ in data units (``noise="gaussian"`` only).
    strength : float
        Multiplies the noise level given to the denoiser (> 1 smooths more).
    profile : str
        BM3D profile (``"np"`` normal, ``"refilter"``, ``"vn"``, ``"high"``...).
    patch_size, patch_distance : int
        NLM patch and search sizes (pixels).

    Returns
    -------
    xarray.DataArray, dict
        Float64 series with the same dims and coords; the dict records the noise model used.
    """
    da = check_series(da, func="denoise")
    if method not in ("bm3d", "nlm"):
        raise ValueError(f"denoise: method must be 'bm3d' or 'nlm', got {method!r}")
    if noise not in ("auto", "poisson", "gaussian"):
        raise ValueError(f"denoise: noise must be 'auto', 'poisson' or 'gaussian', got {noise!r}")
    if sigma is not None and (not np.isfinite(sigma) or sigma < 0):
        raise ValueError(f"denoise: sigma must be a finite number ≥ 0, got {sigma!r}")
    if not (np.isfinite(strength) and strength > 0):
        raise ValueError(f"denoise: strength must be > 0, got {strength!r}")
    have_model = {"noise_var_slope", "noise_var_intercept"} <= set(da.coords)
    if noise == "auto":
        noise = "poisson" if have_model and sigma is None else "gaussian"
    if noise == "poisson" and sigma is not None:
        raise ValueError("denoise: sigma applies to noise='gaussian' only; with "
                         "noise='poisson' the variance model comes from the data")
    if have_model:
        slope = xr.DataArray(da.coords["noise_var_slope"].data, dims=("angle",))
        icpt = xr.DataArray(da.coords["noise_var_intercept"].data, dims=("angle",))
    else:
        slope, icpt = np.nan, np.nan
    # remove_background records what it subtracted (aet.preprocess.background)
    if has_background_removed(da):
        level = xr.DataArray(da.coords[BACKGROUND_COORD].data, dims=("angle",))
    else:
        level = 0.0
    out = map_projections(da, _denoise_one, slope, icpt, level, out_dtype=np.float64,
                          method=method, noise=noise, sigma=sigma, strength=float(strength),
                          profile=profile, patch_size=int(patch_size),
                          patch_distance=int(patch_distance))
    out = out.transpose(*da.dims)
    return out, {"method": method, "noise": noise,
                 "variance_model": "measured" if (noise == "poisson" and have_model) else
                 ("counts" if noise == "poisson" else
                  ("given sigma" if sigma is not None else "estimated sigma per projection"))}
