"""Lattice fit, displacements and strain against planted ground truth (built with ASE)."""

import numpy as np
import pytest

import aet
from aet.analysis import fit_lattice, local_strain, misorientation_deg, order_parameters, strain
from aet.analysis._kernels import splat_values
from aet.testing.analysis import eulerian_strain, particle, planted_strain
from aet.testing.phantoms import rotation_matrix_zyz

ROT = rotation_matrix_zyz(0.3, 0.7, -1.1)
E_UNIFORM = np.array([[0.010, 0.002, 0.0], [0.002, -0.004, 0.001], [0.0, 0.001, 0.006]])
COMPONENTS = (("xx", 0, 0), ("yy", 1, 1), ("zz", 2, 2), ("xy", 0, 1), ("xz", 0, 2),
              ("yz", 1, 2))


def test_fit_fcc_recovers_constant_orientation_and_sites():
    m = particle("fcc", a_A=3.92, radius_A=14, species=("Pt", "Pt"), rotation=ROT,
                 jitter_A=0.05, seed=1)
    fit = fit_lattice(m.data, "fcc")
    assert abs(fit.a_A - 3.92) < 2e-3
    assert misorientation_deg(fit.rotation[None], ROT[None])[0] < 0.3
    assert fit.inlier.all()
    # site assignment: the same partition into sublattices as the truth (up to relabelling)
    true = m["true_sublattice"]
    agree = max(np.mean(fit.sublattice == perm[true])
                for perm in _perms4())
    assert agree == 1.0
    # residuals are the jitter: rms ≈ sqrt(3) * 0.05 Å
    assert abs(fit.rms_residual_A() - np.sqrt(3) * 0.05) < 0.01


def _perms4():
    import itertools
    return [np.array(p) for p in itertools.permutations(range(4))]


def test_fit_L10_chooses_variant_and_tetragonality():
    m = particle("L10", a_A=3.85, c_A=3.71, radius_A=14, variant=2, rotation=ROT)
    fit = fit_lattice(m.data, "L10")
    assert abs(fit.a_A - 3.85) < 1e-6 and abs(fit.c_A - 3.71) < 1e-6
    # the fitted c axis is the planted one (crystal z rotated)
    assert abs(abs(fit.rotation[:, 2] @ ROT[:, 2]) - 1) < 1e-9
    # A (Fe) on sublattices 0 and 3 of the returned cell
    onA = np.isin(fit.sublattice, (0, 3))
    assert np.all((m.species == "Fe") == onA)
    assert fit.species == ("Fe", "Pt")


@pytest.mark.parametrize("structure,builder", [("bcc", "W"), ("hcp", "Mg")])
def test_fit_bcc_hcp(structure, builder):
    from ase.build import bulk
    a = {"bcc": 3.165, "hcp": 3.21}[structure]
    at = bulk(builder, structure, a=a, cubic=structure == "bcc").repeat((5, 5, 5))
    pos = (at.positions - at.positions.mean(0)) @ ROT.T
    fit = fit_lattice(aet.AtomicModel(pos, builder).data, structure)
    assert abs(fit.a_A - a) < 1e-6
    assert fit.rms_residual_A() < 1e-6


def test_fit_lattice_errors():
    m = particle("fcc", radius_A=6)
    with pytest.raises(ValueError, match="structure must be one of"):
        fit_lattice(m.data, "diamond")
    with pytest.raises(ValueError, match="labels has shape"):
        fit_lattice(m.data, labels=[0, 1])
    with pytest.raises(ValueError, match="a_A must be a positive"):
        fit_lattice(m.data, a_A=-1.0)


