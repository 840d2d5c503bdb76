"""The joint local refit of the add pass (:mod:`aet.atoms.refinement.local`): its loss
changes are the whole problem's (the kernel's exact replacement test), its Jacobian is the
finite-difference one, and the add pass finds an atom closer to a traced one than the add
pass's minimum distance without splitting atoms that are whole.

Accuracy on physics the code did not write (abTEM): ``benchmarks/bench_accuracy.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.atoms import refine
from aet.atoms.refinement import ProjectionProblem, projection_geometry
from aet.atoms.refinement.driver import _joint_additions
from aet.atoms.refinement.local import LocalPatch
from tests.atoms.test_refinement import SIG, power_series, small_particle


@pytest.fixture
def problem(rng):
    truth = small_particle(rng)
    angles, data = power_series(rng, truth, gamma=1.3, noise=0.01, n_angles=9)
    ts = aet.TiltSeries(data, angles=angles, pixel_size_A=0.4)
    sp = (truth.species == "Pt").astype(np.int64)
    prob = ProjectionProblem(ts.values, projection_geometry(ts.data), sp, 2, SIG, cutoff=3.5,
                             holdout=0.2, seed=3)
    prob.initial_profile(truth.positions)  # the profile and response fitted at the truth
    prob.fit_profile(truth.positions)
    return prob, truth.positions.copy()


def test_local_loss_changes_are_the_kernels(problem, rng):
    """Moving one atom, or adding one, changes the patch's training and held-out losses by
    exactly what the kernel's replacement test says for the whole problem (the patch
    reproduces the square cut-off, the response and the offsets)."""
    prob, pos = problem
    img = prob.model_image(pos)
    j = 13
    for moved, new_sp in ((pos[j] + [0.31, -0.22, 0.17], prob.sp[j]), (pos[j], 1 - prob.sp[j])):
        alt = np.full(len(pos), -2, np.int64)
        alt[j] = new_sp
        pos_alt = pos.copy()
        pos_alt[j] = moved
        dl, dh, _ = prob.replacement_test(pos, pos_alt, alt)
        patch = LocalPatch(prob, img, pos[[j]], prob.sp[[j]], pos[j], 1.0)
        l0, h0, _ = patch.loss(pos[[j]], prob.sp[[j]])
        l1, h1, _ = patch.loss(moved[None], [new_sp])
        assert (l1 - l0) / prob.norm == pytest.approx(dl[j], rel=1e-9, abs=1e-14)
        assert (h1 - h0) / prob.hnorm == pytest.approx(dh[j], rel=1e-9, abs=1e-14)
    # a new atom (a ghost of species -1 made real), with a neighbour in the patch
    c = pos[j] + [1.3, 0.2, -0.4]
    ghosts = np.vstack([pos, c])
    alt = np.r_[np.full(len(pos), -2), 0]
    dl, dh, _ = prob.replacement_test(ghosts, ghosts, alt, sp=np.r_[prob.sp, -1])
    patch = LocalPatch(prob, img, pos[[j]], prob.sp[[j]], c, 2.0)
    l0, h0, _ = patch.loss(pos[[j]], prob.sp[[j]])
    l1, h1, _ = patch.loss(np.vstack([pos[j], c]), np.r_[prob.sp[j], 0])
    assert (l1 - l0) / prob.norm == pytest.approx(dl[-1], rel=1e-9)
    assert (h1 - h0) / prob.hnorm == pytest.approx(dh[-1], rel=1e-9)


def test_local_jacobian_matches_finite_differences(problem):
    prob, pos = problem
    img = prob.model_image(pos)
    loc = np.array([4, 13])
    p = pos[loc] + [[0.05, -0.03, 0.02], [-0.04, 0.06, 0.01]]
    patch = LocalPatch(prob, img, pos[loc], prob.sp[loc], pos[13], 1.5)
    _, _, m, r, D = patch.loss(p, prob.sp[loc], jac=True)
    J = patch.jacobian(D)
    # the Gauss–Newton system from the per-projection Gram matrices is J W Jᵀ, J W r
    A, g = patch._normal_equations(D, r)
    Jm = J.reshape(6, -1)
    assert np.allclose(A, (Jm * patch.w.ravel()) @ Jm.T, rtol=1e-10, atol=0)
    assert np.allclose(g, (Jm * patch.w.ravel()) @ r.ravel(), rtol=1e-10, atol=1e-300)
    h = 1e-5
    for q in range(6):
        dp = np.zeros(6)
        dp[q] = h
        mp = patch.loss(p + dp.reshape(2, 3), prob.sp[loc])[2]
        mm = patch.loss(p - dp.reshape(2, 3), prob.sp[loc])[2]
        fd = (mp - mm) / (2 * h)
        assert np.max(np.abs(J[q] - fd)) < 1e-5 * max(np.max(np.abs(fd)), 1e-12), q


def test_local_fit_finds_a_displaced_atom(problem):
    prob, pos = problem
    img = prob.model_image(pos)
    j = 13
    start = pos[j] + [0.25, -0.2, 0.3]
    patch = LocalPatch(prob, img, pos[[j]], prob.sp[[j]], pos[j], 1.0)
    p, *_ = patch.fit(start[None], prob.sp[[j]], anchor=start[None], reach_A=1.0)
    assert np.linalg.norm(p[0] - pos[j]) < 0.05


def _face_pair(rng):
    """A 3 × 3 × 3 cube of spacing 2.7 Å plus one Fe at the centre of a face: 1.91 Å from
    four atoms, closer than the add pass's minimum distance (2 Å)."""
    truth = small_particle(rng)
    lo = truth.positions.min(0)
    face = np.array([lo[0] + 2.7, lo[1] + 1.35, lo[2] + 1.35])
    whole = aet.AtomicModel(np.vstack([truth.positions, face]),
                            np.append(truth.species, "Fe"))
    return truth, whole, face


