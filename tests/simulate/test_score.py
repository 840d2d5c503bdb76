"""score(): the self-tests of issue 2 and the matching itself."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import aet
from aet.simulate import fept_particle, match_atoms, score


@pytest.fixture(scope="module")
def truth():
    return fept_particle(30.0, phase="L10", seed=0)


def test_identity_scores_perfectly(truth):
    s = score(truth, truth)
    assert s.recall == 1.0 and s.precision == 1.0
    assert s.rmsd_pm == pytest.approx(0.0, abs=1e-9)
    assert s.species_accuracy == 1.0
    assert s.n_matched == truth.n_atoms


@pytest.mark.parametrize("sigma_A", [0.05, 0.15])
def test_isotropic_jitter_gives_sigma_sqrt3(truth, sigma_A):
    rng = np.random.default_rng(1)
    p = aet.AtomicModel(truth.positions + rng.normal(0, sigma_A, (truth.n_atoms, 3)),
                        truth.species)
    s = score(p, truth)
    assert s.recall == 1.0
    assert s.rmsd_pm == pytest.approx(sigma_A * 100 * np.sqrt(3), rel=0.05)
    for v in s.rmsd_pm_xyz:
        assert v == pytest.approx(sigma_A * 100, rel=0.1)
    assert set(s.rmsd_pm_by_species) == {"Fe", "Pt"}
    for v in s.rmsd_pm_by_species.values():
        assert v == pytest.approx(sigma_A * 100 * np.sqrt(3), rel=0.1)


def test_swapped_species_are_counted(truth):
    sp = truth.species.copy()
    idx = np.flatnonzero(sp == "Fe")[:37]
    sp[idx] = "Pt"
    s = score(aet.AtomicModel(truth.positions, sp), truth)
    assert s.species_accuracy == pytest.approx(1 - 37 / truth.n_atoms)
    assert int(s.confusion.sel(truth="Fe", predicted="Pt")) == 37
    assert int(s.confusion.sel(truth="Pt", predicted="Fe")) == 0
    assert int(s.confusion.sel(truth="Fe", predicted="Fe")) == (truth.species == "Fe").sum() - 37


@pytest.mark.parametrize("shift", [(1.3, -0.4, 2.0), (10.0, 0.0, -7.5)])
def test_rigidly_shifted_copy_scores_perfectly(truth, shift):
    s = score(aet.AtomicModel(truth.positions + shift, truth.species), truth)
    assert s.recall == 1.0 and s.precision == 1.0
    assert s.rmsd_pm == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(s.translation_A, -np.asarray(shift), atol=1e-9)


def test_small_rotation_is_fitted_when_allowed(truth):
    axis = np.array([0.3, 0.5, 0.81]) / np.linalg.norm([0.3, 0.5, 0.81])
    R = Rotation.from_rotvec(np.radians(3.0) * axis).as_matrix()
    p = aet.AtomicModel(truth.positions @ R.T + [0.5, 0.2, -0.3], truth.species)
    loose = score(p, truth)
    fitted = score(p, truth, allow_rotation=True)
    assert loose.rmsd_pm > 20
    assert fitted.recall == 1.0 and fitted.rmsd_pm == pytest.approx(0.0, abs=1e-6)
    assert fitted.rotation_deg == pytest.approx(3.0, abs=1e-6)


def test_missing_and_spurious_atoms(truth):
    rng = np.random.default_rng(2)
    keep = np.ones(truth.n_atoms, bool)
    keep[rng.choice(truth.n_atoms, 25, replace=False)] = False
    pos = truth.positions[keep]
    extra = rng.uniform(60, 80, (8, 3))  # far away from the particle: spurious
    p = aet.AtomicModel(np.vstack([pos, extra]),
                        np.concatenate([truth.species[keep], ["Pt"] * 8]))
    s = score(p, truth, fit_translation=False)
    assert s.n_matched == truth.n_atoms - 25
    assert s.recall == pytest.approx((truth.n_atoms - 25) / truth.n_atoms)
    assert s.precision == pytest.approx((truth.n_atoms - 25) / (truth.n_atoms - 25 + 8))
    assert int(s.confusion.sel(truth="none", predicted="Pt")) == 8
    assert int(s.confusion.sel(predicted="none").sum()) == 25
    assert "recall" in repr(s) and "confusion" in s.table()
    d = s.to_dict()
    assert d["n_matched"] == s.n_matched and len(d["confusion"]["counts"]) == 3


def test_matching_is_one_to_one_and_optimal():
    a = np.array([[0.0, 0, 0], [0.9, 0, 0]])
    b = np.array([[0.5, 0, 0], [1.3, 0, 0]])
    # greedy nearest would pair a1-b0 (0.4) and leave a0 unmatched within 0.6 Å
    pairs = match_atoms(a, b, 0.6)
    np.testing.assert_array_equal(pairs, [[0, 0], [1, 1]])
    # maximum cardinality first: both matched even though a1-b0 alone is shortest
    assert len(match_atoms(a, b[:1], 0.6)) == 1


def test_radius_validation(truth):
    with pytest.raises(ValueError, match="radius_A must be a positive length"):
        score(truth, truth, radius_A=0)
    with pytest.raises(ValueError, match=r"predicted must be an AtomicModel or an \(n, 3\)"):
        score(np.zeros((3, 2)), truth)


@pytest.mark.slow
def test_scales_to_twenty_thousand_atoms():
    big = fept_particle(80.0, seed=1)
    assert big.n_atoms > 18000
    rng = np.random.default_rng(0)
    p = aet.AtomicModel(big.positions + rng.normal(0, 0.2, (big.n_atoms, 3)), big.species)
    s = score(p, big)
    assert s.recall > 0.999
    assert s.rmsd_pm == pytest.approx(20 * np.sqrt(3), rel=0.05)


def test_one_sided_missing_atoms_do_not_mislead_the_rigid_fit(truth):
    # a third of the particle missing: the centroids differ by several Å (more than a lattice
    # spacing), yet the fit must find the true 0.3 Å shift, not a lattice-translated one
    pos = truth.positions
    keep = pos[:, 0] < pos[:, 0].max() - 0.35 * np.ptp(pos[:, 0])
    p = aet.AtomicModel(pos[keep] + [0.3, -0.2, 0.1], truth.species[keep])
    assert np.linalg.norm(pos[keep].mean(0) - pos.mean(0)) > 3.0
    s = score(p, truth)
    assert s.n_matched == keep.sum() and s.precision == 1.0
    assert s.rmsd_pm == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(s.translation_A, [-0.3, 0.2, -0.1], atol=1e-9)


def test_sparse_matching_equals_dense_hungarian(rng):
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    for _ in range(30):
        a = rng.uniform(0, 5, (int(rng.integers(5, 25)), 3))
        b = rng.uniform(0, 5, (int(rng.integers(5, 25)), 3))
        r = 1.2
        pairs = match_atoms(a, b, r)
        d2 = cdist(a, b) ** 2
        assert len(set(pairs[:, 0])) == len(pairs) == len(set(pairs[:, 1]))
        assert np.all(d2[pairs[:, 0], pairs[:, 1]] <= r * r)
        # dense reference: maximum number of pairs within r, then the least summed d²
        big = 1e6
        cost = np.where(d2 <= r * r, d2, big)
        i, j = linear_sum_assignment(cost)
        real = cost[i, j] < big
        assert len(pairs) == real.sum()
        assert d2[pairs[:, 0], pairs[:, 1]].sum() == pytest.approx(cost[i, j][real].sum(),
                                                                  abs=1e-9)


def test_sparse_interior_subset_keeps_the_frame_of_its_complete_model(truth):
    """An interior subset of a lattice is the same set under a lattice translation; scored
    from the complete model's translation it keeps that frame (species right), and the
    registration on close pairs prefers the true frame when the subset is jittered."""
    rng = np.random.default_rng(7)
    pos = truth.positions
    shift = np.array([0.21, -0.13, 0.3])
    inner = np.flatnonzero((np.linalg.norm(pos, axis=1) < 9.0) & (rng.random(len(pos)) < 0.5))
    jit = rng.normal(0, 0.12, (len(inner), 3))
    full = aet.AtomicModel(pos + shift + rng.normal(0, 0.12, pos.shape), truth.species)
    sub = aet.AtomicModel(pos[inner] + shift + jit, truth.species[inner])
    s_full = score(full, truth)
    np.testing.assert_allclose(s_full.translation_A, -shift, atol=0.03)
    s_sub = score(sub, truth, start_translation_A=s_full.translation_A)
    assert s_sub.species_accuracy == 1.0 and s_sub.recall == pytest.approx(len(inner) /
                                                                           truth.n_atoms)
    np.testing.assert_allclose(s_sub.translation_A, -shift, atol=0.05)
    assert score(sub, truth).species_accuracy == 1.0
