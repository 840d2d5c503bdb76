"""The facade ``aet.NucleusTracker``: validation, provenance, save/open, export, figures."""

import ase.io
import numpy as np
import pytest

import aet
from aet.dynamics import TrackResult
from aet.testing.dynamics import synthetic_series

NUC = [{"A": [((0, 0, 0), 4.5)], "B": [((11, 0, 7), 4.0)]},
       {"A": [((0, 0, 0), 6.0)]},
       {"A": [((0, 0, 0), 6.0)], "C": [((-9, -7, 9), 4.0)]}]


@pytest.fixture(scope="module")
def series():
    models, truth = synthetic_series(NUC, radius_A=18.0, seed=2, rotations_deg=[0, 6, 3])
    tracker = aet.NucleusTracker(models, times_min=[9, 16, 26])
    reg = tracker.register()
    return models, tracker, reg, reg.track(threshold=0.3)


def test_track_result_and_provenance(series):
    models, tracker, reg, res = series
    assert isinstance(res, TrackResult)
    assert res.event_counts() == {"birth": 1, "growth": 1, "shrinkage": 0, "fluctuation": 0,
                                  "merge": 0,
                                  "division": 0, "dissolution": 1}
    assert "growth: 1" in repr(res) and "nuclei per time [2, 1, 2]" in repr(res)
    assert [r["op"] for r in res.provenance] == ["register", "track"]
    assert res.provenance[-1]["params"]["threshold"] == 0.3
    assert res.provenance[-1]["result"]["n_nuclei"] == [2, 1, 2]
    assert [r["op"] for r in reg.provenance] == ["register"]
    assert tracker.provenance == [] and not tracker.is_registered
    assert reg.registration["angle_deg"].values[1] == pytest.approx(6.0, abs=0.1)
    # track() on an unregistered tracker registers on the way, same answer
    res2 = tracker.track(threshold=0.3)
    assert res2.events.equals(res.events)
    # models are not modified
    np.testing.assert_array_equal(reg.models[1].positions, models[1].positions)
    assert "atom_identity" in reg.registered_models[1]


def test_times_from_attrs_and_repr():
    models, _ = synthetic_series(NUC[:2], radius_A=10.0, seed=1)
    tr = aet.NucleusTracker(models)  # annealing_time_min = 0, 1 set by the helper
    np.testing.assert_array_equal(tr.times_min, [0.0, 1.0])
    assert "2 times" in repr(tr) and len(tr) == 2


@pytest.mark.parametrize("kw, err, match", [
    ({"times_min": [9]}, ValueError, "times_min has 1 values but there are 2 models"),
    ({"times_min": [16, 9]}, ValueError, "times_min must be finite and strictly increasing"),
    ({"times_min": ["a", "b"]}, TypeError, "times_min must be numbers"),
    ({"times_min": [9, 16], "order": "S"}, KeyError, "have no per-atom array 'S'"),
])
def test_tracker_validation(kw, err, match):
    models, _ = synthetic_series(NUC[:2], radius_A=8.0, seed=1)
    with pytest.raises(err, match=match):
        aet.NucleusTracker(models, **kw)


def test_tracker_validation_models():
    m = aet.AtomicModel(np.eye(3), "Fe")
    with pytest.raises(ValueError, match="needs at least 2 times"):
        aet.NucleusTracker([m], times_min=[1])
    with pytest.raises(TypeError, match=r"models\[1\] must be an aet.AtomicModel"):
        aet.NucleusTracker([m, np.eye(3)], times_min=[1, 2])
    with pytest.raises(aet.errors.MetadataError, match="times_min is missing"):
        aet.NucleusTracker([m, m])


def test_save_open_round_trip(series, tmp_path):
    models, tracker, reg, res = series
    p = reg.save(tmp_path / "tracker.zarr")
    back = aet.open(p)
    assert isinstance(back, aet.NucleusTracker)
    np.testing.assert_array_equal(back.times_min, [9, 16, 26])
    for a, b in zip(back.models, models):
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.species, b.species)
        np.testing.assert_array_equal(a["order"], b["order"])
        assert a.attrs["annealing_time_min"] == b.attrs["annealing_time_min"]
    np.testing.assert_allclose(back.registration["rotation"].values,
                               reg.registration["rotation"].values)
    assert [r["op"] for r in back.provenance] == ["register"]
    # the restored registration gives the same tracking without registering again
    res_back = back.track(threshold=0.3)
    assert res_back.events.equals(res.events)
    assert res_back.nuclei["n_atoms"].tolist() == res.nuclei["n_atoms"].tolist()
    # an unregistered tracker round-trips too
    back2 = aet.open(tracker.save(tmp_path / "plain.zarr"))
    assert not back2.is_registered and len(back2) == 3
    with pytest.raises(aet.errors.UnknownFormatError, match="does not end in .zarr"):
        reg.save(tmp_path / "tracker.nc")


