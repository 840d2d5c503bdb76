"""Registration across times: planted rigid motions are recovered (targets of issue 6)."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from aet.dynamics import (
    kabsch,
    match_atoms,
    register_rigid,
    register_series,
    rotation_angle_deg,
)
from aet.testing.dynamics import fcc_particle, random_rotation, synthetic_series


def _errors(res, R_true, t_true):
    """Rotation (deg) and shift (Å) errors of a registration of ``x' = R x + t`` back onto x."""
    # the model was moved by x' = R x + t; registering it back needs R^T and -R^T t
    return (rotation_angle_deg(res.R @ R_true),
            float(np.linalg.norm(res.t - (-R_true.T @ t_true))))


def test_kabsch_exact(rng):
    p = rng.normal(size=(50, 3)) * 5
    R = random_rotation(73.0, rng)
    t = np.array([1.0, -2.0, 0.5])
    Re, te = kabsch(p, p @ R.T + t)
    np.testing.assert_allclose(Re, R, atol=1e-12)
    np.testing.assert_allclose(te, t, atol=1e-12)
    # a reflection is never returned
    Re, _ = kabsch(p, p * [-1, 1, 1])
    assert np.linalg.det(Re) == pytest.approx(1.0)


@pytest.mark.parametrize("angle_deg, seed", [
    pytest.param(2.0, 1, marks=pytest.mark.slow), pytest.param(6.0, 2, marks=pytest.mark.slow),
    (10.0, 3)])
def test_register_recovers_planted_motion_with_20pm_jitter(angle_deg, seed):
    # target: rotations <= 10 deg recovered to <= 0.05 deg and shifts to <= 5 pm with 20 pm
    # position noise and 1 % species errors (~5200-atom FePt-like particle)
    models, truth = synthetic_series([{}, {}], radius_A=26.0, rotations_deg=[0.0, angle_deg],
                                     shifts_A=[(0, 0, 0), (1.7, -2.3, 0.9)], jitter_A=0.2,
                                     species_error=0.01, seed=seed)
    m0, m1 = models
    res = register_rigid(m1.positions, m0.positions, moving_species=m1.species,
                         fixed_species=m0.species)
    drot, dt = _errors(res, truth["R"][1], truth["t"][1])
    assert drot <= 0.05
    assert dt <= 0.05  # Å = 5 pm
    assert abs(res.angle_deg - angle_deg) <= 0.05
    # residual: two independent 20 pm jitters -> RMS pair distance ~ sqrt(6) * 0.2 Å (trimmed)
    assert 0.3 < res.rmsd_A < 0.5
    assert res.inlier_fraction > 0.98


def test_register_large_rotation_needs_principal_axis_seeds(rng):
    # an asymmetric elongated particle turned by 120 deg: plain ICP is trapped, PCA seeds not
    pos, sp = fcc_particle(30.0)
    keep = ((pos[:, 0] / 30) ** 2 + (pos[:, 1] / 18) ** 2 + (pos[:, 2] / 12) ** 2 <= 1) & \
        ~((pos[:, 0] > 14) & (pos[:, 1] > 3))
    pos, sp = pos[keep], sp[keep]
    R = random_rotation(120.0, rng)
    t = np.array([3.0, -1.0, 2.0])
    moved = (pos + rng.normal(0, 0.2, pos.shape)) @ R.T + t
    fixed = pos + rng.normal(0, 0.2, pos.shape)
    res = register_rigid(moved, fixed, moving_species=sp, fixed_species=sp)
    drot, dt = _errors(res, R, t)
    assert res.seed.startswith("pca")
    # ~1800 atoms only: the statistical precision is ~0.05 deg here
    assert drot <= 0.1 and dt <= 0.05
    ident = register_rigid(moved, fixed, seeds="identity")
    assert _errors(ident, R, t)[0] > 10.0  # the identity seed alone fails here


def test_register_with_missing_and_extra_atoms(rng):
    # 5 % of the atoms gone and 3 % new ones at random sites: trimming keeps the answer exact
    pos, sp = fcc_particle(24.0)
    R = random_rotation(7.0, rng)
    t = np.array([0.4, 0.8, -1.1])
    keep = rng.random(len(pos)) > 0.05
    extra = rng.uniform(-20, 20, (int(0.03 * len(pos)), 3))
    moved = np.concatenate([(pos[keep] + rng.normal(0, 0.2, (keep.sum(), 3))), extra]) @ R.T + t
    res = register_rigid(moved, pos + rng.normal(0, 0.2, pos.shape))
    drot, dt = _errors(res, R, t)
    assert drot <= 0.05 and dt <= 0.05
    assert res.inlier_fraction > 0.9


