"""Slow, obviously-correct NumPy twins of the aet.reconstruct kernels.

Same geometry as ``aet/reconstruct/_kernels.py``: detector pixel (u, v) integrates the volume
along r = Rᵀ (u, v, t) + c over every integer t, trilinear interpolation with zeros outside the
box, centres at ``n // 2``.
"""

from __future__ import annotations

import numpy as np

from aet.testing.phantoms import rotation_matrix_zyz


def _samples(euler_deg, vol_shape, det_shape):
    nz, ny, nx = vol_shape
    nyd, nxd = det_shape
    R = rotation_matrix_zyz(*np.radians(np.asarray(euler_deg, dtype=float)))
    T = int(np.ceil(np.sqrt(nz**2 + ny**2 + nx**2 + nxd**2 + nyd**2))) + 2
    v, u, t = np.meshgrid(np.arange(nyd) - nyd // 2, np.arange(nxd) - nxd // 2,
                          np.arange(-T, T + 1), indexing="ij")
    r = np.stack([u.ravel(), v.ravel(), t.ravel()]).astype(float)
    src = R.T @ r
    return (src[0] + nx // 2, src[1] + ny // 2, src[2] + nz // 2), u.shape


def _corners(fx, fy, fz, vol_shape):
    """Yield (flat detector-sample index, iz, iy, ix, weight) for every in-box corner."""
    nz, ny, nx = vol_shape
    ix, iy, iz = np.floor(fx).astype(int), np.floor(fy).astype(int), np.floor(fz).astype(int)
    wx, wy, wz = fx - ix, fy - iy, fz - iz
    for kz in (0, 1):
        for ky in (0, 1):
            for kx in (0, 1):
                jz, jy, jx = iz + kz, iy + ky, ix + kx
                w = (wz if kz else 1 - wz) * (wy if ky else 1 - wy) * (wx if kx else 1 - wx)
                ok = (jz >= 0) & (jz < nz) & (jy >= 0) & (jy < ny) & (jx >= 0) & (jx < nx)
                yield np.nonzero(ok)[0], jz[ok], jy[ok], jx[ok], w[ok]


def forward_project_reference(vol_zyx, euler_list, det_shape=None):
    """(n, nyd, nxd) float64 projections of ``vol_zyx`` at ``euler_list`` (degrees)."""
    vol = np.asarray(vol_zyx, dtype=np.float64)
    det_shape = vol.shape[1:] if det_shape is None else det_shape
    out = []
    for e in np.asarray(euler_list, dtype=float).reshape(-1, 3):
        (fx, fy, fz), shp = _samples(e, vol.shape, det_shape)
        acc = np.zeros(fx.size)
        for idx, jz, jy, jx, w in _corners(fx, fy, fz, vol.shape):
            acc[idx] += w * vol[jz, jy, jx]
        out.append(acc.reshape(shp).sum(axis=-1))
    return np.stack(out)


def back_project_reference(proj, euler_list, vol_shape):
    """Adjoint of :func:`forward_project_reference` by explicit scatter (``np.add.at``)."""
    proj = np.asarray(proj, dtype=np.float64)
    vol = np.zeros(vol_shape)
    for p, e in zip(proj, np.asarray(euler_list, dtype=float).reshape(-1, 3)):
        (fx, fy, fz), shp = _samples(e, vol_shape, p.shape)
        vals = np.broadcast_to(p[..., None], shp).ravel()
        for idx, jz, jy, jx, w in _corners(fx, fy, fz, vol_shape):
            np.add.at(vol, (jz, jy, jx), w * vals[idx])
    return vol


def fista_step(x, y, g, step, beta, positivity, support=None):
    """NumPy twin of ``_kernels.fista_step``: returns the new (x, y)."""
    xn = y - step * g
    if support is not None:
        xn = xn * support
    if positivity:
        xn = np.maximum(xn, 0)
    return xn, xn + beta * (xn - x)
