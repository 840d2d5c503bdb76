"""Forward model: analytic single-atom integrals, kernel == NumPy twin, docs/conventions.rst frame,
agreement with a brute-force rotate-and-sum projection of the rendered volume."""

from __future__ import annotations

import math

import numpy as np
import pytest

import aet
from aet.simulate import _kernels, project_atoms, render_volume
from aet.simulate.forward import (
    FWHM_PER_SIGMA,
    atom_widths,
    cross_sections,
    project_positions,
    splat,
)
from aet.testing.phantoms import point_atom_projection_reference
from tests.reference.projector import project_volume_reference
from tests.reference.simulate import (
    project_positions_reference,
    splat_images_reference,
    splat_volume_reference,
)

EULERS = [(0.0, 0.0, 0.0), (0.0, 30.0, 0.0), (20.0, 30.0, -10.0), (45.0, -60.0, 80.0),
          (-100.0, 65.0, 33.0)]


def _three_atoms():
    return aet.AtomicModel([[0.3, -0.7, 1.1], [2.0, 1.0, -1.5], [-2.2, 0.4, 0.5]],
                           ["Pt", "Fe", "Pt"])


def test_single_atom_equals_its_analytic_pixel_integral():
    p, fwhm, b = 0.35, 0.8, 0.5
    pos = np.array([0.123, -0.456, 0.789])
    m = aet.AtomicModel([pos], ["Pt"], b_factor=[b])
    img = project_atoms(m, [0.0], shape=(41, 40), pixel_size_A=p, probe_fwhm_A=fwhm).values[0]
    s = math.sqrt(b / (8 * math.pi**2) + (fwhm / FWHM_PER_SIGMA) ** 2)
    expect = splat_images_reference(pos[None, None, :2], [0.02], [s], p, (41, 40))[0]
    assert np.abs(img - expect).max() <= 1e-6 * expect.max()
    # and its total is the cross-section of Pt (0.02 Å² by default)
    assert img.sum() == pytest.approx(0.02, rel=1e-6)
    # at another angle the atom lands elsewhere but keeps its integral
    img30 = project_atoms(m, [30.0], shape=(41, 40), pixel_size_A=p).values[0]
    assert img30.sum() == pytest.approx(0.02, rel=1e-6)


def test_cross_section_scales_as_z_to_the_exponent():
    cs = cross_sections(["Fe", "Pt"], z_exponent=1.7, reference_cross_section_A2=0.02)
    assert cs[1] == pytest.approx(0.02)
    assert cs[0] / cs[1] == pytest.approx((26 / 78) ** 1.7, rel=1e-12)
    cs2 = cross_sections(["Fe"], z_exponent=2.0, reference_cross_section_A2=0.02)
    assert cs2[0] == pytest.approx(0.02 * (26 / 78) ** 2)


