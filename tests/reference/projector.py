"""Slow, obviously-correct reference projector (docs/conventions.rst frame convention).

A projection at Euler angles (φ, θ, ψ) is the object rotated by R = R_z(φ)·R_y(θ)·R_z(ψ)
(active), then summed along z. Active rotation: the rotated object is V'(r) = V(Rᵀ r).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from aet.testing.phantoms import rotation_matrix_zyz


def project_volume_reference(vol_zyx: np.ndarray, euler_deg) -> np.ndarray:
    """Project a centred (z, y, x) volume to a (y, x) image with trilinear interpolation."""
    R = rotation_matrix_zyz(*np.radians(np.asarray(euler_deg, dtype=float)))
    nz, ny, nx = vol_zyx.shape
    iz, iy, ix = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    # physical (x, y, z) in voxel units of every output voxel, centred at n // 2
    r = np.stack([ix - nx // 2, iy - ny // 2, iz - nz // 2]).reshape(3, -1).astype(float)
    src = R.T @ r
    coords = np.stack([src[2] + nz // 2, src[1] + ny // 2, src[0] + nx // 2])
    rotated = ndimage.map_coordinates(vol_zyx, coords, order=1, mode="constant", cval=0.0)
    return rotated.reshape(nz, ny, nx).sum(axis=0)


def adjoint_mismatch(op, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Relative ``|⟨Ax, y⟩ − ⟨x, Aᵀy⟩|`` of a projector pair ``op`` (``forward``/``adjoint``)
    for the given pair and for ``(|x|, |y|)`` (no cancellation: float32 rounding only)."""
    out = []
    for a, b in ((x, y), (np.abs(x), np.abs(y))):
        lhs = float(np.vdot(op.forward(a).astype(np.float64), b))
        rhs = float(np.vdot(a.astype(np.float64), op.adjoint(b)))
        out.append(abs(lhs - rhs) / abs(lhs))
    return out[0], out[1]
