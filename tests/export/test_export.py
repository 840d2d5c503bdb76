"""ASE / pymatgen round trips with analysis arrays, and DFT input sets that parse back."""

import json

import numpy as np
import pytest

import aet
from aet.analysis import fit_lattice
from aet.export import from_ase, from_pymatgen, to_ase, to_pymatgen
from aet.export.dft import (
    carve_cluster,
    cluster_inputs,
    cluster_structure,
    periodic_cell,
    periodic_inputs,
    write_inputs,
)
from aet.testing.analysis import particle
from aet.testing.phantoms import rotation_matrix_zyz

ROT = rotation_matrix_zyz(0.3, 0.7, -1.1)


@pytest.fixture(scope="module")
def fept():
    m = particle("L10", a_A=3.85, c_A=3.71, radius_A=10, rotation=ROT, jitter_A=0.03, seed=4)
    op = m.analysis.order_parameters("L10")
    rng = np.random.default_rng(0)
    return aet.AtomicModel(op).with_arrays(
        uncertainty=rng.uniform(0.01, 0.05, m.n_atoms),
        initial_magmom=np.where(m.species == "Fe", 3.0, 0.4))


def test_ase_round_trip_keeps_positions_species_arrays(fept):
    atoms = to_ase(fept.data)
    np.testing.assert_allclose(atoms.get_initial_magnetic_moments(), fept["initial_magmom"])
    np.testing.assert_allclose(atoms.arrays["order_L10"], fept["order_L10"])
    back = from_ase(atoms)
    assert np.abs(back["position"].values - fept.positions).max() < 1e-6
    assert (back["species"].values == fept.species).all()
    for k in ("order_L10", "uncertainty", "initial_magmom", "variant_L10"):
        np.testing.assert_array_equal(back[k].values, fept[k])
    atoms2 = to_ase(fept.data, magmoms={"Fe": 2.5})
    assert set(atoms2.get_initial_magnetic_moments().tolist()) == {2.5, 0.0}
    with pytest.raises(ValueError, match="magmoms has shape"):
        to_ase(fept.data, magmoms=[1.0, 2.0])


@pytest.mark.parametrize("structure", [False, True])
def test_pymatgen_round_trip(fept, structure):
    obj = to_pymatgen(fept.data, structure=structure)
    assert obj.site_properties["magmom"][0] == fept["initial_magmom"][0]
    back = from_pymatgen(obj)
    assert np.abs(back["position"].values - fept.positions).max() < 1e-6
    assert (back["species"].values == fept.species).all()
    np.testing.assert_allclose(back["initial_magmom"].values, fept["initial_magmom"])
    np.testing.assert_allclose(back["uncertainty"].values, fept["uncertainty"])


def test_carve_cluster(fept):
    cl = carve_cluster(fept.data, radius_A=5.0, atoms=[0, 1])
    c = fept.positions[[0, 1]].mean(0)
    expect = np.flatnonzero(np.linalg.norm(fept.positions - c, axis=1) <= 5.0)
    np.testing.assert_array_equal(cl["source_index"].values, expect)
    st = cluster_structure(cl, vacuum_A=7.0)
    span = np.ptp(cl["position"].values, axis=0)
    np.testing.assert_allclose(st.lattice.abc, span + 14.0)
    with pytest.raises(ValueError, match="radius_A must be a positive"):
        carve_cluster(fept.data, radius_A=0)
    with pytest.raises(ValueError, match="grain= needs labels"):
        carve_cluster(fept.data, radius_A=5, grain=0)


def test_periodic_cell_from_grain_fit(fept):
    fit = fit_lattice(fept.data, "L10")
    st = periodic_cell(fit, fept.data)
    assert st.composition.reduced_formula == "FePt"
    a, b, c = st.lattice.abc
    assert abs(a - 3.85) < 0.01 and abs(b - 3.85) < 0.01 and abs(c - 3.71) < 0.01
    # Fe and Pt alternate along c: the two Fe share z
    fe_z = [s.frac_coords[2] for s in st if s.specie.symbol == "Fe"]
    assert fe_z[0] == fe_z[1]


def _parse(folder, name):
    from pymatgen.io.vasp import Incar, Kpoints, Poscar
    d = folder / name
    return (Poscar.from_file(d / "POSCAR"), Incar.from_file(d / "INCAR"),
            Kpoints.from_file(d / "KPOINTS"), (d / "POTCAR.spec").read_text().split())


