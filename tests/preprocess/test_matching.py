"""Projection matching (aet.preprocess.matching): angle recovery against planted errors."""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.preprocess.matching import _crop, field_of_view_box, rotate_image
from aet.reconstruct import forward_project
from aet.testing import gaussian_atoms_volume
from tests.preprocess.synthetic import blob_positions, project_blobs

PX = 0.5


def test_rotate_image_is_the_projectors_phi():
    """R_z(φ) acts after the sum along z: P(φ, θ, 0) = rotate(P(0, θ, 0), φ) — the identity
    projection matching uses to refine φ with the single-axis projector."""
    rng = np.random.default_rng(0)
    vol = gaussian_atoms_volume(rng.uniform(-6, 6, (30, 3)), (48, 48, 48), PX,
                                sigma_A=0.8).values.astype(np.float32)
    for phi in (2.0, -3.0):
        ref = forward_project(vol, [[phi, 30.0, 0.0]])[0]
        base = forward_project(vol, [[0.0, 30.0, 0.0]])[0]
        good = np.linalg.norm(rotate_image(base, phi) - ref) / np.linalg.norm(ref)
        wrong = np.linalg.norm(rotate_image(base, -phi) - ref) / np.linalg.norm(ref)
        assert good < 0.01, good  # measured 0.006 (cubic spline vs trilinear)
        assert wrong > 0.15, wrong


def test_field_of_view_box_holds_the_object_and_keeps_the_centre():
    data = np.zeros((3, 60, 64))
    data[:, 30 - 10:30 + 11, 32 - 15:32 + 16] = 1.0  # half-extents 10 (y) and 15 (x) pixels
    my, mx = field_of_view_box(data)
    # object half-extent + a 6-pixel margin (+ 1 from the 3-pixel smoothing), even sizes
    assert (my, mx) == (36, 46)
    assert my // 2 >= 10 + 6 and mx // 2 >= 15 + 6
    marked = np.zeros((1, 60, 64))
    marked[0, 30, 32] = 1.0
    c = _crop(marked, (my, mx))[0]
    assert np.unravel_index(np.argmax(c), c.shape) == (my // 2, mx // 2)


@pytest.fixture(scope="module")
def blob_series():
    rng = np.random.default_rng(7)
    th = np.linspace(-70, 70, 41)
    err = rng.normal(0.0, 0.3, (len(th), 2))  # dθ, dφ
    pos = blob_positions(n_atoms=150, radius_A=12.0, seed=2, min_dist_A=2.0)
    euler = np.stack([err[:, 1], th + err[:, 0], 0 * th], axis=1)
    data = project_blobs(pos, euler, shape=(64, 64), pixel_size_A=PX, sigma_A=0.5)
    return aet.TiltSeries(data, angles=th, pixel_size_A=PX), err


def _rms_mean_removed(est, true):
    d = (est - est.mean()) - (true - true.mean())
    return float(np.sqrt(np.mean(d**2)))


def test_theta_and_phi_errors_recovered(blob_series):
    """Planted 0.3° θ and φ errors, noise-free analytic projections of a 12 Å cluster of 150
    Gaussian atoms, 41 projections over ±70°. (The standard FePt benchmark, a slow test in
    test_fept.py, is the issue's ≤ 0.1° target.)"""
    ts, err = blob_series
    before_th = _rms_mean_removed(np.zeros(len(err)), err[:, 0])
    before_ph = _rms_mean_removed(np.zeros(len(err)), err[:, 1])
    m = ts.match_projections(refine=("phi", "theta"), n_iter=4, recon_iter=40,
                             recon_iter_warm=15, n_groups=4)
    res = m.provenance[-1]["result"]
    th = _rms_mean_removed(np.asarray(res["dtheta_deg"]), err[:, 0])
    ph = _rms_mean_removed(np.asarray(res["dphi_deg"]), err[:, 1])
    assert before_th > 0.25 and before_ph > 0.25, (before_th, before_ph)
    assert th < 0.13, th  # measured 0.269° → 0.101°
    assert ph < 0.04, ph  # measured 0.3° → 0.019°
    assert np.allclose(m.data.coords["phi"].values, res["dphi_deg"])
    assert np.allclose(m.angles - ts.angles, res["dtheta_deg"])


def test_bad_options_are_named(blob_series):
    ts, _ = blob_series
    with pytest.raises(ValueError, match="method must be one of"):
        ts.match_projections(method="art")
    with pytest.raises(ValueError, match="field_of_view must be 'auto', None or"):
        ts.match_projections(field_of_view=(2, 2))
    with pytest.raises(ValueError, match="recon_iter and recon_iter_warm must be ≥ 1"):
        ts.match_projections(recon_iter=0)


def test_dask_backed_series_gives_the_eager_result(blob_series):
    """The method needs every projection at every iteration: a dask-backed series is computed
    once, and the result is identical to the in-memory one."""
    import dask.array as dsa

    ts, _ = blob_series
    lazy = aet.TiltSeries(dsa.from_array(ts.values, chunks=(7, 64, 64)), angles=ts.angles,
                          pixel_size_A=PX)
    kw = dict(refine=("shifts", "phi", "theta"), n_iter=1, recon_iter=5, n_groups=3)
    a = ts.match_projections(**kw).provenance[-1]["result"]
    b = lazy.match_projections(**kw).provenance[-1]["result"]
    for k in ("dtheta_deg", "dphi_deg", "shift_x_A", "shift_y_A"):
        assert np.allclose(a[k], b[k], atol=1e-9), k
    assert np.max(np.abs(a["dtheta_deg"])) > 0.05  # the step did move the angles
