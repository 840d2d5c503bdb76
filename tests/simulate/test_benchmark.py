"""fept_benchmark: layout, determinism, the truth is consistent with the data."""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.simulate import Benchmark, fept_benchmark
from aet.simulate.forward import cross_sections


@pytest.fixture(scope="module")
def small() -> Benchmark:
    return fept_benchmark("small", seed=0)


def test_small_layout(small):
    ts, clean = small.tilt_series, small.clean
    assert isinstance(ts, aet.TiltSeries) and isinstance(small.truth, aet.AtomicModel)
    assert ts.data.dims == ("angle", "frame", "y", "x")
    assert ts.values.shape == (15, 2, 80, 80)
    assert clean.data.dims == ("angle", "y", "x") and clean.values.shape == (15, 80, 80)
    np.testing.assert_allclose(ts.angles, np.linspace(-69, 69, 15))
    assert ts.pixel_size_A == 0.35
    assert 150 < small.truth.n_atoms < 400
    for k in ("grain_id", "phase", "variant", "defect", "ideal_species", "atom_id",
              "displacement_x", "b_factor", "cross_section_A2"):
        assert k in small.truth
    al = small.alignment
    assert al.sizes == {"angle": 15, "frame": 2}
    for k in ("shift_x_A", "shift_y_A", "dphi_deg", "dtheta_deg", "dpsi_deg", "drift_x_A",
              "drift_y_A"):
        assert k in al
    assert {"tilt_axis_rotation_deg", "tilt_axis_offset_A"} <= set(al.attrs)
    assert small.params["dose_e_per_A2"] == ts.attrs["dose_e_per_A2"] > 0
    assert "Benchmark" in repr(small)


def test_clean_conserves_the_truths_total_cross_section(small):
    total = cross_sections(small.truth.species).sum()
    np.testing.assert_allclose(small.clean.values.sum(axis=(1, 2)), total, rtol=1e-4)


def test_truth_volume_projects_to_the_clean_zero_tilt_image():
    b = fept_benchmark("small", seed=1, n_angles=3, max_tilt_deg=30.0)
    vol = b.truth_volume()
    assert vol.data.dims == ("z", "y", "x") and vol.voxel_size_A == 0.35
    np.testing.assert_allclose(vol.values.sum(axis=0), b.clean.values[1],
                               atol=1e-5 * b.clean.values.max())


def test_raw_counts_match_the_recorded_detector_model(small):
    p = small.params
    counts = (small.tilt_series.values.astype(float) - p["offset"]) / p["gain"]
    expect = p["dose_e_per_A2"] / p["n_frames"] * small.noise_free
    assert counts.sum() == pytest.approx(expect.sum(), rel=0.005)


def test_same_seed_same_data_other_seed_other_data():
    a = fept_benchmark("small", seed=5)
    b = fept_benchmark("small", seed=5)
    c = fept_benchmark("small", seed=6)
    np.testing.assert_array_equal(a.tilt_series.values, b.tilt_series.values)
    assert a.truth == b.truth
    assert not np.array_equal(a.tilt_series.values, c.tilt_series.values)


def test_switching_everything_off_gives_clean_frames():
    b = fept_benchmark("small", seed=2, dose_e_per_A2=None, gain=1.0, offset=0.0, read_noise=0.0,
                       shift_sigma_A=0.0, drift_A_per_frame=0.0, scan_distortion=0.0,
                       angle_error_deg=0.0, tilt_axis_rotation_deg=0.0, tilt_axis_offset_A=0.0,
                       background_thickness_A=0.0)
    for f in range(b.tilt_series.n_frames):
        np.testing.assert_allclose(b.tilt_series.values[:, f], b.clean.values,
                                   atol=1e-6 * b.clean.values.max())


def test_scoring_the_truth_against_itself(small):
    s = small.score(small.truth)
    assert s.recall == 1.0 and s.rmsd_pm == pytest.approx(0.0, abs=1e-9)


def test_standard_case_parameters():
    b = fept_benchmark("standard", seed=0)
    assert b.tilt_series.values.shape[0] == 47
    np.testing.assert_allclose(b.tilt_series.angles[[0, -1]], [-69.0, 69.0])
    assert b.tilt_series.pixel_size_A == 0.35
    d = np.ptp(b.truth.positions, axis=0)
    assert 27 < d.max() < 33  # ~3 nm
    assert set(b.truth["grain_id"].tolist()) == {0, 1}
    assert b.truth.species_counts()["Pt"] / b.truth.n_atoms == pytest.approx(0.5, abs=0.06)


def test_nonlinear_option_compresses_heavy_columns():
    lin = fept_benchmark("small", seed=0, n_angles=3)
    non = fept_benchmark("small", seed=0, n_angles=3, nonlinear=True)
    assert non.params["nonlinear"] == "saturation"
    r = non.clean.values.max() / lin.clean.values.max()
    assert 0.4 < r < 0.95
    with pytest.raises(ValueError, match="nonlinear must be True, False"):
        fept_benchmark("small", nonlinear="cubic")


def test_bad_arguments():
    with pytest.raises(ValueError, match="size must be one of"):
        fept_benchmark("huge")
    with pytest.raises(ValueError, match="unknown override 'dose'"):
        fept_benchmark("small", dose=3)
    with pytest.raises(TypeError, match="seed must be an int"):
        fept_benchmark("small", seed=1.5)


@pytest.mark.slow
def test_large_case_is_the_published_scale():
    b = fept_benchmark("large", seed=0)
    assert 17000 < b.truth.n_atoms < 23000
    assert b.tilt_series.values.shape[:2] == (68, 3)


def test_params_are_json_and_name_every_setting(small):
    import json

    d = json.loads(json.dumps(small.params))
    for k in ("size", "seed", "dose_e_per_A2", "n_angles", "n_frames", "shape", "pixel_size_A",
              "angles_deg", "tilt_axis_rotation_deg", "particle", "n_atoms"):
        assert k in d
    assert d["n_atoms"] == small.truth.n_atoms
    assert small.alignment.attrs["tilt_axis_rotation_deg"] == d["tilt_axis_rotation_deg"]
