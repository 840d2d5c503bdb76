"""Projector kernels: equal to their NumPy twins, matched adjoint, the docs/conventions.rst
frame, laziness.

General Euler angles run here on the trilinear ray caster (``method="trilinear"``), the exact
twin of tests/reference/reconstruct.py; the default shear-warp pair is tested in
test_euler_fast.py."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest

import aet
from aet.reconstruct import Projector, back_project, forward_project, project, projector
from aet.testing import (
    gaussian_atoms_volume,
    point_atom_projection_reference,
    raise_if_dask_computes,
)
from tests.reference.projector import adjoint_mismatch, project_volume_reference
from tests.reference.reconstruct import back_project_reference, forward_project_reference

SINGLE = np.array([[0, -71.5, 0], [0, -20, 0], [0, 0, 0], [0, 33.3, 0], [0, 90, 0]], float)
EULER = np.array([[20, 30, -10], [-5, 61, 80], [0, 0, 0], [170, -45, 3]], float)


@pytest.mark.parametrize("shape", [(7, 9, 8), (8, 6, 11)])
@pytest.mark.parametrize("euler", [SINGLE, EULER], ids=["single_axis", "euler"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parallel", [True, False])
def test_kernels_equal_numpy_twins(shape, euler, dtype, parallel, rng, monkeypatch):
    # small problems normally run serially; force the prange kernels here
    monkeypatch.setattr(projector, "_MIN_PARALLEL_WORK", 0 if parallel else 10**12)
    vol = rng.random(shape).astype(dtype)
    p = forward_project(vol, euler, parallel=parallel, method="trilinear")
    ref = forward_project_reference(vol, euler)
    assert p.dtype == np.float32 and p.shape == (len(euler), shape[1], shape[2])
    np.testing.assert_allclose(p, ref, rtol=0, atol=2e-6 * np.abs(ref).max())
    y = rng.random(p.shape).astype(dtype)
    b = back_project(y, euler, volume_shape=shape, parallel=parallel, method="trilinear")
    bref = back_project_reference(y, euler, shape)
    np.testing.assert_allclose(b, bref, rtol=0, atol=2e-6 * np.abs(bref).max())


@pytest.mark.parametrize("det", [(5, 6), (9, 13)])
def test_detector_other_than_volume_equals_twin(det, rng):
    vol = rng.random((8, 9, 10))
    for euler in (SINGLE, EULER):
        if euler is SINGLE and det[0] != 9:
            continue
        p = forward_project(vol, euler, detector_shape=det, method="trilinear")
        np.testing.assert_allclose(p, forward_project_reference(vol, euler, det), atol=1e-5)


@pytest.mark.parametrize("euler", [SINGLE, EULER], ids=["single_axis", "euler"])
@pytest.mark.parametrize("parallel", [True, False])
def test_adjoint_is_matched(euler, parallel, rng, monkeypatch):
    monkeypatch.setattr(projector, "_MIN_PARALLEL_WORK", 0 if parallel else 10**12)
    shape = (24, 17, 30)
    op = Projector(euler, shape, method="trilinear")
    assert op.parallel is parallel
    x = op.to_internal_volume(rng.standard_normal(shape))
    y = rng.standard_normal(op.internal_projection_shape).astype(np.float32)
    signed, positive = adjoint_mismatch(op, x, y)
    assert signed < 1e-5
    # and the adjoint is exact to float32 rounding on a positive pair (no cancellation)
    assert positive < 2e-6


@pytest.mark.parametrize("euler", [(0, 30, 0), (0, -63, 0), (20, 30, -10), (-40, 70, 15)])
def test_matches_reference_projector_and_point_formula(euler):
    vs = 0.5
    p = np.array([3.0, 1.0, 2.0])
    vol = gaussian_atoms_volume([p], (33, 34, 35), vs, sigma_A=0.6).values
    img = forward_project(vol, [euler], method="trilinear")[0]
    # tests/reference/projector.py (map_coordinates, frame of docs/conventions.rst): same numbers
    ref = project_volume_reference(vol, euler)
    np.testing.assert_allclose(img, ref, atol=2e-6 * ref.max())
    # the centroid lands at (x, y) of R·p (docs/conventions.rst point formula)
    ny, nx = img.shape
    w = img / img.sum()
    x = float((w.sum(0) * (np.arange(nx) - nx // 2)).sum()) * vs
    y = float((w.sum(1) * (np.arange(ny) - ny // 2)).sum()) * vs
    ex, ey = point_atom_projection_reference(p, euler)
    assert x == pytest.approx(ex, abs=0.02) and y == pytest.approx(ey, abs=0.02)
    # mass is conserved (line integrals in voxel units)
    assert img.sum() == pytest.approx(vol.sum(), rel=1e-2)


def test_project_dataarray_layout_and_lazy_single_axis(rng):
    vol = rng.random((12, 10, 14)).astype(np.float32)
    v = aet.Volume(dsa.from_array(vol, chunks=(12, (3, 7), 14)), voxel_size_A=0.4)
    with raise_if_dask_computes():
        out = project(v.data, angles=[-30.0, 0.0, 45.0])
    assert out.dims == ("angle", "y", "x") and out.chunks[1] == (3, 7)
    assert out.attrs["pixel_size_A"] == 0.4 and float(out.x[7]) == 0.0
    np.testing.assert_allclose(out.values, forward_project(vol, [-30.0, 0.0, 45.0]), atol=1e-5)
    ts = v.project([-30.0, 0.0, 45.0])
    assert isinstance(ts, aet.TiltSeries) and ts.is_single_axis


def test_project_lazy_euler(rng):
    vol = rng.random((10, 9, 8))
    eul = EULER
    v = aet.Volume(dsa.from_array(vol, chunks=5), voxel_size_A=0.4)
    with raise_if_dask_computes():
        out = project(v.data, angles=eul)
    np.testing.assert_allclose(out.values, forward_project(vol, eul), atol=1e-5)
    np.testing.assert_allclose(out.coords["phi"].values, eul[:, 0])
    ts = aet.Volume(vol, voxel_size_A=0.4).project(eul)
    np.testing.assert_allclose(ts.euler_angles, eul)


def test_bad_input():
    with pytest.raises(ValueError, match=r"euler_deg must be 1D tilt angles θ or an \(n, 3\)"):
        forward_project(np.zeros((4, 4, 4)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="euler_deg has 2 entries but proj_ayx has 3"):
        back_project(np.zeros((3, 4, 4)), [0.0, 1.0], volume_shape=(4, 4, 4))
    with pytest.raises(ValueError, match="contains NaN"):
        forward_project(np.zeros((4, 4, 4)), [np.nan])