def _strain_errors(st, pos_deformed, pos0, fn, sigma):
    """Per-component RMS / max error inside the particle (kernel weight ≥ 0.8 of bulk) against
    the analytic strain averaged with the same Gaussian kernel (the resolution-limited truth),
    taken w.r.t. the deformed positions as a map from measured atoms is (Eulerian)."""
    ea = eulerian_strain(fn(pos0))
    ea = ROT[None] @ ea @ ROT.T[None]
    pa = np.ascontiguousarray(pos_deformed @ ROT.T)
    origin = np.array([st.z.values[0], st.y.values[0], st.x.values[0]])
    inside = st.weight.values >= 0.8
    res = {}
    for name, i, j in COMPONENTS:
        num, den = splat_values(pa, np.ascontiguousarray(ea[:, i, j]), origin,
                                float(st.attrs["voxel_size_A"]),
                                np.array(st.e_xx.shape, dtype=np.int64), sigma, 3 * sigma)
        truth = num / np.maximum(den, 1e-300)
        d = st[f"e_{name}"].values[inside] - truth[inside]
        res[name] = (float(np.sqrt(np.mean(d ** 2))), float(np.abs(d).max()),
                     float(np.mean(d)))
    return res, int(inside.sum())


def test_strain_planted_uniform_and_radial_no_jitter():
    m = particle("fcc", a_A=3.92, radius_A=20, species=("Pt", "Pt"))
    pos0 = m.positions
    pos, fn = planted_strain(pos0, uniform=E_UNIFORM, radial_amplitude=0.005, radius_A=20)
    st = aet.AtomicModel(pos @ ROT.T, "Pt").analysis.strain(a_A=3.92)
    assert st.attrs["sigma_A"] == pytest.approx(4.2466, abs=1e-3)
    errs, n_in = _strain_errors(st, pos, pos0, fn, st.attrs["sigma_A"])
    assert n_in > 5000
    for name, (rms, mx, mean) in errs.items():
        assert rms < 1e-3, (name, rms)
        assert abs(mean) < 5e-4, (name, mean)
        assert mx < 1e-3, (name, mx)
    assert st.e_xx.dims == ("z", "y", "x") and float(st.x.sel(x=0).item()) == 0.0
    assert np.isnan(st.e_xx.values[~st.mask.values]).all()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_strain_planted_with_20pm_jitter(seed):
    """Issue target: 1 % uniform + radial strain, 20 pm per-axis jitter, every component within
    2e-3 (RMS inside the particle, kernel weight ≥ 0.8) and unbiased to 1e-3.

    At the default σ (FWHM 1 nm) 20 pm of noise alone leaves 2.2e-3 (1σ) per normal component
    (``strain_noise``; checked below), so no estimator meets 2e-3 at that resolution; σ is
    chosen the way a user would, from the position precision: ``sigma_for_precision(1e-3)``
    = 5.83 Å (FWHM 1.4 nm). Measured RMS 1.2–2.0e-3 (worst component, seeds 1–6); the deep
    interior (weight ≥ 0.95) 0.6–1.6e-3."""
    from aet.analysis import sigma_for_precision, strain_noise
    rho = 4 / 3.92 ** 3
    assert strain_noise(position_noise_A=0.2, density_per_A3=rho)["normal"] > 2e-3
    sigma = sigma_for_precision(1e-3, position_noise_A=0.2, density_per_A3=rho)
    assert sigma == pytest.approx(5.83, abs=0.01)
    m = particle("fcc", a_A=3.92, radius_A=20, species=("Pt", "Pt"))
    pos0 = m.positions
    pos, fn = planted_strain(pos0, uniform=E_UNIFORM, radial_amplitude=0.005, radius_A=20)
    pos = pos + np.random.default_rng(seed).normal(0, 0.20, pos.shape)  # 20 pm per axis
    st = strain(aet.AtomicModel(pos @ ROT.T, "Pt").data, a_A=3.92, sigma_A=sigma,
                voxel_size_A=2.0)
    errs, n_in = _strain_errors(st, pos, pos0, fn, sigma)
    assert n_in > 500
    for name, (rms, _mx, mean) in errs.items():
        assert rms < 2e-3, (name, rms)
        assert abs(mean) < 1e-3, (name, mean)