def test_magnetic_anisotropy_vasp_and_qe_periodic(fept, tmp_path):
    fit = fit_lattice(fept.data, "L10")
    out = periodic_inputs(fept.data, fit, tmp_path / "mae", axes=[(0, 0, 1), (1, 0, 0)],
                          magmom={"Pt": 0.35}, potcar_symbols={"Pt": "Pt_pv"})
    man = json.loads((out / "manifest.json").read_text())
    names = [c["name"] for c in man["calculations"]]
    assert names == ["vasp/00_scf_collinear", "vasp/01_soc_001", "vasp/02_soc_100",
                     "qe/01_soc_001", "qe/02_soc_100"]
    pos, inc, kp, spec = _parse(out, "vasp/00_scf_collinear")
    assert spec == ["Fe_pv", "Pt_pv"]
    assert inc["ISPIN"] == 2 and inc["MAGMOM"] == [3.0, 3.0, 0.35, 0.35]
    assert inc.get("LSORBIT") is None and inc["LCHARG"] is True
    assert tuple(kp.kpts[0]) == (11, 11, 11)
    assert pos.structure.composition.reduced_formula == "FePt"
    for name, axis in (("vasp/01_soc_001", [0, 0, 1]), ("vasp/02_soc_100", [1, 0, 0])):
        pos, inc, kp, spec = _parse(out, name)
        assert inc["LSORBIT"] is True and inc["SAXIS"] == axis
        assert inc["ICHARG"] == 11 and inc["ISYM"] == -1
        assert inc["MAGMOM"] == [[0, 0, 3.0], [0, 0, 3.0], [0, 0, 0.35], [0, 0, 0.35]]
    qe = (out / "qe/02_soc_100/pw.in").read_text()
    assert "lspinorb         = .true." in qe and "noncolin         = .true." in qe
    assert "angle1(1)        = 90.0" in qe and "angle2(1)        = 0.0" in qe
    # pw.x reads a spin polarisation of the valence electrons in [-1, 1] (INPUT_PW), not μB:
    # moment / z_valence of the default PSlibrary data sets (Fe 3s2 3p6 3d6 4s2: 16,
    # Pt 5s2 5p6 5d8 6s2: 18)
    start = _starting_magnetization(qe)
    assert start == pytest.approx({1: 3.0 / 16, 2: 0.35 / 18})
    assert all(-1 <= v <= 1 for v in start.values())
    soc = [c for c in man["calculations"] if c["name"] == "qe/02_soc_100"][0]
    assert soc["settings"]["starting_magnetization"] == pytest.approx({"Fe": 0.1875,
                                                                       "Pt": 0.35 / 18})
    import ase.io
    back = ase.io.read(out / "qe/01_soc_001/pw.in", format="espresso-in")
    assert sorted(back.get_chemical_symbols()) == ["Fe", "Fe", "Pt", "Pt"]


def _starting_magnetization(text):
    import re

    return {int(m.group(1)): float(m.group(2)) for m in re.finditer(
        r"starting_magnetization\((\d+)\)\s*=\s*([-+0-9.eE]+)", text)}


def test_qe_starting_magnetization_range_and_valence(fept, tmp_path):
    from aet.export.dft import qe_starting_magnetization

    st = periodic_cell(fit_lattice(fept.data, "L10"), fept.data)
    # a moment above the valence charge cannot be a spin polarisation: refused, nothing written
    with pytest.raises(ValueError, match=r"initial moment of Fe \(17\.0 μB\) exceeds its 16 "
                                         r"valence electrons"):
        write_inputs(tmp_path / "big", st, codes=["qe"], magmom={"Fe": 17.0})
    assert not (tmp_path / "big").exists()
    # a pseudopotential of the user's own needs its z_valence
    with pytest.raises(ValueError, match=r"pass qe_valence=\{'Fe': <z_valence of that file>\}"):
        write_inputs(tmp_path / "pp", st, codes=["qe"], pseudopotentials={"Fe": "Fe.pbe-n.UPF"})
    out = write_inputs(tmp_path / "pp", st, codes=["qe"], preset="scf",
                       pseudopotentials={"Fe": "Fe.pbe-n.UPF"}, qe_valence={"Fe": 8})
    qe = (out / "qe/00_scf_collinear/pw.in").read_text()
    assert _starting_magnetization(qe) == pytest.approx({1: 3.0 / 8, 2: 0.4 / 18})
    assert "nspin            = 2" in qe and "Fe.pbe-n.UPF" in qe
    assert qe_starting_magnetization(["Fe", "Au"], [-2.0, 0.0]) == {"Fe": -0.125, "Au": 0.0}
    with pytest.raises(ValueError, match="no default z_valence for Gd"):
        qe_starting_magnetization(["Gd"], [7.0])


