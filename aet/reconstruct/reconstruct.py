"""``reconstruct``: tilt series DataArray → volume DataArray (what ``TiltSeries.reconstruct``
calls), plus support estimation."""

from __future__ import annotations

import time

import dask.array as dsa
import numpy as np
import xarray as xr
from scipy import ndimage

from ..core.geometry import TiltGeometry, pixel_size_of
from ..core.schema import is_dask
from . import algorithms as alg
from ._common import volume_dataarray
from .fourier import genfire
from .metrics import fourier_shell_correlation, resolution_from_fsc
from .projector import Projector

METHODS = ("genfire", "resire", "sirt", "wbp")
_DEFAULT_ITER = {"genfire": 50, "resire": 300, "sirt": 500, "wbp": 0}
_MIN_RANGE_DEG = 20.0


def estimate_support(vol_zyx, *, threshold: float = 0.1, sigma: float = 1.0,
                     dilation: int = 2) -> np.ndarray:
    """Support mask from a first reconstruction: Gaussian-smooth (``sigma`` voxels), keep voxels
    above ``threshold`` × max, dilate by ``dilation`` voxels. Returns bool ``(z, y, x)``."""
    v = ndimage.gaussian_filter(np.asarray(vol_zyx, dtype=np.float32), sigma)
    mask = v > threshold * float(v.max())
    if dilation > 0:
        mask = ndimage.binary_dilation(mask, iterations=int(dilation))
    if not mask.any():
        raise ValueError("estimate_support found no voxel above the threshold; lower "
                         "support_threshold or check the projections")
    return mask


def _check_angles(euler: np.ndarray, method: str) -> None:
    th = euler[:, 1]
    need = 5 if method == "wbp" else 3
    if len(th) < need:
        raise ValueError(
            f"angles has {len(th)} projection(s); method {method!r} needs at least {need} "
            f"projections spread over ≥ {_MIN_RANGE_DEG:g}° of tilt"
        )
    rng = float(th.max() - th.min())
    if rng < _MIN_RANGE_DEG:
        raise ValueError(
            f"angles cover only {rng:.1f}° of tilt ({th.min():+.1f}° to {th.max():+.1f}°); "
            f"method {method!r} needs ≥ {_MIN_RANGE_DEG:g}° — record a wider tilt range"
        )


def _check_finite(arr, name="projections"):
    if not np.isfinite(arr).all():
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contain {bad} NaN/inf value(s); replace or mask them (e.g. "
                         f"numpy.nan_to_num) before reconstructing")


DEFAULT_METHOD = "resire"


