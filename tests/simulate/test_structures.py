"""Structures: shapes, FePt phases and variants, grains, defects, displacement truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from aet.simulate import (
    ANTIPHASE_BOUNDARY,
    ANTISITE,
    DISLOCATION_CORE,
    GRAIN_BOUNDARY,
    SWAP,
    CoreShellStrain,
    ScrewDislocation,
    UniformStrain,
    displace,
    fept_particle,
    nanoparticle,
)
from aet.simulate.structures import FEPT_A, L10_C_OVER_A


def _nn(pos):
    d, _ = cKDTree(pos).query(pos, k=2)
    return d[:, 1]


def test_magic_cuboctahedron_and_fcc_spacing():
    m = nanoparticle("Pt", 12.0, shape="cuboctahedron")
    assert m.n_atoms == 55
    np.testing.assert_allclose(_nn(m.positions), 3.92 / math.sqrt(2), rtol=1e-9)
    assert np.abs(m.positions.mean(axis=0)).max() < 1e-9


@pytest.mark.parametrize("lattice,a,nn", [("bcc", 2.87, 2.87 * math.sqrt(3) / 2),
                                           ("hcp", 3.21, 3.21)])
def test_other_lattices(lattice, a, nn):
    m = nanoparticle("Fe" if lattice == "bcc" else "Mg", 15.0, lattice=lattice, a_A=a)
    np.testing.assert_allclose(np.median(_nn(m.positions)), nn, rtol=1e-6)
    assert set(m["phase"].tolist()) == {lattice}


def test_shapes_have_expected_relative_volumes():
    n = {s: nanoparticle("Pt", 40.0, shape=s).n_atoms
         for s in ("sphere", "cuboctahedron", "octahedron", "wulff")}
    # vertex-to-vertex 2R: octahedron (4/3) R³, cuboctahedron (5√2/3) R³, sphere (4π/3) R³
    # (surface atoms count fully, so small polyhedra come out a little larger)
    assert n["octahedron"] / n["sphere"] == pytest.approx(1 / math.pi, rel=0.3)
    assert n["cuboctahedron"] / n["sphere"] == pytest.approx(5 * math.sqrt(2) / (4 * math.pi),
                                                             rel=0.15)
    # the Wulff shape is built to the volume of the sphere
    assert n["wulff"] / n["sphere"] == pytest.approx(1.0, rel=0.15)


def test_alloy_composition_and_random_orientation():
    m = nanoparticle({"Fe": 0.3, "Pt": 0.7}, 30.0, orientation="random", seed=3)
    frac = m.species_counts()["Pt"] / m.n_atoms
    assert frac == pytest.approx(0.7, abs=0.04)
    R = np.array(m.attrs["orientation_matrix"])
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    ref = nanoparticle({"Fe": 0.3, "Pt": 0.7}, 30.0, seed=3)
    # same lattice, rotated: identical distance spectra
    np.testing.assert_allclose(np.sort(np.linalg.norm(m.positions, axis=1)),
                               np.sort(np.linalg.norm(ref.positions, axis=1)), atol=1e-9)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_l10_variants_alternate_layers_along_c(variant):
    m = fept_particle(24.0, phase="L10", variant=variant, seed=1)
    pos, sp = m.positions, m.species
    c = FEPT_A["L10"] * L10_C_OVER_A
    layer = np.rint((pos[:, variant] - pos[sp == "Fe"][0, variant]) / (c / 2)).astype(int)
    assert np.all((layer % 2 == 0) == (sp == "Fe"))
    assert set(m["variant"].tolist()) == {variant}
    assert m.species_counts()["Pt"] / m.n_atoms == pytest.approx(0.5, abs=0.05)
    # tetragonal: the lattice spacing along c is c/a = 0.964 of the others
    other = (variant + 1) % 3
    dz = np.diff(np.unique(np.round(pos[:, variant], 6)))
    dx = np.diff(np.unique(np.round(pos[:, other], 6)))
    assert dz.min() / dx.min() == pytest.approx(L10_C_OVER_A, rel=1e-6)


@pytest.mark.parametrize("phase,minor,major", [("L12_FePt3", "Fe", "Pt"),
                                               ("L12_Fe3Pt", "Pt", "Fe")])
def test_l12_minority_atoms_have_only_majority_neighbours(phase, minor, major):
    m = fept_particle(24.0, phase=phase, seed=0)
    pos, sp = m.positions, m.species
    tree = cKDTree(pos)
    nn = FEPT_A[phase] / math.sqrt(2)
    for i in np.flatnonzero(sp == minor)[:50]:
        nb = [j for j in tree.query_ball_point(pos[i], nn * 1.1) if j != i]
        assert all(sp[j] == major for j in nb)
    assert m.species_counts()[major] / m.n_atoms == pytest.approx(0.75, abs=0.06)


def test_grains_boundaries_and_minimum_distance():
    m = fept_particle(30.0, n_grains=3, phase=["L10", "A1", "L12_FePt3"], seed=4)
    g = m["grain_id"]
    assert set(g.tolist()) == {0, 1, 2}
    assert _nn(m.positions).min() >= 2.0
    assert set(m["phase"][g == 1].tolist()) == {"A1"}
    # GB flag ⇔ an atom of another grain within 3 Å
    pos = m.positions
    tree = cKDTree(pos)
    near_other = np.array([any(g[j] != g[i] for j in tree.query_ball_point(pos[i], 3.0))
                           for i in range(len(pos))])
    np.testing.assert_array_equal((m["defect"] & GRAIN_BOUNDARY) > 0, near_other)


def test_antiphase_boundary_swaps_order_on_one_side():
    m = fept_particle(26.0, phase="L10", variant=2, antiphase_boundary=(1.0, 0.0, 0.0), seed=0)
    dom = m["antiphase_domain"]
    assert 0.3 < dom.mean() < 0.7
    pos, sp = m.positions, m.species
    c = FEPT_A["L10"] * L10_C_OVER_A
    layer = np.rint((pos[:, 2] - pos[0, 2]) / (c / 2)).astype(int) % 2
    fe_on_even = [np.mean(sp[(dom == d) & (layer == 0)] == "Fe") for d in (0, 1)]
    assert sorted(fe_on_even) == [0.0, 1.0]  # opposite ordering on the two sides
    flagged = (m["defect"] & ANTIPHASE_BOUNDARY) > 0
    x = pos[:, 0] - pos[:, 0].mean()
    assert flagged.any() and np.abs(x[flagged]).max() < 3.5


def test_antisites_swaps_and_core_are_recorded():
    m = fept_particle(30.0, phase="L10", antisite_fraction=0.05, n_swaps=10,
                      pt_rich_core_A=7.0, seed=2)
    sp, ideal, d = m.species, m["ideal_species"], m["defect"]
    changed = sp != ideal
    np.testing.assert_array_equal(changed, ((d & ANTISITE) > 0) ^ ((d & SWAP) > 0)
                                  | (((d & ANTISITE) > 0) & ((d & SWAP) > 0) & changed))
    assert ((d & ANTISITE) > 0).mean() == pytest.approx(0.05, abs=0.02)
    assert ((d & SWAP) > 0).sum() == 20
    core = m["in_core"]
    assert np.mean(ideal[core] == "Pt") >= 0.75
    assert np.mean(ideal[~core] == "Pt") == pytest.approx(0.5, abs=0.05)


def test_displacement_truth_is_exact():
    kw = {"diameter_A": 26.0, "phase": "L10", "variant": 2, "seed": 5, "orientation": "random"}
    ref = fept_particle(**kw)
    fields = [UniformStrain(0.01), CoreShellStrain(6.0, -0.02, 0.01), ScrewDislocation()]
    m = fept_particle(**kw, displacements=fields)
    d = np.stack([m["displacement_x"], m["displacement_y"], m["displacement_z"]], axis=1)
    # undisplaced positions agree with the reference up to the centroid of d (re-centring)
    np.testing.assert_allclose(m.positions - d, ref.positions - d.mean(axis=0), atol=1e-9)
    assert np.abs(d).max() > 0.1
    assert ((m["defect"] & DISLOCATION_CORE) > 0).sum() > 5


def test_uniform_strain_and_displace_function():
    m = nanoparticle("Pt", 20.0)
    s = displace(m, UniformStrain(0.02))
    np.testing.assert_allclose(s.positions, 1.02 * m.positions, atol=1e-9)
    np.testing.assert_allclose(s["displacement_x"], 0.02 * m.positions[:, 0], atol=1e-12)
    tens = np.array([[0.01, 0.005, 0], [0.005, 0, 0], [0, 0, -0.01]])
    t = displace(m, UniformStrain(tens))
    np.testing.assert_allclose(t.positions, m.positions @ (np.eye(3) + tens).T, atol=1e-9)
    screw = ScrewDislocation(burgers_A=2.7, direction=(0, 0, 1))
    u = screw(m.positions)
    assert np.abs(u[:, :2]).max() == 0 and np.abs(u[:, 2]).max() <= 2.7 / 2 + 1e-12


def test_same_seed_same_particle_and_errors():
    a = fept_particle(20.0, n_grains=2, antisite_fraction=0.02, seed=7)
    b = fept_particle(20.0, n_grains=2, antisite_fraction=0.02, seed=7)
    assert a == b
    with pytest.raises(ValueError, match="phase must be one of"):
        fept_particle(20.0, phase="B2")
    with pytest.raises(ValueError, match="variant values must be 0, 1 or 2"):
        fept_particle(20.0, variant=3)
    with pytest.raises(ValueError, match="shape must be one of"):
        nanoparticle("Pt", 20.0, shape="star")
    with pytest.raises(ValueError, match="orientation must be None, 'random'"):
        nanoparticle("Pt", 20.0, orientation="tilted")


def test_fept_wulff_particle_keeps_its_order():
    m = fept_particle(24.0, shape="wulff", phase="L10", variant=1, seed=0)
    pos, sp = m.positions, m.species
    c = FEPT_A["L10"] * L10_C_OVER_A
    layer = np.rint((pos[:, 1] - pos[sp == "Fe"][0, 1]) / (c / 2)).astype(int)
    assert np.all((layer % 2 == 0) == (sp == "Fe"))
    n_sphere = fept_particle(24.0, phase="L10", variant=1, seed=0).n_atoms
    assert m.n_atoms == pytest.approx(n_sphere, rel=0.2)


def test_default_lattice_parameters_follow_ase_or_the_atomic_volume():
    from aet.simulate.structures import _default_a

    assert _default_a("Pt", "fcc") == pytest.approx(3.92)
    assert _default_a("Fe", "bcc") == pytest.approx(2.87)
    # fcc Fe with bcc Fe's atomic volume
    assert _default_a("Fe", "fcc") ** 3 / 4 == pytest.approx(2.87**3 / 2)
    with pytest.raises(ValueError, match="lattice must be one of"):
        nanoparticle("Pt", 10.0, lattice="sc")


def test_film_is_an_extended_slab_that_leaves_the_field_of_view():
    from aet.simulate import fept_film, project_atoms
    from aet.simulate.forward import cross_sections

    m = fept_film((60.0, 24.0, 10.0), phase="L10", variant=2, lattice_orientation="random",
                  antisite_fraction=0.02, seed=3)
    pos = m.positions
    assert np.all(np.abs(pos) <= np.array([30.0, 12.0, 5.0]) + 0.5)
    assert np.ptp(pos[:, 2]) > 8.0 and np.ptp(pos[:, 0]) > 57.0
    assert _nn(pos).min() > 2.5
    # lattice rotated inside the fixed box: still alternating L1_0 planes along its own c axis
    R = np.array(m.attrs["grain_orientations"][0])
    c = (pos @ R)[:, 2]  # crystal-frame coordinate along c
    layer = np.rint((c - c[m.species == "Fe"][0]) / (FEPT_A["L10"] * L10_C_OVER_A / 2))
    ok = (layer % 2 == 0) == (m["ideal_species"] == "Fe")
    assert ok.all()
    # a 40 Å wide view of the 60 Å film: at 0° a third of the film lies outside the view; at
    # 60° the film's projection (60 cos 60° + 10 sin 60° ≈ 39 Å) fits: material enters the view
    ts = project_atoms(m, [0.0, 60.0], shape=(80, 114), pixel_size_A=0.35)
    inside = ts.values.sum(axis=(1, 2)) / cross_sections(m.species).sum()
    assert inside[0] == pytest.approx(114 * 0.35 / 60.0, abs=0.04)
    assert inside[1] > 0.95
    with pytest.raises(ValueError, match="lattice_orientation"):
        fept_film((20.0, 20.0, 5.0), orientation="random")
