"""Synthetic tilt series with known degradations for the preprocess tests.

A cluster of 3D Gaussian "atoms" projects analytically to 2D Gaussians (the projection of an
isotropic 3D Gaussian is the 2D Gaussian at the rotated position), so shifts, tilt-axis
rotations, drift and angle errors are applied exactly, without interpolation.
"""

from __future__ import annotations

import numpy as np

import aet
from aet.model._meta import centred_coord
from aet.testing.phantoms import rotation_matrix_zyz


def blob_positions(n_atoms=60, radius_A=6.0, *, seed=0, min_dist_A=1.6):
    rng = np.random.default_rng(seed)
    pts = []
    while len(pts) < n_atoms:
        p = rng.uniform(-radius_A, radius_A, 3)
        if np.linalg.norm(p) > radius_A:
            continue
        if all(np.linalg.norm(p - q) >= min_dist_A for q in pts):
            pts.append(p)
    return np.array(pts)


def project_blobs(pos_xyz, euler_deg, *, shape, pixel_size_A, sigma_A=0.45, heights=None,
                  shifts_xy_A=None, rotation_deg=0.0, row_drift_xy_A=None):
    """Projections ``(n, ny, nx)`` of Gaussian atoms at the Euler angles ``(n, 3)`` degrees.

    The content of projection i is displaced by ``shifts_xy_A[i]`` and the whole image is
    rotated in-plane by ``rotation_deg`` (counter-clockwise in (x, y), about the centre) after
    the shift. ``row_drift_xy_A`` (n, 2): extra displacement growing linearly with the row
    (−½ at the first row, +½ at the last), i.e. drift during a raster scan.
    """
    euler = np.atleast_2d(np.asarray(euler_deg, dtype=float))
    n = len(euler)
    ny, nx = shape
    y = centred_coord(ny, pixel_size_A)[:, None]
    x = centred_coord(nx, pixel_size_A)[None, :]
    h = np.ones(len(pos_xyz)) if heights is None else np.asarray(heights, float)
    sh = np.zeros((n, 2)) if shifts_xy_A is None else np.asarray(shifts_xy_A, float)
    a = np.radians(rotation_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    out = np.zeros((n, ny, nx))
    t_row = ((np.arange(ny) - ny // 2) / ny)[:, None]
    for i in range(n):
        R = rotation_matrix_zyz(*np.radians(euler[i]))
        p2 = (R @ pos_xyz.T).T[:, :2] + sh[i]
        p2 = p2 @ rot.T
        for (px_, py_), hi in zip(p2, h):
            dx = x - px_
            dy = y - py_
            if row_drift_xy_A is not None:
                dx = dx - row_drift_xy_A[i][0] * t_row
                dy = dy - row_drift_xy_A[i][1] * t_row
            out[i] += hi * np.exp(-(dx**2 + dy**2) / (2 * sigma_A**2))
    return out


def make_series(*, n_angles=25, max_angle=66.0, shape=(64, 64), pixel_size_A=0.4, seed=0,
                shift_sigma_A=1.0, rotation_deg=0.0, angle_error_deg=0.0, n_atoms=60,
                radius_A=6.0):
    """Clean + degraded single-axis series; returns a dict with the truth."""
    rng = np.random.default_rng(seed)
    pos = blob_positions(n_atoms, radius_A, seed=seed)
    angles = np.linspace(-max_angle, max_angle, n_angles)
    euler = np.stack([np.zeros(n_angles), angles, np.zeros(n_angles)], axis=1)
    err = np.zeros_like(euler)
    if angle_error_deg:
        err = rng.uniform(-angle_error_deg, angle_error_deg, euler.shape)
    shifts = rng.normal(0, shift_sigma_A, (n_angles, 2)) if shift_sigma_A else np.zeros(
        (n_angles, 2))
    clean = project_blobs(pos, euler, shape=shape, pixel_size_A=pixel_size_A)
    raw = project_blobs(pos, euler + err, shape=shape, pixel_size_A=pixel_size_A,
                        shifts_xy_A=shifts, rotation_deg=rotation_deg)
    return {"pos": pos, "angles": angles, "euler": euler, "angle_error": err,
            "shifts_xy_A": shifts, "clean": clean, "raw": raw, "pixel_size_A": pixel_size_A}


def gauge_residual(measured_xy_A, true_xy_A, euler_deg):
    """Residual shift error after removing the rigid 3D translation of the object (the only
    freedom alignment cannot fix): fit d_i = (R_i t)_xy and subtract; returns (n, 2) Å."""
    d = np.asarray(measured_xy_A, float) - np.asarray(true_xy_A, float)
    A = np.concatenate([rotation_matrix_zyz(*np.radians(e))[:2] for e in euler_deg])
    t, *_ = np.linalg.lstsq(A, d.ravel(), rcond=None)
    return (d.ravel() - A @ t).reshape(d.shape)


def to_series(arr, angles, pixel_size_A, **kw):
    return aet.TiltSeries(arr, angles=angles, pixel_size_A=pixel_size_A, **kw)
