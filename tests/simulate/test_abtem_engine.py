"""The abTEM image engine: its potential is abTEM's, its response scales as the calibrated
exponent, its geometry is the recorded degradations', and its kernel equals its twin."""

from __future__ import annotations

import math

import numpy as np
import pytest

import aet
from aet.simulate import (
    AbtemEngine,
    _kernels,
    benchmark_from_model,
    fept_benchmark,
    fept_film_benchmark,
)
from aet.simulate.abtem_engine import V_REF, calibrated_scale
from aet.simulate.forward import project_positions
from tests.reference.simulate import deposit_radial_reference

abtem = pytest.importorskip("abtem")


def _abtem_potential(xy, species, *, h, n, parametrization, sigma):
    """abTEM's own infinite-projection potential (Debye–Waller smeared by ``sigma``) of atoms
    at ``xy`` (x, y Å, grid point (0, 0) at the origin) on an n × n grid; returns (y, x)."""
    from abtem.parametrizations import KirklandParametrization, LobatoParametrization
    from ase import Atoms

    cls = {"lobato": LobatoParametrization, "kirkland": KirklandParametrization}
    par = cls[parametrization](sigmas=sigma)
    L = n * h
    pos = np.column_stack([xy, np.full(len(xy), 5.0)])
    atoms = Atoms(list(species), positions=pos, cell=(L, L, 10.0))
    with abtem.config.set({"diagnostics.progress_bar": False}):
        pot = abtem.Potential(atoms, gpts=(n, n), sampling=h, projection="infinite",
                              parametrization=par, slice_thickness=10.0)
        arr = pot.build(lazy=False).array
    return np.asarray(arr, dtype=np.float64).reshape(n, n).T


def _engine_potential(engine, xy, species, *, h, n):
    symbols, kind = np.unique(np.asarray(species), return_inverse=True)
    tables = np.stack([engine.radial_table(s) for s in symbols])
    out = np.zeros((1, n, n))
    _kernels.deposit_radial(np.ascontiguousarray(xy[None], dtype=np.float64),
                            kind.astype(np.int64), tables, 0.0025, np.zeros((1, 2)), h, out)
    return out[0]


@pytest.mark.parametrize("parametrization", ["lobato", "kirkland"])
def test_single_atom_integrates_to_abtems_scattering_factor_at_zero(parametrization):
    """∫ V d²r of the engine's (thermally smeared) atom = abTEM's projected scattering
    factor at k = 0, the potential integral; the smear conserves it."""
    from abtem.parametrizations import validate_parametrization

    eng = AbtemEngine(parametrization=parametrization)
    par = validate_parametrization(parametrization)
    for sym in ("Fe", "Pt", "Co", "Pd", "C"):
        t = eng.radial_table(sym)
        r = np.arange(len(t)) * 0.0025
        integral = np.trapezoid(t * 2 * math.pi * r, r)
        f0 = float(par.projected_scattering_factor(sym)(np.array([0.0]))[0])
        # the 4 Å cut-off drops < 0.2 % of the integral
        assert integral == pytest.approx(f0, rel=2e-3), sym


@pytest.mark.parametrize("parametrization", ["lobato", "kirkland"])
def test_rotated_cluster_potential_equals_abtem_potential(parametrization):
    """The sum of per-species radial tables over a 3D-rotated cluster equals
    ``abtem.Potential(..., projection="infinite")`` (atoms put on grid nodes, where abTEM's
    delta placement is exact) to 0.2 %."""
    rng = np.random.default_rng(3)
    pos = rng.uniform(-3.5, 3.5, (14, 3))
    species = rng.choice(["Fe", "Pt", "Pd", "C"], 14)
    xy = project_positions(pos, [(25.0, 40.0, -60.0)])[0]
    h, n = 0.05, 300
    L = n * h
    xy = np.round((xy + L / 2) / h) * h  # grid nodes of both grids
    eng = AbtemEngine(parametrization=parametrization)
    mine = _engine_potential(eng, xy, species, h=h, n=n)
    ref = _abtem_potential(xy, species, h=h, n=n, parametrization=parametrization,
                           sigma=eng.thermal_sigma_A)
    assert np.linalg.norm(mine - ref) / np.linalg.norm(ref) < 2e-3
    assert np.abs(mine - ref).max() / ref.max() < 3e-3


