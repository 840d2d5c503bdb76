"""Reconstruction quality metrics: Fourier shell correlation and the resolution it gives.

:func:`aet.reconstruct.half_set_fsc` (two half-set reconstructions and their FSC) lives beside
:func:`~aet.reconstruct.reconstruct`, which it calls, so this module imports no reconstructor.
"""

from __future__ import annotations

import numpy as np

__all__ = ["fourier_shell_correlation", "resolution_from_fsc"]


def fourier_shell_correlation(vol1, vol2, *, voxel_size_A: float = 1.0, n_shells=None):
    """FSC between two volumes of the same shape ``(z, y, x)``.

    Returns
    -------
    freq_per_A : ndarray
        Shell centres in 1/Å (up to Nyquist, 1 / (2 voxel_size_A)).
    fsc : ndarray
        Re Σ F1 F2* / sqrt(Σ|F1|² Σ|F2|²) per shell.
    """
    a = np.asarray(vol1, dtype=np.float64)
    b = np.asarray(vol2, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"vol1 and vol2 must be 3D volumes of the same shape, got {a.shape} "
                         f"and {b.shape}")
    F1 = np.fft.rfftn(a)
    F2 = np.fft.rfftn(b)
    fz = np.fft.fftfreq(a.shape[0])
    fy = np.fft.fftfreq(a.shape[1])
    fx = np.fft.rfftfreq(a.shape[2])
    r = np.sqrt(fz[:, None, None] ** 2 + fy[None, :, None] ** 2 + fx[None, None, :] ** 2)
    n = n_shells or min(a.shape) // 2
    edges = np.linspace(0, 0.5, n + 1)
    shell = np.digitize(r.ravel(), edges) - 1
    ok = (shell >= 0) & (shell < n)
    s = shell[ok]
    num = np.bincount(s, weights=np.real(F1.ravel()[ok] * np.conj(F2.ravel()[ok])), minlength=n)
    d1 = np.bincount(s, weights=np.abs(F1.ravel()[ok]) ** 2, minlength=n)
    d2 = np.bincount(s, weights=np.abs(F2.ravel()[ok]) ** 2, minlength=n)
    fsc = num / np.sqrt(np.maximum(d1 * d2, 1e-300))
    centres = 0.5 * (edges[:-1] + edges[1:]) / float(voxel_size_A)
    return centres, fsc


def resolution_from_fsc(freq_per_A, fsc, *, threshold: float = 0.143) -> float:
    """Resolution in Å where the FSC first drops below ``threshold`` (linear interpolation);
    the Nyquist resolution when it never does."""
    f = np.asarray(freq_per_A, float)
    c = np.asarray(fsc, float)
    below = np.nonzero(c < threshold)[0]
    if below.size == 0:
        return float(1.0 / f[-1])
    i = int(below[0])
    if i == 0:
        return float(1.0 / f[0])
    t = (c[i - 1] - threshold) / (c[i - 1] - c[i])
    return float(1.0 / (f[i - 1] + t * (f[i] - f[i - 1])))