def _refine_against(imaged, start):
    """``start`` refined (with the add/remove passes) against 15 noisy projections of
    ``imaged``: the series, the refined model and the result."""
    angles, data = power_series(np.random.default_rng(2), imaged, gamma=1.2, noise=0.01,
                                n_angles=15)
    ts = aet.TiltSeries(data, angles=angles, pixel_size_A=0.4)
    ds, res = refine(start.data, ts.data, profile_sigmas_A=SIG, n_cycles=1,
                     uncertainty=False, add_remove=True)
    return ts, ds, res


def test_add_pass_finds_an_atom_closer_than_the_minimum_distance(rng):
    """The single-atom test never sees a site within ``min_distance_A`` of an atom; the joint
    test (new atom and its neighbours refitted together) adds it, of the right species."""
    truth, whole, face = _face_pair(rng)
    ts, ds, res = _refine_against(whole, truth)
    pos = ds["position"].values
    d = np.linalg.norm(pos - face, axis=1)
    assert res["n_added"] == 1, res["candidates"]
    assert d.min() < 0.15 and ds["species"].values[np.argmin(d)] == "Fe"
    plain = [x for c in res["candidates"] for x in c.get("candidates", [])]
    assert all(np.linalg.norm(np.asarray(x, float) - face) > 1.0 for x in plain)
    assert any(c["joint"]["accepted"] for c in res["candidates"])


def test_joint_test_does_not_split_whole_atoms(rng):
    """Without the face atom in the data, the joint test of candidates beside every atom
    (each atom could be split in two) adds nothing."""
    truth, _, _ = _face_pair(rng)
    ts, ds, res = _refine_against(truth, truth)
    assert res["n_added"] == 0
    # and directly: a proposal 1.6 Å from each atom, in a fitted problem
    sp = (truth.species == "Pt").astype(np.int64)
    prob = ProjectionProblem(ts.values, projection_geometry(ts.data), sp, 2, SIG, cutoff=3.5,
                             holdout=0.1, seed=0)
    prob.initial_profile(truth.positions)
    prob.fit_profile(truth.positions)
    cand = truth.positions + 1.6 * np.array([0.6, 0.0, 0.8])
    new, *_ = _joint_additions(prob, truth.positions, cand, min_distance_A=2.0,
                               bond_A=2.7, radius_A=3.1, taken={"moved": [], "added": []})
    assert len(new) == 0
