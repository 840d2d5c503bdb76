"""Degradations: noise statistics, and every recorded degradation is exactly what was applied
(undoing it with the recorded values recovers the clean data)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage

from aet.simulate import fept_particle, project_atoms
from aet.simulate.degrade import (
    add_detector_noise,
    carbon_background,
    euler_from_alignment,
    frame_transform,
    simulate_acquisition,
)

PX = 0.35
SHAPE = (72, 72)
ANGLES = np.array([-60.0, -20.0, 0.0, 35.0, 65.0])


@pytest.fixture(scope="module")
def particle():
    return fept_particle(16.0, phase="L10", seed=0)


def _fourier_shift(img, dx_A, dy_A):
    """Shift (y, x) images by (dy, dx) Å (content moves by +d)."""
    ky = np.fft.fftfreq(img.shape[-2], d=PX)[:, None]
    kx = np.fft.fftfreq(img.shape[-1], d=PX)[None, :]
    ph = np.exp(-2j * np.pi * (kx * dx_A + ky * dy_A))
    return np.fft.ifft2(np.fft.fft2(img) * ph).real


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_poisson_noise_has_the_right_mean_and_variance():
    e = np.full((400, 400), 0.01)  # Å² per pixel
    c = add_detector_noise(e, dose_e_per_A2=5000.0, seed=1)
    assert c.mean() == pytest.approx(50.0, rel=0.005)
    assert c.var() == pytest.approx(50.0, rel=0.02)
    assert np.all(c == np.round(c))  # electron counts
    d = add_detector_noise(e, dose_e_per_A2=5000.0, gain=2.5, offset=100.0, read_noise=2.0,
                           seed=2)
    assert d.mean() == pytest.approx(2.5 * 50 + 100, rel=0.005)
    assert d.var() == pytest.approx(2.5**2 * 50 + 4.0, rel=0.02)


def test_dose_is_split_over_frames(particle):
    a = simulate_acquisition(particle, [0.0], shape=SHAPE, pixel_size_A=PX, n_frames=4,
                             dose_e_per_A2=8000.0, seed=3)
    counts = a.tilt_series.values.astype(float).sum(axis=(0, 1))
    expect = 8000.0 * a.noise_free[0, 0]
    # total counts over the frames: Poisson with mean dose × signal
    assert counts.sum() == pytest.approx(expect.sum(), rel=0.01)
    z = (counts - expect)[expect > 1] / np.sqrt(expect[expect > 1])
    assert z.std() == pytest.approx(1.0, abs=0.05)


def test_recorded_shifts_undo_exactly(particle):
    a = simulate_acquisition(particle, ANGLES, shape=SHAPE, pixel_size_A=PX,
                             shift_sigma_A=1.5, seed=4, dtype=np.float64)
    al = a.alignment
    clean = project_atoms(particle, ANGLES, shape=SHAPE, pixel_size_A=PX).values
    raw = a.tilt_series.values[:, 0]
    assert np.abs(al["shift_x_A"].values).max() > 0.5
    for k in range(len(ANGLES)):
        back = _fourier_shift(raw[k], -al["shift_x_A"].values[k], -al["shift_y_A"].values[k])
        assert _rel(back, clean[k]) < 5e-3
        assert _rel(raw[k], clean[k]) > 0.3


def test_recorded_angle_errors_and_tilt_axis_are_exact(particle):
    a = simulate_acquisition(particle, ANGLES, shape=SHAPE, pixel_size_A=PX,
                             angle_error_deg=0.8, tilt_axis_rotation_deg=2.0, seed=5,
                             dtype=np.float64)
    al = a.alignment
    euler = euler_from_alignment(al)
    np.testing.assert_allclose(euler[:, 0], 2.0 + al["dphi_deg"].values)
    np.testing.assert_allclose(euler[:, 1], ANGLES + al["dtheta_deg"].values)
    np.testing.assert_allclose(euler[:, 2], al["dpsi_deg"].values - 2.0)
    true = project_atoms(particle, euler, shape=SHAPE, pixel_size_A=PX).values
    nominal = project_atoms(particle, ANGLES, shape=SHAPE, pixel_size_A=PX).values
    raw = a.tilt_series.values[:, 0]
    np.testing.assert_allclose(raw, true, atol=1e-12)
    assert _rel(raw, nominal) > 0.05


def test_tilt_axis_offset_is_a_recorded_shift(particle):
    a = simulate_acquisition(particle, ANGLES, shape=SHAPE, pixel_size_A=PX,
                             tilt_axis_rotation_deg=-1.0, tilt_axis_offset_A=2.0, seed=6,
                             dtype=np.float64)
    al = a.alignment
    true = project_atoms(particle, euler_from_alignment(al), shape=SHAPE,
                         pixel_size_A=PX).values
    tsx, tsy = al["total_shift_x_A"].values, al["total_shift_y_A"].values
    # rotating about a centre offset by δ ⊥ the axis moves the image by δ (1 − cos θ) in x
    th = np.radians(ANGLES)
    np.testing.assert_allclose(np.hypot(tsx, tsy), 2.0 * np.abs(1 - np.cos(th)), atol=0.02)
    for k in range(len(ANGLES)):
        assert _rel(_fourier_shift(true[k], tsx[k], tsy[k]), a.tilt_series.values[k, 0]) < 5e-3


def test_recorded_drift_and_scan_distortion_undo(particle):
    a = simulate_acquisition(particle, [0.0, 40.0], shape=SHAPE, pixel_size_A=PX, n_frames=3,
                             drift_A_per_frame=0.6, scan_distortion=0.01, seed=7,
                             dtype=np.float64)
    al = a.alignment
    np.testing.assert_array_equal(al["drift_x_A"].values[:, 0], 0.0)
    clean = project_atoms(particle, [0.0, 40.0], shape=SHAPE, pixel_size_A=PX).values
    ny, nx = SHAPE
    yy, xx = np.meshgrid((np.arange(ny) - ny // 2) * PX, (np.arange(nx) - nx // 2) * PX,
                         indexing="ij")
    p = np.stack([xx.ravel(), yy.ravel()])
    for k in range(2):
        for f in range(3):
            S = np.array([[al["scan_xx"][k, f], al["scan_xy"][k, f]],
                          [al["scan_yx"][k, f], al["scan_yy"][k, f]]], dtype=float)
            M, b = frame_transform(S, (al["drift_x_A"][k, f], al["drift_y_A"][k, f]),
                                   (al["drift_velocity_x_A"][k, f],
                                    al["drift_velocity_y_A"][k, f]), ny=ny, pixel_size_A=PX)
            r = np.linalg.solve(M, p + b[:, None])  # where the aligned pixel p was recorded
            idx = np.stack([r[1] / PX + ny // 2, r[0] / PX + nx // 2])
            raw = a.tilt_series.values[k, f]
            back = ndimage.map_coordinates(raw, idx, order=3, mode="constant").reshape(ny, nx)
            err_before = _rel(raw, clean[k])
            err_after = _rel(back, clean[k])
            assert err_after < 0.03
            assert err_after < 0.2 * err_before


def test_background_scales_with_path_length():
    bg = carbon_background([0.0, 60.0], (96, 96), PX, thickness_A=30.0, seed=0)
    mean0 = 0.02 * (6 / 78) ** 1.7 * 0.1 * 30.0 * PX**2
    assert bg[0].mean() == pytest.approx(mean0, rel=0.05)
    assert bg[1].mean() / bg[0].mean() == pytest.approx(1 / math.cos(math.radians(60)), rel=0.1)
    assert bg[0].std() / bg[0].mean() == pytest.approx(0.3, rel=0.1)
    # smooth: neighbouring pixels strongly correlated
    assert np.corrcoef(bg[0, :, :-1].ravel(), bg[0, :, 1:].ravel())[0, 1] > 0.95


def test_no_degradation_gives_the_clean_series(particle):
    a = simulate_acquisition(particle, ANGLES, shape=SHAPE, pixel_size_A=PX, seed=0,
                             dtype=np.float64)
    clean = project_atoms(particle, ANGLES, shape=SHAPE, pixel_size_A=PX).values
    np.testing.assert_allclose(a.tilt_series.values[:, 0], clean, atol=1e-14)


def test_bad_inputs():
    e = np.zeros((4, 4))
    with pytest.raises(ValueError, match="dose_e_per_A2 must be > 0"):
        add_detector_noise(e, dose_e_per_A2=-1.0)
    with pytest.raises(ValueError, match="negative values"):
        add_detector_noise(e - 1, dose_e_per_A2=1.0)
    m = fept_particle(10.0, seed=0)
    with pytest.raises(ValueError, match="n_frames must be"):
        simulate_acquisition(m, [0.0], shape=(8, 8), pixel_size_A=0.35, n_frames=0)
    with pytest.raises(ValueError, match="angles_deg must be 1D nominal tilt angles or"):
        simulate_acquisition(m, np.zeros((2, 2)), shape=(8, 8), pixel_size_A=0.35)


def _centroid(img):
    ny, nx = img.shape
    y = (np.arange(ny) - ny // 2) * PX
    x = (np.arange(nx) - nx // 2) * PX
    w = img / img.sum()
    return float((w.sum(0) * x).sum()), float((w.sum(1) * y).sum())


def test_drift_and_scan_semantics_from_first_principles():
    """Independent of frame_transform: a drift d(t) moves the atom by +d at the time its row
    is scanned; a scan matrix S puts it at S⁻¹ p."""
    from aet import AtomicModel

    p = np.array([1.3, -0.8, 0.5])
    atom = AtomicModel([p], ["Pt"])
    a = simulate_acquisition(atom, [0.0], shape=SHAPE, pixel_size_A=PX, n_frames=3,
                             drift_A_per_frame=1.0, seed=11, dtype=np.float64)
    al = a.alignment
    ny = SHAPE[0]
    y_first = -(ny // 2) * PX
    for f in range(3):
        d0 = np.array([al["drift_x_A"][0, f], al["drift_y_A"][0, f]], float)
        v = np.array([al["drift_velocity_x_A"][0, f], al["drift_velocity_y_A"][0, f]], float)
        y = p[1]
        for _ in range(50):  # the row where the drifting atom is met: y = p_y + d_y(t(y))
            t = (y - y_first) / (ny * PX)
            y = p[1] + d0[1] + v[1] * t
        t = (y - y_first) / (ny * PX)
        x = p[0] + d0[0] + v[0] * t
        cx, cy = _centroid(a.tilt_series.values[0, f])
        assert cx == pytest.approx(x, abs=1e-6) and cy == pytest.approx(y, abs=1e-6)
    assert np.abs(al["drift_x_A"].values[0, 1:]).max() > 0.1
    b = simulate_acquisition(atom, [0.0], shape=SHAPE, pixel_size_A=PX, scan_distortion=0.02,
                             seed=12, dtype=np.float64)
    S = np.array([[b.alignment["scan_xx"][0, 0], b.alignment["scan_xy"][0, 0]],
                  [b.alignment["scan_yx"][0, 0], b.alignment["scan_yy"][0, 0]]], float)
    np.testing.assert_allclose(_centroid(b.tilt_series.values[0, 0]),
                               np.linalg.solve(S, p[:2]), atol=1e-6)


def test_nominal_euler_angles_are_composed_with_the_errors(particle):
    nominal = np.array([[10.0, -30.0, 5.0], [-20.0, 25.0, 40.0]])
    a = simulate_acquisition(particle, nominal, shape=SHAPE, pixel_size_A=PX,
                             angle_error_deg=0.5, tilt_axis_rotation_deg=1.5, seed=8,
                             dtype=np.float64)
    al = a.alignment
    np.testing.assert_allclose(a.tilt_series.euler_angles, nominal)
    e = euler_from_alignment(al)
    np.testing.assert_allclose(e[:, 0], 1.5 + nominal[:, 0] + al["dphi_deg"].values)
    np.testing.assert_allclose(e[:, 2], nominal[:, 2] + al["dpsi_deg"].values - 1.5)
    true = project_atoms(particle, e, shape=SHAPE, pixel_size_A=PX).values
    np.testing.assert_allclose(a.tilt_series.values[:, 0], true, atol=1e-12)


def test_perpendicular_scan_direction_moves_the_drift_shear_to_x():
    """At 90° the slow axis is x: a drift during the frame is met at the column's time."""
    from aet import AtomicModel

    p = np.array([1.3, -0.8, 0.5])
    a = simulate_acquisition(AtomicModel([p], ["Pt"]), [0.0], shape=SHAPE, pixel_size_A=PX,
                             n_frames=2, drift_A_per_frame=1.0, scan_directions_deg=(0, 90),
                             seed=13, dtype=np.float64)
    al = a.alignment
    np.testing.assert_array_equal(a.tilt_series.data.coords["scan_direction_deg"], [0, 90])
    np.testing.assert_array_equal(al["scan_direction_deg"], [0, 90])
    nx = SHAPE[1]
    x_first = -(nx // 2) * PX
    d0 = np.array([al["drift_x_A"][0, 1], al["drift_y_A"][0, 1]], float)
    v = np.array([al["drift_velocity_x_A"][0, 1], al["drift_velocity_y_A"][0, 1]], float)
    x = p[0]
    for _ in range(50):  # the column where the drifting atom is met
        x = p[0] + d0[0] + v[0] * (x - x_first) / (nx * PX)
    y = p[1] + d0[1] + v[1] * (x - x_first) / (nx * PX)
    cx, cy = _centroid(a.tilt_series.values[0, 1])
    assert cx == pytest.approx(x, abs=1e-6) and cy == pytest.approx(y, abs=1e-6)
    with pytest.raises(ValueError, match="scan directions must be 0"):
        simulate_acquisition(AtomicModel([p], ["Pt"]), [0.0], shape=SHAPE, pixel_size_A=PX,
                             scan_directions_deg=(45,))