def test_sigma_for_precision_inverts_strain_noise():
    from aet.analysis import sigma_for_precision, strain_noise
    for prec in (5e-4, 1e-3, 3e-3):
        s = sigma_for_precision(prec, position_noise_A=0.15, density_per_A3=0.06)
        got = strain_noise(s, position_noise_A=0.15, density_per_A3=0.06)["normal"]
        assert got == pytest.approx(prec, rel=1e-12)
    with pytest.raises(ValueError, match="strain_precision must be > 0"):
        sigma_for_precision(0.0, position_noise_A=0.2, density_per_A3=0.06)


def test_local_strain_uniform_exact():
    m = particle("fcc", a_A=3.92, radius_A=12, species=("Pt", "Pt"))
    pos, _ = planted_strain(m.positions, uniform=E_UNIFORM, radial_amplitude=0.0, radius_A=12)
    out = aet.AtomicModel(pos @ ROT.T, "Pt").analysis.local_strain(a_A=3.92)
    Es = ROT @ E_UNIFORM @ ROT.T
    for name, i, j in COMPONENTS:
        v = out[f"strain_{name}"]
        ok = np.isfinite(v)
        assert ok.mean() > 0.95
        # small-strain measure: second-order terms only (|E|² ~ 1e-4)
        np.testing.assert_allclose(v[ok], Es[i, j], atol=2e-4)
    assert out.provenance[-1]["op"] == "local_strain"


def test_strain_errors():
    m = particle("fcc", radius_A=8)
    with pytest.raises(ValueError, match="sigma_A must be a positive"):
        strain(m.data, sigma_A=0)
    with pytest.raises(ValueError, match="mask_threshold must be in"):
        strain(m.data, mask_threshold=2)
    with pytest.raises(TypeError, match="lattice must be a LatticeFit"):
        local_strain(m.data, lattice={0: "nope"})


def test_fit_per_grain_and_strain_with_labels():
    from scipy.spatial import cKDTree

    from aet.testing.analysis import fcc_sites
    p1, _, _ = fcc_sites(3.92, 14)
    R2 = rotation_matrix_zyz(0.0, 0.0, np.radians(30))
    p2 = p1 @ R2.T
    pos = np.concatenate([p1[p1[:, 0] < 0], p2[p2[:, 0] >= 0]])
    lab = np.r_[np.zeros((p1[:, 0] < 0).sum(), int), np.ones((p2[:, 0] >= 0).sum(), int)]
    d, _ = cKDTree(pos[lab == 0]).query(pos)
    keep = ~((lab == 1) & (d < 2.0))
    pos, lab = pos[keep], lab[keep]
    pos_s = pos @ (np.eye(3) + E_UNIFORM).T  # the same uniform strain in both grains
    m = aet.AtomicModel(pos_s @ ROT.T, "Pt")
    fits = m.analysis.fit_lattice("fcc", labels=lab)
    assert set(fits) == {0, 1}
    assert misorientation_deg(fits[0].rotation[None], ROT[None])[0] < 0.5
    assert misorientation_deg(fits[1].rotation[None], (ROT @ R2)[None])[0] < 0.5
    out = m.analysis.local_strain(labels=lab, a_A=3.92)
    Es = ROT @ E_UNIFORM @ ROT.T
    inner = np.abs(pos[:, 0]) > 4.0  # away from the grain boundary
    for name, i, j in COMPONENTS:
        v = out[f"strain_{name}"][inner]
        ok = np.isfinite(v)
        assert np.median(np.abs(v[ok] - Es[i, j])) < 3e-4, name


def test_facade_methods_record_provenance():
    m = particle("L10", radius_A=9)
    d = m.analysis.defects("L10")
    assert d.provenance[-1]["op"] == "defects" and not d["antisite"].any()
    b = m.analysis.bond_order()
    assert "Qbar6" in b
    r = m.analysis.rdf(r_max_A=5.0)
    assert "g_Fe_Pt" in r and "provenance" in r.attrs
    st = m.analysis.strain(voxel_size_A=2.0)
    assert '"op": "strain"' in st.attrs["provenance"]


