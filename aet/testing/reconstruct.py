"""Reconstruction phantoms with exact (analytic) projections: no inverse crime."""

from __future__ import annotations

import numpy as np

from ..core.meta import centred_coord
from .phantoms import gaussian_atoms_volume, rotation_matrix_zyz


def fcc_positions(radius_A: float, *, a_A: float = 3.92, offset_A=(0.13, -0.21, 0.17),
                  seed=None) -> np.ndarray:
    """(N, 3) positions (x, y, z) Å of an fcc lattice (lattice constant ``a_A``) inside a
    sphere of ``radius_A``, shifted by ``offset_A`` so atoms do not sit on voxel centres."""
    k = int(np.ceil(radius_A / a_A)) + 1
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    g = np.arange(-k, k + 1)
    cells = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    pos = ((cells[:, None, :] + basis[None]) * a_A).reshape(-1, 3) + np.asarray(offset_A)
    pos = pos[np.linalg.norm(pos, axis=1) <= radius_A]
    if seed is not None:
        pos = pos + np.random.default_rng(seed).normal(0, 0.05, pos.shape)
    return pos


def gaussian_atom_projections(positions_xyz_A, euler_deg, shape, pixel_size_A, *,
                              sigma_A: float = 0.5, heights=None) -> np.ndarray:
    """Exact projections ``(n, ny, nx)`` of isotropic Gaussian atoms (peak ``heights``) at
    Euler angles (φ, θ, ψ) in degrees, as line integrals in voxel units (the same scale as
    :func:`aet.reconstruct.forward_project` of :func:`gaussian_atoms_volume`)."""
    pos = np.asarray(positions_xyz_A, float).reshape(-1, 3)
    h = np.ones(len(pos)) if heights is None else np.asarray(heights, float)
    ny, nx = shape
    y = centred_coord(ny, pixel_size_A)
    x = centred_coord(nx, pixel_size_A)
    amp = h * np.sqrt(2 * np.pi) * sigma_A / pixel_size_A
    out = np.zeros((len(euler_deg), ny, nx))
    for i, e in enumerate(np.asarray(euler_deg, float).reshape(-1, 3)):
        p = pos @ rotation_matrix_zyz(*np.radians(e)).T
        gx = np.exp(-((x[None, :] - p[:, 0:1]) ** 2) / (2 * sigma_A**2))  # (N, nx)
        gy = np.exp(-((y[None, :] - p[:, 1:2]) ** 2) / (2 * sigma_A**2))  # (N, ny)
        out[i] = np.einsum("n,ny,nx->yx", amp, gy, gx)
    return out


def fcc_phantom(n: int = 64, *, voxel_size_A: float = 0.375, n_proj: int = 47,
                max_tilt_deg: float = 69.0, noise: float = 0.0, sigma_A: float = 0.5,
                radius_fraction: float = 0.33, seed=0):
    """An fcc particle of Gaussian atoms and its single-axis tilt series.

    Returns a dict: ``truth`` (n³ volume, float64), ``projections`` (n_proj, n, n) with
    Gaussian noise of standard deviation ``noise`` × max, ``angles`` (deg), ``positions``
    (x, y, z) Å, ``voxel_size_A``.
    """
    pos = fcc_positions(radius_fraction * n * voxel_size_A)
    angles = np.linspace(-max_tilt_deg, max_tilt_deg, n_proj)
    euler = np.stack([np.zeros(n_proj), angles, np.zeros(n_proj)], 1)
    truth = gaussian_atoms_volume(pos, (n, n, n), voxel_size_A, sigma_A=sigma_A).values
    proj = gaussian_atom_projections(pos, euler, (n, n), voxel_size_A, sigma_A=sigma_A)
    if noise:
        rng = np.random.default_rng(seed)
        proj = proj + rng.normal(0, noise * proj.max(), proj.shape)
    return {"truth": truth, "projections": proj.astype(np.float32), "angles": angles,
            "positions": pos, "voxel_size_A": voxel_size_A}


def relative_error(vol, truth, mask=None) -> float:
    """‖vol − truth‖ / ‖truth‖ (over ``mask`` when given)."""
    v = np.asarray(vol, float)
    t = np.asarray(truth, float)
    if mask is not None:
        v, t = v[mask], t[mask]
    return float(np.linalg.norm(v - t) / np.linalg.norm(t))