def test_extxyz_for_ovito(series, tmp_path):
    models, tracker, reg, res = series
    p = reg.write_extxyz(tmp_path / "series.xyz", res)
    frames = ase.io.read(p, index=":")
    assert len(frames) == 3
    for k, fr in enumerate(frames):
        assert fr.info["time_min"] == [9, 16, 26][k]
        np.testing.assert_array_equal(fr.arrays["nucleus"], res.labels[k])
        np.testing.assert_array_equal(fr.arrays["track"], res.atom_tracks[k])
        np.testing.assert_allclose(fr.arrays["order"], reg.registered_models[k]["order"],
                                   atol=1e-7)
        np.testing.assert_allclose(fr.positions, reg.registered_models[k].positions, atol=1e-6)
    assert not list(tmp_path.glob(".*aet-tmp*"))  # atomic write left no temporary file


def test_figures(series, tmp_path):
    models, tracker, reg, res = series
    fig = res.plot_sizes()
    lines = fig.axes[0].get_lines()
    ser = res.series()
    assert len(lines) == ser.sizes["track"]
    for line, tid in zip(lines, ser.track.values):
        y = ser["n_atoms"].sel(track=tid).values
        np.testing.assert_array_equal(line.get_ydata(), y[np.isfinite(y)])
    fig = res.plot_lineage()
    n_links = len(fig.axes[0].get_lines())
    assert n_links == len(res.links)
    fig = reg.plot_order_slices(axis="z", position_A=0.0, voxel_size_A=0.6)
    assert len(fig.axes) == 3 + 1  # one panel per time + colour bar
    img = fig.axes[1].get_images()[0].get_array()
    assert np.nanmax(img) > 0.6  # the grown nucleus A sits at the slice centre
    out = tmp_path / "lineage.png"
    res.plot_lineage().savefig(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_order_fields_from_tracker(series):
    models, tracker, reg, res = series
    f = reg.order_fields(voxel_size_A=0.6, sigma_A=1.5)
    assert f.dims == ("time", "z", "y", "x")
    np.testing.assert_array_equal(f.time.values, [9, 16, 26])
    assert f.attrs["voxel_size_A"] == pytest.approx(0.6)
    centre = f.sel(x=0, y=0, z=0, method="nearest").values
    assert np.all(centre > 0.6)
    assert aet.model.get_provenance(f.attrs)[-1]["op"] == "order_fields"


def test_order_computed_by_analysis_when_models_have_none():
    # models with species only: the tracker computes the order once with
    # aet.analysis.order_parameters (kind L10), stores it as "order", and tracks on it
    from aet import simulate as sim

    ordered = sim.fept_particle(22.0, phase="L10", seed=1)
    random = sim.fept_particle(22.0, phase="A1", seed=1)
    tr = aet.NucleusTracker([random, ordered], times_min=[9, 16])
    assert not tr.has_order
    with_o = tr.with_order()
    assert with_o.has_order and [r["op"] for r in with_o.provenance] == ["with_order"]
    want = aet.analysis.order_parameters(ordered.data, "L10")["order_L10"].values
    np.testing.assert_allclose(with_o.models[1]["order"], want)
    # the ordered particle is one big nucleus; the random alloy (smoothed) has none
    res = with_o.track(threshold=0.3, smooth_A=3.0, min_peak_order=0.5)
    assert res.summary()["n_nuclei"] == [0, 1]
    assert res.nuclei.n_atoms.iloc[0] > 0.8 * ordered.n_atoms
    assert res.event_counts()["birth"] == 1
    # several kinds: the per-atom maximum
    both = aet.dynamics.order_values(ordered.data, kind=("L10", "L12"))
    assert np.all(both >= want - 1e-12)
