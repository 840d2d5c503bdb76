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

from ._common import check_series, finite_check_block, map_projections, pixel_size


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
                            lattice=None, order: int = 3):
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
    order : int
        Spline order of the resampling.

    Returns
    -------
    xarray.DataArray, dict
        The corrected series (float64, lazy per projection for dask input) and the matrix used.
    """
    da = check_series(da, func="correct_scan_distortion")
    given = [k for k, v in (("matrix", matrix), ("function", function),
                            ("reference", reference)) if v is not None]
    if len(given) != 1:
        raise ValueError(f"correct_scan_distortion: pass exactly one of matrix, function or "
                         f"reference (+ lattice); got {given or 'none'}")
    px = pixel_size(da)
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
