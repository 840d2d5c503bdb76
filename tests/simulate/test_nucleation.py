"""nucleation_series: true nuclei, true events, and measured models with recorded noise."""

from __future__ import annotations

import numpy as np
import pytest

from aet.simulate import nucleation_series
from aet.simulate.nucleation import nearest_distinct_gap_A


@pytest.fixture(scope="module")
def series():
    return nucleation_series(seed=0)


def test_every_event_type_happens(series):
    types = {e.type for e in series.events}
    assert types == {"birth", "growth", "shrinkage", "merge", "division", "dissolution"}
    ev = {(e.time_index, e.type): e for e in series.events}
    assert ev[(2, "merge")].parents == (4, 5) and ev[(2, "merge")].children == (6,)
    assert ev[(2, "division")].parents == (7,) and ev[(2, "division")].children == (8, 9)
    assert ev[(1, "birth")].children == (2,)
    assert ev[(2, "dissolution")].parents == (3,)
    table = series.events_table()
    assert list(table.columns) == ["time_index", "time_min", "type", "parents", "children"]
    assert len(table) == len(series.events)


def test_events_agree_with_the_nucleus_atom_sets(series):
    nuc = series.nuclei
    for e in series.events:
        t = e.time_index
        assert all(p in nuc[t - 1] for p in e.parents)
        assert all(c in nuc[t] for c in e.children)
        if e.type in ("merge", "division"):
            # every child overlaps a parent (atom ids are stable across times)
            for c in e.children:
                assert any(np.intersect1d(nuc[t][c], nuc[t - 1][p]).size > 0 for p in e.parents)
        if e.type == "growth":
            assert len(nuc[t][e.children[0]]) >= 1.1 * len(nuc[t - 1][e.parents[0]])
        if e.type == "shrinkage":
            assert len(nuc[t][e.children[0]]) * 1.1 <= len(nuc[t - 1][e.parents[0]])
    # nucleus B fluctuates: alternately shrinks and grows
    sizes = series.nucleus_sizes().loc[1].to_numpy()
    assert np.all(np.sign(np.diff(sizes)) == [-1, 1, -1])


def test_truth_models_label_ordered_nuclei(series):
    for tm, nuc in zip(series.truth_models, series.nuclei):
        nid = tm["nucleus_id"]
        for k, ids in nuc.items():
            np.testing.assert_array_equal(np.sort(tm["atom_id"][nid == k]), ids)
            assert len(ids) >= 10
        # outside the nuclei the species are those of the disordered matrix
        out = nid < 0
        np.testing.assert_array_equal(tm.species[out], tm["base_species"][out])
        # distinct nuclei are separated by more than a nearest-neighbour distance
        assert nearest_distinct_gap_A(tm, nid) > 3.0
    # L1_0 nuclei: alternating Fe/Pt planes along the variant's c axis
    tm = series.truth_models[2]
    R0 = np.array(tm.attrs["orientation_matrix"])
    pos_c = tm.positions @ R0  # back to the crystal frame
    for k in (0, 6):
        m = tm["nucleus_id"] == k
        v = int(tm["nucleus_variant"][m][0])
        layer = np.rint((pos_c[m, v] - pos_c[m, v][0]) / (3.81 / 2)).astype(int) % 2
        sp = tm.species[m]
        assert len(set(zip(layer.tolist(), sp.tolist()))) == 2  # each layer a single species
    assert set(tm["nucleus_phase"][tm["nucleus_id"] == 1].tolist()) == {"L12_FePt3"}


def test_measured_models_carry_the_recorded_noise_and_motion(series):
    ref = series.truth_models[0]
    order_ref = np.argsort(ref["atom_id"])
    jit, err = [], []
    for t, (m, tm) in enumerate(zip(series.models, series.truth_models)):
        assert m.attrs["annealing_time_min"] == series.times_min[t]
        o = np.argsort(m["atom_id"])
        assert not np.array_equal(m["atom_id"], np.sort(m["atom_id"]))  # shuffled
        mot = series.rigid_motions[t]
        undone = (m.positions[o] - mot["translation_A"]) @ mot["rotation"]
        jit.append(undone - ref.positions[order_ref])
        err.append(np.mean(m.species[o] != tm.species[np.argsort(tm["atom_id"])]))
    d = np.concatenate(jit)
    assert d.std(axis=0) == pytest.approx([0.2, 0.2, 0.2], rel=0.03)
    assert np.abs(d.mean(axis=0)).max() < 0.01
    assert np.mean(err) == pytest.approx(0.01, abs=0.003)
    angles = [np.degrees(np.arccos((np.trace(r["rotation"]) - 1) / 2))
              for r in series.rigid_motions[1:]]
    assert 0 < max(angles) < 10


def test_determinism_and_errors():
    a = nucleation_series((1.0, 2.0, 3.0), seed=4)
    b = nucleation_series((1.0, 2.0, 3.0), seed=4)
    assert a.models[2] == b.models[2] and a.events == b.events
    with pytest.raises(ValueError, match="at least 3"):
        nucleation_series((1.0, 2.0))
    with pytest.raises(ValueError, match="strictly increasing"):
        nucleation_series((1.0, 3.0, 2.0))
    with pytest.raises(ValueError, match="cannot place the scripted nuclei"):
        nucleation_series(diameter_A=20.0)


def test_the_package_tracker_finds_exactly_the_true_events_on_the_ideal_order(series):
    """Cross-check of the event semantics with aet.dynamics: tracking the truth models on
    their ideal order parameter (1 inside nuclei) gives the true events, step by step."""
    import aet

    res = aet.NucleusTracker(series.truth_models, order="true_order").track(threshold=0.5)
    found = sorted(zip(res.events["step"].astype(int), res.events["event"]))
    true = sorted((e.time_index, e.type) for e in series.events)
    assert found == true


def test_partial_order_inside_nuclei():
    full = nucleation_series((1.0, 2.0, 3.0), seed=2)
    part = nucleation_series((1.0, 2.0, 3.0), seed=2, nucleus_order=0.6)
    tf, tp = full.truth_models[2], part.truth_models[2]
    inside = tf["nucleus_id"] >= 0
    np.testing.assert_array_equal(tf["nucleus_id"], tp["nucleus_id"])
    same_as_ordered = tp.species[inside] == tf.species[inside]
    same_as_base = tp.species[inside] == tp["base_species"][inside]
    assert np.all(same_as_ordered | same_as_base)
    # 60 % ordered; of the other 40 %, half of the random species happen to match the order
    assert same_as_ordered.mean() == pytest.approx(0.6 + 0.4 * 0.5, abs=0.05)
    with pytest.raises(ValueError, match="nucleus_order must be in"):
        nucleation_series((1.0, 2.0, 3.0), nucleus_order=0.0)


def test_truth_models_are_in_atom_id_order(series):
    for tm in series.truth_models:
        np.testing.assert_array_equal(tm["atom_id"], np.arange(tm.n_atoms))