def reconstruct(da: xr.DataArray, *, method: str = DEFAULT_METHOD, n_iter: int | None = None,
                thickness: int | None = None, pad_x: int | None = None, pad_y: int = 0,
                film="auto",
                crop: bool = True, support=None, support_threshold: float = 0.1,
                positivity: bool = True, filter: str = "ramp", step: float = 1.0,
                accelerate: bool = True, relaxation: float = 1.0,
                oversampling: float = 2.0, interpolation_cutoff: float = 0.5,
                resolution_extension: str | None = "suppression",
                r_free_fraction: float = 0.05, holdout: float | None = None,
                patience: int = 5, holdout_by: str = "projections", refit: bool = True,
                subsets="auto",
                tol: float = 0.0, fsc: bool = False, seed=0, progress=None,
                exclude_pixels=None):
    """Reconstruct a volume from a tilt series.

    Parameters
    ----------
    da : xarray.DataArray
        Projections ``(angle, y, x)`` (coords ``angle`` = θ in degrees, optional ``phi``/``psi``;
        y, x in Å centred at ``n // 2``; attrs ``pixel_size_A``). The tilt axis is y.
    method : {"resire", "genfire", "sirt", "wbp"}
        RESIRE (real-space gradient descent, Pham et al. 2023; the default: with ordered
        subsets, momentum and stopping on held-out projections), GENFIRE (Fourier iterations,
        Pryor et al. 2017), SIRT, or weighted/filtered back projection. Measured at 128³ × 47
        (±69°, 2 % noise, fcc particle, error inside it): the default reaches 0.277 in about
        10 passes over the data, svmbir (MBIR) 0.293, GENFIRE (50 it) 0.27-0.28 in ~5× the
        time (``benchmarks/bench_reconstruct.py`` prints the ratios).
    n_iter : int, optional
        Iterations (for RESIRE with subsets: passes over all projections); with ``holdout``
        the maximum (default: resire 300, genfire 50, sirt 500). Unregularised reconstructions
        of noisy data semi-converge (the error vs truth has a minimum, later iterations fit
        noise): RESIRE/SIRT stop on held-out data, GENFIRE's default count is where its error
        was lowest on noisy phantoms.
    thickness : int, optional
        nz of the volume in voxels (default: the detector width nx).
    pad_x, pad_y : int
        Extended objects (films): voxels added to the box on each side along x (and y); the data
        term counts only the measured field of view (the detector stays its own size), so
        material entering and leaving the view at high tilt is reconstructed, not aliased.
        RESIRE, SIRT and WBP only. ``pad_x`` default: from the film decision (0 for a
        particle).
    film : {"auto", True, False}
        Extended-object (film) mode, see :mod:`aet.reconstruct.film`. ``"auto"`` (default)
        decides from the data (atomic contrast at the x edges of the view at all tilts) and,
        for a film, estimates its z range by parallax and pads the box so every ray crosses
        the film inside it; ``True`` forces film mode, ``False`` treats the object as
        isolated (nothing measured). The decision and its evidence are ``result["film"]``.
    crop : bool
        Return only the measured field of view of a padded box (default True).
    support : None, "auto" or bool array (nz, ny, nx)
        Voxels allowed to be non-zero. ``"auto"``: estimated from a first (WBP) reconstruction
        by :func:`estimate_support` with ``support_threshold``.
    positivity : bool
        Clip negative voxels each iteration (all iterative methods; WBP: clip at the end).
    filter : {"ramp", "shepp-logan", "hann"}
        WBP filter.
    step, accelerate
        RESIRE step (× 1/L, L = max(AᵀA·1) ≈ projections × size) and Nesterov momentum.
    relaxation
        SIRT relaxation λ.
    oversampling, interpolation_cutoff, resolution_extension, r_free_fraction
        GENFIRE options (see :func:`aet.reconstruct.fourier.genfire`); oversampling ≥ 1.
    holdout, patience : float or None, int
        RESIRE/SIRT early stopping: this fraction of the data (default 0.125 of the
        projections, 0.05 of the pixels) is left out of the data term and the iterate with the
        lowest residual on it is returned, after ``patience`` updates without improvement
        (0 disables it: run ``n_iter``).
    holdout_by : {"projections", "pixels"}
        What is held out: whole projections (every 1/``holdout``-th by tilt angle; the
        default), or random detector pixels, whose residual keeps falling after the error has
        started to grow (RESIRE at 128³ × 47, ±69°, 2 % noise: minimum 0.272 at 33
        iterations; pixels (0.05) pick 47 with 0.313, projections (0.125) 36 with 0.281).
    refit : bool
        After choosing the iteration count on held-out data, iterate that often again on all
        the data (the default; ≈ 2× the time). Measured, RESIRE with subsets: 128³ × 47
        (±69°, 2 % noise) 0.277 → 0.275; 48³ × 27 (±65°, 3 %) 0.290 → 0.278: the fewer the
        projections, the more the held-out ones are worth.
    subsets : int or "auto"
        RESIRE ordered subsets (:func:`aet.reconstruct.algorithms.resire_os`): each update
        uses one interleaved subset of the projections, so a pass over the data makes
        ``subsets`` updates and the error minimum comes that many times sooner. ``"auto"``:
        about 6 projections per subset (at most 8) when stopping on held-out projections,
        else 1 (a fixed ``n_iter`` keeps its meaning of plain iterations).
    tol : float
        Stop an iterative method when R1 changes by less than ``tol`` (relative).
    fsc : bool
        Also reconstruct the two interleaved halves of the series with the same settings and
        report their Fourier shell correlation and resolution (``result["fsc"]``; 3× the time).
    seed : int or Generator
        R_free selection (GENFIRE).
    progress : bool, optional
        Show a tqdm bar (default: only when stderr is a terminal).
    exclude_pixels : bool array of the series' shape ``(angle, y, x)``, optional
        Detector pixels left out of the data term (RESIRE only): the reconstruction, and all
        that is traced in it, learns nothing of their values. :func:`aet.run` leaves out the
        pixels its refinement holds out, so that they judge the refinement against a start
        that never saw them (a reconstruction has about as many degrees of freedom as voxels:
        it fits the noise of every pixel it uses, and the atoms traced in it inherit that).

    Returns
    -------
    volume : xarray.DataArray
        ``(z, y, x)`` float32 with attrs ``voxel_size_A`` = ``pixel_size_A``, coords in Å centred
        at ``n // 2``. Lazy (chunked along y, each block of slices reconstructed independently)
        when ``da`` is dask-backed and the series is single-axis (not GENFIRE, not
        ``support="auto"``, which need all slices at once). The kernels vectorise along y, so
        longer blocks cost less per slice: RESIRE at 512² × 47 projections, CPU seconds per
        iteration of the whole 512³ volume: 17.7 with 32-slice blocks, 11.9 with 64, 9.0 with
        128 or 256 (the in-memory parallel kernels: 7.1); a block holds about five arrays of
        its size (64 slices at 512³: 64 MiB each).
    result : dict
        Convergence record (``r1`` per iteration or GENFIRE ``error``), per-projection R1,
        R_free (GENFIRE), timings. Empty of data-dependent numbers for a lazy result.
    """
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"da must be an xarray.DataArray (angle, y, x), got {type(da).__name__}")
    if tuple(da.dims) != ("angle", "y", "x"):
        raise ValueError(f"da must have dims ('angle', 'y', 'x'), got {tuple(da.dims)}; merge "
                         f"frames first with TiltSeries.register_frames()")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    # extended objects (films): decided here, acted on through method, pad_x and thickness
    from .film import resolve_film

    keep = None if exclude_pixels is None else _check_exclude_pixels(exclude_pixels, da.shape)
    # the film decision reads the data too: the left-out pixels filled from their neighbours
    film_dec = resolve_film(da if keep is None else _filled(da, keep), film,
                            thickness=thickness)
    method, pad_x, thickness = film_dec.apply(method, pad_x, thickness,
                                                default_method=DEFAULT_METHOD)
    if keep is not None and method != "resire":
        raise ValueError(f"exclude_pixels needs method='resire' (a weighted data term), got "
                         f"method={method!r}; use method='resire' or drop exclude_pixels")
    if holdout_by not in alg.HOLDOUT_BY:
        raise ValueError(f"holdout_by must be one of {alg.HOLDOUT_BY}, got {holdout_by!r}")
    if holdout is None:
        holdout = 0.125 if holdout_by == "projections" else 0.05
    if holdout_by == "projections" and holdout and n_angles_of(da) < 4:
        holdout = 0.0  # too few projections to leave some out: run n_iter
    subsets = _resolve_subsets(subsets, method, holdout, holdout_by)
    geo = TiltGeometry.from_dataarray(da, "da")
    euler = geo.euler_deg.copy()
    _check_angles(euler, method)
    px = geo.pixel_size_A
    n, nyd, nxd = da.shape
    if n_iter is None:
        n_iter = _DEFAULT_ITER[method]
    if method != "wbp" and (not isinstance(n_iter, (int, np.integer)) or n_iter < 1):
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
    if not (isinstance(oversampling, (int, float)) and oversampling >= 1):
        raise ValueError(f"oversampling must be a number ≥ 1 (grid / object size), got "
                         f"{oversampling!r}; GENFIRE uses 2–4")
    if pad_x < 0 or pad_y < 0:
        raise ValueError(f"pad_x and pad_y must be ≥ 0 voxels, got {pad_x}, {pad_y}")
    nz = nxd if thickness is None else int(thickness)
    if nz < 1:
        raise ValueError(f"thickness must be ≥ 1 voxel, got {thickness!r}")
    vol_shape = (nz, nyd + 2 * pad_y, nxd + 2 * pad_x)
    single = geo.single_axis and pad_y == 0
    if method == "genfire" and (pad_x or pad_y):
        raise ValueError("pad_x/pad_y (extended objects) are not supported by method='genfire' "
                         "(its Fourier grid assumes an isolated object); use method='resire'")
    sup = _check_support(support, vol_shape)
    opts = dict(method=method, n_iter=n_iter, positivity=positivity, filter=filter, step=step,
                accelerate=accelerate, relaxation=relaxation, tol=tol, progress=progress,
                holdout=holdout, patience=patience, holdout_by=holdout_by, refit=refit,
                seed=seed, subsets=subsets, keep=keep)
    attrs = {k: v for k, v in da.attrs.items()
             if k not in ("pixel_size_A", "aet_class", "provenance", "units")}
    data = da.data
    if is_dask(data) and single and method != "genfire" and not isinstance(support, str) \
            and keep is None:
        out = _lazy_single_axis(data, euler, vol_shape, sup, opts, crop, pad_x)
        result = {"method": method, "lazy": True, "n_iter": n_iter,
                  "chunks_y": list(out.chunks[1]), "film": film_dec.to_dict()}
        return volume_dataarray(out, px, attrs), result
    b = np.asarray(data, dtype=np.float32)
    _check_finite(b)
    t0 = time.perf_counter()
    if isinstance(support, str):
        first = _run(b, euler, vol_shape, None, dict(opts, method="wbp", progress=False,
                                                     keep=None),
                     single, r1=False)[0]
        sup = estimate_support(first, threshold=support_threshold)
    if method == "genfire":
        vol, rec = genfire(b, euler, vol_shape, oversampling=oversampling, n_iter=n_iter,
                           interpolation_cutoff=interpolation_cutoff, positivity=positivity,
                           support=sup, r_free_fraction=r_free_fraction,
                           resolution_extension=resolution_extension, seed=seed,
                           progress=progress)
        op = Projector(euler, vol_shape, detector_shape=(nyd, nxd))
        r1p = alg.r1_per_projection(op, op.to_internal_volume(vol),
                                    op.to_internal_projections(b))
    else:
        vol, rec, r1p = _run(b, euler, vol_shape, sup, opts, single)
    result = {"method": method, "convergence": rec, "r1_per_projection": r1p.tolist(),
              "r1": float(np.nanmean(r1p)), "volume_shape": list(vol_shape),
              "time_s": time.perf_counter() - t0, "film": film_dec.to_dict()}
    if keep is not None:
        result["excluded_pixels"] = int(keep.size - np.count_nonzero(keep))
    if fsc:
        result["fsc"] = half_set_fsc(
            da, method=method, n_iter=n_iter, thickness=thickness, pad_x=pad_x, pad_y=pad_y,
            crop=crop, support=support, support_threshold=support_threshold,
            positivity=positivity, filter=filter, step=step, accelerate=accelerate,
            relaxation=relaxation, oversampling=oversampling,
            interpolation_cutoff=interpolation_cutoff, resolution_extension=resolution_extension,
            r_free_fraction=r_free_fraction, holdout=holdout, patience=patience,
            holdout_by=holdout_by, refit=refit, subsets=subsets, tol=tol, seed=seed,
            progress=progress, film=False)
    if sup is not None:
        result["support_voxels"] = int(np.count_nonzero(sup))
    if crop and pad_x:
        vol = vol[:, :, pad_x:pad_x + nxd]
    if crop and pad_y:
        vol = vol[:, pad_y:pad_y + nyd, :]
    return volume_dataarray(np.ascontiguousarray(vol), px, attrs), result