@pytest.mark.parametrize("shape", [(31, 33), (32, 30), (17, 17)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_image_kernel_equals_numpy_twin(shape, dtype, rng):
    n = 12
    pos = rng.uniform(-4, 4, size=(n, 3))
    pos[0] = [2.9 * shape[1] * 0.3 / 6, 0, 0]  # near an edge: footprint clipped
    amp = rng.uniform(0.5, 2.0, n)
    sig = rng.uniform(0.2, 0.7, n)
    xy = project_positions(pos, np.array(EULERS))
    np.testing.assert_allclose(xy, project_positions_reference(pos, EULERS), atol=1e-12)
    got = splat(xy, amp, sig, shape=shape, pixel_size_A=0.3, n_sigma=8.0, dtype=dtype)
    ref = splat_images_reference(xy, amp, sig, 0.3, shape)
    assert got.dtype == dtype
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol * ref.max())


@pytest.mark.parametrize("shape", [(21, 22, 23), (20, 20, 20)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_volume_kernel_equals_numpy_twin(shape, dtype, rng):
    n = 6
    xyz = rng.uniform(-2.5, 2.5, size=(n, 3))
    amp = rng.uniform(0.5, 2.0, n)
    sig = rng.uniform(0.3, 0.6, n)
    out = np.zeros(shape, dtype=dtype)
    _kernels.splat_volume(xyz, amp, sig, 0.25, 8.0, out)
    ref = splat_volume_reference(xyz, amp, sig, 0.25, shape)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, ref, rtol=0, atol=tol * ref.max())


def test_total_intensity_is_conserved_across_angles():
    m = _three_atoms()
    ang = np.linspace(-70, 70, 15)
    ts = project_atoms(m, ang, shape=(48, 48), pixel_size_A=0.35)
    tot = ts.values.sum(axis=(1, 2))
    expect = cross_sections(m.species).sum()
    np.testing.assert_allclose(tot, expect, rtol=1e-7)


@pytest.mark.parametrize("euler", [(0, 30, 0), (0, -45, 0), (20, 30, -10)])
def test_off_centre_atom_lands_where_the_convention_says(euler):
    p = np.array([3.0, 1.0, 2.0])
    m = aet.AtomicModel([p], ["Pt"])
    img = project_atoms(m, np.array([euler], float), shape=(64, 64), pixel_size_A=0.25).values[0]
    c = (np.arange(64) - 32) * 0.25
    w = img / img.sum()
    x, y = (w.sum(0) * c).sum(), (w.sum(1) * c).sum()
    ex, ey = point_atom_projection_reference(p, euler)
    assert x == pytest.approx(ex, abs=1e-6) and y == pytest.approx(ey, abs=1e-6)
    if euler == (0, 30, 0):
        assert ex == pytest.approx(3 * math.cos(math.radians(30)) + 2 * math.sin(math.radians(30)))


@pytest.mark.parametrize("euler", EULERS[1:])
def test_matches_brute_force_rotated_volume_within_one_percent(euler):
    vs, n = 0.15, 75
    m = _three_atoms()
    vol = render_volume(m, vs, shape=(n, n, n), probe_fwhm_A=1.5)
    assert vol.values.sum() == pytest.approx(cross_sections(m.species).sum(), rel=1e-7)
    brute = project_volume_reference(vol.values, euler)
    fast = project_atoms(m, np.array([euler], float), shape=(n, n), pixel_size_A=vs,
                         probe_fwhm_A=1.5).values[0]
    rel = np.linalg.norm(fast - brute) / np.linalg.norm(brute)
    assert rel < 0.01


def test_zero_tilt_projection_equals_the_volume_summed_along_z():
    m = _three_atoms()
    vol = render_volume(m, 0.3, shape=(40, 41, 42))
    img = project_atoms(m, [0.0], shape=(41, 42), pixel_size_A=0.3).values[0]
    np.testing.assert_allclose(vol.values.sum(axis=0), img, atol=1e-12 * img.max())
    # and the volume's coordinates put the atom where the model says
    one = render_volume(aet.AtomicModel([[0.6, -0.9, 1.2]], ["Pt"]), 0.3, shape=(20, 20, 20))
    i = np.unravel_index(int(np.argmax(one.values)), (20, 20, 20))
    v = one.data
    assert (float(v.z[i[0]]), float(v.y[i[1]]), float(v.x[i[2]])) == pytest.approx(
        (1.2, -0.9, 0.6))


def test_power_one_nonlinearity_reduces_to_the_linear_model():
    m = _three_atoms()
    lin = project_atoms(m, [0, 40], shape=(48, 48), pixel_size_A=0.2, b_factor_A2=3.0)
    non = project_atoms(m, [0, 40], shape=(48, 48), pixel_size_A=0.2, b_factor_A2=3.0,
                        nonlinearity="power", nonlinear_param=1.0)
    rel = np.linalg.norm(non.values - lin.values) / np.linalg.norm(lin.values)
    assert rel < 2e-3
    np.testing.assert_allclose(non.values.sum(axis=(1, 2)), lin.values.sum(axis=(1, 2)),
                               rtol=1e-6)


def test_saturation_compresses_heavy_columns_only():
    one = aet.AtomicModel([[0.0, 0.0, 0.0]], ["Pt"])
    col = aet.AtomicModel([[0.0, 0.0, 2.0 * k] for k in range(20)], ["Pt"] * 20)
    kw = {"shape": (32, 32), "pixel_size_A": 0.35, "nonlinearity": "saturation",
          "nonlinear_param": 10.0}
    r1 = project_atoms(one, [0.0], **kw).values.sum() / 0.02
    r20 = project_atoms(col, [0.0], **kw).values.sum() / (20 * 0.02)
    assert 0.9 < r1 <= 1.0
    assert r20 < 0.75 * r1


def test_widths_fold_b_factor_and_probe():
    s = atom_widths(2, b_factor_A2=[0.0, 8 * math.pi**2 * 0.01], probe_fwhm_A=FWHM_PER_SIGMA * 0.3)
    np.testing.assert_allclose(s, [0.3, math.sqrt(0.09 + 0.01)])


def test_bad_inputs_name_the_argument():
    m = _three_atoms()
    with pytest.raises(ValueError, match="shape must be"):
        project_atoms(m, [0.0], shape=(10,), pixel_size_A=0.3)
    with pytest.raises(ValueError, match="pixel_size_A must be a finite positive"):
        project_atoms(m, [0.0], shape=(10, 10), pixel_size_A=-1.0)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        project_atoms(m, [0.0], shape=(10, 10), pixel_size_A=0.3, nonlinearity="cubic")
    with pytest.raises(ValueError, match=r"angles must be 1D tilt angles"):
        project_atoms(m, np.zeros((2, 2)), shape=(10, 10), pixel_size_A=0.3)
    with pytest.raises(ValueError, match="unclassified atoms"):
        project_atoms(aet.AtomicModel([[0, 0, 0]]), [0.0], shape=(10, 10), pixel_size_A=0.3)
    with pytest.raises(TypeError, match="model must be an aet.AtomicModel"):
        project_atoms(np.zeros((1, 3)), [0.0], shape=(10, 10), pixel_size_A=0.3)


def test_output_is_a_tiltseries_with_euler_coords():
    m = _three_atoms()
    ts = project_atoms(m, np.array([[10.0, 20.0, 5.0], [0.0, -20.0, 0.0]]), shape=(20, 20),
                       pixel_size_A=0.5)
    assert isinstance(ts, aet.TiltSeries)
    np.testing.assert_allclose(ts.euler_angles, [[10, 20, 5], [0, -20, 0]])
    assert ts.pixel_size_A == 0.5
    single = project_atoms(m, [-20.0, 20.0], shape=(20, 20), pixel_size_A=0.5)
    assert single.is_single_axis
