"""Background removal: a smooth surface fitted outside the object, then subtracted.

The object support is estimated per projection (Gaussian smoothing, Otsu threshold, hole
filling, dilation by a margin in Å) unless the user passes a mask. A low-order 2D polynomial
(in centred, normalised coordinates) is least-squares fitted to the pixels outside the support
and subtracted everywhere.

Negative values. After subtraction the vacuum holds zero-mean noise, so about half of its
pixels are negative. The default ``negative="keep"`` leaves them: clipping would bias the
vacuum (and every line sum) upwards, and the reconstruction's positivity constraint handles
them. ``"clip"`` sets them to 0 for algorithms that require non-negative data; ``"raise"``
refuses data where the fitted background exceeds the object signal.

What was removed is recorded: the per-angle coord ``background_level`` holds the mean of the
subtracted surface (data units; added up over repeated calls). Later stages read it: the
Poisson variance model of :func:`~aet.preprocess.denoise` refers to the raw intensities and
adds it back, and :func:`~aet.preprocess.align` removes the background itself when the coord
is absent (so the order in which a user calls the steps does not matter).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import ndimage

from ..core.geometry import pixel_size_of
from ._common import check_series, finite_check_block, map_projections


def estimate_support(image: np.ndarray, *, pixel_size_A: float, smooth_A: float = 1.0,
                     margin_A: float = 3.0) -> np.ndarray:
    """Boolean object support of one projection (True = object), by Otsu thresholding the
    smoothed image, keeping filled components, and dilating by ``margin_A``."""
    from skimage.filters import threshold_otsu

    img = ndimage.gaussian_filter(np.asarray(image, dtype=np.float64),
                                  max(smooth_A / pixel_size_A, 0.5))
    if np.ptp(img) == 0:
        return np.zeros(img.shape, dtype=bool)
    sup = img > threshold_otsu(img)
    sup = ndimage.binary_fill_holes(sup)
    r = int(np.ceil(margin_A / pixel_size_A))
    if r > 0:
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        sup = ndimage.binary_dilation(sup, structure=(yy**2 + xx**2) <= r * r)
    return sup


def _design(shape, order):
    ny, nx = shape
    y = (np.arange(ny) - ny // 2) / max(ny / 2, 1)
    x = (np.arange(nx) - nx // 2) / max(nx / 2, 1)
    yy, xx = np.meshgrid(y, x, indexing="ij")
    cols = [yy**i * xx**j for i in range(order + 1) for j in range(order + 1 - i)]
    return np.stack([c.ravel() for c in cols], axis=1)


BACKGROUND_COORD = "background_level"


def has_background_removed(da: xr.DataArray) -> bool:
    """True when :func:`remove_background` (directly or through another stage) already ran on
    this series (the ``background_level`` coord is present)."""
    return BACKGROUND_COORD in da.coords


def background_levels(da: xr.DataArray) -> np.ndarray:
    """Per-angle mean of the background already subtracted (zeros when none was)."""
    if BACKGROUND_COORD not in da.coords:
        return np.zeros(da.sizes["angle"])
    return np.asarray(da.coords[BACKGROUND_COORD].values, dtype=np.float64)


def _remove_one(img, mask, *, order, px, smooth_A, margin_A, negative, min_fraction):
    finite_check_block(img, "remove_background")
    img = np.asarray(img, dtype=np.float64)
    user = mask is not None and np.ndim(mask) != 0
    A = _design(img.shape, order)
    bg = np.zeros_like(img)
    # estimated support: alternate thresholding the background-subtracted image and refitting
    for _ in range(1 if user else 3):
        sup = (np.asarray(mask, dtype=bool) if user else
               estimate_support(img - bg, pixel_size_A=px, smooth_A=smooth_A,
                                margin_A=margin_A))
        bg_pix = ~sup
        if bg_pix.mean() < min_fraction:
            raise ValueError(
                f"remove_background: only {100 * bg_pix.mean():.1f}% of a projection lies "
                f"outside the object support (need ≥ {100 * min_fraction:.0f}%); the object "
                f"fills the field of view — pass a mask (True = object) or reduce margin_A")
        coef, *_ = np.linalg.lstsq(A[bg_pix.ravel()], img.ravel()[bg_pix.ravel()], rcond=None)
        bg = (A @ coef).reshape(img.shape)
    out = img - bg
    if negative == "clip":
        out = np.maximum(out, 0.0)
    elif negative == "raise" and np.any(out[sup] < 0) and out[sup].mean() < 0:
        raise ValueError("remove_background: the fitted background exceeds the signal inside "
                         "the object support (mean < 0); check the mask or lower order")
    return out


def remove_background(da: xr.DataArray, *, mask=None, order: int = 2, smooth_A: float = 1.0,
                      margin_A: float = 3.0, negative: str = "keep",
                      min_fraction: float = 0.05):
    """Subtract a smooth polynomial background fitted outside the object support.

    Parameters
    ----------
    da : xarray.DataArray
        ``(angle, y, x)`` (or ``(angle, frame, y, x)``), coords in Å centred at ``n // 2``.
    mask : array_like of bool, optional
        Object support, True = object (excluded from the fit): shape ``(y, x)`` for all
        projections or ``(angle, y, x)``. Default: estimated per projection.
    order : int
        Total degree of the 2D polynomial background (0 = constant, 2 = quadratic).
    smooth_A, margin_A : float
        Smoothing before thresholding and dilation of the estimated support, in Å.
    negative : {"keep", "clip", "raise"}
        What to do with negative values after subtraction (module docstring: ``"keep"`` is
        unbiased; ``"clip"`` sets them to 0).
    min_fraction : float
        Minimum fraction of background pixels per projection (else an error).

    Returns
    -------
    xarray.DataArray, dict
        Float64 series of the same dims/coords; the dict gives the fraction of negative pixels.
    """
    da = check_series(da, func="remove_background")
    if negative not in ("keep", "clip", "raise"):
        raise ValueError(f"remove_background: negative must be 'keep', 'clip' or 'raise', got "
                         f"{negative!r}")
    if int(order) != order or order < 0 or order > 6:
        raise ValueError(f"remove_background: order must be an integer 0..6, got {order!r}")
    px = pixel_size_of(da, "da")
    ny, nx = da.sizes["y"], da.sizes["x"]
    margs = []
    if mask is not None:
        m = np.asarray(mask)
        if m.dtype != bool:
            raise TypeError(f"remove_background: mask must be boolean (True = object), got "
                            f"dtype {m.dtype}")
        if m.shape == (ny, nx):
            margs = [xr.DataArray(m, dims=("y", "x"))]
        elif m.shape == (da.sizes["angle"], ny, nx):
            margs = [xr.DataArray(m, dims=("angle", "y", "x"),
                                  coords={"angle": da.angle.values})]
        else:
            raise ValueError(
                f"remove_background: mask has shape {m.shape} but the projections are "
                f"{(ny, nx)} (y, x) with {da.sizes['angle']} angles; pass a (y, x) or "
                f"(angle, y, x) boolean mask")
        if m.all():
            raise ValueError("remove_background: mask is True everywhere; no background "
                             "pixels remain to fit")
    # clipping is applied after the level is recorded (it is not background)
    kw = dict(order=int(order), px=px, smooth_A=float(smooth_A), margin_A=float(margin_A),
              negative="keep" if negative == "clip" else negative,
              min_fraction=float(min_fraction))
    if margs:
        out = map_projections(da, _remove_one, *margs, core_dims=("y", "x"),
                              out_dtype=np.float64, **kw)
    else:
        out = map_projections(da, lambda im, **k: _remove_one(im, None, **k),
                              out_dtype=np.float64, **kw)
    out = out.transpose(*da.dims)
    # record the mean of the subtracted surface per angle (lazy for dask input)
    red = [d for d in da.dims if d != "angle"]
    level = (da.astype(np.float64) - out).mean(dim=red).data + background_levels(da)
    if negative == "clip":
        out = out.clip(min=0.0)
    out = out.assign_coords({BACKGROUND_COORD: ("angle", level, {
        "units": str(da.attrs.get("units", "")),
        "long_name": "mean background subtracted (data units)"})})
    return out, {"order": int(order), "negative": negative,
                 "support": "user mask" if margs else "estimated (Otsu)"}