def test_off_grid_atoms_agree_with_abtem_as_its_grid_refines():
    """Off the grid nodes abTEM places atoms by bilinear deltas; its error shrinks with the
    grid spacing and the engine's exact placement is what it converges to."""
    rng = np.random.default_rng(4)
    xy0 = rng.uniform(-3.0, 3.0, (6, 2))
    species = ["Pt", "Fe", "Pt", "Fe", "Pt", "Fe"]
    eng = AbtemEngine()
    errs = []
    for h, n in ((0.05, 240), (0.025, 480)):
        xy = xy0 + n * h / 2
        mine = _engine_potential(eng, xy, species, h=h, n=n)
        ref = _abtem_potential(xy, species, h=h, n=n, parametrization="lobato",
                               sigma=eng.thermal_sigma_A)
        errs.append(np.linalg.norm(mine - ref) / np.linalg.norm(ref))
    assert errs[1] < 0.35 * errs[0] and errs[1] < 5e-3


def test_deposit_kernel_equals_its_numpy_twin():
    rng = np.random.default_rng(5)
    eng = AbtemEngine(cutoff_A=1.5)
    tables = np.stack([eng.radial_table("Fe"), eng.radial_table("Pt")])
    for ny, nx in ((41, 40), (33, 52)):
        xy = rng.uniform(-1.0, 3.5, (2, 7, 2))
        kind = rng.integers(0, 2, 7).astype(np.int64)
        origin = rng.uniform(-0.2, 0.2, (2, 2))
        out = np.zeros((2, ny, nx))
        _kernels.deposit_radial(xy, kind, tables, 0.0025, origin, 0.07, out)
        ref = deposit_radial_reference(xy, kind, tables, 0.0025, origin, 0.07, (ny, nx))
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-9 * ref.max())


@pytest.mark.parametrize("gamma", [1.0, 1.4, 1.8])
def test_column_signal_scales_with_the_response_exponent(gamma):
    """n Pt atoms stacked along the beam give n^γ times one atom's signal at every probe
    position (source size and probe do not change the ratio)."""
    eng = AbtemEngine(response_exponent=gamma)
    pts = np.stack(np.meshgrid(np.linspace(-1.5, 1.5, 13), np.linspace(-1.5, 1.5, 13)),
                   axis=-1).reshape(1, -1, 2)
    one = eng.render(np.zeros((1, 1, 2)), ["Pt"], pts, pixel_size_A=0.35)
    centre = np.argmax(one)
    for n in (2, 5, 10):
        col = eng.render(np.zeros((1, n, 2)), ["Pt"] * n, pts, pixel_size_A=0.35)
        assert col.flat[centre] / one.flat[centre] == pytest.approx(n**gamma, rel=1e-6)
        # and the calibrated exponent: the default engine scales as its γ
    d = AbtemEngine()
    one = d.render(np.zeros((1, 1, 2)), ["Pt"], pts, pixel_size_A=0.35)
    col = d.render(np.zeros((1, 4, 2)), ["Pt"] * 4, pts, pixel_size_A=0.35)
    assert col.max() / one.max() == pytest.approx(4**d.response_exponent, rel=1e-6)


def test_default_response_is_the_calibrated_one():
    """Defaults p = 1.75, γ = 1.4 are the multislice fit stored by
    benchmarks/calibrate_abtem.py (particle line scans correlate ≥ 0.93; isolated-atom Pt/Fe
    contrast within 10 % of multislice), and the scale is the fitted one there."""
    from aet.simulate._abtem_calibration import CALIBRATION

    e = AbtemEngine()
    assert (e.atom_exponent, e.response_exponent) == (1.75, 1.4)
    for par in ("lobato", "kirkland"):
        assert CALIBRATION["default_atom_exponent_gamma"][par] == [1.75, 1.4]
        assert CALIBRATION["correlation"][par]["1.75"]["1.4"] >= 0.93
        assert CALIBRATION["joint_correlation"][par]["1.75"]["1.4"] >= 0.93
        ratio = CALIBRATION["pt_fe_peak_ratio"][par]["1.75"]["1.4"]
        assert ratio == pytest.approx(CALIBRATION["pt_fe_peak_ratio_multislice"], rel=0.1)
        # the matrix's other responses are also consistent with multislice
        for g in ("1.0", "1.8"):
            assert CALIBRATION["correlation"][par]["1.75"][g] >= 0.93
    assert e.scale == pytest.approx(CALIBRATION["scale"]["lobato"]["1.75"]["1.4"])
    # interpolated between calibrated exponents, monotone where the table is
    a13, a15 = calibrated_scale(1.3), calibrated_scale(1.5)
    assert min(a13, a15) <= calibrated_scale(1.45) <= max(a13, a15)
    assert AbtemEngine(response_scale=0.5).scale == 0.5
    with pytest.raises(ValueError, match="outside the calibrated range"):
        AbtemEngine(response_exponent=5.0).scale  # noqa: B018
    with pytest.raises(ValueError, match="atom_exponent=4 is outside"):
        AbtemEngine(atom_exponent=4.0).scale  # noqa: B018


