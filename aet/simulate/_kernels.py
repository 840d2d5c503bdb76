"""Numba kernels of the ADF-STEM forward model: pixel-/voxel-integrated Gaussian atoms.

Plain arrays in, arrays out; lengths in Å, no Python objects. Each atom is an isotropic
Gaussian of integral ``amp`` and width ``sigma``; a pixel receives the exact integral of the
Gaussian over its area (products of erf differences), so the pixel sum of one atom equals
``amp`` up to the truncation of the footprint at ``n_sigma`` widths.

Twins: ``tests/reference/simulate.py``.
"""

from __future__ import annotations

import math

import numpy as np

from .._jit import jit, map_ranges, split_range


@jit()
def _edge_weights(c, s, first_edge, pixel, i0, n, w):
    """Integrals of a unit 1D Gaussian (centre ``c``, width ``s``) over pixels ``i0 .. i0+n-1``
    whose lower edges sit at ``first_edge + i * pixel``; written into ``w[:n]``."""
    inv = 1.0 / (math.sqrt(2.0) * s)
    prev = math.erf((first_edge + i0 * pixel - c) * inv)
    for k in range(n):
        cur = math.erf((first_edge + (i0 + k + 1) * pixel - c) * inv)
        w[k] = 0.5 * (cur - prev)
        prev = cur