def n_angles_of(da) -> int:
    return int(da.sizes["angle"])


def _resolve_subsets(subsets, method, holdout, holdout_by):
    """``subsets`` as passed on to RESIRE: "auto" → "auto" (OS) when stopping on held-out
    projections, else 1; validated."""
    if isinstance(subsets, str):
        if subsets != "auto":
            raise ValueError(f"subsets must be a positive integer or 'auto', got {subsets!r}")
        return "auto" if (method == "resire" and holdout and holdout_by == "projections") else 1
    if isinstance(subsets, bool) or not isinstance(subsets, (int, np.integer)) or subsets < 1:
        raise ValueError(f"subsets must be a positive integer or 'auto', got {subsets!r}")
    if subsets > 1 and holdout and holdout_by != "projections" and method == "resire":
        raise ValueError("subsets > 1 stops on held-out whole projections; pass "
                         "holdout_by='projections', holdout=0, or subsets=1")
    return int(subsets)


def _check_support(support, vol_shape):
    if support is None:
        return None
    if isinstance(support, str):
        if support != "auto":
            raise ValueError(f"support must be None, 'auto' or a bool array, got {support!r}")
        return None
    s = np.asarray(support)
    if s.shape != tuple(vol_shape):
        raise ValueError(f"support has shape {s.shape} but the volume is {tuple(vol_shape)} "
                         f"(z, y, x); pass a mask of the volume's shape (thickness, padding "
                         f"included)")
    s = s.astype(bool)
    if not s.any():
        raise ValueError("support is empty (no True voxel); pass a mask that contains the "
                         "object, or support='auto'")
    return s