def test_point_sampling_integrates_to_the_atoms_cross_section():
    """Samples of the band-limited image at pixel centres sum to its integral (Poisson
    summation: the probe passes no frequency ≥ 1/pixel): one atom's image sums to
    ``atom_cross_section_A2``, the ∫ A (V/V_REF)^γ d²r of its table."""
    eng = AbtemEngine()
    px, n = 0.35, 120  # 42 Å: the probe's Airy tails reach far
    y, x = (np.arange(n) - n // 2) * px, (np.arange(n) - n // 2) * px
    grid = np.stack(np.broadcast_arrays(x[None, :], y[:, None]), axis=-1)[None]
    for sym in ("Fe", "Pt"):
        img = eng.render(np.array([[[0.123, -0.071]]]), [sym], grid, pixel_size_A=px)
        assert img.sum() == pytest.approx(eng.atom_cross_section_A2(sym), rel=2e-3)
    t = eng.radial_table("Pt")
    r = np.arange(len(t)) * 0.0025
    manual = np.trapezoid(eng.scale * ((t / V_REF) ** 1.75) ** 1.4 * 2 * math.pi * r, r)
    assert eng.atom_cross_section_A2("Pt") == pytest.approx(manual)


def _cluster():
    return aet.AtomicModel([[0.4, -0.3, 0.5], [-1.9, 1.2, -0.4], [2.1, 1.6, 1.0],
                            [0.2, -2.4, -1.1]], ["Pt", "Fe", "Pt", "Pd"])


def test_degradations_undone_recover_the_clean_images():
    """Shifts, drift during and between frames and scan distortion (both scan directions):
    resampling each recorded frame at r = M⁻¹(q + s + b) (the recorded geometry) gives back
    the clean projection at pixel q."""
    from scipy.ndimage import map_coordinates

    from aet.simulate.degrade import frame_transform

    px, n = 0.1, 90
    b = benchmark_from_model(_cluster(), engine="abtem", seed=2, angles_deg=[-30.0, 0.0, 40.0],
                             n_frames=2, scan_directions_deg=(0, 90), pixel_size_A=px,
                             shape=(n, n), dose_e_per_A2=None, gain=1.0, offset=0.0,
                             read_noise=0.0, shift_sigma_A=0.4, drift_A_per_frame=0.2,
                             scan_distortion=0.01, angle_error_deg=0.0,
                             background_thickness_A=0.0, oversampling=3)
    al = b.alignment
    raw = b.tilt_series.values
    clean = b.clean.values
    q = (np.arange(n) - n // 2) * px
    Q = np.stack(np.broadcast_arrays(q[None, :], q[:, None]), axis=-1)
    inner = slice(15, n - 15)
    for k in range(3):
        s = np.array([al.shift_x_A.values[k], al.shift_y_A.values[k]])
        for f in range(2):
            M, bb = frame_transform(
                [[al.scan_xx.values[k, f], al.scan_xy.values[k, f]],
                 [al.scan_yx.values[k, f], al.scan_yy.values[k, f]]],
                [al.drift_x_A.values[k, f], al.drift_y_A.values[k, f]],
                [al.drift_velocity_x_A.values[k, f], al.drift_velocity_y_A.values[k, f]],
                ny=n, nx=n, pixel_size_A=px,
                scan_direction_deg=float(al.scan_direction_deg.values[f]))
            r = np.linalg.solve(M, (Q + s + bb).reshape(-1, 2).T).T
            idx = r / px + n // 2
            back = map_coordinates(raw[k, f].astype(np.float64), [idx[:, 1], idx[:, 0]],
                                   order=3).reshape(n, n)
            err = np.abs(back - clean[k])[inner, inner].max()
            moved = np.abs(raw[k, f] - clean[k])[inner, inner].max()
            assert err < 0.01 * clean[k].max() < 0.1 * moved


def test_atom_lands_where_the_gaussian_engine_puts_it():
    """Both engines share the recorded geometry: a single atom under shifts, drift and scan
    distortion peaks at the same recorded position (within 0.01 Å)."""
    m = aet.AtomicModel([[0.8, -0.6, 0.4]], ["Pt"])
    kw = dict(seed=5, angles_deg=[-20.0, 35.0], n_frames=2, pixel_size_A=0.1, shape=(64, 64),
              dose_e_per_A2=None, gain=1.0, offset=0.0, read_noise=0.0, shift_sigma_A=0.5,
              drift_A_per_frame=0.2, scan_distortion=0.01, angle_error_deg=0.3,
              tilt_axis_rotation_deg=3.0, tilt_axis_offset_A=0.5, background_thickness_A=0.0)
    g = benchmark_from_model(m, engine="gaussian", **kw)
    a = benchmark_from_model(m, engine="abtem", oversampling=3, **kw)
    for img_g, img_a in zip(g.noise_free.reshape(-1, 64, 64), a.noise_free.reshape(-1, 64, 64)):
        cg, ca = _centroid(img_g), _centroid(img_a)
        assert np.hypot(*(cg - ca)) * 0.1 < 0.01


def _centroid(img, half=8):
    iy, ix = np.unravel_index(np.argmax(img), img.shape)
    w = img[iy - half:iy + half + 1, ix - half:ix + half + 1]
    w = w - w.min()
    yy, xx = np.mgrid[-half:half + 1, -half:half + 1]
    return np.array([iy + (w * yy).sum() / w.sum(), ix + (w * xx).sum() / w.sum()])


@pytest.fixture(scope="module")
def small_abtem():
    return fept_benchmark("small", seed=0, engine="abtem", n_angles=5)


def test_abtem_benchmark_names_its_engine(small_abtem):
    b = small_abtem
    assert b.engine == "abtem" and b.params["engine"] == "abtem"
    assert "engine='abtem'" in repr(b) and "p=1.75, γ=1.4" in repr(b)
    ts = b.tilt_series
    assert ts.attrs["simulation_engine"] == "abtem"
    assert b.alignment.attrs["simulation_engine"] == "abtem"
    assert "engine='abtem'" in ts.attrs["simulated"]
    rec = ts.provenance[-1]
    assert rec["op"] == "simulate" and rec["params"]["engine"] == "abtem"
    assert rec["params"]["abtem"]["response_exponent"] == 1.4
    g = fept_benchmark("small", seed=0, n_angles=5)
    assert g.engine == "gaussian" and "engine='gaussian'" in repr(g)
    # same seed: same structure and degradations, other images
    assert g.truth == b.truth.with_arrays(b_factor=g.truth["b_factor"],
                                          cross_section_A2=g.truth["cross_section_A2"])
    np.testing.assert_array_equal(g.alignment.shift_x_A, b.alignment.shift_x_A)
    assert not np.allclose(g.clean.values, b.clean.values)


def test_abtem_counts_follow_the_detector_model(small_abtem):
    p = small_abtem.params
    counts = (small_abtem.tilt_series.values.astype(float) - p["offset"]) / p["gain"]
    expect = p["dose_e_per_A2"] / p["n_frames"] * small_abtem.noise_free
    assert counts.sum() == pytest.approx(expect.sum(), rel=0.005)
    # the carbon background is the engine's carbon cross-section per atom of the film
    eng = AbtemEngine()
    mean0 = small_abtem.background[2].mean()  # 0° projection
    expect_bg = eng.atom_cross_section_A2("C") * 0.1 * 30.0 * 0.35**2
    assert mean0 == pytest.approx(expect_bg, rel=0.1)


def test_linear_response_conserves_the_truths_total_signal():
    b = fept_benchmark("small", seed=1, engine="abtem", n_angles=3, response_exponent=1.0)
    total = b.truth["cross_section_A2"].sum()
    np.testing.assert_allclose(b.clean.values.sum(axis=(1, 2)), total, rtol=3e-3)


def test_total_dose_is_for_the_whole_series():
    b = fept_benchmark("small", seed=0, n_angles=5, total_dose_e_per_A2=1e4)
    assert b.params["dose_e_per_A2"] == pytest.approx(2e3)
    assert b.params["total_dose_e_per_A2"] == 1e4
    assert b.tilt_series.attrs["dose_e_per_A2"] == pytest.approx(2e3)
    assert "2000 e⁻/Å² per projection (10000 in total)" in repr(b)
    r = fept_benchmark("realistic", seed=0, n_angles=3, shape=(64, 64), dose_e_per_A2=500.0)
    assert r.params["dose_e_per_A2"] == 500.0 and r.params["total_dose_e_per_A2"] is None


def test_realistic_preset_is_the_independent_case():
    b = fept_benchmark("realistic", seed=0, n_angles=3, shape=(32, 32))
    p = b.params
    assert 1100 < b.truth.n_atoms < 1250
    assert p["max_tilt_deg"] == 70.0 and p["n_frames"] == 3
    assert p["total_dose_e_per_A2"] == 1e5
    assert p["tilt_axis_rotation_deg"] == 0.0 and p["tilt_axis_offset_A"] == 0.0
    assert p["offset"] > 0
    assert p["shift_sigma_A"] / p["pixel_size_A"] == pytest.approx(2.5 / math.sqrt(3))


def test_film_and_any_model_benchmarks():
    f = fept_film_benchmark((40.0, 20.0, 8.0), seed=0, n_angles=3, field_of_view_A=14.0,
                            dose_e_per_A2=None, background_thickness_A=0.0)
    assert f.params["size"] == "film" and f.engine == "gaussian"
    assert f.tilt_series.values.shape[-2:] == (40, 40)
    assert np.ptp(f.truth.positions[:, 0]) > 30.0  # wider than the view
    assert "fept_film_benchmark" in f.tilt_series.attrs["simulated"]
    fa = fept_film_benchmark((30.0, 14.0, 6.0), seed=0, engine="abtem", n_angles=2,
                             field_of_view_A=10.0, n_frames=1, dose_e_per_A2=None,
                             background_thickness_A=0.0)
    v = fa.clean.values
    third = v.shape[-1] // 3  # material fills the view: no vacuum at either side
    assert fa.engine == "abtem"
    assert v[..., :third].mean() > 0.6 * v.mean() and v[..., -third:].mean() > 0.6 * v.mean()
    m = benchmark_from_model(_cluster(), seed=0, n_angles=4, n_frames=1)
    assert m.engine == "abtem" and m.params["size"] == "model"
    assert m.tilt_series.values.shape[0] == 4 and m.truth.n_atoms == 4


def test_bad_engine_arguments():
    with pytest.raises(ValueError, match="engine must be one of"):
        fept_benchmark("small", engine="multislice")
    with pytest.raises(ValueError, match="configure the abTEM engine; pass engine='abtem'"):
        fept_benchmark("small", response_exponent=1.8)
    with pytest.raises(ValueError, match="configure the Gaussian engine"):
        fept_benchmark("small", engine="abtem", probe_fwhm_A=1.0)
    with pytest.raises(ValueError, match="nonlinear= applies to the Gaussian engine"):
        fept_benchmark("small", engine="abtem", nonlinear=True)
    with pytest.raises(ValueError, match="not both"):
        fept_benchmark("small", dose_e_per_A2=1e3, total_dose_e_per_A2=1e4)
    with pytest.raises(ValueError, match="thermal_sigma_A must be ≥ 0.02"):
        AbtemEngine(thermal_sigma_A=0.01)
    with pytest.raises(ValueError, match="parametrization must be one of"):
        AbtemEngine(parametrization="peng")
    with pytest.raises(ValueError, match="unknown acquisition keyword"):
        benchmark_from_model(_cluster(), dose=3)
    with pytest.raises(TypeError, match="truth_model must be an aet.AtomicModel"):
        benchmark_from_model(np.zeros((3, 3)))
