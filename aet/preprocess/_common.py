"""Shared validation and per-projection plumbing of :mod:`aet.preprocess`.

Every stage takes the TiltSeries DataArray (dims ``(angle, y, x)`` or ``(angle, frame, y, x)``,
coords in Å centred at index ``n // 2``, ``attrs["pixel_size_A"]``), validates it here, and lifts
its 2D work onto dask with :func:`map_projections` so that a dask-backed series stays lazy.
"""

from __future__ import annotations

import warnings

import dask.array as dsa
import numpy as np
import xarray as xr

from ..core.geometry import pixel_size_of

_DIMS3 = ("angle", "y", "x")
_DIMS4 = ("angle", "frame", "y", "x")


class AngleOrderWarning(UserWarning):
    """The projections were not in increasing tilt-angle order and were sorted."""


def is_lazy(da: xr.DataArray) -> bool:
    return isinstance(da.variable._data, dsa.Array)


def check_series(da, *, func: str, frames: str = "allow", min_angles: int = 1,
                 sort: bool = True) -> xr.DataArray:
    """Validate a tilt-series DataArray and return it sorted by increasing angle.

    ``frames``: ``"allow"``, ``"require"`` or ``"forbid"`` the ``frame`` dim.
    Angles out of order are sorted with an :class:`AngleOrderWarning` (never silently).
    """
    if hasattr(da, "_da"):
        da = da._da
    if not isinstance(da, xr.DataArray):
        raise TypeError(f"{func}: da must be an xarray.DataArray (TiltSeries.data), got "
                        f"{type(da).__name__}")
    dims = tuple(da.dims)
    if dims not in (_DIMS3, _DIMS4):
        raise ValueError(f"{func}: da has dims {dims}; expected {_DIMS3} or {_DIMS4}")
    if frames == "forbid" and dims == _DIMS4:
        raise ValueError(f"{func}: the series still has {da.sizes['frame']} frames per angle; "
                         f"merge them first with register_frames()")
    if frames == "require" and dims != _DIMS4:
        raise ValueError(f"{func}: da has no 'frame' dim; pass the raw series with dims "
                         f"{_DIMS4}")
    if da.dtype.kind not in "iuf":
        raise TypeError(f"{func}: da must hold real numbers, got dtype {da.dtype}")
    n = da.sizes["angle"]
    if n < min_angles:
        raise ValueError(f"{func}: the series has {n} projection(s) but needs at least "
                         f"{min_angles}; alignment compares projections with each other")
    pixel_size_of(da, "da")
    if not is_lazy(da) and da.dtype.kind == "f":
        bad = int(np.size(da.values) - np.count_nonzero(np.isfinite(da.values)))
        if bad:
            raise ValueError(f"{func}: da contains {bad} NaN/inf value(s); replace them first "
                             f"(e.g. numpy.nan_to_num or by masking the bad pixels)")
    if sort and n > 1:
        ang = np.asarray(da.coords["angle"].values, dtype=float)
        if np.any(np.diff(ang) < 0):
            order = np.argsort(ang, kind="stable")
            warnings.warn(AngleOrderWarning(
                f"{func}: the angles were not in increasing order (first out of order at "
                f"index {int(np.argmax(np.diff(ang) < 0)) + 1}); the projections were sorted "
                f"by angle. Sort them yourself (ts.data.sortby('angle')) to silence this."),
                stacklevel=3)
            da = da.isel(angle=order)
    return da


def finite_check_block(block: np.ndarray, func: str) -> None:
    """Raise a clear error on NaN/inf inside a (lazily computed) block."""
    if block.dtype.kind == "f" and not np.all(np.isfinite(block)):
        bad = int(block.size - np.count_nonzero(np.isfinite(block)))
        raise ValueError(f"{func}: the data contain {bad} NaN/inf value(s) in one chunk; "
                         f"replace them first (e.g. numpy.nan_to_num)")


