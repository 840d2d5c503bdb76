"""Scan-distortion correction: linear (affine) or user-supplied non-linear resampling, and a
linear correction estimated from a reference image of a crystal with a known lattice.

Convention: a correction maps *recorded* image positions to *true* positions, both (x, y) in Å
from the image centre (index ``n // 2``): ``true = matrix @ recorded``. The corrected image is
``out(p) = in(matrix⁻¹ p)``. A non-linear ``function(x_A, y_A) -> (x_src_A, y_src_A)`` gives,
for every corrected position, where to sample the recorded image.

A lattice cannot tell a scanner rotation from a crystal rotation, so the estimated correction is
the symmetric (rotation-free) matrix that restores the known lattice metric (lengths and angle).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import ndimage

from ..core.geometry import pixel_size_of
from ._common import check_series, finite_check_block, map_projections


def _lattice_gram(lattice) -> np.ndarray:
    lat = np.asarray(lattice, dtype=np.float64)
    if lat.shape == (2, 2):
        return lat @ lat.T
    if lat.shape == (3,):
        a, b, g = lat
        g = np.radians(g)
        return np.array([[a * a, a * b * np.cos(g)], [a * b * np.cos(g), b * b]])
    raise ValueError(f"lattice must be (a_A, b_A, gamma_deg) or a (2, 2) array of in-plane "
                     f"lattice vectors (rows, Å), got shape {lat.shape}")


def _fft_peaks(image: np.ndarray, n_peaks: int = 12) -> np.ndarray:
    """Subpixel positions (ky, kx) in cycles/pixel of the strongest non-DC Fourier peaks."""
    from skimage.feature import peak_local_max

    img = np.asarray(image, dtype=np.float64)
    ny, nx = img.shape
    w = np.outer(np.hanning(ny), np.hanning(nx))
    F = np.abs(np.fft.fftshift(np.fft.fft2((img - img.mean()) * w)))
    cy, cx = ny // 2, nx // 2
    yy, xx = np.mgrid[:ny, :nx]
    F[(yy - cy) ** 2 + (xx - cx) ** 2 < 16] = 0
    pk = peak_local_max(F, min_distance=3, num_peaks=n_peaks, exclude_border=1)
    L = np.log(F + 1e-12 * F.max())
    out = []
    for y, x in pk:
        dy = 0.5 * (L[y - 1, x] - L[y + 1, x]) / (L[y - 1, x] - 2 * L[y, x] + L[y + 1, x])
        dx = 0.5 * (L[y, x - 1] - L[y, x + 1]) / (L[y, x - 1] - 2 * L[y, x] + L[y, x + 1])
        out.append(((y + dy - cy) / ny, (x + dx - cx) / nx))
    return np.asarray(out)


def estimate_lattice_distortion(image, *, pixel_size_A: float, lattice) -> dict:
    """Estimate the linear scan-distortion correction from an image of a crystal.

    Parameters
    ----------
    image : 2D array (y, x)
        Reference image of a crystal zone axis (many unit cells).
    pixel_size_A : float
        Nominal pixel size in Å.
    lattice : (a_A, b_A, gamma_deg) or (2, 2) array
        The true in-plane lattice: two basis lengths and the angle between them, or two basis
        vectors (rows, Å).

    Returns
    -------
    dict
        ``matrix`` (2×2 list, (x, y) order, ``true = matrix @ recorded``, symmetric),
        ``measured_vectors_A`` (the two recorded basis vectors, rows (x, y)) and
        ``metric_error`` (relative RMS mismatch of the measured lattice metric before
        correction).
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim != 2:
        raise ValueError(f"image must be 2D (y, x), got shape {img.shape}")
    G_e = _lattice_gram(lattice)
    pk = _fft_peaks(img)
    if len(pk) < 2:
        raise ValueError("estimate_lattice_distortion: fewer than two lattice peaks found in "
                         "the image's Fourier transform; use an image with many unit cells")
    g = np.stack([pk[:, 1], pk[:, 0]], axis=1) / pixel_size_A  # (kx, ky) in 1/Å
    order = np.argsort(np.linalg.norm(g, axis=1))
    g = g[order]
    g1 = g[0]
    g2 = None
    for cand in g[1:]:
        c = abs(np.dot(g1, cand)) / (np.linalg.norm(g1) * np.linalg.norm(cand))
        if c < np.cos(np.radians(20)):
            g2 = cand
            break
    if g2 is None:
        raise ValueError("estimate_lattice_distortion: the Fourier peaks are collinear; the "
                         "image shows only one set of lattice planes")
    Gm = np.stack([g1, g2], axis=1)  # columns: reciprocal basis (x, y)
    A_m = np.linalg.inv(Gm)  # rows: real-space basis vectors a1, a2 (x, y), Å
    best = None
    for P in (np.eye(2), np.array([[0.0, 1.0], [1.0, 0.0]])):
        A = P @ A_m
        Gm_gram = A @ A.T
        for s in (1.0, -1.0):
            S = np.diag([1.0, s])
            mism = np.linalg.norm(S @ Gm_gram @ S - G_e) / np.linalg.norm(G_e)
            if best is None or mism < best[0]:
                best = (mism, S @ A)
    mism, A = best
    # C^T C = A^-1 G_e A^-T, C symmetric positive definite
    Ai = np.linalg.inv(A)
    M = Ai @ G_e @ Ai.T
    w, V = np.linalg.eigh(0.5 * (M + M.T))
    C = (V * np.sqrt(np.maximum(w, 1e-300))) @ V.T
    return {"matrix": C.tolist(), "measured_vectors_A": A.tolist(),
            "metric_error": float(mism)}


