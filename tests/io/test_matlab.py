"""MATLAB .mat: the (x, y, n) -> (angle, y, x) transposition, Euler conventions (through
rotation matrices), atomic models, and the published data in ../shared/data."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io

import aet
from aet.errors import MetadataError, MissingVariableError
from aet.io.matlab import (
    EULER_CONVENTIONS,
    euler_matrix,
    euler_to_zyz,
    matlab_to_aet,
)
from aet.testing.phantoms import rotation_matrix_zyz


def _indexed(shape):
    """A(i, j, k) = 10000 k + 100 j + i: every element names its MATLAB index."""
    i, j, k = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (10000 * k + 100 * j + i).astype(np.float32)


def _save_v73(path, variables):
    """A MATLAB v7.3 file as MATLAB writes it: HDF5, column-major (h5py sees axes reversed)."""
    with h5py.File(path, "w", userblock_size=512) as h:
        for k, v in variables.items():
            ds = h.create_dataset(k, data=np.asarray(v).T)
            ds.attrs["MATLAB_class"] = np.bytes_({"f": "single", "u": "uint8"}.get(
                np.asarray(v).dtype.kind, "double") if np.asarray(v).dtype != np.float64
                else "double")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: aet test".ljust(116))


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_projections_are_transposed_to_angle_y_x(tmp_path, version):
    proj = _indexed((7, 5, 3))  # (x, y, n)
    path = tmp_path / f"p_{version}.mat"
    (scipy.io.savemat(path, {"proj": proj}) if version == "v5"
     else _save_v73(path, {"proj": proj}))
    ts = aet.open(path, angles=[-30.0, 0.0, 30.0], pixel_size_A=0.5)
    assert ts.dims == ("angle", "y", "x") and ts.shape == (3, 5, 7)
    # projection k, row y = j, column x = i holds MATLAB's proj(i+1, j+1, k+1)
    for k, j, i in [(0, 0, 0), (2, 4, 6), (1, 3, 2)]:
        assert ts.values[k, j, i] == 10000 * k + 100 * j + i
    assert ts.provenance[-1]["params"]["variable"] == "proj"


def test_large_v73_arrays_open_lazily(tmp_path):
    from aet.testing import raise_if_dask_computes

    proj = _indexed((7, 5, 3))
    _save_v73(tmp_path / "p.mat", {"proj": proj})
    with raise_if_dask_computes():
        ts = aet.open(tmp_path / "p.mat", angles=[-30.0, 0.0, 30.0], pixel_size_A=0.5,
                      lazy_threshold_bytes=0)
        one = ts.isel(angle=slice(2, 3))
    assert ts.is_lazy and ts.shape == (3, 5, 7)
    np.testing.assert_array_equal(one.values[0], matlab_to_aet(proj)[2])
    assert not aet.open(tmp_path / "p.mat", angles=[-30.0, 0.0, 30.0],
                        pixel_size_A=0.5).is_lazy


def test_matlab_to_aet_is_the_one_reversal():
    a = _indexed((4, 3, 2))
    b = matlab_to_aet(a)
    assert b.shape == (2, 3, 4) and b[1, 2, 3] == a[3, 2, 1]
    assert matlab_to_aet(np.zeros((4, 3))).shape == (3, 4)


@pytest.mark.parametrize("convention", sorted(EULER_CONVENTIONS))
def test_converted_triples_give_the_same_rotation(convention, rng):
    src = rng.uniform([-180, -90, -180], [180, 90, 180], size=(500, 3))
    src[:5] = [[0, 0, 0], [0, 90, 0], [10, 0, 20], [0, -90, 5], [30, 180, -40]]  # locks
    zyz = euler_to_zyz(src, convention)
    want = euler_matrix(src, convention)
    got = np.stack([rotation_matrix_zyz(*np.radians(e)) for e in zyz])
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert np.all(np.abs(zyz) <= 180 + 1e-9)


def test_single_axis_tilts_and_the_sense_of_each_convention():
    tilts = np.array([[0.0, -60.0, 0.0], [0.0, 0.0, 0.0], [0.0, 45.5, 0.0]])
    for conv in ("zyz", "zyx"):  # active: the object turns by +θ about y, as in aet
        np.testing.assert_allclose(euler_to_zyz(tilts, conv), tilts, atol=1e-12)
    for conv in ("genfire", "resire"):  # the grid turns by +θ: the object by −θ
        np.testing.assert_allclose(euler_to_zyz(tilts, conv), -tilts + 0.0, atol=1e-12)


def test_genfire_triples_become_their_inverse(rng):
    """GENFIRE's object rotation Mᵀ = Rz(−ψ)·Ry(−θ)·Rz(−φ): aet's triple is (−ψ, −θ, −φ)."""
    src = rng.uniform([-170, -80, -170], [170, 80, 170], size=(200, 3))
    src[:, 1] = np.where(np.abs(src[:, 1]) < 1, 5.0, src[:, 1])  # away from gimbal lock
    np.testing.assert_allclose(euler_to_zyz(src, "genfire"), -src[:, ::-1], atol=1e-9)


def test_genfire_matches_genfire_source_formula(rng):
    """GENFIRE's calculate3Dprojection_interp builds R from (φ, θ, ψ) with this formula and
    samples the volume's transform at R'·k, i.e. the object is rotated by R itself."""
    for phi, theta, psi in rng.uniform(-90, 90, size=(20, 3)):
        c, s = (lambda a: np.cos(np.radians(a))), (lambda a: np.sin(np.radians(a)))
        r_genfire = np.array([
            [c(psi) * c(theta) * c(phi) - s(psi) * s(phi),
             c(psi) * c(theta) * s(phi) + s(psi) * c(phi), -c(psi) * s(theta)],
            [-s(psi) * c(theta) * c(phi) - c(psi) * s(phi),
             -s(psi) * c(theta) * s(phi) + c(psi) * c(phi), s(psi) * s(theta)],
            [s(theta) * c(phi), s(theta) * s(phi), c(theta)]])
        np.testing.assert_allclose(euler_matrix([phi, theta, psi], "genfire")[0], r_genfire,
                                   atol=1e-12)


def test_euler_angles_from_a_file_need_a_convention(tmp_path):
    scipy.io.savemat(tmp_path / "p.mat", {"proj": np.ones((6, 5, 3), np.float32),
                                          "angles": np.array([[0, -30, 0], [0, 0, 0.2],
                                                              [0.1, 30, 0]])})
    with pytest.raises(MetadataError, match=r"Euler angles from .*p\.mat:angles need their "
                                            r"convention: pass euler_convention= one of "
                                            r"'zyz': .*'zyx': .*'genfire': .*'resire'"):
        aet.open(tmp_path / "p.mat", pixel_size_A=1.0)
    with pytest.raises(ValueError, match=r"euler_convention must be one of .*got 'xyz'"):
        aet.open(tmp_path / "p.mat", pixel_size_A=1.0, euler_convention="xyz")
    ts = aet.open(tmp_path / "p.mat", pixel_size_A=1.0, euler_convention="zyx")
    np.testing.assert_allclose(
        np.stack([rotation_matrix_zyz(*np.radians(e)) for e in ts.euler_angles]),
        euler_matrix([[0, -30, 0], [0, 0, 0.2], [0.1, 30, 0]], "zyx"), atol=1e-12)
    assert ts.attrs["source_euler_convention"] == "zyx"
    assert ts.provenance[-1]["params"]["euler_convention"] == "zyx"
    # an (n, 3) array passed directly is already aet's ZYZ
    direct = aet.open(tmp_path / "p.mat", pixel_size_A=1.0,
                      angles=np.array([[1.0, -30, 2], [0, 0, 0], [0, 30, 0]]))
    np.testing.assert_array_equal(direct.euler_angles[0], [1.0, -30, 2])


def test_angles_from_a_separate_mat_or_text_file(tmp_path):
    scipy.io.savemat(tmp_path / "p.mat", {"proj": np.ones((6, 5, 4), np.float32)})
    scipy.io.savemat(tmp_path / "a.mat", {"whatever": np.array([[-40.0, -10, 10, 40]])})
    ts = aet.open(tmp_path / "p.mat", angles=tmp_path / "a.mat", pixel_size_A=1.0)
    np.testing.assert_array_equal(ts.angles, [-40, -10, 10, 40])
    np.savetxt(tmp_path / "a.txt", [-41.0, -11, 11, 41])
    ts = aet.open(tmp_path / "p.mat", angles=tmp_path / "a.txt", pixel_size_A=1.0)
    np.testing.assert_array_equal(ts.angles, [-41, -11, 11, 41])
    np.savetxt(tmp_path / "p.tlt", [-42.0, -12, 12, 42])  # sidecar: used when nothing else
    np.testing.assert_array_equal(aet.open(tmp_path / "p.mat", pixel_size_A=1.0).angles,
                                  [-42, -12, 12, 42])
    with pytest.raises(FileNotFoundError, match=r"angles file .*nope\.mat' does not exist"):
        aet.open(tmp_path / "p.mat", angles=tmp_path / "nope.mat", pixel_size_A=1.0)


@pytest.mark.parametrize("version", ["v5", "v7.3"])
def test_atomic_model_with_species_mapping(tmp_path, version):
    pos = np.array([[0.0, 1.0, 2.0], [3.0, 4.0, 5.0], [-1.0, -2.0, -3.0]])
    variables = {"model": pos.T, "atoms": np.array([[1, 3, 2]], np.uint8)}
    path = tmp_path / f"m_{version}.mat"
    (scipy.io.savemat(path, variables) if version == "v5" else _save_v73(path, variables))
    m = aet.open(path, species={1: "Fe", 2: "Pd", 3: "Pt"})
    np.testing.assert_array_equal(m.positions, pos)
    assert list(m.species) == ["Fe", "Pt", "Pd"]
    np.testing.assert_array_equal(m["type"], [1, 3, 2])
    assert list(aet.open(path, species=["Fe", "Pd", "Pt"]).species) == ["Fe", "Pt", "Pd"]
    unmapped = aet.open(path)
    assert set(unmapped.species) == {"X"} and list(unmapped["type"]) == [1, 3, 2]
    with pytest.raises(ValueError, match=r"species has no symbol for atom type\(s\) \[3\]"):
        aet.open(path, species={1: "Fe", 2: "Pd"})


def test_missing_variables_are_listed(tmp_path):
    scipy.io.savemat(tmp_path / "t.mat", {"atom_type": np.ones((1, 5), np.uint8)})
    with pytest.raises(MissingVariableError,
                       match=r"holds no atom position \(3 × N\) variable \(looked for model, "
                             r"model_refined, .*\); it holds: atom_type \(1, 5\) uint8"):
        aet.open(tmp_path / "t.mat", kind="model")
    with pytest.raises(MissingVariableError,
                       match=r"holds no 3D array .*; it holds: atom_type \(1, 5\) uint8"):
        aet.open(tmp_path / "t.mat", angles=[0.0], pixel_size_A=1.0)
    with pytest.raises(MissingVariableError, match=r"has no variable 'proj'; it holds: "
                                                   r"atom_type"):
        aet.open(tmp_path / "t.mat", variable="proj", angles=[0.0], pixel_size_A=1.0)
    assert issubclass(MissingVariableError, KeyError)


# --------------------------------------------------------------------------- real data
FILM = "aet_ta_film_sAET"


@pytest.fixture
def ta_film(shared_data):
    d = shared_data / FILM
    ts = aet.open(d / "Projections_area1.mat", angles=d / "angles.mat",
                  euler_convention="resire", pixel_size_A=0.3216)
    vol = aet.open(d / "ReconObj_sub1_RESIRE.mat", kind="volume", voxel_size_A=0.3216)
    return ts, vol


def _corr(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_ta_film_geometry(ta_film):
    ts, vol = ta_film
    # README: Proj_sub is (131, 61, 46) = (x, y, n); 46 Euler triples, tilt -63.0..+55.9°
    assert ts.shape == (46, 61, 131) and ts.pixel_size_A == 0.3216
    assert vol.shape == (131, 61, 131)  # (x, y, z) = (131, 61, 131) -> (z, y, x)
    # source θ runs -63.0..+55.9°; "resire" turns the grid, so aet's object tilt is −θ
    assert ts.angles.min() == pytest.approx(-55.9, abs=0.05)
    assert ts.angles.max() == pytest.approx(63.0, abs=0.05)
    # every rotation is within 0.6° of the pure y tilt (README: φ, ψ below 0.4°)
    for e in ts.euler_angles:
        r = rotation_matrix_zyz(*np.radians(e)) @ rotation_matrix_zyz(0, np.radians(e[1]), 0).T
        assert np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))) < 0.6
    p = ts.values.astype(np.float64)
    # the tilt axis is y: profiles along y (summed over x) barely change with tilt, profiles
    # along x change a lot (material of the film enters and leaves the field of view)
    def mean_corr(profiles):
        z = profiles - profiles.mean(1, keepdims=True)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        return float((z @ z.T).mean())
    assert mean_corr(p.sum(2)) > 0.9 > 0.7 > mean_corr(p.sum(1))
    # the published reconstruction summed along z is the ~0° projection, in the same (y, x)
    # orientation (no flip or transposition between the two readers)
    i0 = int(np.argmin(np.abs(ts.angles)))
    top = vol.values.sum(0)
    assert _corr(p[i0], top) > 0.95
    assert max(_corr(p[i0], top[::-1]), _corr(p[i0], top[:, ::-1])) < 0.4


def test_resire_convention_reproduces_the_published_reconstruction(ta_film):
    """Projecting RESIRE's own reconstruction with aet's convention reproduces the measured
    projections when the angles are read as "resire", clearly better than as "zyx"."""
    from tests.reference.projector import project_volume_reference

    ts, vol = ta_film
    v = vol.values.astype(np.float64)
    raw = scipy.io.loadmat(ts.provenance[-1]["params"]["path"].replace(
        "Projections_area1.mat", "angles.mat"))["angle"].astype(np.float64)
    idx = [10, 15, 30, 35]  # ±15..41°: clear tilt, film still mostly in the sub-area
    as_resire = [_corr(ts.values[k], project_volume_reference(v, ts.euler_angles[k]))
                 for k in idx]
    as_zyx = [_corr(ts.values[k], project_volume_reference(v, euler_to_zyz(raw[k], "zyx")[0]))
              for k in idx]
    assert min(as_resire) > 0.75
    assert np.mean(as_resire) > np.mean(as_zyx) + 0.15


def test_published_models(shared_data):
    pm = shared_data / "published_models"
    hea = aet.open(pm / "aet_hea_nucleation_yuan" / "Final_atomic_model_HEA_4_nanoparticle.mat",
                   species={1: "Ni", 2: "Pd", 3: "Pt"})
    assert hea.species_counts() == {"Ni": 224, "Pd": 805, "Pt": 472}  # README: 1501 atoms
    assert np.all(np.abs(hea.positions) < 25)  # Å, centred (README: ~±21 Å)
    mg = aet.open(pm / "aet_metallic_glass_yang2021" / "final_atom_coord_inA.mat",
                  types=pm / "aet_metallic_glass_yang2021" / "final_atom_types.mat",
                  species={1: "Co", 2: "Pd", 3: "Pt"})
    assert mg.species_counts() == {"Co": 8322, "Pd": 6896, "Pt": 3138}  # README counts
    mea = aet.open(pm / "aet_mea_hea" / "model_HEA1.mat",
                   types=pm / "aet_mea_hea" / "atoms_HEA1.mat")
    assert mea.n_atoms == 5672 and set(mea.species) == {"X"}
    ta = aet.open(pm / "aet_amorphous_yuan2022" / "Final_atomic_model_Ta_film.mat",
                  species="Ta")
    assert ta.n_atoms == 8284
    z = ta.positions[:, 2]
    assert z.max() - z.min() < 50 < ta.positions[:, 0].max() - ta.positions[:, 0].min()
    pb = aet.open(pm / "pdpt_coreshell_li2023" / "PB.xyz")
    assert pb.n_atoms == 12038 and set(pb.species) == {"Pd", "Pt"}
    with pytest.raises(MissingVariableError, match=r"holds no atom type variable .*it holds: "
                                                   r"final_atom_coord_inAngstrom \(3, 18356\)"):
        aet.open(pm / "aet_metallic_glass_yang2021" / "final_atom_coord_inA.mat",
                 species=["Co", "Pd", "Pt"])


def test_hea_angles_file_needs_and_takes_a_convention(shared_data, tmp_path):
    angles = shared_data / "published_models" / "aet_hea_nucleation_yuan" / "angles_HEA_4.mat"
    scipy.io.savemat(tmp_path / "p.mat", {"proj": np.ones((8, 8, 51), np.float32)})
    with pytest.raises(MetadataError, match="need their convention"):
        aet.open(tmp_path / "p.mat", angles=angles, pixel_size_A=0.347)
    ts = aet.open(tmp_path / "p.mat", angles=angles, pixel_size_A=0.347,
                  euler_convention="genfire")
    raw = scipy.io.loadmat(angles)["data"].astype(np.float64)
    np.testing.assert_allclose(
        np.stack([rotation_matrix_zyz(*np.radians(e)) for e in ts.euler_angles]),
        euler_matrix(raw, "genfire"), atol=1e-9)


def test_resire_example_input(shared_data):
    d = shared_data / "aet_resire_example"
    ts = aet.open(d / "example_projections.mat", angles=d / "angles.mat",
                  euler_convention="resire", pixel_size_A=0.3216)
    raw = scipy.io.loadmat(d / "angles.mat")["refined_angles"].astype(np.float64)
    assert ts.shape == (59, 61, 61)  # README: (61, 61, 59), theta -74.3..+66.4
    assert raw[:, 1].min() == pytest.approx(-74.3, abs=0.05)
    assert ts.angles.max() == pytest.approx(74.3, abs=0.6)  # object tilt = −θ (+ψ about x)
    np.testing.assert_allclose(
        np.stack([rotation_matrix_zyz(*np.radians(e)) for e in ts.euler_angles]),
        euler_matrix(raw, "resire"), atol=1e-9)