def map_projections(da: xr.DataArray, func, *args, core_dims=("y", "x"), out_dtype=None,
                    **kwargs) -> xr.DataArray:
    """Apply ``func(image_2d, *per_angle_args, **kwargs) -> image_2d`` to every image.

    ``args`` are DataArrays/arrays with one value per projection (dim ``angle``, optionally
    more trailing dims) or scalars. Dask-backed input stays lazy: the work runs per chunk
    with ``xarray.apply_ufunc(dask="parallelized")``; (y, x) are made single-chunk.
    """
    core = list(core_dims)
    data = da
    if is_lazy(da):
        data = da.chunk({d: -1 for d in core})
    out_dtype = np.dtype(out_dtype or (da.dtype if da.dtype.kind == "f" else np.float64))
    lead = [d for d in da.dims if d not in core]

    xargs, in_core = [], []
    for a in args:
        if isinstance(a, xr.DataArray):
            extra = [d for d in a.dims if d not in lead]
            if is_lazy(data) and is_lazy(a):
                a = a.chunk({d: -1 for d in extra})
            xargs.append(a)
            in_core.append(extra)
        else:
            xargs.append(a)
            in_core.append([])

    def _apply(block, *blocks):
        shape = block.shape
        lead_shape = shape[: block.ndim - len(core)]
        out = np.empty(shape, dtype=out_dtype)
        bl = []
        for b, c in zip(blocks, in_core):
            if isinstance(b, np.ndarray):
                tail = b.shape[b.ndim - len(c):] if c else ()
                b = b.reshape((1,) * (len(lead_shape) + len(c) - b.ndim) + b.shape)
                b = np.broadcast_to(b, lead_shape + tail)
            bl.append(b)
        for idx in np.ndindex(*lead_shape):
            per = [b[idx] if isinstance(b, np.ndarray) else b for b in bl]
            out[idx] = func(block[idx], *per, **kwargs)
        return out

    return xr.apply_ufunc(
        _apply, data, *xargs,
        input_core_dims=[core, *in_core],
        output_core_dims=[core],
        dask="parallelized",
        output_dtypes=[out_dtype],
        keep_attrs=True,
    )


# --------------------------------------------------------------------------- shifts
def fourier_shift_image(img: np.ndarray, shift_yx) -> np.ndarray:
    """Shift ``img`` by ``shift_yx`` pixels (content moves by +shift) with a Fourier phase
    ramp: exact for band-limited images, periodic at the borders."""
    sy, sx = float(shift_yx[0]), float(shift_yx[1])
    if sy == 0.0 and sx == 0.0:
        return np.array(img, dtype=np.result_type(img.dtype, np.float32), copy=True)
    ny, nx = img.shape
    ky = np.fft.fftfreq(ny)[:, None]
    kx = np.fft.fftfreq(nx)[None, :]
    ramp = np.exp(-2j * np.pi * (ky * sy + kx * sx))
    # the real part of the inverse = Hermitian-symmetric treatment of the Nyquist bins
    out = np.fft.ifft2(np.fft.fft2(img.astype(np.float64)) * ramp).real
    return out.astype(np.result_type(img.dtype, np.float32), copy=False)


def shift_image(img: np.ndarray, shift_yx, *, interpolation: str = "fourier") -> np.ndarray:
    """Translate ``img`` by ``shift_yx`` pixels (content moves by +shift)."""
    if interpolation == "fourier":
        return fourier_shift_image(img, shift_yx)
    from scipy import ndimage

    out = ndimage.shift(img.astype(np.float64), shift_yx, order=3, mode="nearest")
    return out.astype(np.result_type(img.dtype, np.float32), copy=False)


def check_interpolation(interpolation: str, func: str) -> str:
    if interpolation not in ("fourier", "spline"):
        raise ValueError(f"{func}: interpolation must be 'fourier' or 'spline', got "
                         f"{interpolation!r}")
    return interpolation


