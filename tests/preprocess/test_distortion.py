"""Scan-distortion correction: known affine distortions of a lattice image."""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.preprocess import estimate_lattice_distortion
from aet.testing import raise_if_dask_computes

PX = 0.3


def lattice_image(n=192, a=2.7, b=2.7, gamma=90.0, D=None, sigma=0.5):
    """Gaussian atoms on a lattice; recorded positions = D @ true (x, y), Å from the centre."""
    g = np.radians(gamma)
    a1, a2 = np.array([a, 0.0]), np.array([b * np.cos(g), b * np.sin(g)])
    half = n * PX
    ij = np.arange(-40, 41)
    pts = (ij[:, None, None] * a1 + ij[None, :, None] * a2).reshape(-1, 2)
    pts = pts @ (np.eye(2) if D is None else np.asarray(D)).T
    pts = pts[np.all(np.abs(pts) < half / 2 + 2, axis=1)]
    c = (np.arange(n) - n // 2) * PX
    img = np.zeros((n, n))
    for x0, y0 in pts:
        img += np.exp(-((c[None, :] - x0) ** 2 + (c[:, None] - y0) ** 2) / (2 * sigma**2))
    return img


def test_lattice_estimate_restores_metric():
    D = np.array([[1.02, 0.015], [0.015, 0.985]])  # symmetric: scale + shear
    img = lattice_image(D=D, gamma=90)
    est = estimate_lattice_distortion(img, pixel_size_A=PX, lattice=(2.7, 2.7, 90.0))
    C = np.asarray(est["matrix"])
    np.testing.assert_allclose(C, np.linalg.inv(D), atol=2e-3)
    assert est["metric_error"] > 0.01  # the distortion was visible before correction


def test_correct_with_matrix_and_function_lazy(backend):
    D = np.array([[1.03, 0.02], [0.0, 0.98]])
    clean = lattice_image(n=96)
    dist = lattice_image(n=96, D=D)
    data = backend(np.stack([dist, dist]))
    ts = aet.TiltSeries(data, angles=[-10.0, 10.0], pixel_size_A=PX)
    with raise_if_dask_computes():
        out = ts.correct_scan_distortion(matrix=np.linalg.inv(D))
    assert out.is_lazy == (backend.name == "dask")
    inner = (slice(16, -16), slice(16, -16))
    err = np.abs(out.values[0][inner] - clean[inner]).max()
    # atoms stay round in the model while the correction stretches them by ≤ 3 %
    assert err < 0.04 * clean.max()
    assert np.abs(dist[inner] - clean[inner]).max() > 0.3 * clean.max()
    Di = np.linalg.inv(D)

    def f(x, y):  # the same correction written as a function: sample at D @ p
        return D[0, 0] * x + D[0, 1] * y, D[1, 0] * x + D[1, 1] * y

    out2 = ts.correct_scan_distortion(function=f)
    np.testing.assert_allclose(out2.values, out.values, atol=1e-9)
    np.testing.assert_allclose(out.provenance[-1]["result"]["matrix"], Di)


def test_bad_input():
    ts = aet.TiltSeries(np.ones((2, 8, 8)), angles=[0.0, 1.0], pixel_size_A=PX)
    with pytest.raises(ValueError, match="pass exactly one of matrix, function, reference"):
        ts.correct_scan_distortion()
    with pytest.raises(ValueError, match="matrix must be a finite 2×2 array"):
        ts.correct_scan_distortion(matrix=np.eye(3))
    with pytest.raises(ValueError, match="reference needs lattice"):
        ts.correct_scan_distortion(reference=np.ones((8, 8)))


def test_drift_shear_from_two_scan_directions():
    from aet.preprocess.distortion import _scan_matrix

    from .synthetic import blob_positions

    n, px = 48, 0.4
    pos = blob_positions(25, 7.0, seed=1)[:, :2] / px

    def img(D):
        p = pos @ D.T
        yy, xx = np.mgrid[:n, :n] - n // 2
        return sum(np.exp(-((xx - a) ** 2 + (yy - b) ** 2) / (2 * 1.2**2)) for a, b in p)

    v = np.array([1.5, -0.8])  # px per frame
    frames = np.stack([img(_scan_matrix(v, 0, n)), img(_scan_matrix(v, 90, n))])[None]
    ts = aet.TiltSeries(frames, angles=[0.0], pixel_size_A=px)
    out = ts.correct_scan_distortion(drift_shear=[0, 90])
    got = np.array([out.data.drift_velocity_x_A.values[0],
                    out.data.drift_velocity_y_A.values[0]]) / px
    np.testing.assert_allclose(got, v, atol=0.1)  # measured (1.48, −0.78)
    truth = img(np.eye(2))
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(out.values[0, 0][inner] - truth[inner]).max() < 0.1 * truth.max()
    with pytest.raises(ValueError, match="needs frames with scan directions 0° and 90°"):
        ts.correct_scan_distortion(drift_shear=[0, 0])
