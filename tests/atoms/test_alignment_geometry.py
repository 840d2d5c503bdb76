"""The refinement's per-projection alignment has one home, the tilt series: refine returns
what it fitted as a geometry update, the facade turns it into an updated TiltSeries (images
moved back by the fitted detector shifts, Euler angles corrected), and a later refine or
uncertainty takes the alignment from the series it is given, never from the model."""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.atoms import refine
from aet.core.geometry import TiltGeometry
from aet.core.meta import rotation_matrices
from tests.atoms.test_refinement import misaligned_series

_ALIGN_ATTRS = ("refine_shift_", "refine_dphi", "refine_dtheta", "refine_dpsi")


def _gauge_free(shifts, euler_deg):
    """Planted detector shifts less what a 3D translation of the model explains (the gauge
    the refinement fixes), as (n, 2) Å."""
    n = len(shifts)
    R2 = rotation_matrices(euler_deg)[:, :2]
    A = np.concatenate([R2[:, 0], R2[:, 1]])
    b = np.concatenate([shifts[:, 0], shifts[:, 1]])
    b = b - A @ np.linalg.lstsq(A, b, rcond=None)[0]
    return np.c_[b[:n], b[n:]]


@pytest.fixture(scope="module")
def refined_once():
    rng = np.random.default_rng(7)
    truth, ts, shifts, d_euler = misaligned_series(rng, px=0.4)
    start = aet.AtomicModel(truth.positions + rng.normal(0, 0.1, truth.positions.shape),
                            truth.species)
    model, ts1 = start.refine(ts, refine_alignment=("shifts", "angles"), n_cycles=1,
                              return_series=True)
    return truth, ts, shifts, d_euler, start, model, ts1


def test_refine_returns_the_geometry_update_not_model_attrs(refined_once):
    truth, ts, shifts, d_euler, start, model, ts1 = refined_once
    res = model.provenance[-1]["result"]
    fit_sh = np.c_[res["shift_x_A"], res["shift_y_A"]]
    fit_de = np.c_[res["dphi_deg"], res["dtheta_deg"], res["dpsi_deg"]]
    # the model carries no alignment; its provenance records the numbers
    assert not [k for k in model.attrs if k.startswith(_ALIGN_ATTRS)]
    assert "geometry" not in res
    # the series carries it: shifts and Euler angles of the update, an apply_geometry record
    assert isinstance(ts1, aet.TiltSeries) and ts1 is not ts
    np.testing.assert_allclose(ts1.euler_angles, ts.euler_angles + fit_de, atol=1e-12)
    np.testing.assert_allclose(ts1.geometry.shifts_A, fit_sh, atol=1e-12)
    assert ts1.provenance[-1]["op"] == "apply_geometry"
    # the core function returns the same update as a TiltGeometry
    _, r = refine(start.data, ts.data, refine_alignment=("shifts", "angles"), n_cycles=1)
    assert isinstance(r["geometry"], TiltGeometry) and r["geometry"] == ts1.geometry
    # ... and, without an alignment, the input geometry (the facade returns the same series)
    m0, same = start.refine(ts, n_cycles=1, fit_profile=False, return_series=True,
                            uncertainty=False)
    assert same is ts
    # the planted displacements (in the gauge of the fit) are what the images moved by
    truth_sh = _gauge_free(shifts, ts1.euler_angles)
    err = np.sqrt(np.mean((fit_sh - truth_sh) ** 2)) / 0.4
    print(f"shift error after refine {err:.4f} px RMS (planted "
          f"{np.sqrt(np.mean(truth_sh ** 2)) / 0.4:.3f} px)")
    assert err < 0.03


