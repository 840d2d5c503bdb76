"""Frame registration: merge the frames recorded at each tilt angle into one projection.

STEM tilt series are often recorded as several fast frames per angle; the specimen drifts
between them (and during each raster scan). :func:`register_frames` measures the drift of
every frame by subpixel cross-correlation against an iteratively refined reference, optionally
removes the within-frame (row-by-row) part of a constant drift, and averages the registered
frames with weights. It also measures the noise of the merged image from the spread of the
frames (variance as a linear function of intensity), which :func:`aet.preprocess.denoise`
uses.
"""

from __future__ import annotations

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
from scipy import ndimage

from ..core.geometry import pixel_size_of
from ._common import (
    check_interpolation,
    check_series,
    finite_check_block,
    is_lazy,
    register_translation,
    shift_image,
)

_STATS = ("drift_x_A", "drift_y_A", "frame_jitter_A", "noise_var_slope", "noise_var_intercept",
          "n_frames_used")


def _row_drift_correct(frame: np.ndarray, v_yx, scan_fraction: float) -> np.ndarray:
    """Undo a constant drift during a raster scan (fast axis x, slow axis y).

    Row ``r`` is recorded at time ``r / ny`` of the scan, so a drift of ``v`` pixels per frame
    interval displaced it by ``v * scan_fraction * (r - ny // 2) / ny`` relative to the frame's
    centre row; sample the frame there.
    """
    ny, nx = frame.shape
    t = scan_fraction * (np.arange(ny, dtype=np.float64) - ny // 2) / ny
    yy, xx = np.meshgrid(np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64),
                         indexing="ij")
    src_y = yy + (v_yx[0] * t)[:, None]
    src_x = xx + (v_yx[1] * t)[:, None]
    return ndimage.map_coordinates(frame.astype(np.float64), [src_y, src_x], order=3,
                                   mode="nearest")


