"""Projection geometry and the per-projection alignment parameters of the refinement.

Alignment (``refine_alignment``): per-projection detector shifts ``(sx, sy)`` (Å; the atoms of
projection ``k`` land at ``R2_k · p + s_k``) and Euler-angle corrections ``δφ, δθ, δψ`` (deg).
Gradients are analytic: ∂L/∂s_k is the sum over atoms of ∂L/∂(u, w), and ∂L/∂δ_k follows by
the chain rule ``Σ_j ∂L/∂(u_j, w_j) · (∂R2_k/∂δ) p_j`` with ∂R/∂δ in closed form
(:func:`rotation_derivatives`). Gauge: a rigid 3D translation of the model explains shifts
``R2_k t`` and a rigid rotation about y (z) explains a common δθ (δψ); these directions are
projected out of the alignment parameters (:func:`alignment_basis`), so the model keeps the
data's frame; a common δφ (an in-plane tilt-axis rotation) is measurable and kept.

The alignment has one home, the tilt series: a refinement starts from the geometry of the
series it is given (its Euler angles; its recorded shifts are already corrected in the images)
and returns what it fitted as a geometry update (:func:`geometry_update`), never stored in or
read back from the model.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from ...core.geometry import TiltGeometry

ANGLE_NAMES = ("phi", "theta", "psi")


def projection_geometry(tilt_series: xr.DataArray) -> dict:
    """Euler angles (deg), rotation rows, pixel size and first-pixel coordinates (Å) of an
    aligned tilt series with dims ``(angle, y, x)``."""
    from ...core.schema import as_xarray

    tilt_series = as_xarray(tilt_series, xr.DataArray)
    if not isinstance(tilt_series, xr.DataArray):
        raise TypeError(
            f"tilt_series must be an xarray.DataArray (angle, y, x) or an aet.TiltSeries, got "
            f"{type(tilt_series).__name__}"
        )
    if tuple(tilt_series.dims) != ("angle", "y", "x"):
        raise ValueError(
            f"tilt_series must have dims ('angle', 'y', 'x'), got {tuple(tilt_series.dims)}; "
            f"merge frames first (TiltSeries.register_frames())"
        )
    geo = TiltGeometry.from_dataarray(tilt_series, "tilt_series")
    euler = geo.euler_deg.copy()
    x = np.asarray(tilt_series.coords["x"].values, dtype=np.float64)
    y = np.asarray(tilt_series.coords["y"].values, dtype=np.float64)
    return {"euler_deg": euler, "R2": np.ascontiguousarray(geo.rotations[:, :2]),
            "pixel_A": geo.pixel_size_A,
            "x0": float(x[0]), "y0": float(y[0])}


def rotation_derivatives(euler_deg) -> np.ndarray:
    """``(n, 3, 3, 3)`` derivatives ∂R/∂(φ, θ, ψ) (per **radian**, index 1 = angle) of
    R = R_z(φ)·R_y(θ)·R_z(ψ) at ``(n, 3)`` Euler angles in degrees (closed form)."""
    e = np.radians(np.asarray(euler_deg, dtype=np.float64).reshape(-1, 3))
    n = e.shape[0]

    def rz(a, deriv):
        c, s = np.cos(a), np.sin(a)
        m = np.zeros((n, 3, 3))
        if deriv:
            m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = -s, -c, c, -s
        else:
            m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = c, -s, s, c, 1
        return m

    def ry(a, deriv):
        c, s = np.cos(a), np.sin(a)
        m = np.zeros((n, 3, 3))
        if deriv:
            m[:, 0, 0], m[:, 0, 2], m[:, 2, 0], m[:, 2, 2] = -s, c, -c, -s
        else:
            m[:, 0, 0], m[:, 0, 2], m[:, 2, 0], m[:, 2, 2], m[:, 1, 1] = c, s, -s, c, 1
        return m

    out = np.empty((n, 3, 3, 3))
    out[:, 0] = rz(e[:, 0], True) @ ry(e[:, 1], False) @ rz(e[:, 2], False)
    out[:, 1] = rz(e[:, 0], False) @ ry(e[:, 1], True) @ rz(e[:, 2], False)
    out[:, 2] = rz(e[:, 0], False) @ ry(e[:, 1], False) @ rz(e[:, 2], True)
    return out


def check_refine_alignment(value) -> tuple[bool, tuple[int, ...]]:
    """``refine_alignment`` → (fit shifts?, indices of the fitted Euler angles)."""
    if value is None or value is False:
        return False, ()
    if isinstance(value, str):
        value = (value,)
    try:
        items = [str(v) for v in value]
    except TypeError:
        raise TypeError(
            f"refine_alignment must be a sequence of 'shifts', 'angles', 'phi', 'theta', "
            f"'psi' (or None), got {value!r}"
        ) from None
    bad = [v for v in items if v not in ("shifts", "angles", *ANGLE_NAMES)]
    if bad:
        raise ValueError(
            f"refine_alignment: unknown entries {bad}; use any of 'shifts', 'angles' (= 'phi', "
            f"'theta', 'psi'), 'phi', 'theta', 'psi', e.g. refine_alignment=('shifts', 'theta')"
        )
    angles = set(ANGLE_NAMES) if "angles" in items else {v for v in items if v != "shifts"}
    return "shifts" in items, tuple(i for i, a in enumerate(ANGLE_NAMES) if a in angles)


def alignment_basis(R2, pos, fit_shifts: bool, angle_idx: tuple[int, ...]):
    """Orthonormal basis ``Q`` (columns) of the gauge-free alignment subspace and the scale of
    each coordinate (Å of atom displacement per unit of the parameter).

    Coordinates: ``[sx_0..sx_{n-1}, sy_0..sy_{n-1}]`` (Å) then, per fitted angle, its ``n``
    corrections (rad). Removed: the shifts ``R2_k t`` of a 3D translation ``t``; the mean δθ
    and δψ (rigid rotations about y and z).
    """
    n = R2.shape[0]
    blocks = []
    if fit_shifts:
        A = np.concatenate([R2[:, 0], R2[:, 1]], axis=0)  # (2n, 3)
        U, sv, _ = np.linalg.svd(A, full_matrices=True)
        rank = int(np.sum(sv > 1e-9 * max(sv.max(), 1e-300)))
        blocks.append(U[:, rank:])
    for a in angle_idx:
        if a == 0:
            blocks.append(np.eye(n))
        else:
            C = np.eye(n) - 1.0 / n
            U, sv, _ = np.linalg.svd(C)
            blocks.append(U[:, : n - 1])
    rows = sum(b.shape[0] for b in blocks)
    cols = sum(b.shape[1] for b in blocks)
    Q = np.zeros((rows, cols))
    r = c = 0
    for b in blocks:
        Q[r:r + b.shape[0], c:c + b.shape[1]] = b
        r += b.shape[0]
        c += b.shape[1]
    # scale each block so that a unit step moves atoms by ~1 Å and the curvature per
    # parameter is comparable to a position's (n_atoms atoms per projection vs n_proj
    # projections per atom)
    r_rms = float(np.sqrt(np.mean(np.sum((pos - pos.mean(0)) ** 2, axis=1)))) or 1.0
    c = math.sqrt(max(len(pos), 1) / n)
    scale = np.concatenate([np.full(2 * n if fit_shifts else 0, 1.0 / c),
                            np.full(n * len(angle_idx), 1.0 / (c * r_rms))])
    return Q, scale


def alignment_from_vector(a_vec, fit_shifts, angle_idx, shifts0, deuler0):
    """Shifts (Å) and Euler corrections (deg) after adding the coordinate vector ``a_vec``."""
    n = shifts0.shape[0]
    sh = shifts0.copy()
    de = deuler0.copy()
    o = 0
    if fit_shifts:
        sh[:, 0] += a_vec[:n]
        sh[:, 1] += a_vec[n:2 * n]
        o = 2 * n
    for q, a in enumerate(angle_idx):
        de[:, a] += np.degrees(a_vec[o + q * n:o + (q + 1) * n])
    return sh, de


def geometry_update(tilt_series: xr.DataArray, shifts, d_euler) -> TiltGeometry:
    """The geometry update a refinement's per-projection alignment amounts to: the
    :class:`~aet.core.geometry.TiltGeometry` of ``tilt_series`` once each projection's content
    is moved back by the fitted detector shift and its Euler angles are corrected.

    The refinement evaluates the atoms of projection ``k`` at ``R2_k(e_k + δ_k) · p + s_k``
    (``shifts`` (n, 2) Å, ``d_euler`` (n, 3) deg); the same projection with its content moved
    back by ``s_k`` and Euler angles ``e_k + δ_k`` is described by its geometry alone. The
    update records ``s_k`` as further corrected displacements
    (:meth:`aet.core.geometry.TiltGeometry.aligned`); the facade moves the images
    (:meth:`aet.TiltSeries.apply_geometry`), and a later refinement against that series starts
    from it (zero further shifts) instead of applying the alignment again."""
    from ...core.schema import as_xarray

    geo = TiltGeometry.from_dataarray(as_xarray(tilt_series, xr.DataArray), "tilt_series")
    shifts = np.asarray(shifts, dtype=np.float64).reshape(geo.n, 2)
    d_euler = np.asarray(d_euler, dtype=np.float64).reshape(geo.n, 3)
    return geo.aligned(shifts if np.any(shifts) else None,
                       euler_deg=geo.euler_deg + d_euler if np.any(d_euler) else None)