def test_refine_twice_against_the_updated_series_does_not_apply_the_alignment_twice(
        refined_once):
    """A second refine(refine_alignment=...) against the updated series starts from it: its
    own update is small, and the series' total shift stays at the planted one (it would be
    twice the planted shift off if the first alignment were applied again)."""
    truth, ts, shifts, d_euler, start, model, ts1 = refined_once
    px = 0.4
    truth_sh = _gauge_free(shifts, ts1.euler_angles)
    kw = {"fit_profile": False, "fit_positions": False, "uncertainty": False, "n_cycles": 1}
    # the refined model against the updated series fits as well as the refinement ended
    res = model.provenance[-1]["result"]
    _, r_new = refine(model.data, ts1.data, **kw)
    _, r_old = refine(model.data, ts.data, **kw)
    print(f"R-factor: end of refine {res['r_factor']:.5f}, on the updated series "
          f"{r_new['r_factor_start']:.5f}, on the input series {r_old['r_factor_start']:.5f}")
    assert r_new["r_factor_start"] == pytest.approx(res["r_factor"], rel=0.05)
    assert r_old["r_factor_start"] > 1.3 * r_new["r_factor_start"]
    assert "shift_x_A" not in r_new  # nothing fitted, nothing applied from the model
    # refine again, with the alignment, against the updated series
    model2, ts2 = model.refine(ts1, refine_alignment=("shifts", "angles"), n_cycles=1,
                               return_series=True)
    r2 = model2.provenance[-1]["result"]
    upd2 = np.c_[r2["shift_x_A"], r2["shift_y_A"]]
    total2 = ts2.geometry.shifts_A
    err1 = np.sqrt(np.mean((ts1.geometry.shifts_A - truth_sh) ** 2)) / px
    err2 = np.sqrt(np.mean((total2 - _gauge_free(shifts, ts2.euler_angles)) ** 2)) / px
    first = np.sqrt(np.mean(ts1.geometry.shifts_A ** 2)) / px
    second = np.sqrt(np.mean(upd2 ** 2)) / px
    print(f"shift update: first refine {first:.3f} px RMS, second {second:.4f} px; error "
          f"vs planted after one {err1:.4f} px, after two {err2:.4f} px")
    assert second < 0.1 * first
    assert err2 < 0.03 and err2 < err1 + 0.01
    # a model that still holds an older version's alignment attrs is not read: same start
    legacy = model.data.copy()
    legacy.attrs.update({"refine_shift_x_A": list(ts1.geometry.shifts_A[:, 0]),
                         "refine_shift_y_A": list(ts1.geometry.shifts_A[:, 1]),
                         "refine_dtheta_deg": list(r2["dtheta_deg"])})
    _, r_legacy = refine(legacy, ts1.data, **kw)
    assert r_legacy["r_factor_start"] == pytest.approx(r_new["r_factor_start"], rel=1e-12)
    out, _ = refine(legacy, ts1.data, **kw)
    assert not [k for k in out.attrs if k.startswith(_ALIGN_ATTRS)]


def test_uncertainty_takes_the_alignment_from_the_series(refined_once):
    truth, ts, shifts, d_euler, start, model, ts1 = refined_once
    on_updated = model.uncertainty(ts1)["uncertainty"]
    on_input = model.uncertainty(ts)["uncertainty"]
    ref = model["uncertainty"]  # refine's own, with its fitted alignment
    med = np.median(np.abs(on_updated - ref) / ref)
    print(f"median relative difference of σ to refine's: updated series {med:.3f}, input "
          f"series {np.median(np.abs(on_input - ref) / ref):.3f}")
    assert med < 0.1
    assert np.median(on_input) > 1.2 * np.median(on_updated)


def test_apply_geometry_and_the_deprecated_alias(refined_once):
    truth, ts, shifts, d_euler, start, model, ts1 = refined_once
    geo = ts1.geometry
    assert ts.apply_geometry(ts.geometry) is ts
    again = ts.apply_geometry(geo)
    np.testing.assert_array_equal(again.values, ts1.values)
    with pytest.warns(DeprecationWarning, match="apply_geometry"):
        alias = ts.with_refined_alignment(geo)
    np.testing.assert_array_equal(alias.values, ts1.values)
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="return_series"):
        ts.with_refined_alignment(model)
    with pytest.raises(TypeError, match="TiltGeometry"):
        ts.apply_geometry(model)
    with pytest.raises(ValueError, match="projections"):
        ts.apply_geometry(TiltGeometry(geo.euler_deg[:3], geo.pixel_size_A))
    with pytest.raises(ValueError, match="tilt-axis rotation"):
        ts.apply_geometry(geo.replace(tilt_axis_rotation_deg=1.0))


def test_alignment_figure_reads_the_corrections_from_the_series(refined_once):
    from aet.plot import _geometry_update, alignment_figure

    truth, ts, shifts, d_euler, start, model, ts1 = refined_once
    res = model.provenance[-1]["result"]
    fit_sh = np.c_[res["shift_x_A"], res["shift_y_A"]]
    d, de = _geometry_update(ts, ts1)
    np.testing.assert_allclose(d, fit_sh, atol=1e-12)
    d2, de2 = _geometry_update(ts1, None)  # from the series' apply_geometry record
    np.testing.assert_allclose(d2, fit_sh, atol=1e-9)
    np.testing.assert_allclose(de2, de, atol=1e-9)
    assert _geometry_update(ts, None) is None
    with pytest.raises(TypeError, match="a model carries no alignment"):
        alignment_figure(ts, refined=model)
    fig = alignment_figure(ts1)
    assert len(fig.axes) == 2  # shifts, and the Euler corrections