def test_region_fit_and_strain_on_a_volume_grid():
    m = particle("fcc", a_A=3.92, radius_A=12, species=("Pt", "Pt"), rotation=ROT)
    inner = np.linalg.norm(m.positions, axis=1) < 8
    fit = fit_lattice(m.data, "fcc", region=inner)
    np.testing.assert_array_equal(fit.atoms, np.flatnonzero(inner))
    assert abs(fit.a_A - 3.92) < 1e-9
    with pytest.raises(ValueError, match="pass either labels"):
        fit_lattice(m.data, region=inner, labels=np.zeros(m.n_atoms, int))
    pos, _ = planted_strain(m.positions @ ROT, uniform=E_UNIFORM, radial_amplitude=0.0,
                            radius_A=12)
    vol = aet.Volume(np.zeros((21, 22, 23)), voxel_size_A=1.5)
    st = strain(aet.AtomicModel(pos @ ROT.T, "Pt").data, a_A=3.92, like=vol)
    for d in ("z", "y", "x"):
        np.testing.assert_array_equal(st[d].values, vol.data[d].values)
    Es = ROT @ E_UNIFORM @ ROT.T
    inside = st.mask.values
    assert inside.sum() > 100
    np.testing.assert_allclose(st.e_xy.values[inside], Es[0, 1], atol=2e-4)
    with pytest.raises(TypeError, match="like must be a Volume"):
        strain(m.data, like=np.zeros((3, 3, 3)))


def test_fit_robust_to_tracing_errors():
    """5 % atoms missing and 5 % spurious atoms at random places (tracing errors)."""
    m = particle("L10", a_A=3.85, radius_A=16, rotation=ROT, jitter_A=0.1, seed=1)
    rng = np.random.default_rng(0)
    keep = rng.random(m.n_atoms) > 0.05
    pos, sp = m.positions[keep], m.species[keep]
    extra = rng.uniform(-14, 14, (int(0.05 * len(pos)), 3))
    pos = np.r_[pos, extra]
    sp = np.r_[sp, rng.choice(["Fe", "Pt"], len(extra))]
    fit = fit_lattice(aet.AtomicModel(pos, sp).data, "L10")
    assert abs(fit.a_A - 3.85) < 3e-3 and abs(fit.c_A - 3.85) < 3e-3
    assert misorientation_deg(fit.rotation[None], ROT[None])[0] < 0.5
    assert fit.inlier[:keep.sum()].mean() > 0.99
    op = order_parameters(aet.AtomicModel(pos, sp).data, "L10")
    assert np.nanmedian(op["order_L10"].values[:keep.sum()]) == 1.0


@pytest.mark.parametrize("sigma", [4.25, 6.0])
def test_strain_noise_matches_prediction(sigma):
    """Pure noise (no strain, 20 pm per axis): the measured scatter deep inside matches the
    continuum formula of strain_noise within 25 %."""
    from aet.analysis import strain_noise
    a = 3.92
    m = particle("fcc", a_A=a, radius_A=22, species=("Pt", "Pt"), rotation=ROT, jitter_A=0.2,
                 seed=7)
    st = strain(m.data, a_A=a, sigma_A=sigma, voxel_size_A=2.0)
    deep = st.weight.values >= 0.97
    assert deep.sum() > 30
    pred = strain_noise(sigma, position_noise_A=0.2, density_per_A3=4 / a ** 3)
    normal = np.sqrt(np.mean([np.mean(st[f"e_{c}"].values[deep] ** 2) for c in
                              ("xx", "yy", "zz")]))
    shear = np.sqrt(np.mean([np.mean(st[f"e_{c}"].values[deep] ** 2) for c in
                             ("xy", "xz", "yz")]))
    assert normal == pytest.approx(pred["normal"], rel=0.25)
    assert shear == pytest.approx(pred["shear"], rel=0.25)
