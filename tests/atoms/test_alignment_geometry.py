"""The refinement's per-projection alignment as a geometry update: the facade turns what
refine(refine_alignment=...) fitted into an updated TiltSeries (images moved back by the fitted
detector shifts, Euler angles corrected), which describes the data without any stored alignment
and is not corrected twice."""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.atoms import refine
from aet.atoms.refinement.alignment import APPLIED_ATTR, stored_alignment
from tests.atoms.test_refinement import misaligned_series


def test_refined_alignment_becomes_an_updated_tilt_series(rng):
    px = 0.4
    truth, ts, shifts, d_euler = misaligned_series(rng, px=px)
    start = aet.AtomicModel(truth.positions + rng.normal(0, 0.1, truth.positions.shape),
                            truth.species)
    aligned = start.refine(ts, refine_alignment=("shifts", "angles"), n_cycles=1)
    res = aligned.provenance[-1]["result"]
    sh, de = stored_alignment(aligned.data.attrs, len(ts))

    ts2 = ts.with_refined_alignment(aligned)
    np.testing.assert_allclose(ts2.euler_angles, ts.euler_angles + de, atol=1e-12)
    np.testing.assert_allclose(ts2.geometry.shifts_A, sh, atol=1e-12)
    assert ts2.provenance[-1]["op"] == "with_refined_alignment" and APPLIED_ATTR in ts2.attrs

    kw = {"fit_profile": False, "fit_positions": False, "uncertainty": False, "n_cycles": 1}
    # the corrected series fits the refined model as well as the stored alignment did, and
    # the alignment is not applied a second time
    _, r_new = refine(aligned.data, ts2.data, **kw)
    _, r_off = refine(aligned.data, ts.data, use_stored_alignment=False, **kw)
    print(f"R-factor: stored alignment {res['r_factor']:.5f}, corrected series "
          f"{r_new['r_factor_start']:.5f}, no alignment {r_off['r_factor_start']:.5f}")
    assert not r_new.get("started_from_stored_alignment", False)
    assert r_new["r_factor_start"] == pytest.approx(res["r_factor"], rel=0.05)
    assert r_off["r_factor_start"] > 1.3 * r_new["r_factor_start"]
    # the series' images moved by the fitted shifts: the planted displacements (in the gauge
    # of the fit) shrink in the corrected series
    n = len(ts)
    R2 = aet.core.meta.rotation_matrices(ts2.euler_angles)[:, :2]
    A = np.concatenate([R2[:, 0], R2[:, 1]])
    b = np.concatenate([shifts[:, 0], shifts[:, 1]])
    b = b - A @ np.linalg.lstsq(A, b, rcond=None)[0]
    left = np.c_[b[:n], b[n:]] - sh
    assert np.sqrt(np.mean(left ** 2)) < 0.1 * np.sqrt(np.mean(b ** 2))

    with pytest.raises(ValueError, match="refine_alignment="):
        ts.with_refined_alignment(start)
