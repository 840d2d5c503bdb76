"""Refinement against projections: kernel vs twin, analytic gradients vs finite differences,
RMSD and R-factor reduction, calibrated uncertainty, add/remove."""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.atoms import _kernels as K
from aet.atoms import refine, uncertainty
from aet.atoms.refinement import (
    ProjectionProblem,
    model_images,
    projection_geometry,
    rotation_derivatives,
)
from aet.model._meta import rotation_matrices
from aet.testing.phantoms import rotation_matrix_zyz
from tests.reference.atoms import atom_projections_reference, projection_loss_reference

EULER = np.array([[0, -40, 0], [0, 5, 0], [15, 35, -20]], dtype=float)


def kernel_inputs(rng, shape, n=6):
    pos = rng.uniform(-2.5, 2.5, (n, 3))
    sp = rng.integers(0, 2, n).astype(np.int64)
    H = np.array([1.0, 2.5])
    B = np.array([4.0, 3.0])
    kw, ks = np.array([0.7, 0.3]), np.array([0.3, 0.6])
    R2 = np.ascontiguousarray(np.stack([rotation_matrix_zyz(*np.radians(e))[:2] for e in EULER]))
    meas = rng.normal(0, 0.1, (len(EULER), *shape))
    px = 0.35
    x0, y0 = -(shape[1] // 2) * px, -(shape[0] // 2) * px
    return pos, sp, H, B, kw, ks, R2, meas, x0, y0, px


NO_SHIFT = np.zeros((len(EULER), 2))


@pytest.mark.parametrize("shape", [(31, 32), (30, 30), (27, 33)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_projection_kernel_equals_dense_twin(shape, dtype, rng):
    pos, sp, H, B, kw, ks, R2, meas, x0, y0, px = kernel_inputs(rng, shape)
    meas = meas.astype(dtype)
    shifts = rng.normal(0, 0.3, (len(EULER), 2))
    for sh in (NO_SHIFT, shifts):
        ref_loss, ref_l1 = projection_loss_reference(pos, sp, H, B, kw, ks, EULER,
                                                     meas.astype(np.float64), px, shifts_xy=sh)
        for fn in (K.projection_kernel, K.projection_kernel_parallel):
            out = fn(pos, sp, H, B, kw, ks**2, R2, sh, np.ascontiguousarray(meas, np.float64),
                     x0, y0, px, 40.0, 0)
            assert out[0] == pytest.approx(ref_loss, rel=1e-10)
            assert out[1] == pytest.approx(ref_l1, rel=1e-10)
    # the NumPy renderer used for linear fits is the same model (with the alignment state)
    ts = aet.TiltSeries(meas, angles=EULER, pixel_size_A=px)
    prob = ProjectionProblem(ts.values, projection_geometry(ts.data), sp, kw, ks**2)
    np.testing.assert_allclose(
        model_images(prob, pos, H, B),
        atom_projections_reference(pos, sp, H, B, kw, ks, EULER, shape, px), rtol=1e-10,
        atol=1e-12)
    d_euler = rng.normal(0, 2.0, EULER.shape)
    prob.set_alignment(shifts, d_euler)
    np.testing.assert_allclose(
        model_images(prob, pos, H, B),
        atom_projections_reference(pos, sp, H, B, kw, ks, EULER + d_euler, shape, px,
                                   shifts_xy=shifts), rtol=1e-10, atol=1e-12)


def test_rotation_derivatives_match_finite_differences(rng):
    e = rng.uniform(-80, 80, (5, 3))
    d = rotation_derivatives(e)
    h = 1e-6
    for a in range(3):
        step = np.zeros(3)
        step[a] = np.degrees(h)
        fd = (rotation_matrices(e + step) - rotation_matrices(e - step)) / (2 * h)
        np.testing.assert_allclose(d[:, a], fd, atol=1e-8)


def test_alignment_gradients_match_finite_differences(rng):
    """∂L/∂(shift) and ∂L/∂(δφ, δθ, δψ) per projection (kernel + chain rule) against central
    differences of the loss."""
    pos, sp, H, B, kw, ks, R2, meas, x0, y0, px = kernel_inputs(rng, (31, 32))
    ts = aet.TiltSeries(meas, angles=EULER, pixel_size_A=px)
    prob = ProjectionProblem(ts.values, projection_geometry(ts.data), sp, kw, ks**2,
                             cutoff=40.0)
    sh0 = rng.normal(0, 0.2, (len(EULER), 2))
    de0 = rng.normal(0, 1.0, EULER.shape)
    prob.set_alignment(sh0, de0)
    out = prob.evaluate(pos, H, B, 1)
    g = prob.alignment_gradient(out, True, (0, 1, 2))
    n = len(EULER)

    def loss(sh, de):
        prob.set_alignment(sh, de)
        return prob.evaluate(pos, H, B, 0)[0]

    eps = 1e-6
    fd = []
    for c in range(2):
        for k in range(n):
            d = np.zeros_like(sh0)
            d[k, c] = eps
            fd.append((loss(sh0 + d, de0) - loss(sh0 - d, de0)) / (2 * eps))
    for a in range(3):
        for k in range(n):
            d = np.zeros_like(de0)
            d[k, a] = np.degrees(eps)  # gradient is per radian
            fd.append((loss(sh0, de0 + d) - loss(sh0, de0 - d)) / (2 * eps))
    fd = np.array(fd)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())
    # the serial and parallel kernels agree on the per-projection gradients
    prob.set_alignment(sh0, de0)
    args = (pos, sp, H, B, kw, ks**2, prob.R2, prob.shifts, prob.meas, x0, y0, px, 40.0, 1)
    o1, o2 = K.projection_kernel(*args), K.projection_kernel_parallel(*args)
    np.testing.assert_allclose(o1[8], o2[8], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(o1[9], o2[9], rtol=1e-12, atol=1e-14)


def test_analytic_gradients_match_finite_differences(rng):
    pos, sp, H, B, kw, ks, R2, meas, x0, y0, px = kernel_inputs(rng, (31, 32))

    def run(p=pos, h=H, b=B, mode=0, fn=K.projection_kernel):
        return fn(p, sp, h, b, kw, ks**2, R2, NO_SHIFT, meas, x0, y0, px, 40.0, mode)

    out = run(mode=2)
    np.testing.assert_allclose(run(mode=2, fn=K.projection_kernel_parallel)[2], out[2],
                               rtol=1e-12, atol=1e-14)
    eps = 1e-6
    g = np.zeros_like(pos)
    for j in range(len(pos)):
        for a in range(3):
            d = np.zeros_like(pos)
            d[j, a] = eps
            g[j, a] = (run(pos + d)[0] - run(pos - d)[0]) / (2 * eps)
    np.testing.assert_allclose(out[2], g, rtol=1e-5, atol=1e-7 * np.abs(g).max())
    for s in range(2):
        e = np.eye(2)[s] * eps
        gh = (run(h=H + e)[0] - run(h=H - e)[0]) / (2 * eps)
        gb = (run(b=B + e)[0] - run(b=B - e)[0]) / (2 * eps)
        assert out[3][s] == pytest.approx(gh, rel=1e-6)
        assert out[4][s] == pytest.approx(gb, rel=1e-6)


def test_curvature_blocks_equal_jacobian_products(rng):
    pos, sp, H, B, kw, ks, R2, meas, x0, y0, px = kernel_inputs(rng, (29, 30), n=3)
    ts = aet.TiltSeries(meas, angles=EULER, pixel_size_A=px)
    prob = ProjectionProblem(ts.values, projection_geometry(ts.data), sp, kw, ks**2,
                             cutoff=40.0)
    F = prob.evaluate(pos, H, B, 3)[5]
    eps = 1e-5
    for j in range(len(pos)):
        J = []
        for a in range(3):
            d = np.zeros_like(pos)
            d[j, a] = eps
            J.append(((model_images(prob, pos + d, H, B) - model_images(prob, pos - d, H, B))
                      / (2 * eps)).ravel())
        J = np.array(J)
        np.testing.assert_allclose(F[j], J @ J.T, rtol=1e-6, atol=1e-9 * np.abs(F[j]).max())


# ----------------------------------------------------------------------------- simulated
def small_particle(rng, n_side=3, spacing=2.7):
    r = (np.arange(n_side) - (n_side - 1) / 2) * spacing
    sites = np.stack(np.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    sites = sites + rng.normal(0, 0.05, sites.shape)
    species = np.where(rng.random(len(sites)) < 0.5, "Fe", "Pt")
    return aet.AtomicModel(sites, species)


def test_refinement_reduces_rmsd_and_r_factor_on_simulator_data(rng):
    """Data from aet.simulate (pixel-integrated, its own atom model): not our forward model."""
    from aet.simulate import project_atoms

    truth = small_particle(rng)
    angles = np.linspace(-70, 70, 15)
    ts = project_atoms(truth, angles, shape=(40, 40), pixel_size_A=0.4)
    vals = ts.values
    noisy = aet.TiltSeries(vals + rng.normal(0, 0.02 * vals.max(), vals.shape), angles=angles,
                           pixel_size_A=0.4)
    start = truth.positions + rng.normal(0, 0.12, truth.positions.shape)
    model = aet.AtomicModel(start, truth.species)
    refined = model.refine(noisy, n_cycles=1, max_iter=40)
    rec = refined.provenance[-1]
    assert rec["op"] == "refine"
    res = rec["result"]
    rmsd0 = np.sqrt(((start - truth.positions) ** 2).sum(1).mean())
    rmsd1 = np.sqrt(((refined.positions - truth.positions) ** 2).sum(1).mean())
    assert rmsd1 < 0.5 * rmsd0 and rmsd1 < 0.06  # Å
    assert res["r_factor"] < 0.9 * res["r_factor_start"]  # noise sets the floor
    assert res["r_factor"] == pytest.approx(min(res["r_factor_history"]))  # best iterate kept
    # heavier species: larger height; B-factors positive
    assert res["height"][1] > res["height"][0] and min(res["b_factor_A2"]) > 0
    np.testing.assert_allclose(refined["b_factor"][refined.species == "Pt"],
                               res["b_factor_A2"][1])


def test_uncertainty_is_calibrated_on_own_forward_model(rng):
    """|error| / uncertainty has an RMS near 1 when the noise and model are known."""
    ratios = []
    for seed in range(1):
        r = np.random.default_rng(seed)
        truth = small_particle(r, n_side=4, spacing=2.8)
        angles = np.linspace(-70, 70, 13)
        ts = aet.TiltSeries(np.zeros((len(angles), 40, 40)), angles=angles, pixel_size_A=0.4)
        index = (truth.species == "Pt").astype(np.int64)
        prob = ProjectionProblem(ts.values, projection_geometry(ts.data), index, [1.0],
                                 [(0.8 / 2.3548) ** 2])
        clean = model_images(prob, truth.positions, np.array([20.0, 60.0]), np.array([2.0, 1.5]))
        noisy = aet.TiltSeries(clean + r.normal(0, 0.03 * clean.max(), clean.shape),
                               angles=angles, pixel_size_A=0.4)
        start = truth.positions + r.normal(0, 0.1, truth.positions.shape)
        ds, res = refine(aet.AtomicModel(start, truth.species).data, noisy.data, n_cycles=1,
                         max_iter=50)
        err = ds["position"].values - truth.positions
        ratios.append(err / np.stack([ds[f"uncertainty_{a}"].values for a in "xyz"], 1))
        np.testing.assert_allclose(ds["uncertainty"].values,
                                   np.sqrt(sum(ds[f"uncertainty_{a}"].values ** 2
                                               for a in "xyz")))
    ratios = np.concatenate(ratios).ravel()
    spread = float(np.sqrt(np.mean(ratios**2)))
    assert 0.75 < spread < 1.3, spread
    # the curvature estimate is recomputed identically from the stored heights/B-factors
    again, _ = uncertainty(ds, noisy.data)
    np.testing.assert_allclose(again["uncertainty"].values, ds["uncertainty"].values,
                               rtol=1e-6)


@pytest.mark.slow
def test_bootstrap_uncertainty_agrees_with_curvature(rng):
    truth = small_particle(rng)
    angles = np.linspace(-70, 70, 12)
    ts = aet.TiltSeries(np.zeros((len(angles), 36, 36)), angles=angles, pixel_size_A=0.4)
    index = (truth.species == "Pt").astype(np.int64)
    prob = ProjectionProblem(ts.values, projection_geometry(ts.data), index, [1.0],
                             [(0.8 / 2.3548) ** 2])
    clean = model_images(prob, truth.positions, np.array([20.0, 60.0]), np.array([2.0, 1.5]))
    noisy = aet.TiltSeries(clean + rng.normal(0, 0.03 * clean.max(), clean.shape),
                           angles=angles, pixel_size_A=0.4)
    ds, _ = refine(truth.data, noisy.data, n_cycles=1, max_iter=30)
    boot, res = uncertainty(ds, noisy.data, method="bootstrap", n_bootstrap=6, seed=1,
                            max_iter=20)
    q = np.median(boot["uncertainty"].values / ds["uncertainty"].values)
    assert 0.4 < q < 2.5, q
    assert res["method"] == "bootstrap"


@pytest.mark.slow
def test_add_remove_fixes_a_missing_and_a_spurious_atom(rng):
    truth = small_particle(rng)
    angles = np.linspace(-70, 70, 15)
    ts = aet.TiltSeries(np.zeros((len(angles), 40, 40)), angles=angles, pixel_size_A=0.4)
    index = (truth.species == "Pt").astype(np.int64)
    prob = ProjectionProblem(ts.values, projection_geometry(ts.data), index, [1.0],
                             [(0.8 / 2.3548) ** 2])
    H, B = np.array([20.0, 60.0]), np.array([2.0, 1.5])
    clean = model_images(prob, truth.positions, H, B)
    meas = aet.TiltSeries(clean + rng.normal(0, 0.01 * clean.max(), clean.shape), angles=angles,
                          pixel_size_A=0.4)
    fe = np.flatnonzero(truth.species == "Fe")[0]
    keep = np.ones(truth.n_atoms, bool)
    keep[fe] = False
    spurious = np.array([[8.0, 0.0, 0.0]])  # outside the particle
    start = aet.AtomicModel(np.vstack([truth.positions[keep], spurious]),
                            np.append(truth.species[keep], "Fe"))
    ds, res = refine(start.data, meas.data, add_remove=True, n_cycles=1, max_iter=30)
    assert res["n_removed"] == 1 and res["n_added"] == 1
    pos = ds["position"].values
    assert np.min(np.linalg.norm(pos - truth.positions[fe], axis=1)) < 0.1
    assert np.min(np.linalg.norm(pos - spurious, axis=1)) > 2.0
    plain, res0 = refine(start.data, meas.data, n_cycles=1, max_iter=30)
    assert res["r_factor"] < res0["r_factor"]


def test_refine_errors():
    m = aet.AtomicModel([[0, 0, 0]], ["Pt"])
    ts = aet.TiltSeries(np.zeros((2, 8, 8)), angles=[0, 10], pixel_size_A=0.5)
    with pytest.raises(ValueError, match="dims \\('angle', 'y', 'x'\\)"):
        refine(m.data, ts.data.transpose("angle", "x", "y"))
    with pytest.raises(ValueError, match="n_cycles must be finite and > 0"):
        refine(m.data, ts.data, n_cycles=0)
    with pytest.raises(TypeError, match="kernel_fwhm_A must be a FWHM"):
        refine(m.data, ts.data, kernel_fwhm_A="wide")
    with pytest.raises(ValueError, match="method must be 'curvature' or 'bootstrap'"):
        uncertainty(m.data, ts.data, method="hessian")


# ----------------------------------------------------------------------------- alignment
def misaligned_series(rng, *, n_angles=15, shape=(40, 40), px=0.4, shift_sigma_A=0.15,
                      angle_sigma_deg=0.5, noise=0.01):
    """aet.simulate projections of a small particle at perturbed Euler angles, displaced by
    planted detector shifts (exactly: each projection of a translated model), labelled with
    the nominal angles."""
    from aet.simulate import project_atoms

    truth = small_particle(rng, n_side=4, spacing=2.7)
    angles = np.linspace(-70, 70, n_angles)
    shifts = rng.normal(0, shift_sigma_A, (n_angles, 2))
    d_euler = rng.normal(0, angle_sigma_deg, (n_angles, 3))
    euler = np.stack([np.zeros(n_angles), angles, np.zeros(n_angles)], 1) + d_euler
    R = rotation_matrices(euler)
    imgs = np.stack([
        project_atoms(aet.AtomicModel(truth.positions + R[k].T @ [*shifts[k], 0.0],
                                      truth.species), euler[k:k + 1], shape=shape,
                      pixel_size_A=px).values[0] for k in range(n_angles)])
    noisy = imgs + rng.normal(0, noise * imgs.max(), imgs.shape)
    return truth, aet.TiltSeries(noisy, angles=angles, pixel_size_A=px), shifts, d_euler


def test_alignment_refinement_recovers_planted_shifts_and_angles(rng):
    """Planted detector shifts (0.37 px RMS) and Euler errors (0.5° RMS each of φ, θ, ψ) are
    recovered by refine(refine_alignment=...) up to the gauge (a 3D translation's shifts,
    mean δθ and δψ), and the positions come out far closer to the truth than when the
    projections are taken as aligned."""
    from aet.simulate import score

    px = 0.4
    truth, ts, shifts, d_euler = misaligned_series(rng, px=px)
    start = aet.AtomicModel(truth.positions + rng.normal(0, 0.1, truth.positions.shape),
                            truth.species)
    plain = start.refine(ts, n_cycles=2, max_iter=60)
    aligned = start.refine(ts, n_cycles=2, max_iter=60, refine_alignment=("shifts", "angles"))
    rec = aligned.provenance[-1]
    res = rec["result"]
    assert list(rec["params"]["refine_alignment"]) == ["shifts", "angles"]
    assert res["refine_alignment"] == ["shifts", "phi", "theta", "psi"]
    fit_sh = np.c_[res["shift_x_A"], res["shift_y_A"]]
    fit_de = np.c_[res["dphi_deg"], res["dtheta_deg"], res["dpsi_deg"]]
    n = len(ts.angles)
    # gauge: fitted shifts hold no 3D translation; mean δθ = mean δψ = 0
    R2 = rotation_matrices(np.c_[np.zeros(n), ts.angles, np.zeros(n)] + fit_de)[:, :2]
    A = np.concatenate([R2[:, 0], R2[:, 1]])
    assert np.abs(A.T @ np.concatenate([fit_sh[:, 0], fit_sh[:, 1]])).max() < 1e-6
    assert abs(fit_de[:, 1].mean()) < 1e-9 and abs(fit_de[:, 2].mean()) < 1e-9
    # truth in the same gauge: remove the shifts a translation explains, the mean δθ, δψ
    b = np.concatenate([shifts[:, 0], shifts[:, 1]])
    b = b - A @ np.linalg.lstsq(A, b, rcond=None)[0]
    sh_err_px = (fit_sh - np.c_[b[:n], b[n:]]) / px
    de_true = d_euler - [0.0, d_euler[:, 1].mean(), d_euler[:, 2].mean()]
    th_err = fit_de[:, 1] - de_true[:, 1]
    # φ and ψ are both rotations about the beam at θ = 0: only their sum is measured there
    sum_err = (fit_de[:, 0] + fit_de[:, 2]) - (de_true[:, 0] + de_true[:, 2])
    steep = np.abs(ts.angles) > 20
    sep_err = (fit_de - de_true)[steep][:, [0, 2]]
    print(f"planted shifts {np.sqrt(np.mean(shifts**2)) / px:.3f} px RMS → error "
          f"{np.sqrt(np.mean(sh_err_px**2)):.4f} px RMS ({np.abs(sh_err_px).max():.4f} max); "
          f"δθ error {np.sqrt(np.mean(th_err**2)):.3f}° RMS (planted "
          f"{np.std(d_euler[:, 1]):.2f}°); δφ+δψ {np.sqrt(np.mean(sum_err**2)):.3f}°; δφ, δψ "
          f"at |θ| > 20° {np.sqrt(np.mean(sep_err**2)):.3f}°")
    # measured: 0.006 px RMS (0.014 max), δθ 0.054°, δφ + δψ 0.029°, δφ/δψ 0.10°
    assert np.sqrt(np.mean(sh_err_px**2)) < 0.02 and np.abs(sh_err_px).max() < 0.05
    assert np.sqrt(np.mean(th_err**2)) < 0.12
    assert np.sqrt(np.mean(sum_err**2)) < 0.08
    assert np.sqrt(np.mean(sep_err**2)) < 0.2
    s0, s1 = score(plain, truth), score(aligned, truth)
    print(f"RMSD {s0.rmsd_pm:.2f} pm (projections taken as aligned) → {s1.rmsd_pm:.2f} pm; "
          f"R-factor {plain.provenance[-1]['result']['r_factor']:.4f} → {res['r_factor']:.4f}")
    assert s1.rmsd_pm < 0.4 * s0.rmsd_pm and s1.rmsd_pm < 6.0  # measured 16.3 → 4.3 pm
    assert res["r_factor"] < plain.provenance[-1]["result"]["r_factor"]
    assert "alignment" in res["stages"]
    # the stored alignment is reused by uncertainty(): same Cramér–Rao figures as refine's
    again = aligned.uncertainty(ts)
    np.testing.assert_allclose(again["uncertainty"], aligned["uncertainty"], rtol=1e-6)
    # ... and by a later refine (which then starts where this one ended), unless told not to
    kw = {"fit_heights": False, "fit_positions": False, "uncertainty": False, "n_cycles": 1}
    _, r_on = refine(aligned.data, ts.data, **kw)
    _, r_off = refine(aligned.data, ts.data, use_stored_alignment=False, **kw)
    assert r_on["r_factor_start"] == pytest.approx(res["r_factor"], rel=1e-9)
    assert r_on["started_from_stored_alignment"] and r_on["shift_x_A"] == res["shift_x_A"]
    assert r_off["r_factor_start"] > 1.3 * res["r_factor"] and "shift_x_A" not in r_off


def test_refine_alignment_errors():
    m = aet.AtomicModel([[0, 0, 0]], ["Pt"])
    ts = aet.TiltSeries(np.zeros((2, 8, 8)), angles=[0, 10], pixel_size_A=0.5)
    with pytest.raises(ValueError, match="refine_alignment: unknown entries \\['tilt'\\]"):
        refine(m.data, ts.data, refine_alignment=("shifts", "tilt"))
    with pytest.raises(TypeError, match="refine_alignment must be a sequence"):
        refine(m.data, ts.data, refine_alignment=3)
