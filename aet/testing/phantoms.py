"""Small analytic phantoms with known answers (for tests and doc examples)."""

from __future__ import annotations

import numpy as np

from ..core.meta import centred_coord
from ..model.volume import Volume


def gaussian_atoms_volume(positions_xyz_A, shape, voxel_size_A, *, sigma_A: float = 0.5,
                          heights=None) -> Volume:
    """A volume ``(z, y, x)`` of isotropic 3D Gaussians (peak ``heights``, width ``sigma_A``)
    at ``positions_xyz_A`` (x, y, z) in Å, sampled at voxel centres. Exact, no interpolation.
    """
    pos = np.asarray(positions_xyz_A, dtype=np.float64).reshape(-1, 3)
    h = np.ones(len(pos)) if heights is None else np.asarray(heights, dtype=np.float64)
    nz, ny, nx = shape
    z = centred_coord(nz, voxel_size_A)
    y = centred_coord(ny, voxel_size_A)
    x = centred_coord(nx, voxel_size_A)
    out = np.zeros(shape, dtype=np.float64)
    r = 4 * sigma_A
    for (px, py, pz), hi in zip(pos, h):
        sz = (z > pz - r) & (z < pz + r)
        sy = (y > py - r) & (y < py + r)
        sx = (x > px - r) & (x < px + r)
        gz = np.exp(-((z[sz] - pz) ** 2) / (2 * sigma_A**2))
        gy = np.exp(-((y[sy] - py) ** 2) / (2 * sigma_A**2))
        gx = np.exp(-((x[sx] - px) ** 2) / (2 * sigma_A**2))
        out[np.ix_(sz, sy, sx)] += hi * gz[:, None, None] * gy[None, :, None] * gx[None, None, :]
    return Volume(out, voxel_size_A=voxel_size_A)


def point_atom_projection_reference(position_xyz_A, euler_deg) -> np.ndarray:
    """Where a point at ``position_xyz_A`` lands in a projection at Euler angles
    ``(φ, θ, ψ)`` (degrees): returns ``(x, y)`` in Å in the projection frame.

    docs/conventions.rst: the object is rotated by R = R_z(φ)·R_y(θ)·R_z(ψ) (active,
    right-handed) and summed along z, so the point lands at the (x, y) of ``R @ p``.
    """
    phi, theta, psi = np.radians(np.asarray(euler_deg, dtype=np.float64))
    return (rotation_matrix_zyz(phi, theta, psi) @ np.asarray(position_xyz_A, float))[:2]


def rotation_matrix_zyz(phi: float, theta: float, psi: float) -> np.ndarray:
    """R = R_z(φ)·R_y(θ)·R_z(ψ) for angles in **radians**, acting on (x, y, z) columns."""

    def rz(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def ry(a):
        c, s = np.cos(a), np.sin(a)
        return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])

    return rz(phi) @ ry(theta) @ rz(psi)
