"""Early stopping on held-out data (used in memory and by every out-of-core block): whole
held-out projections stop nearer the error minimum than held-out pixels; refit on all data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from aet.reconstruct import algorithms as alg
from aet.reconstruct import reconstruct
from aet.reconstruct.projector import Projector
from aet.testing.reconstruct import fcc_phantom, relative_error


@pytest.fixture(scope="module")
def case48():
    ph = fcc_phantom(48, noise=0.02, max_tilt_deg=69, n_proj=47, seed=2)
    truth = ph["truth"]
    mask = ndimage.binary_dilation(truth > 0.1 * truth.max(), iterations=2)
    op = Projector(ph["angles"], (48, 48, 48))
    b = op.to_internal_projections(ph["projections"])
    errs = []
    alg.resire(op, b, n_iter=60, callback=lambda it, x: errs.append(
        relative_error(op.from_internal_volume(x), truth, mask)))
    return dict(ph=ph, op=op, b=b, truth=truth, mask=mask, errs=np.array(errs))


def _err(case, x):
    return relative_error(case["op"].from_internal_volume(x), case["truth"], case["mask"])


def test_projection_holdout_stops_nearer_the_error_minimum_than_pixels(case48):
    errs = case48["errs"]
    best_it = int(np.argmin(errs)) + 1  # measured: 25 (error 0.2057)
    xp, rp = alg.resire(case48["op"], case48["b"], n_iter=300, holdout=0.05)
    xq, rq = alg.resire(case48["op"], case48["b"], n_iter=300, holdout=0.05,
                        holdout_by="projections")
    # measured: pixels stop at 28 (error 0.2099), projections at 25 (0.2065)
    assert abs(rq["best_iteration"] - best_it) <= 2
    assert abs(rq["best_iteration"] - best_it) < abs(rp["best_iteration"] - best_it)
    assert _err(case48, xq) < _err(case48, xp)
    assert _err(case48, xq) < errs.min() * 1.01


def test_refit_runs_the_chosen_count_on_all_data(case48):
    op, b = case48["op"], case48["b"]
    x, rec = alg.resire(op, b, n_iter=300, holdout=0.1, holdout_by="projections", refit=True)
    k = rec["best_iteration"]
    assert rec["refit"] and rec["n_iter"] == k and rec["holdout_n_iter"] > k
    plain, _ = alg.resire(op, b, n_iter=k)  # the same as k plain iterations on all data
    np.testing.assert_allclose(x, plain, rtol=0, atol=1e-5 * float(plain.max()))
    # measured: 0.2059 after refit (0.2072 without), minimum 0.2057
    assert _err(case48, x) < case48["errs"].min() * 1.005
    xs, rs = alg.sirt(op, b, n_iter=40, holdout=0.1, holdout_by="projections", refit=True)
    assert rs["refit"] and rs["n_iter"] == rs["best_iteration"]


def test_held_out_projections_are_interleaved_by_angle():
    theta = np.array([30.0, -60, 0, 60, -30, 15, -15, 45, -45, 5])
    ho = alg._Holdout((10, 3, 4), 0.25, 0, 5, by="projections", theta=theta)
    held = np.flatnonzero(ho.hold[:, 0, 0])
    # m = 4: sorted angles -60 -45 -30 -15 0 5 15 30 45 60 → positions 2 and 6 → -30°, 15°
    assert sorted(theta[held]) == [-30.0, 15.0]
    assert np.all(ho.hold[held] == 1) and ho.hold.sum() == 2 * 12


def test_bad_holdout_options(case48):
    ph = case48["ph"]
    import aet

    da = aet.TiltSeries(ph["projections"][:, :8, :8], angles=ph["angles"],
                        pixel_size_A=0.375).data
    with pytest.raises(ValueError, match="holdout_by must be one of"):
        reconstruct(da, method="resire", holdout_by="angles", n_iter=2)
    op = Projector(ph["angles"][:3], (8, 8, 8))
    b = np.zeros(op.internal_projection_shape, np.float32)
    with pytest.raises(ValueError, match="needs at least 4 projections"):
        alg.resire(op, b, holdout=0.1, holdout_by="projections")