def _fit_drift(shifts: np.ndarray, used: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(used)
    if idx.size < 2:
        return np.zeros(2)
    A = np.stack([np.ones(idx.size), idx.astype(float)], axis=1)
    coef, *_ = np.linalg.lstsq(A, shifts[idx], rcond=None)
    return coef[1]


def _noise_model(aligned: np.ndarray, used: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """Fit var(frame) = a * mean + b from the frame spread; return the merged image's
    variance model (scaled by Σw²)."""
    fr = aligned[used]
    if fr.shape[0] < 2:
        return float("nan"), float("nan")
    mean = fr.mean(axis=0)
    var = fr.var(axis=0, ddof=1)
    # trim borders (Fourier shifts wrap there) and bin by intensity
    b = max(2, min(mean.shape) // 16)
    mean, var = mean[b:-b, b:-b].ravel(), var[b:-b, b:-b].ravel()
    edges = np.quantile(mean, np.linspace(0, 1, 21))
    mids, vs = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (mean >= lo) & (mean <= hi)
        if sel.sum() >= 8:
            mids.append(mean[sel].mean())
            vs.append(np.median(var[sel]) / (1 - 2 / (9 * (fr.shape[0] - 1))) ** 3)
    mids, vs = np.asarray(mids), np.asarray(vs)
    if mids.size < 2 or np.ptp(mids) == 0:
        a, c = 0.0, float(np.median(var))
    else:
        a, c = np.polyfit(mids, vs, 1)
        a = max(float(a), 0.0)
        c = float(np.mean(vs - a * mids))
    scale = float(np.sum(w**2))
    return a * scale, max(c, 0.0) * scale


def _register_one(frames: np.ndarray, *, upsample_factor, n_iter, weighting, zero_frames,
                  within_frame, scan_fraction, reference, interpolation, coarse_sigma_px,
                  where: str):
    finite_check_block(frames, "register_frames")
    nf = frames.shape[0]
    frames = frames.astype(np.float64)
    used = np.array([np.any(f != 0) for f in frames])
    if not used.all():
        bad = np.flatnonzero(~used).tolist()
        if zero_frames == "raise" or not used.any():
            raise ValueError(
                f"register_frames: frame(s) {bad} of the projection at {where} are all zero "
                f"(a failed read-out?); drop them with ts.isel(frame=[...]) or pass "
                f"zero_frames='drop' to give them weight 0")
    shifts = np.zeros((nf, 2))
    v = np.zeros(2)
    work = frames
    ref = frames[used].mean(axis=0)
    w = used / used.sum()
    aligned = work.copy()
    for it in range(n_iter):
        # incremental: register the currently aligned frames, so the small bias of the
        # apodising window (∝ the remaining shift) vanishes as the iterations converge
        for i in np.flatnonzero(used):
            shifts[i] += register_translation(ref, aligned[i],
                                              upsample_factor=upsample_factor,
                                              coarse_sigma_px=coarse_sigma_px)
        # gauge: shifts relative to the reference frame
        r = int(np.flatnonzero(used)[0]) if reference == "first" else None
        shifts[used] -= shifts[r] if r is not None else shifts[used].mean(axis=0)
        for i in np.flatnonzero(used):
            aligned[i] = shift_image(work[i], -shifts[i], interpolation=interpolation)
        if weighting == "equal":
            w = used / used.sum()
        else:
            ref0 = aligned[used].mean(axis=0)
            var = np.array([np.var(aligned[i] - ref0) if used[i] else np.inf
                            for i in range(nf)])
            var = np.maximum(var, 1e-12 * max(np.var(ref0), 1e-300))
            w = np.where(used, 1.0 / var, 0.0)
            w = w / w.sum()
        ref = np.tensordot(w, aligned, axes=1)
        if within_frame and it < n_iter - 1:
            v = _fit_drift(shifts, used)
            work = np.stack([_row_drift_correct(f, v, scan_fraction) if u else f
                             for f, u in zip(frames, used)])
            for i in np.flatnonzero(used):
                aligned[i] = shift_image(work[i], -shifts[i], interpolation=interpolation)
    v = _fit_drift(shifts, used)
    jitter = shifts[used] - (np.flatnonzero(used)[:, None] - np.flatnonzero(used).mean()) * v
    jitter = jitter - jitter.mean(axis=0)
    rms_jitter = float(np.sqrt(np.mean(np.sum(jitter**2, axis=1)))) if used.sum() > 2 else 0.0
    slope, icpt = _noise_model(aligned, used, w)
    stats = np.array([v[1], v[0], rms_jitter, slope, icpt, used.sum()], dtype=np.float64)
    return ref, shifts, w, stats


def _register_block(block: np.ndarray, angles, kw) -> tuple:
    merged = np.empty((block.shape[0], *block.shape[2:]), dtype=np.float64)
    shifts = np.empty((block.shape[0], block.shape[1], 2))
    weights = np.empty(block.shape[:2])
    stats = np.empty((block.shape[0], len(_STATS)))
    for a in range(block.shape[0]):
        merged[a], shifts[a], weights[a], stats[a] = _register_one(
            block[a], where=f"angle {angles[a]:g}°", **kw)
    return merged, shifts, weights, stats


def register_frames(da: xr.DataArray, *, upsample_factor: int = 50, n_iter: int = 3,
                    weighting: str = "inverse_variance", reference: str = "first",
                    within_frame: bool = False, scan_fraction: float = 1.0,
                    zero_frames: str = "raise", interpolation: str = "fourier",
                    coarse_sigma_A: float = 1.0):
    """Register and average the frames of every tilt angle.

    Parameters
    ----------
    da : xarray.DataArray
        Tilt series with dims ``(angle, frame, y, x)`` (coords in Å centred at ``n // 2``,
        ``attrs["pixel_size_A"]``). A series without a ``frame`` dim is returned unchanged.
    upsample_factor : int
        Subpixel precision of the cross-correlation (1/upsample_factor pixel).
    n_iter : int
        Reference refinements: register every frame to the current weighted mean, re-average.
    weighting : {"inverse_variance", "equal"}
        Frame weights: ``1 / var(frame − mean)`` (down-weights blurred or noisy frames) or equal.
    reference : {"first", "mean"}
        Gauge of the drift: displacement since the first (non-empty) frame, or relative to the
        mean position of the frames. The merged image sits at that position.
    within_frame : bool
        Also undo the drift *during* each raster scan (fast axis x, slow axis y): with a
        constant drift velocity of ``v`` pixels per frame, row ``r`` is displaced by
        ``v · scan_fraction · (r − ny//2) / ny``; each frame is resampled row by row.
    scan_fraction : float
        Fraction of the frame interval spent scanning (1 = back-to-back frames).
    zero_frames : {"raise", "drop"}
        An all-zero frame (failed read-out) raises, or is given weight 0.
    interpolation : {"fourier", "spline"}
        How frames are shifted (Fourier phase ramp is exact for band-limited images).
    coarse_sigma_A : float
        Gaussian low-pass (Å) of the correlation used to find its integer peak before the
        full-bandwidth subpixel refinement: a crystal's lattice gives periodic side peaks that
        noise can otherwise promote (a one-lattice-vector registration error). 0 disables.

    Returns
    -------
    merged : xarray.DataArray
        ``(angle, y, x)``, float64, with per-angle coords ``drift_x_A``, ``drift_y_A`` (fitted
        drift velocity, Å per frame; content displacement), ``frame_jitter_A`` (RMS deviation
        from linear drift, Å), ``noise_var_slope``/``noise_var_intercept`` (variance of the
        merged image ≈ slope · intensity + intercept, from the spread of the frames) and
        ``n_frames_used``. Lazy (dask) when ``da`` is.
    result : dict
        For in-memory input: ``shift_x_A``/``shift_y_A`` (angle × frame lists: displacement of
        each frame's content relative to the reference, Å), ``weights``, ``drift_x_A``,
        ``drift_y_A``. For dask input the per-frame lists are not computed (``"lazy": True``);
        the per-angle coords carry the drift.

    Examples
    --------
    >>> import numpy as np, aet
    >>> y, x = np.mgrid[:32, :32]
    >>> img = np.exp(-((y - 16) ** 2 + (x - 16) ** 2) / 18.0)
    >>> frames = np.stack([np.roll(img, k, axis=1) for k in range(3)])[None]
    >>> ts = aet.TiltSeries(frames, angles=[0.0], pixel_size_A=0.5)
    >>> merged = ts.register_frames()
    >>> merged.dims, np.round(merged.provenance[-1]["result"]["shift_x_A"][0], 2).tolist()
    (('angle', 'y', 'x'), [0.0, 0.5, 1.0])
    """
    da = check_series(da, func="register_frames")
    if "frame" not in da.dims:
        return da, {"n_frames": 1, "note": "no 'frame' dim: frames already merged"}
    if weighting not in ("inverse_variance", "equal"):
        raise ValueError(f"register_frames: weighting must be 'inverse_variance' or 'equal', "
                         f"got {weighting!r}")
    if reference not in ("first", "mean"):
        raise ValueError(f"register_frames: reference must be 'first' or 'mean', got "
                         f"{reference!r}")
    if zero_frames not in ("raise", "drop"):
        raise ValueError(f"register_frames: zero_frames must be 'raise' or 'drop', got "
                         f"{zero_frames!r}")
    if not 0 <= scan_fraction <= 1:
        raise ValueError(f"register_frames: scan_fraction must be in [0, 1], got "
                         f"{scan_fraction!r}")
    if int(upsample_factor) < 1 or int(n_iter) < 1:
        raise ValueError("register_frames: upsample_factor and n_iter must be ≥ 1")
    check_interpolation(interpolation, "register_frames")
    px = pixel_size_of(da, "da")
    kw = dict(upsample_factor=int(upsample_factor), n_iter=int(n_iter), weighting=weighting,
              zero_frames=zero_frames, within_frame=bool(within_frame),
              scan_fraction=float(scan_fraction), reference=reference,
              interpolation=interpolation, coarse_sigma_px=float(coarse_sigma_A) / px)
    angles = np.asarray(da.angle.values, dtype=float)
    n, nf, ny, nx = da.shape
    coords = {k: v for k, v in da.coords.items() if "frame" not in v.dims}
    attrs = dict(da.attrs)

    if is_lazy(da):
        arr = da.data.rechunk({1: -1, 2: -1, 3: -1})
        starts = np.cumsum((0, *arr.chunks[0]))
        merged_parts, stat_parts = [], []
        for b, blk in enumerate(arr.to_delayed().ravel()):
            sl = slice(starts[b], starts[b + 1])
            res = dask.delayed(_register_block, nout=4)(blk, angles[sl], kw)
            m = sl.stop - sl.start
            merged_parts.append(dsa.from_delayed(res[0], (m, ny, nx), dtype=np.float64))
            stat_parts.append(dsa.from_delayed(res[3], (m, len(_STATS)), dtype=np.float64))
        merged = dsa.concatenate(merged_parts, axis=0)
        stats = dsa.concatenate(stat_parts, axis=0)
        result = {"lazy": True, "n_frames": nf,
                  "note": "per-frame shifts not computed for dask input; per-angle drift is "
                          "in the coords drift_x_A/drift_y_A"}
    else:
        merged, shifts, weights, stats = _register_block(np.asarray(da.values), angles, kw)
        result = {
            "n_frames": nf,
            "shift_x_A": (shifts[..., 1] * px).tolist(),
            "shift_y_A": (shifts[..., 0] * px).tolist(),
            "weights": weights.tolist(),
            "drift_x_A": (stats[:, 0] * px).tolist(),
            "drift_y_A": (stats[:, 1] * px).tolist(),
        }
    out = xr.DataArray(merged, dims=("angle", "y", "x"), coords=coords, attrs=attrs,
                       name=da.name)
    scale = {"drift_x_A": px, "drift_y_A": px, "frame_jitter_A": px, "noise_var_slope": 1.0,
             "noise_var_intercept": 1.0, "n_frames_used": 1.0}
    for j, name in enumerate(_STATS):
        out = out.assign_coords({name: ("angle", stats[:, j] * scale[name])})
    return out, result
