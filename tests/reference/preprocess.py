"""Slow, obviously-correct twins of the preprocess array helpers."""

from __future__ import annotations

import numpy as np


def line_profile_reference(img: np.ndarray, alpha_deg: float) -> np.ndarray:
    """Line profile along the ideal y of a projection rotated in-plane by +α: every pixel's
    value is split linearly between the two bins around y₀ = −x sin α + y cos α (pixels from
    the centre, bin ``n // 2`` = 0)."""
    ny, nx = img.shape
    out = np.zeros(ny)
    a = np.radians(alpha_deg)
    for iy in range(ny):
        for ix in range(nx):
            y0 = -(ix - nx // 2) * np.sin(a) + (iy - ny // 2) * np.cos(a) + ny // 2
            i0 = int(np.floor(y0))
            f = y0 - i0
            if 0 <= i0 < ny:
                out[i0] += img[iy, ix] * (1 - f)
            if 0 <= i0 + 1 < ny:
                out[i0 + 1] += img[iy, ix] * f
    return out


def shift_reference(img: np.ndarray, shift_yx) -> np.ndarray:
    """Periodic band-limited translation by direct evaluation of the DFT interpolant:
    out(p) = Σ_k F(k) exp(2πi k·(p − s)) / N (symmetric treatment of the Nyquist bins)."""
    ny, nx = img.shape
    F = np.fft.fft2(img)
    ky = np.fft.fftfreq(ny)
    kx = np.fft.fftfreq(nx)
    out = np.zeros((ny, nx))
    for iy in range(ny):
        for ix in range(nx):
            ph = np.exp(2j * np.pi * (ky[:, None] * (iy - shift_yx[0])
                                      + kx[None, :] * (ix - shift_yx[1])))
            out[iy, ix] = (F * ph).sum().real / (ny * nx)
    return out


def profile_spectrum_reference(img: np.ndarray, win, alpha_deg: float, freqs) -> np.ndarray:
    """Fourier coefficients of the windowed line profile along the ideal y of a projection
    rotated in-plane by +α, by direct summation over pixels (each a point mass at ideal
    y₀ = −x sin α + y cos α, pixels from the centre), and the window centre's y₀ last.
    ``win`` = (cy, cx, radius, taper): the circular cosine-tapered window; the median of the
    ring radius + taper … radius + 3·taper is subtracted first."""
    ny, nx = img.shape
    cy, cx, radius, taper = win
    a = np.radians(alpha_deg)
    ring, w = [], np.zeros((ny, nx))
    for iy in range(ny):
        for ix in range(nx):
            r = np.hypot(iy - ny // 2 - cy, ix - nx // 2 - cx)
            t = min(max((r - radius) / taper, 0.0), 1.0)
            w[iy, ix] = 0.5 * (1 + np.cos(np.pi * t))
            if radius + taper < r < radius + 3 * taper:
                ring.append(img[iy, ix])
    level = np.median(ring) if len(ring) >= 32 else 0.0
    out = np.zeros(len(freqs) + 1, dtype=complex)
    for iy in range(ny):
        for ix in range(nx):
            v = (img[iy, ix] - level) * w[iy, ix]
            y0 = -(ix - nx // 2) * np.sin(a) + (iy - ny // 2) * np.cos(a)
            for j, k in enumerate(freqs):
                out[j] += v * np.exp(-2j * np.pi * k * y0)
    out[-1] = -cx * np.sin(a) + cy * np.cos(a)  # the window centre on the profile
    return out
