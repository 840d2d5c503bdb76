"""Slow NumPy twin of the shear-warp projector pair (``aet/reconstruct/_kernels.py``).

Same discretisation, written from the geometry alone: the ray of detector pixel (u, v) is
r(t) = Rᵀ(u, v, t) relative to the volume centre (index n // 2), R = R_z(φ)·R_y(θ)·R_z(ψ).
With k the volume axis closest to the ray (ties: z, then x, then y) and (a, b) the other two
in the order of the kernel's layouts, the projection is

    P(u, v) = (1/|d_k|) · I(A(u, v), B(u, v)),
    I(A, B) = Σ_k V_bilinear(k, A + kc·d_a/d_k, B + kc·d_b/d_k)   (kc = k − n_k // 2)

on an integer (A, B) grid (here simply a grid large enough for everything), I resampled by
cubic convolution (Keys, a = −1/2), zero outside the box and the grid. Near a tie of the two
largest |d| components (ratio r > 1 − 0.05) the projection is the blend w·P_k1 + (1 − w)·P_k2,
w = ½ + ½(1 − r)/0.05. The back projector is the explicit transpose (``np.add.at`` scatters
of the same weights in reverse order).
"""

from __future__ import annotations

import numpy as np

from aet.testing.phantoms import rotation_matrix_zyz

_LAYOUT = {2: (2, 1, 0), 1: (1, 2, 0), 0: (0, 2, 1)}  # (k, a, b) as (x, y, z) = (0, 1, 2)


def _keys(t):
    """Cubic convolution weights of taps −1, 0, 1, 2 at fractional offsets ``t``."""
    return [((-0.5 * t + 1) * t - 0.5) * t, (1.5 * t - 2.5) * t * t + 1,
            ((-1.5 * t + 2) * t + 0.5) * t, (0.5 * t - 0.5) * t * t]


def _entries(euler_deg):
    """[(axis, weight)] of one projection."""
    R = rotation_matrix_zyz(*np.radians(np.asarray(euler_deg, dtype=float)))
    d = np.abs(R.T[:, 2])
    pref = [2, 0, 1]  # ties (within 1e-9) go to z, then x, then y
    k1 = next(i for i in pref if d[i] >= d.max() - 1e-9)
    rest = [i for i in pref if i != k1]
    k2 = rest[0] if d[rest[0]] >= d[rest[1]] - 1e-9 else rest[1]
    r = d[k2] / d[k1]
    if r <= 0.95:
        return [(k1, 1.0)]
    w = min(1.0, 0.5 + 0.5 * (1 - r) / 0.05)
    return [(k1, w), (k2, 1 - w)]


def _setup(euler_deg, vol_shape, det_shape, p):
    R = rotation_matrix_zyz(*np.radians(np.asarray(euler_deg, dtype=float)))
    M = R.T
    d = M[:, 2]
    k, a, b = _LAYOUT[p]
    nz, ny, nx = vol_shape
    sizes = (nx, ny, nz)
    # a grid far larger than any footprint, so nothing is clipped
    half = sum(vol_shape) + sum(det_shape) + 4
    grid = np.arange(-half, half + 1)
    nyd, nxd = det_shape
    v, u = np.meshgrid(np.arange(nyd) - nyd // 2, np.arange(nxd) - nxd // 2, indexing="ij")
    e = M[:, 0, None, None] * u + M[:, 1, None, None] * v   # Rᵀ(u, v, 0): (3, nyd, nxd)
    A = e[a] - e[k] * d[a] / d[k]
    B = e[b] - e[k] * d[b] / d[k]
    return dict(k=k, a=a, b=b, sizes=sizes, sa=d[a] / d[k], sb=d[b] / d[k],
                scale=1.0 / abs(d[k]), grid=grid, A=A, B=B, half=half)


def _slice_taps(g, kc):
    """For slice kc: (grid-row index, grid-col index, row index, col index, weight) of every
    in-box bilinear tap, on the full (A, B) grid."""
    na, nb = g["sizes"][g["a"]], g["sizes"][g["b"]]
    fa = g["grid"] + na // 2 + kc * g["sa"]
    fb = g["grid"] + nb // 2 + kc * g["sb"]
    ja, jb = np.floor(fa).astype(int), np.floor(fb).astype(int)
    wa, wb = fa - ja, fb - jb
    for da in (0, 1):
        for db in (0, 1):
            ra, rb = ja + da, jb + db
            oka = np.nonzero((ra >= 0) & (ra < na))[0]
            okb = np.nonzero((rb >= 0) & (rb < nb))[0]
            w = np.outer(wa[oka] if da else 1 - wa[oka], wb[okb] if db else 1 - wb[okb])
            yield oka, okb, ra[oka], rb[okb], w


def _warp_taps(g):
    """(detector mask, grid-row, grid-col, weight) of the 16 cubic taps of every pixel."""
    n = len(g["grid"])
    fa = g["A"] + g["half"]
    fb = g["B"] + g["half"]
    ia, ib = np.floor(fa).astype(int), np.floor(fb).astype(int)
    wa, wb = _keys(fa - ia), _keys(fb - ib)
    for m in range(4):
        for q in range(4):
            ra, rb = ia - 1 + m, ib - 1 + q
            ok = (ra >= 0) & (ra < n) & (rb >= 0) & (rb < n)
            yield ok, ra[ok], rb[ok], (wa[m] * wb[q])[ok]


def _kab(vol, g):
    """The volume as (k, a, b) (a view)."""
    return np.transpose(vol, (2 - g["k"], 2 - g["a"], 2 - g["b"]))


def forward_shearwarp_reference(vol_zyx, euler_list, det_shape=None):
    """(n, nyd, nxd) float64 shear-warp projections of ``vol_zyx`` at ``euler_list`` (deg)."""
    vol = np.asarray(vol_zyx, dtype=np.float64)
    det_shape = vol.shape[1:] if det_shape is None else tuple(det_shape)
    out = []
    for e in np.asarray(euler_list, dtype=float).reshape(-1, 3):
        p = np.zeros(det_shape)
        for axis, weight in _entries(e):
            g = _setup(e, vol.shape, det_shape, axis)
            V = _kab(vol, g)
            nk = V.shape[0]
            img = np.zeros((len(g["grid"]),) * 2)
            for k in range(nk):
                for oka, okb, ra, rb, w in _slice_taps(g, k - nk // 2):
                    img[np.ix_(oka, okb)] += w * V[k][np.ix_(ra, rb)]
            for ok, ra, rb, w in _warp_taps(g):
                p[ok] += weight * g["scale"] * w * img[ra, rb]
        out.append(p)
    return np.stack(out)


def back_shearwarp_reference(proj, euler_list, vol_shape):
    """Transpose of :func:`forward_shearwarp_reference` (explicit scatters)."""
    proj = np.asarray(proj, dtype=np.float64)
    vol = np.zeros(vol_shape)
    for p, e in zip(proj, np.asarray(euler_list, dtype=float).reshape(-1, 3)):
        for axis, weight in _entries(e):
            g = _setup(e, vol_shape, p.shape, axis)
            img = np.zeros((len(g["grid"]),) * 2)
            for ok, ra, rb, w in _warp_taps(g):
                np.add.at(img, (ra, rb), weight * g["scale"] * w * p[ok])
            V = _kab(vol, g)  # a view: adds land in vol
            nk = V.shape[0]
            for k in range(nk):
                for oka, okb, ra, rb, w in _slice_taps(g, k - nk // 2):
                    np.add.at(V[k], np.ix_(ra, rb), w * img[np.ix_(oka, okb)])
    return vol