def test_cluster_inputs_gamma_only(fept, tmp_path):
    out = cluster_inputs(fept.data, tmp_path / "cl", radius_A=6.0, codes=["vasp"],
                         preset="scf")
    man = json.loads((out / "manifest.json").read_text())
    assert man["periodic"] is False and [c["name"] for c in man["calculations"]] == \
        ["vasp/00_scf_collinear"]
    pos, inc, kp, _ = _parse(out, "vasp/00_scf_collinear")
    assert tuple(kp.kpts[0]) == (1, 1, 1) and inc["ISMEAR"] == 0
    n = int((np.linalg.norm(fept.positions - fept.positions.mean(0), axis=1) <= 6.0).sum())
    assert len(pos.structure) == n
    # carved positions survive to 1e-6 Å (up to the box shift)
    shift = np.array(json.loads(cluster_structure(carve_cluster(
        fept.data, radius_A=6.0)).properties["aet_origin_shift_A"]))
    cart = np.sort(pos.structure.cart_coords + shift, axis=0)
    sel = np.linalg.norm(fept.positions - fept.positions.mean(0), axis=1) <= 6.0
    assert np.abs(cart - np.sort(fept.positions[sel], axis=0)).max() < 1e-6
    # atomic: an existing folder is refused unless overwrite
    with pytest.raises(FileExistsError):
        cluster_inputs(fept.data, out, radius_A=6.0, codes=["vasp"])
    assert not [p for p in tmp_path.iterdir() if "aet-tmp" in p.name]


def test_write_inputs_errors(fept, tmp_path):
    st = periodic_cell(fit_lattice(fept.data, "L10"), fept.data)
    with pytest.raises(ValueError, match="preset must be one of"):
        write_inputs(tmp_path / "x", st, preset="md")
    with pytest.raises(ValueError, match="codes must be a non-empty subset"):
        write_inputs(tmp_path / "x", st, codes=["abinit"])
    with pytest.raises(ValueError, match="axes must be a list of 3-vectors"):
        write_inputs(tmp_path / "x", st, axes=[1, 0])


def test_cluster_axes_from_crystal_frame(fept, tmp_path):
    from pymatgen.io.vasp import Incar
    fit = fit_lattice(fept.data, "L10")
    out = cluster_inputs(fept.data, tmp_path / "c", radius_A=5.0, fit=fit, codes=["vasp"],
                         axes=[(0, 0, 1)])
    man = json.loads((out / "manifest.json").read_text())
    name = [c["name"] for c in man["calculations"] if "soc" in c["name"]][0]
    inc = Incar.from_file(out / name / "INCAR")
    # SAXIS is the fitted c axis in the sample frame = the planted one (ROT's third column)
    assert abs(abs(np.dot(inc["SAXIS"], ROT[:, 2])) - 1) < 1e-6


def test_model_dft_inputs_method(fept, tmp_path):
    out = fept.dft_inputs(tmp_path / "dft", radius_A=6.0, preset="scf", codes=("vasp", "qe"))
    man = json.loads((out / "manifest.json").read_text())
    n = int((np.linalg.norm(fept.positions - fept.positions.mean(0), axis=1) <= 6.0).sum())
    assert man["n_atoms"] == n and man["preset"] == "scf" and man["periodic"] is False
    assert [c["name"] for c in man["calculations"]] == ["vasp/00_scf_collinear",
                                                        "qe/00_scf_collinear"]
    whole = fept.dft_inputs(tmp_path / "all", codes=["vasp"], preset="scf")
    assert json.loads((whole / "manifest.json").read_text())["n_atoms"] == fept.n_atoms
    # the user's file in the folder survives a rewrite; without overwrite it is refused
    (out / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        fept.dft_inputs(out, radius_A=6.0, preset="scf")
    fept.dft_inputs(out, radius_A=5.0, preset="scf", codes=["vasp"], overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and not (out / "qe").exists()