@jit()
def _splat_images_range(xy, amp, sigma, pixel, n_sigma, k0, k1, out):
    """Images ``k0 ≤ k < k1`` of :func:`splat_images` (``out`` float64, adds): image ``k``
    receives the pixel-integrated Gaussians of all atoms at ``xy[k]`` (n_atoms, 2), (x, y) Å
    in the image frame (0 Å at index n // 2). One kernel, not a per-image kernel called from
    a range kernel: a jitted caller compiles its callee's code again into its own."""
    ny, nx = out.shape[1], out.shape[2]
    x_first = (-(nx // 2) - 0.5) * pixel  # lower edge of pixel 0
    y_first = (-(ny // 2) - 0.5) * pixel
    max_r = 1
    for a in range(amp.shape[0]):
        r = int(math.ceil(n_sigma * sigma[a] / pixel)) + 1
        if r > max_r:
            max_r = r
    wx = np.empty(2 * max_r + 1)
    wy = np.empty(2 * max_r + 1)
    for k in range(k0, k1):
        for a in range(amp.shape[0]):
            s = sigma[a]
            r = int(math.ceil(n_sigma * s / pixel)) + 1
            cx = xy[k, a, 0]
            cy = xy[k, a, 1]
            jx = int(math.floor((cx - x_first) / pixel))
            jy = int(math.floor((cy - y_first) / pixel))
            x0 = max(jx - r, 0)
            x1 = min(jx + r + 1, nx)
            y0 = max(jy - r, 0)
            y1 = min(jy + r + 1, ny)
            if x0 >= x1 or y0 >= y1:
                continue
            _edge_weights(cx, s, x_first, pixel, x0, x1 - x0, wx)
            _edge_weights(cy, s, y_first, pixel, y0, y1 - y0, wy)
            A = amp[a]
            for iy in range(y0, y1):
                v = A * wy[iy - y0]
                for ix in range(x0, x1):
                    out[k, iy, ix] += v * wx[ix - x0]


def splat_images(xy, amp, sigma, pixel, n_sigma, out):
    """``out[k]`` += atoms at image coordinates ``xy[k]`` (n_images, n_atoms, 2) for every
    image ``k`` of ``out`` (n_images, ny, nx); on aet's kernel thread pool over blocks of
    images. The kernel accumulates in float64 (one compiled variant): a float32 ``out``
    receives each block's float64 images, rounded once."""
    xy = np.ascontiguousarray(xy, dtype=np.float64)
    amp = np.ascontiguousarray(amp, dtype=np.float64)
    sigma = np.ascontiguousarray(sigma, dtype=np.float64)
    direct = out.dtype == np.float64 and out.flags.c_contiguous

    def run(k0, k1):
        if direct:
            _splat_images_range(xy, amp, sigma, float(pixel), float(n_sigma), k0, k1, out)
        else:
            buf = np.zeros((k1 - k0, *out.shape[1:]), dtype=np.float64)
            _splat_images_range(xy[k0:k1], amp, sigma, float(pixel), float(n_sigma), 0,
                                k1 - k0, buf)
            out[k0:k1] += buf

    map_ranges(run, split_range(out.shape[0], per_thread=2))


@jit()
def splat_volume(xyz, amp, sigma, voxel, n_sigma, out):
    """Add voxel-integrated 3D Gaussians of atoms at ``xyz`` (n_atoms, 3) (x, y, z) Å to
    ``out`` (nz, ny, nx), centred (0 Å at index n // 2)."""
    nz, ny, nx = out.shape
    x_first = (-(nx // 2) - 0.5) * voxel
    y_first = (-(ny // 2) - 0.5) * voxel
    z_first = (-(nz // 2) - 0.5) * voxel
    max_r = 1
    for a in range(amp.shape[0]):
        r = int(math.ceil(n_sigma * sigma[a] / voxel)) + 1
        if r > max_r:
            max_r = r
    wx = np.empty(2 * max_r + 1)
    wy = np.empty(2 * max_r + 1)
    wz = np.empty(2 * max_r + 1)
    for a in range(amp.shape[0]):
        s = sigma[a]
        r = int(math.ceil(n_sigma * s / voxel)) + 1
        jx = int(math.floor((xyz[a, 0] - x_first) / voxel))
        jy = int(math.floor((xyz[a, 1] - y_first) / voxel))
        jz = int(math.floor((xyz[a, 2] - z_first) / voxel))
        x0, x1 = max(jx - r, 0), min(jx + r + 1, nx)
        y0, y1 = max(jy - r, 0), min(jy + r + 1, ny)
        z0, z1 = max(jz - r, 0), min(jz + r + 1, nz)
        if x0 >= x1 or y0 >= y1 or z0 >= z1:
            continue
        _edge_weights(xyz[a, 0], s, x_first, voxel, x0, x1 - x0, wx)
        _edge_weights(xyz[a, 1], s, y_first, voxel, y0, y1 - y0, wy)
        _edge_weights(xyz[a, 2], s, z_first, voxel, z0, z1 - z0, wz)
        A = amp[a]
        for iz in range(z0, z1):
            vz = A * wz[iz - z0]
            for iy in range(y0, y1):
                vzy = vz * wy[iy - y0]
                for ix in range(x0, x1):
                    out[iz, iy, ix] += vzy * wx[ix - x0]


# ----------------------------------------------------------------------------- abTEM engine
@jit()
def _deposit_radial_one(xy, kind, tables, dr, origin_x, origin_y, h, out2d):
    """Add radially symmetric atom profiles to ``out2d`` (ny, nx) sampled at points.

    Grid point ``(iy, ix)`` sits at ``(origin_x + ix h, origin_y + iy h)`` Å. Atom ``a`` at
    ``xy[a]`` (x, y Å) adds ``tables[kind[a]]`` at its distance ``r`` (table entry ``i`` at
    ``r = i dr``, linear interpolation, zero at and beyond the last entry)."""
    ny, nx = out2d.shape
    n_tab = tables.shape[1]
    rmax = (n_tab - 1) * dr
    rmax2 = rmax * rmax
    reach = int(math.ceil(rmax / h)) + 1
    inv_dr = 1.0 / dr
    for a in range(xy.shape[0]):
        cx = (xy[a, 0] - origin_x) / h
        cy = (xy[a, 1] - origin_y) / h
        jx = int(math.floor(cx))
        jy = int(math.floor(cy))
        x0 = max(jx - reach, 0)
        x1 = min(jx + reach + 2, nx)
        y0 = max(jy - reach, 0)
        y1 = min(jy + reach + 2, ny)
        if x0 >= x1 or y0 >= y1:
            continue
        t = tables[kind[a]]
        for iy in range(y0, y1):
            dy = (iy - cy) * h
            dy2 = dy * dy
            if dy2 >= rmax2:
                continue
            for ix in range(x0, x1):
                dx = (ix - cx) * h
                r2 = dx * dx + dy2
                if r2 >= rmax2:
                    continue
                u = math.sqrt(r2) * inv_dr
                i = int(u)
                f = u - i
                out2d[iy, ix] += t[i] * (1.0 - f) + t[i + 1] * f


@jit()
def _deposit_radial_range(xy, kind, tables, dr, origin, h, k0, k1, out):
    """Images ``k0 ≤ k < k1`` of :func:`deposit_radial`."""
    for k in range(k0, k1):
        _deposit_radial_one(xy[k], kind, tables, dr, origin[k, 0], origin[k, 1], h, out[k])


def deposit_radial(xy, kind, tables, dr, origin, h, out):
    """``out[k]`` += radial atom profiles at ``xy[k]`` (n_images, n_atoms, 2) on grid ``k``
    whose point (0, 0) sits at ``origin[k]`` (x, y Å), spacing ``h``; on aet's kernel thread
    pool over blocks of images. See :func:`_deposit_radial_one`."""
    map_ranges(lambda k0, k1: _deposit_radial_range(xy, kind, tables, float(dr), origin,
                                                    float(h), k0, k1, out),
               split_range(out.shape[0], per_thread=2))