def _check_exclude_pixels(exclude_pixels, shape):
    """The float32 weight (1 = used) of ``exclude_pixels``."""
    m = np.asarray(exclude_pixels)
    if m.dtype != bool:
        raise TypeError(f"exclude_pixels must be a bool array (True = pixel left out), got "
                        f"dtype {m.dtype}")
    if m.shape != tuple(shape):
        raise ValueError(f"exclude_pixels has shape {m.shape} but the tilt series is "
                         f"{tuple(shape)} (angle, y, x); pass one flag per detector pixel")
    if m.all():
        raise ValueError("exclude_pixels leaves out every pixel; leave most of them in")
    return np.ascontiguousarray(~m, dtype=np.float32)


def _filled(da: xr.DataArray, keep: np.ndarray) -> xr.DataArray:
    """``da`` with the left-out pixels (``keep`` 0) replaced by the mean of the kept ones
    around them (3 × 3, in their projection), for decisions that read the whole images."""
    v = np.asarray(da.values, dtype=np.float64)
    k = np.ones((1, 3, 3))
    num = ndimage.convolve(v * keep, k, mode="nearest")
    den = ndimage.convolve(keep.astype(np.float64), k, mode="nearest")
    mean = np.where(den > 0, num / np.maximum(den, 1e-12), float(np.median(v[keep > 0])))
    return da.copy(data=np.where(keep > 0, v, mean).astype(da.dtype))


