"""Cross-check on the simulation area's planted FePt particles (aet.simulate.fept_particle)."""

import numpy as np

import aet
from aet import simulate
from aet.analysis import defects, grains


def test_planted_antisites_and_swaps_recalled():
    m = simulate.fept_particle(36.0, phase="L10", variant=2, antisite_fraction=0.01,
                               n_swaps=3, seed=1, orientation="random")
    wrong = m.species != m["ideal_species"]
    assert wrong.sum() >= 20
    found = defects(m.data, "L10")["antisite"].values
    assert found[wrong].mean() >= 0.95
    assert (found & ~wrong).sum() <= 0.05 * wrong.sum()


def test_planted_polycrystal_grains_and_phases():
    m = simulate.fept_particle(44.0, phase=["L10", "A1", "L10"], n_grains=3, seed=1)
    g = grains(m.data, kind="L10")
    lab, truth = g["grain"].values, m["grain_id"]
    mapping = {t: np.bincount(lab[(truth == t) & (lab >= 0)]).argmax() for t in np.unique(truth)}
    assert len(set(mapping.values())) == len(mapping)  # one recovered grain per planted grain
    pred = np.array([mapping[t] for t in truth])
    assert np.mean(lab == pred) >= 0.95
    # phase labels: the A1 grain disordered, the L1_0 grains ordered
    phase = g["phase"].values
    assert np.mean(phase == m["phase"]) >= 0.95


def test_strain_of_simulated_uniform_strain_is_exact():
    from aet.analysis import fit_lattice, strain
    from aet.testing.analysis import eulerian_strain

    E = np.array([[0.01, 0.002, 0], [0.002, -0.004, 0.001], [0, 0.001, 0.006]])
    m = simulate.fept_particle(36.0, phase="A1", displacements=[simulate.UniformStrain(E)],
                               seed=2)
    u = np.stack([m["displacement_x"], m["displacement_y"], m["displacement_z"]], axis=1)
    ideal = aet.AtomicModel(m.positions - u, m.species)  # the unstrained truth
    a0 = fit_lattice(ideal.data, "fcc").a_A
    st = strain(m.data, a_A=a0, voxel_size_A=2.0)
    Ee = eulerian_strain(E)
    inside = st.weight.values >= 0.8
    for name, i, j in (("xx", 0, 0), ("yy", 1, 1), ("zz", 2, 2), ("xy", 0, 1), ("xz", 0, 2),
                       ("yz", 1, 2)):
        assert np.abs(st[f"e_{name}"].values[inside] - Ee[i, j]).max() < 1e-6