def test_match_atoms_recovers_identity_and_is_optimal(rng):
    pos, _ = fcc_particle(12.0)
    perm = rng.permutation(len(pos))
    b = pos[perm] + rng.normal(0, 0.15, pos.shape)
    ia, ib, d = match_atoms(pos, b, radius_A=1.0)
    assert ia.size == len(pos)
    np.testing.assert_array_equal(perm[ib], ia)  # b[ib] is the same atom as pos[ia]
    assert np.all(d <= 1.0)
    # optimality on a crowded toy problem against the dense Hungarian solution
    a = rng.uniform(0, 4, (30, 3))
    c = a + rng.normal(0, 0.6, a.shape)
    ia, ib, d = match_atoms(a, c, radius_A=1.2)
    D = np.linalg.norm(a[:, None] - c[None], axis=-1)
    big = 1e6
    C = np.where(D <= 1.2, D ** 2, big)
    r, s = linear_sum_assignment(C)
    ok = C[r, s] < big
    assert ia.size == ok.sum()
    assert np.sum(d ** 2) == pytest.approx(C[r, s][ok].sum(), rel=1e-9)


def test_match_atoms_leaves_far_atoms_unpaired():
    a = np.array([[0.0, 0, 0], [5, 0, 0], [10, 0, 0]])
    b = np.array([[0.2, 0, 0], [10.5, 0, 0], [20, 0, 0]])
    ia, ib, d = match_atoms(a, b, radius_A=1.0)
    assert ia.tolist() == [0, 2] and ib.tolist() == [0, 1]
    np.testing.assert_allclose(d, [0.2, 0.5])


def test_register_series_statistics():
    # 4 times; species errors 1 % each time, no atom moves: fraction moved ~0, species
    # changed ~2 % (two independent 1 % flips)
    models, truth = synthetic_series([{}, {}, {}], radius_A=16.0, rotations_deg=[0, 5, 9],
                                     shifts_A=[(0, 0, 0), (1, 1, 0), (-1, 0, 2)], seed=4)
    reg, summary, matches = register_series([m.data for m in models])
    assert summary.sizes["time_index"] == 3
    np.testing.assert_allclose(summary["angle_deg"].values, [0, 5, 9], atol=0.06)
    assert np.all(summary["fraction_moved"].values[1:] < 0.01)
    assert np.all(np.abs(summary["fraction_species_changed"].values[1:] - 0.02) < 0.01)
    # identities: the same base atom keeps its atom_identity across times
    base0 = reg[0]["position"].values
    for k in (1, 2):
        ia, ib = matches[k - 1]
        assert ia.size > 0.99 * reg[0].sizes["atom"]
        ids = reg[k]["atom_identity"].values
        # registered positions of the same id agree to the jitter
        old = ids < len(base0)
        d = np.linalg.norm(base0[ids[old]] - reg[k]["position"].values[old], axis=1)
        assert np.sqrt(np.mean(d ** 2)) < 0.55
    # inputs untouched
    np.testing.assert_array_equal(models[1].positions, models[1].data["position"].values)


@pytest.mark.parametrize("kw, match", [
    ({"trim_fraction": 0.0}, "trim_fraction must be in"),
    ({"max_pair_distance_A": -1.0}, "max_pair_distance_A must be a finite positive"),
    ({"seeds": "random"}, "seeds must be 'auto', 'pca' or 'identity'"),
    ({"moving_species": ["Fe"] * 10}, "pass both moving_species and fixed_species"),
])
def test_register_bad_options(kw, match):
    p = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match=match):
        register_rigid(p, p, **kw)


def test_register_bad_shapes():
    with pytest.raises(ValueError, match=r"moving must have shape \(n_atoms, 3\)"):
        register_rigid(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="at least 4 atoms"):
        register_rigid(np.zeros((3, 3)), np.zeros((5, 3)))
    with pytest.raises(TypeError, match="models must be a sequence"):
        register_series(np.zeros((5, 3)))