def _run(b, euler, vol_shape, sup, opts, single, parallel=True, r1=True):
    """In-memory WBP/SIRT/RESIRE: returns (vol zyx, record, r1 per projection or None)."""
    nyd, nxd = b.shape[1:]
    op = Projector(euler, vol_shape, detector_shape=(nyd, nxd), parallel=parallel,
                   single_axis=single)
    bi = op.to_internal_projections(b)
    keep = opts.get("keep")
    weight = None if keep is None else op.to_internal_projections(keep)
    s_int = None if sup is None else op.to_internal_volume(sup)
    method = opts["method"]
    if method == "wbp":
        x, rec = alg.wbp(op, bi, filter=opts["filter"], positivity=opts["positivity"])
        if s_int is not None:
            x *= s_int
    elif method == "sirt":
        x, rec = alg.sirt(op, bi, n_iter=opts["n_iter"], relaxation=opts["relaxation"],
                          positivity=opts["positivity"], support=s_int, tol=opts["tol"],
                          holdout=opts["holdout"], patience=opts["patience"], seed=opts["seed"],
                          holdout_by=opts["holdout_by"], refit=opts["refit"],
                          progress=opts["progress"])
    else:
        x, rec = alg.resire(op, bi, n_iter=opts["n_iter"], step=opts["step"],
                            positivity=opts["positivity"], support=s_int,
                            accelerate=opts["accelerate"], tol=opts["tol"],
                            holdout=opts["holdout"], patience=opts["patience"],
                            holdout_by=opts["holdout_by"], refit=opts["refit"],
                            subsets=opts["subsets"], weight=weight,
                            seed=opts["seed"], progress=opts["progress"])
    r1p = alg.r1_per_projection(op, x, bi, weight) if r1 else None
    return op.from_internal_volume(x), rec, r1p


