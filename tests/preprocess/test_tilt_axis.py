"""The tilt-axis estimator (:func:`aet.preprocess.estimate_tilt_axis_rotation`) is unbiased:
exact on noise-free data and not pulled towards or away from 0° by noise.

The earlier estimator split each pixel between two profile bins for every trial rotation but
0°, which smoothed the noise everywhere except at 0°: on noisy data its objective had a cusp at
0° and minima degrees away (−4.4° on an independent series with the axis exactly vertical).
"""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.preprocess import estimate_tilt_axis_rotation

AXES = [0.0, 0.5, -0.5, 3.0, -3.0]


def _series(alpha, *, seed=0, **kw):
    """The small FePt case, 47 projections over ±70°, with the axis rotated by exactly α and no
    per-projection angle errors (they leave no single exact axis)."""
    b = aet.simulate.fept_benchmark("small", seed=seed, tilt_axis_rotation_deg=alpha,
                                    angle_error_deg=0.0, n_angles=47, max_tilt_deg=70.0,
                                    **kw)
    return b.tilt_series.register_frames().remove_background()


@pytest.mark.parametrize("alpha", AXES)
def test_noise_free_axis_is_exact(alpha):
    ts = _series(alpha, background_thickness_A=0.0, drift_A_per_frame=0.0,
                 scan_distortion=0.0, dose_e_per_A2=None, read_noise=0.0)
    res = estimate_tilt_axis_rotation(ts.data)
    assert abs(res["tilt_axis_rotation_deg"] - alpha) < 0.02  # measured ≤ 0.005°
    # the spread is smooth through 0°: no candidate is treated differently
    a, j = np.asarray(res["alphas_deg"]), np.asarray(res["spread"])
    assert a[np.argmin(j)] == pytest.approx(alpha, abs=0.11)


@pytest.mark.parametrize("alpha", AXES)
def test_noisy_axis_at_the_issue_dose(alpha):
    """10⁵ e⁻/Å² in total over 47 projections × 3 frames (Poisson, read noise, drift, scan
    distortion, carbon film). The old estimator's cusp put a noisy vertical axis degrees off;
    here the error stays within the scatter the jackknife reports."""
    ts = _series(alpha, n_frames=3, dose_e_per_A2=1.0e5 / 47)
    res = ts.align().provenance[-1]["result"]
    err = res["tilt_axis_estimate_deg"] - alpha
    sigma = res["tilt_axis_uncertainty_deg"]
    print(f"α {alpha:+.1f}°: error {err:+.3f}°, jackknife σ {sigma:.3f}°, applied "
          f"{res['tilt_axis_rotation_deg']:+.3f}°")
    assert abs(err) < 1.0  # measured ≤ 0.97° (seed 0), ≤ 0.64° (seed 1)
    # align applies the estimate unless it cannot be told from 0° (2σ)
    applied = res["tilt_axis_rotation_deg"]
    assert applied == (0.0 if abs(res["tilt_axis_estimate_deg"]) < 2 * sigma
                       else res["tilt_axis_estimate_deg"])
    if alpha == 0.0:
        assert abs(applied) <= abs(res["tilt_axis_estimate_deg"])


@pytest.mark.parametrize("alpha", AXES)
def test_noisy_axis_at_a_moderate_dose(alpha):
    """The default benchmark dose (2×10⁴ e⁻/Å² per projection, 2 frames)."""
    ts = _series(alpha)
    res = estimate_tilt_axis_rotation(ts.data)
    assert abs(res["tilt_axis_rotation_deg"] - alpha) < 0.5  # measured ≤ 0.41°


def test_noise_does_not_bias_a_vertical_axis():
    """Many noise realisations of one vertical-axis series at the issue's dose: the mean error
    is zero within its standard error (the old estimator's bias was several degrees)."""
    b = aet.simulate.fept_benchmark("small", seed=0, tilt_axis_rotation_deg=0.0,
                                    angle_error_deg=0.0, n_angles=47, max_tilt_deg=70.0,
                                    n_frames=1, dose_e_per_A2=None, read_noise=0.0,
                                    drift_A_per_frame=0.0, scan_distortion=0.0,
                                    background_thickness_A=0.0, gain=1.0, offset=0.0)
    clean = b.tilt_series.values[:, 0]
    rng = np.random.default_rng(7)
    est = []
    for _ in range(8):
        noisy = rng.poisson(clean * 1.0e5 / 47).astype(float)
        ts = aet.TiltSeries(noisy, angles=b.tilt_series.angles, pixel_size_A=0.35)
        est.append(estimate_tilt_axis_rotation(ts.data, n_jackknife=0)[
            "tilt_axis_rotation_deg"])
    est = np.asarray(est)
    print("estimates", np.round(est, 3))
    assert abs(est.mean()) < 3 * est.std(ddof=1) / np.sqrt(len(est)) + 0.05
