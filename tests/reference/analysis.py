"""Slow, obviously-correct NumPy twins of the :mod:`aet.analysis` kernels."""

from __future__ import annotations

import numpy as np


def _grid_points(origin_zyx, spacing, shape_zyx):
    z = origin_zyx[0] + spacing * np.arange(shape_zyx[0])
    y = origin_zyx[1] + spacing * np.arange(shape_zyx[1])
    x = origin_zyx[2] + spacing * np.arange(shape_zyx[2])
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")
    return np.stack([X, Y, Z], axis=-1)  # (nz, ny, nx, 3) in (x, y, z)


def splat_moments_reference(pos_xyz, disp_xyz, origin_zyx, spacing, shape_zyx, sigma, radius):
    g = _grid_points(origin_zyx, spacing, shape_zyx)
    out = np.zeros((*shape_zyx, 22))
    for p, u in zip(np.asarray(pos_xyz, float), np.asarray(disp_xyz, float)):
        d = p - g
        r2 = np.sum(d * d, axis=-1)
        w = np.where(r2 <= radius ** 2, np.exp(-r2 / (2 * sigma ** 2)), 0.0)
        out[..., 0] += w
        out[..., 1:4] += w[..., None] * d
        dd = d[..., :, None] * d[..., None, :]
        iu = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
        for k, (a, b) in enumerate(iu):
            out[..., 4 + k] += w * dd[..., a, b]
        out[..., 10:13] += w[..., None] * u
        du = d[..., :, None] * u[None, None, None, :]  # [j, i] = d_j u_i
        out[..., 13:22] += w[..., None] * du.reshape(*shape_zyx, 9)
    return out


def splat_values_reference(pos_xyz, values, origin_zyx, spacing, shape_zyx, sigma, radius):
    g = _grid_points(origin_zyx, spacing, shape_zyx)
    num = np.zeros(shape_zyx)
    den = np.zeros(shape_zyx)
    for p, v in zip(np.asarray(pos_xyz, float), np.asarray(values, float)):
        r2 = np.sum((p - g) ** 2, axis=-1)
        w = np.where(r2 <= radius ** 2, np.exp(-r2 / (2 * sigma ** 2)), 0.0)
        num += w * v
        den += w
    return num, den