def _lazy_single_axis(data, euler, vol_shape, sup, opts, crop, pad_x):
    """Each block of y-slices is an independent 2D problem: dask map_blocks, serial kernels."""
    nz, _, nxv = vol_shape
    nxd = data.shape[2]
    proj = data.rechunk({0: -1, 2: -1})
    out_nx = nxd if (crop and pad_x) else nxv
    opts = dict(opts, progress=False)
    args = [proj]
    if sup is not None:
        args.append(dsa.from_array(sup, chunks=(nz, proj.chunks[1], nxv)))
    return dsa.map_blocks(_reconstruct_block, *args, euler=euler, nz=nz, nxv=nxv,
                          opts=opts, crop_x=(pad_x if crop else 0), out_nx=out_nx,
                          chunks=((nz,), proj.chunks[1], (out_nx,)), dtype=np.float32,
                          meta=np.empty((0, 0, 0), np.float32))


def _reconstruct_block(proj, sup=None, *, euler, nz, nxv, opts, crop_x, out_nx):
    b = np.asarray(proj, dtype=np.float32)
    _check_finite(b)
    # no per-projection R1 here: a lazy result has no record to put it in (one projection less)
    vol, _, _ = _run(b, euler, (nz, b.shape[1], nxv), sup, opts, True, parallel=False, r1=False)
    if crop_x:
        vol = vol[:, :, crop_x:crop_x + out_nx]
    return np.ascontiguousarray(vol)


def half_set_fsc(da: xr.DataArray, *, method: str = "resire", threshold: float = 0.143,
                 **kw) -> dict:
    """Reconstruct the two interleaved halves of a tilt series (even/odd projections in tilt
    order), and return their FSC and the resolution where it crosses ``threshold``.

    Each half has half the projections, so the curve is a conservative estimate for the whole
    series. Returns a JSON-able dict: ``freq_per_A``, ``fsc``, ``resolution_A``, ``threshold``.
    """
    order = np.argsort(np.asarray(da.coords["angle"].values))
    halves = [da.isel(angle=np.sort(order[k::2])) for k in (0, 1)]
    vols = []
    for h in halves:
        out = reconstruct(h, method=method, **kw)
        vols.append(np.asarray(out[0].values if isinstance(out, tuple) else out.values))
    vs = pixel_size_of(da, "da")
    f, c = fourier_shell_correlation(vols[0], vols[1], voxel_size_A=vs)
    return {"freq_per_A": f.tolist(), "fsc": c.tolist(), "threshold": threshold,
            "resolution_A": resolution_from_fsc(f, c, threshold=threshold)}
