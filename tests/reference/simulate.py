"""Slow, obviously-correct NumPy twins of the ``aet.simulate`` kernels.

An atom is an isotropic Gaussian of integral ``amp`` and width ``s``; a pixel (voxel) holds
its exact integral over the pixel (voxel), i.e. a product of erf differences along each axis.
Positions are rotated with :func:`aet.testing.phantoms.rotation_matrix_zyz` (docs/conventions.rst).
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from aet.testing.phantoms import rotation_matrix_zyz


def _pixel_integrals(c: float, s: float, n: int, spacing: float) -> np.ndarray:
    """Integral of a unit 1D Gaussian over each of ``n`` centred pixels (all of them)."""
    edges = (np.arange(n + 1) - n // 2 - 0.5) * spacing
    return 0.5 * np.diff(erf((edges - c) / (np.sqrt(2.0) * s)))


def splat_images_reference(xy, amp, sigma, pixel, shape) -> np.ndarray:
    """Every atom over the whole image (no footprint truncation)."""
    ny, nx = shape
    out = np.zeros((len(xy), ny, nx))
    for k in range(len(xy)):
        for a in range(len(amp)):
            wx = _pixel_integrals(xy[k][a, 0], sigma[a], nx, pixel)
            wy = _pixel_integrals(xy[k][a, 1], sigma[a], ny, pixel)
            out[k] += amp[a] * np.outer(wy, wx)
    return out


def splat_volume_reference(xyz, amp, sigma, voxel, shape) -> np.ndarray:
    nz, ny, nx = shape
    out = np.zeros(shape)
    for a in range(len(amp)):
        wx = _pixel_integrals(xyz[a, 0], sigma[a], nx, voxel)
        wy = _pixel_integrals(xyz[a, 1], sigma[a], ny, voxel)
        wz = _pixel_integrals(xyz[a, 2], sigma[a], nz, voxel)
        out += amp[a] * wz[:, None, None] * wy[None, :, None] * wx[None, None, :]
    return out


def project_positions_reference(pos, euler_deg) -> np.ndarray:
    """(n_images, n_atoms, 2): (x, y) of R @ p for each Euler triple (degrees)."""
    out = []
    for e in np.asarray(euler_deg, float).reshape(-1, 3):
        R = rotation_matrix_zyz(*np.radians(e))
        out.append((np.asarray(pos, float) @ R.T)[:, :2])
    return np.array(out)


def deposit_radial_reference(xy, kind, tables, dr, origin, h, shape) -> np.ndarray:
    """Every atom's radial profile over the whole grid: linear interpolation of
    ``tables[kind[a]]`` (entry ``i`` at ``r = i dr``) at each grid point's distance, zero at
    and beyond the last entry; grid point ``(iy, ix)`` of image ``k`` at ``origin[k] + h (ix,
    iy)``."""
    ny, nx = shape
    out = np.zeros((len(xy), ny, nx))
    rmax = (tables.shape[1] - 1) * dr
    gx = np.arange(nx) * h
    gy = np.arange(ny) * h
    r_tab = np.arange(tables.shape[1]) * dr
    for k in range(len(xy)):
        for a in range(xy.shape[1]):
            dx = origin[k][0] + gx[None, :] - xy[k][a, 0]
            dy = origin[k][1] + gy[:, None] - xy[k][a, 1]
            r = np.hypot(dx, dy)
            v = np.interp(r, r_tab, tables[kind[a]])
            out[k] += np.where(r < rmax, v, 0.0)
    return out
