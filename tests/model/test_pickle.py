"""Every data class survives pickle (dask.distributed ships them to worker processes;
multiprocessing and saved sessions pickle them): the same values, metadata and history,
and still immutable. Before, unpickling raised "TiltSeries is immutable"."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import aet


def _roundtrip(obj):
    return pickle.loads(pickle.dumps(obj))


def test_tilt_series_volume_and_model_round_trip_through_pickle():
    bench = aet.simulate.fept_benchmark("small", seed=0, n_angles=5, shape=(32, 32))
    ts = bench.tilt_series.register_frames()
    vol = aet.Volume(np.random.default_rng(0).random((8, 9, 10)), voxel_size_A=0.4)
    for obj in (ts, vol, bench.truth):
        back = _roundtrip(obj)
        assert type(back) is type(obj)
        assert back.data.identical(obj.data)
        assert back.provenance == obj.provenance and back.attrs == obj.attrs
        with pytest.raises(AttributeError, match="immutable"):
            back.foo = 1


def test_nucleus_tracker_round_trips_through_pickle_with_its_results():
    from aet.simulate.nucleation import two_time_case

    s = two_time_case(seed=0)
    tr = aet.NucleusTracker(s.truth_models, times_min=s.times_min)
    back = _roundtrip(tr)
    assert back.times_min.tolist() == tr.times_min.tolist()
    assert [m.n_atoms for m in back.models] == [m.n_atoms for m in tr.models]
    with pytest.raises(AttributeError, match="immutable"):
        back.foo = 1
