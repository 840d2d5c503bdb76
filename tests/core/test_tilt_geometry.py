"""The one tilt geometry (aet.core.geometry.TiltGeometry): read once from a tilt series,
written back unchanged, one pixel-size rule (no silent default), one single-axis tolerance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import xarray as xr

import aet
from aet.atoms.refinement import projection_geometry
from aet.core.geometry import SINGLE_AXIS_TOL_DEG, TiltGeometry, is_single_axis, pixel_size_of
from aet.errors import MetadataError
from aet.preprocess import align
from aet.reconstruct import reconstruct


def _series(n=5, ny=6, nx=7, px=0.4, euler=None):
    ang = np.linspace(-40, 40, n) if euler is None else euler
    return aet.TiltSeries(np.random.default_rng(0).random((n, ny, nx)), angles=ang,
                          pixel_size_A=px)


def test_read_and_write_back_is_the_identity():
    e = np.array([[1.5, -30.0, -0.5], [0.0, 0.0, 0.0], [-2.0, 30.0, 0.25]])
    ts = _series(3, euler=e, px=0.35)
    da = ts.data.assign_coords(shift_x_A=("angle", [0.1, -0.2, 0.3]),
                               shift_y_A=("angle", [0.0, 0.5, -0.5]))
    da.attrs["tilt_axis_rotation_deg"] = 2.5
    g = TiltGeometry.from_dataarray(da)
    np.testing.assert_array_equal(g.euler_deg, e)
    assert g.pixel_size_A == 0.35 and g.tilt_axis_rotation_deg == 2.5
    np.testing.assert_array_equal(g.shifts_A, [[0.1, 0.0], [-0.2, 0.5], [0.3, -0.5]])
    assert not g.single_axis
    back = g.assign_to(da.drop_vars(["phi", "psi", "shift_x_A", "shift_y_A"]))
    assert TiltGeometry.from_dataarray(back) == g
    # frozen: neither the fields nor the arrays can change
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.pixel_size_A = 1.0
    with pytest.raises(ValueError):
        g.euler_deg[0, 0] = 3.0


def test_aligned_adds_shifts_and_axis_rotation_to_the_recorded_ones():
    g = TiltGeometry(np.zeros((2, 3)), 0.5)
    g1 = g.aligned([[1.0, 2.0], [3.0, 4.0]], tilt_axis_rotation_deg=1.0)
    g2 = g1.aligned([[0.5, 0.5], [0.5, 0.5]], tilt_axis_rotation_deg=-0.25)
    np.testing.assert_array_equal(g2.shifts_A, [[1.5, 2.5], [3.5, 4.5]])
    assert g2.tilt_axis_rotation_deg == 0.75
    assert g.shifts_A is None and g.tilt_axis_rotation_deg is None  # g itself unchanged


def test_a_missing_pixel_size_is_a_clear_error_everywhere():
    """The refinement used to fall back to 1.0 Å when a one-pixel-wide series had no
    pixel_size_A: now every stage raises and names the fix."""
    da = xr.DataArray(np.ones((3, 4, 1)), dims=("angle", "y", "x"),
                      coords={"angle": [-30.0, 0.0, 30.0]})
    for read in (pixel_size_of, TiltGeometry.from_dataarray, projection_geometry):
        with pytest.raises(MetadataError, match=r"pixel_size_A=<Å per pixel>"):
            read(da)
    with pytest.raises(MetadataError, match="pixel_size_A"):
        reconstruct(da, method="wbp")
    # without the attribute, the uniform x coordinate gives it (one rule for every stage)
    da2 = xr.DataArray(np.ones((3, 4, 4)), dims=("angle", "y", "x"),
                       coords={"angle": [-30.0, 0.0, 30.0], "x": [-0.6, -0.3, 0.0, 0.3]})
    assert pixel_size_of(da2) == pytest.approx(0.3)
    assert projection_geometry(da2)["pixel_A"] == pytest.approx(0.3)
    bad = da2.assign_attrs(pixel_size_A=-1.0)
    with pytest.raises(MetadataError, match="finite positive"):
        pixel_size_of(bad)


def test_single_axis_is_decided_with_one_tolerance():
    tiny = 0.1 * SINGLE_AXIS_TOL_DEG
    e = np.array([[tiny, -30.0, 0.0], [0.0, 30.0, -tiny]])
    ts = _series(2, euler=e)
    assert is_single_axis(e) and ts.is_single_axis and ts.geometry.single_axis
    # align() accepts what the reconstructors treat as single-axis, and refuses the rest
    e2 = e.copy()
    e2[0, 0] = 0.5
    with pytest.raises(ValueError, match="single-axis"):
        align(_series(2, euler=e2).data)
    assert not _series(2, euler=e2).is_single_axis


def test_with_geometry_updates_the_series_and_keeps_the_images():
    ts = _series()
    g = ts.geometry.replace(euler_deg=ts.geometry.euler_deg + [[0.0, 0.5, 0.0]])
    out = ts.with_geometry(g)
    np.testing.assert_allclose(out.angles, ts.angles + 0.5)
    np.testing.assert_array_equal(out.values, ts.values)
    assert out.provenance[-1]["op"] == "with_geometry"
    assert out.geometry == g and "phi" not in out.data.coords