def _resample_one(img, *, px, matrix_inv, function, order):
    finite_check_block(img, "correct_scan_distortion")
    img = np.asarray(img, dtype=np.float64)
    ny, nx = img.shape
    y = (np.arange(ny) - ny // 2) * px
    x = (np.arange(nx) - nx // 2) * px
    yy, xx = np.meshgrid(y, x, indexing="ij")
    if function is not None:
        sx, sy = function(xx, yy)
        sx, sy = np.asarray(sx, float), np.asarray(sy, float)
        if sx.shape != img.shape or sy.shape != img.shape:
            raise ValueError(f"correct_scan_distortion: function must return two arrays of "
                             f"shape {img.shape} (x_src_A, y_src_A), got {sx.shape}, "
                             f"{sy.shape}")
    else:
        sx = matrix_inv[0, 0] * xx + matrix_inv[0, 1] * yy
        sy = matrix_inv[1, 0] * xx + matrix_inv[1, 1] * yy
    return ndimage.map_coordinates(img, [sy / px + ny // 2, sx / px + nx // 2], order=order,
                                   mode="nearest")


def correct_scan_distortion(da: xr.DataArray, *, matrix=None, function=None, reference=None,
                            lattice=None, drift_shear=None, order: int = 3):
    """Resample every projection (and frame) to undo a scan distortion.

    Parameters
    ----------
    da : xarray.DataArray
        ``(angle, y, x)`` or ``(angle, frame, y, x)``, coords in Å centred at ``n // 2``.
    matrix : (2, 2) array_like, optional
        Linear correction in (x, y) order: ``true = matrix @ recorded`` (Å from the centre).
    function : callable, optional
        Non-linear correction ``function(x_A, y_A) -> (x_src_A, y_src_A)``: for arrays of
        corrected positions, where to sample the recorded image (Å from the centre).
    reference : 2D array, optional
        Image of a crystal recorded with the same scan settings; with ``lattice`` the linear
        correction is estimated from it (:func:`estimate_lattice_distortion`).
    lattice : (a_A, b_A, gamma_deg) or (2, 2) array
        The reference crystal's true in-plane lattice.
    drift_shear : sequence of float or True, optional
        Frames recorded with scan directions 0° and 90°: estimate the drift-induced shear per
        angle and undo it (:func:`correct_drift_shear`); pass the scan direction of every
        frame, or True to read the ``scan_direction_deg`` coord.
    order : int
        Spline order of the resampling.

    Returns
    -------
    xarray.DataArray, dict
        The corrected series (float64, lazy per projection for dask input) and the matrix used.
    """
    da = check_series(da, func="correct_scan_distortion")
    given = [k for k, v in (("matrix", matrix), ("function", function),
                            ("reference", reference), ("drift_shear", drift_shear))
             if v is not None]
    if len(given) != 1:
        raise ValueError(f"correct_scan_distortion: pass exactly one of matrix, function, "
                         f"reference (+ lattice) or drift_shear; got {given or 'none'}")
    if drift_shear is not None:
        return correct_drift_shear(da, scan_direction_deg=None if drift_shear is True
                                   else drift_shear)
    px = pixel_size_of(da, "da")
    result: dict = {}
    Minv = None
    if reference is not None:
        if lattice is None:
            raise ValueError("correct_scan_distortion: reference needs lattice=(a_A, b_A, "
                             "gamma_deg) of the reference crystal")
        est = estimate_lattice_distortion(reference, pixel_size_A=px, lattice=lattice)
        matrix = est["matrix"]
        result.update(est)
    if matrix is not None:
        M = np.asarray(matrix, dtype=np.float64)
        if M.shape != (2, 2) or not np.all(np.isfinite(M)):
            raise ValueError(f"correct_scan_distortion: matrix must be a finite 2×2 array, "
                             f"got shape {M.shape}")
        if abs(np.linalg.det(M)) < 1e-6:
            raise ValueError("correct_scan_distortion: matrix is singular")
        Minv = np.linalg.inv(M)
        result["matrix"] = M.tolist()
    elif not callable(function):
        raise TypeError("correct_scan_distortion: function must be callable "
                        "(x_A, y_A) -> (x_src_A, y_src_A)")
    out = map_projections(da, _resample_one, out_dtype=np.float64, px=px, matrix_inv=Minv,
                          function=function, order=int(order))
    return out.transpose(*da.dims), result


# --------------------------------------------------------------------------- drift shear
def _scan_matrix(v_xy_px, direction_deg: float, n: int) -> np.ndarray:
    """Recorded = D @ true (pixels from the centre) for a constant drift ``v`` (pixels per
    frame) during a raster scan whose slow axis is y (0°) or x (90°)."""
    v = np.asarray(v_xy_px, dtype=np.float64)
    D = np.eye(2)
    slow = 1 if int(round(direction_deg)) % 180 == 0 else 0
    D[:, slow] += v / n
    return D


def _warp(img, D):
    """Sample ``img`` at D @ p (p in pixels from the centre): undoes recorded = D @ true."""
    ny, nx = img.shape
    yy, xx = np.meshgrid(np.arange(ny) - ny // 2, np.arange(nx) - nx // 2, indexing="ij")
    sx = D[0, 0] * xx + D[0, 1] * yy + nx // 2
    sy = D[1, 0] * xx + D[1, 1] * yy + ny // 2
    return ndimage.map_coordinates(img, [sy, sx], order=3, mode="nearest")


def estimate_drift_shear(frame_a, frame_b, *, direction_a_deg: float = 0.0,
                         direction_b_deg: float = 90.0, max_drift_px: float = 10.0) -> dict:
    """Estimate a constant drift velocity from two images of the same area recorded with
    perpendicular scan directions.

    A drift ``v`` (pixels per frame) during a scan shears/stretches the image along the slow
    axis: recorded = ``(I + v e_slowᵀ / n)`` @ true. The two scan directions distort
    differently, so the ``v`` (and relative translation) that makes the two corrected images
    agree is the drift. Returns ``{"velocity_xy_px": [vx, vy], "translation_yx_px": [...],
    "residual": ...}``.
    """
    from scipy.optimize import minimize

    a = np.asarray(frame_a, dtype=np.float64)
    b = np.asarray(frame_b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"estimate_drift_shear: frames must be 2D of equal shape, got "
                         f"{a.shape} and {b.shape}")
    n = a.shape[0] if int(round(direction_a_deg)) % 180 == 0 else a.shape[1]
    nb = b.shape[0] if int(round(direction_b_deg)) % 180 == 0 else b.shape[1]
    sa = a.std() or 1.0

    def cost(p):
        v, t = p[:2], p[2:]
        ca = _warp(a, _scan_matrix(v, direction_a_deg, n))
        cb = _warp(b, _scan_matrix(v, direction_b_deg, nb))
        cb = ndimage.shift(cb, -t, order=3, mode="nearest")
        m = 8
        return float(np.mean((ca[m:-m, m:-m] - cb[m:-m, m:-m]) ** 2)) / sa**2

    best = None
    for v0 in ((0.0, 0.0), (max_drift_px / 3, 0.0), (0.0, max_drift_px / 3)):
        r = minimize(cost, np.array([*v0, 0.0, 0.0]), method="Powell",
                     options={"xtol": 1e-4, "ftol": 1e-10, "maxfev": 4000})
        if best is None or r.fun < best.fun:
            best = r
    return {"velocity_xy_px": best.x[:2].tolist(), "translation_yx_px": best.x[2:].tolist(),
            "residual": float(best.fun)}


def correct_drift_shear(da: xr.DataArray, *, scan_direction_deg=None,
                        max_drift_px: float = 10.0):
    """Estimate and undo the drift-induced shear/stretch of frames recorded with different
    scan directions (pairs 0° / 90° at each angle).

    Parameters
    ----------
    da : xarray.DataArray
        ``(angle, frame, y, x)``; frames with scan directions 0° (slow axis y) and 90° (slow
        axis x).
    scan_direction_deg : sequence of float, optional
        Scan direction of every frame (default: the ``scan_direction_deg`` coord on ``frame``).
    max_drift_px : float
        Scale of the starting guesses of the search (pixels per frame).

    Returns
    -------
    xarray.DataArray, dict
        Frames resampled to undo the shear (same dims), and per angle the drift velocity
        (``drift_velocity_x_A``/``drift_velocity_y_A``, Å per frame; also as coords).
    """
    da = check_series(da, func="correct_drift_shear", frames="require")
    if scan_direction_deg is None:
        if "scan_direction_deg" not in da.coords:
            raise ValueError("correct_drift_shear: pass scan_direction_deg=[...] (one per "
                             "frame, 0 or 90) or give the series a 'scan_direction_deg' coord "
                             "on 'frame'")
        scan_direction_deg = da.coords["scan_direction_deg"].values
    dirs = np.asarray(scan_direction_deg, dtype=float).ravel()
    if dirs.size != da.sizes["frame"]:
        raise ValueError(f"correct_drift_shear: scan_direction_deg has {dirs.size} entries "
                         f"but the series has {da.sizes['frame']} frames per angle")
    kinds = np.round(dirs) % 180
    if not (np.any(kinds == 0) and np.any(kinds == 90)) or np.any((kinds != 0) & (kinds != 90)):
        raise ValueError("correct_drift_shear: needs frames with scan directions 0° and 90° "
                         f"(got {sorted(set(dirs.tolist()))})")
    i0, i90 = int(np.flatnonzero(kinds == 0)[0]), int(np.flatnonzero(kinds == 90)[0])
    px = pixel_size_of(da, "da")
    vals = np.asarray(da.values, dtype=np.float64)  # per-angle pairs; small in practice
    out = np.empty_like(vals)
    vel = np.zeros((vals.shape[0], 2))
    for k in range(vals.shape[0]):
        finite_check_block(vals[k], "correct_drift_shear")
        est = estimate_drift_shear(vals[k, i0], vals[k, i90], direction_a_deg=dirs[i0],
                                   direction_b_deg=dirs[i90], max_drift_px=max_drift_px)
        vel[k] = est["velocity_xy_px"]
        for f in range(vals.shape[1]):
            n = vals.shape[2] if kinds[f] == 0 else vals.shape[3]
            out[k, f] = _warp(vals[k, f], _scan_matrix(vel[k], dirs[f], n))
    res = xr.DataArray(out, dims=da.dims, coords=da.coords, attrs=dict(da.attrs), name=da.name)
    res = res.assign_coords(drift_velocity_x_A=("angle", vel[:, 0] * px),
                            drift_velocity_y_A=("angle", vel[:, 1] * px))
    return res, {"drift_velocity_x_A": (vel[:, 0] * px).tolist(),
                 "drift_velocity_y_A": (vel[:, 1] * px).tolist()}