def _upsampled_dft(data, region: int, up: int, offsets) -> np.ndarray:
    """Matrix-multiply DFT of ``data`` (a cross-power spectrum) on a ``region``² grid of the
    correlation upsampled ``up`` times, starting at ``offsets`` (Guizar-Sicairos 2008)."""
    for n_items, off in list(zip(data.shape, offsets))[::-1]:
        kernel = (np.arange(region) - off)[:, None] * np.fft.fftfreq(n_items, up)
        data = np.tensordot(np.exp(-2j * np.pi * kernel), data, axes=(1, -1))
    return data


def register_translation(reference: np.ndarray, moving: np.ndarray, *,
                         upsample_factor: int = 20, window: bool = True,
                         coarse_sigma_px: float = 0.0) -> np.ndarray:
    """Displacement ``(dy, dx)`` in pixels of ``moving``'s content relative to ``reference``.

    Cross-correlation (not phase correlation: robust to noise) with subpixel refinement by a
    local upsampled DFT (Guizar-Sicairos et al. 2008, as in
    :func:`skimage.registration.phase_cross_correlation`). With ``coarse_sigma_px`` > 0 the
    integer peak is found on the Gaussian low-passed correlation first, so a crystal lattice's
    periodic side peaks cannot win; the refinement then uses the full bandwidth around it.
    """
    ref = np.asarray(reference, dtype=np.float64)
    mov = np.asarray(moving, dtype=np.float64)
    ref = ref - ref.mean()
    mov = mov - mov.mean()
    if window:
        w = _tukey2d(ref.shape)
        ref, mov = ref * w, mov * w
    R = np.fft.fft2(ref) * np.fft.fft2(mov).conj()
    ny, nx = R.shape
    Rc = R
    if coarse_sigma_px > 0:
        ky = np.fft.fftfreq(ny)[:, None]
        kx = np.fft.fftfreq(nx)[None, :]
        Rc = R * np.exp(-2 * np.pi**2 * coarse_sigma_px**2 * (ky**2 + kx**2))
    cc = np.fft.ifft2(Rc).real
    ip = np.unravel_index(int(np.argmax(cc)), cc.shape)
    peak = np.array(ip, dtype=np.float64)
    if coarse_sigma_px > 0:  # parabolic subpixel estimate of the smooth coarse peak
        for ax, n_ax in enumerate((ny, nx)):
            lo, hi = list(ip), list(ip)
            lo[ax], hi[ax] = (ip[ax] - 1) % n_ax, (ip[ax] + 1) % n_ax
            c0, cm, cp = cc[ip], cc[tuple(lo)], cc[tuple(hi)]
            den = cm - 2 * c0 + cp
            if den < 0:
                peak[ax] += float(np.clip(0.5 * (cm - cp) / den, -0.5, 0.5))
    mid = np.array([ny // 2, nx // 2])
    peak[peak > mid] -= np.array([ny, nx])[peak > mid]
    # shift s (registers moving onto reference): ref(p) ≈ mov(p - s)
    up = int(upsample_factor)
    if up > 1:
        region = int(np.ceil(up * 1.5))
        dftshift = np.fix(region / 2.0)
        offsets = dftshift - np.round(peak * up) if coarse_sigma_px > 0 else (
            dftshift - peak * up)
        base = (offsets - dftshift) / -up
        ccu = _upsampled_dft(R.conj(), region, up, offsets).conj()
        m = np.array(np.unravel_index(int(np.argmax(np.abs(ccu))), ccu.shape), float)
        peak = base + (m - dftshift) / up
    return -peak


def _tukey2d(shape, alpha: float = 0.25) -> np.ndarray:
    from scipy.signal.windows import tukey

    return np.outer(tukey(shape[0], alpha), tukey(shape[1], alpha))


def angle_coord_array(da: xr.DataArray, values, name: str) -> xr.DataArray:
    """A 1D DataArray on the ``angle`` dim of ``da`` (for per-angle coords)."""
    return xr.DataArray(np.asarray(values), dims=("angle",), coords={"angle": da.angle.values},
                        name=name)
