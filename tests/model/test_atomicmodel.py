from __future__ import annotations

import numpy as np
import pytest

import aet


@pytest.fixture
def model(rng):
    pos = rng.uniform(-10, 10, size=(50, 3))
    sp = np.where(rng.random(50) < 0.5, "Fe", "Pt")
    return aet.AtomicModel(pos, sp, intensity=rng.random(50), annealing_time_min=9)


def test_basic_fields(model):
    assert model.n_atoms == 50 == len(model)
    assert model.elements == ["Fe", "Pt"]
    counts = model.species_counts()
    assert sum(counts.values()) == 50 and set(counts) == {"Fe", "Pt"}
    assert model.data["position"].dims == ("atom", "axis")
    assert list(model.data.axis.values) == ["x", "y", "z"]
    assert model.attrs["annealing_time_min"] == 9
    assert "50 atoms" in repr(model)


def test_select_by_species_and_region(model):
    fe = model.select("Fe")
    assert set(fe.species) == {"Fe"} and fe.n_atoms == model.species_counts()["Fe"]
    box = model.select(box=((0, None), (None, None), (None, 5)))
    p = model.positions
    assert box.n_atoms == int(np.sum((p[:, 0] >= 0) & (p[:, 2] <= 5)))
    sph = model.select(center=(0, 0, 0), radius_A=6.0)
    assert sph.n_atoms == int(np.sum(np.linalg.norm(p, axis=1) <= 6))
    assert sph.provenance[-1]["op"] == "select"


def test_neighbours_match_brute_force(model):
    pairs, d = model.neighbours.pairs(4.0)
    p = model.positions
    dm = np.linalg.norm(p[:, None] - p[None], axis=-1)
    i, j = np.nonzero(np.triu(dm < 4.0, k=1))
    assert {tuple(x) for x in pairs.tolist()} == set(zip(i.tolist(), j.tolist()))
    np.testing.assert_allclose(d, dm[pairs[:, 0], pairs[:, 1]])
    np.testing.assert_array_equal(model.neighbours.coordination(4.0), (dm < 4.0).sum(1) - 1)


def test_manual_edits_are_recorded_and_do_not_mutate(model):
    m2 = model.set_species([0, 1], "Pt").remove_atoms([5]).add_atom((1, 2, 3), "Fe")
    assert model.n_atoms == 50 and m2.n_atoms == 50
    assert list(m2.species[:2]) == ["Pt", "Pt"]
    np.testing.assert_allclose(m2.positions[-1], (1, 2, 3))
    assert np.isnan(m2["intensity"][-1])
    assert [r["op"] for r in m2.provenance] == ["set_species", "remove_atoms", "add_atom"]


def test_ase_pymatgen_round_trip(model):
    m = model.with_arrays(order=np.linspace(0, 1, 50))
    back = aet.AtomicModel.from_ase(m.to_ase())
    np.testing.assert_allclose(back.positions, m.positions, atol=1e-6)
    np.testing.assert_array_equal(back.species, m.species)
    np.testing.assert_allclose(back["order"], m["order"])
    mol = m.to_pymatgen()
    assert type(mol).__name__ == "Molecule"
    np.testing.assert_allclose(mol.site_properties["order"], m["order"])
    st = m.to_pymatgen(structure=True)
    assert type(st).__name__ == "Structure"
    back2 = aet.AtomicModel.from_pymatgen(st)
    np.testing.assert_allclose(back2.positions, m.positions, atol=1e-6)
    np.testing.assert_array_equal(back2.species, m.species)


@pytest.mark.parametrize(
    ("pos", "sp", "match"),
    [
        (np.zeros((3, 2)), "Fe", r"shape \(n_atoms, 3\)"),
        (np.zeros((3, 3)), ["Fe", "Pt"], "one element symbol per atom"),
        (np.zeros((2, 3)), ["Fe", "Qq"], "unknown element"),
        (np.array([[np.nan, 0, 0]]), "Fe", "non-finite"),
    ],
)
def test_bad_model_input(pos, sp, match):
    with pytest.raises(ValueError, match=match):
        aet.AtomicModel(pos, sp)


def test_unclassified_atoms_refuse_pymatgen():
    m = aet.AtomicModel(np.zeros((1, 3)))
    assert m.species[0] == "X"
    with pytest.raises(ValueError, match="classify them first"):
        m.to_pymatgen()


def test_analysis_namespace_and_the_deprecated_aliases_agree():
    """model.analysis.* is the one home of the analysis methods; the two documented old
    names still work, warn, and give the same numbers."""
    rng = np.random.default_rng(3)
    a = 3.85
    g = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3) * a
    pos = np.concatenate([g, g + [a / 2, a / 2, 0], g + [a / 2, 0, a / 2], g + [0, a / 2, a / 2]])
    pos = pos + rng.normal(0, 0.02, pos.shape)
    sp = np.where(np.arange(len(pos)) < 2 * len(g), "Fe", "Pt")
    m = aet.AtomicModel(pos, sp)
    new = m.analysis.order_parameters("L10")
    with pytest.warns(DeprecationWarning, match=r"model.analysis.order_parameters"):
        old = m.order_parameters("L10")
    for k in new.data_vars:
        np.testing.assert_array_equal(new[k].values, old[k].values)
    with pytest.warns(DeprecationWarning, match=r"model.analysis.strain"):
        old_s = m.strain(voxel_size_A=2.0)
    new_s = m.analysis.strain(voxel_size_A=2.0)
    np.testing.assert_array_equal(new_s["e_xx"].values, old_s["e_xx"].values)
    assert aet.model.get_provenance(new_s.attrs)[-1]["op"] == "strain"
    assert not hasattr(m, "rdf") and not hasattr(m, "neighbour_pairs")
