from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import aet
from aet.errors import MetadataError
from aet.testing import raise_if_dask_computes


def _ts(backend, n=5, **kw):
    arr = np.arange(n * 6 * 8, dtype=np.float32).reshape(n, 6, 8)
    return aet.TiltSeries(backend(arr), angles=np.linspace(-60, 60, n), pixel_size_A=0.35, **kw)


def test_dims_coords_attrs(backend):
    ts = _ts(backend, dose_e_per_A2=5e4)
    d = ts.data
    assert d.dims == ("angle", "y", "x")
    np.testing.assert_allclose(d.x.values, (np.arange(8) - 4) * 0.35)
    np.testing.assert_allclose(d.y.values, (np.arange(6) - 3) * 0.35)
    assert ts.pixel_size_A == 0.35 and ts.attrs["dose_e_per_A2"] == 5e4
    assert ts.is_lazy == (backend.name == "dask")
    assert ts.is_single_axis
    assert "angles: 5 from -60.00° to +60.00°" in repr(ts)


def test_lazy_stays_lazy_through_selection_and_chunk():
    arr = da.ones((4, 16, 16), chunks=(1, 16, 16))
    with raise_if_dask_computes():
        ts = aet.TiltSeries(arr, angles=[-30, -10, 10, 30], pixel_size_A=1.0)
        sub = ts.sel(angle=slice(-15, 15)).chunk({"angle": 1})
    assert sub.shape == (2, 16, 16) and sub.is_lazy
    assert sub.compute().is_lazy is False


def test_frames_dim_and_euler_angles():
    arr = np.zeros((3, 2, 4, 4))
    eul = np.array([[1.0, -20, 0.5], [0, 0, 0], [-1, 20, 0]])
    ts = aet.TiltSeries(arr, angles=eul, pixel_size_A=1)
    assert ts.dims == ("angle", "frame", "y", "x") and ts.n_frames == 2
    np.testing.assert_allclose(ts.euler_angles, eul)
    assert not ts.is_single_axis
    # rebuilding from the DataArray keeps the Euler angles
    np.testing.assert_allclose(aet.TiltSeries(ts.data).euler_angles, eul)


def test_methods_return_new_objects_and_record_provenance():
    ts = _ts(lambda a: a)
    sub = ts.isel(angle=[0, 2])
    assert ts.shape[0] == 5 and sub.shape[0] == 2
    assert sub.provenance[-1]["op"] == "isel"
    rec = sub.provenance[-1]
    assert set(rec) >= {"op", "params", "aet_version", "time"}
    with pytest.raises(AttributeError, match="immutable"):
        ts.foo = 1


def test_input_not_modified():
    arr = np.ones((2, 4, 4))
    ts = aet.TiltSeries(arr, angles=[0, 10], pixel_size_A=1)
    ts.with_angles([1, 2])
    assert np.all(arr == 1)
    np.testing.assert_array_equal(ts.angles, [0, 10])


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"data": np.zeros((4, 4)), "angles": [0]}, ValueError, "single image"),
        ({"data": np.zeros((2, 2, 2, 2, 2)), "angles": [0, 1]}, ValueError, "got 5 dims"),
        ({"data": np.zeros((3, 4, 4)), "angles": [0, 1]}, ValueError,
         r"angles has 2 entries but the tilt series has 3 projections"),
        ({"data": np.zeros((2, 4, 4)), "angles": [0, 1], "pixel_size_A": -1}, MetadataError,
         "finite positive"),
        ({"data": np.zeros((2, 4, 4)), "angles": [0, 1], "pixel_size_A": None}, MetadataError,
         "pixel_size_A is missing"),
        ({"data": np.full((2, 4, 4), np.nan), "angles": [0, 1]}, ValueError, "non-finite"),
        ({"data": np.zeros((2, 4, 4)), "angles": None}, MetadataError, "angles is missing"),
        ({"data": np.zeros((2, 4, 4)), "angles": [0, 200]}, ValueError, "radians"),
        ({"data": np.zeros((2, 4, 4), dtype=complex), "angles": [0, 1]}, TypeError,
         "real numbers"),
        ({"data": "file.mrc", "angles": [0]}, TypeError, "must be an array"),
    ],
)
def test_bad_input_messages(kwargs, exc, match):
    kwargs = {"pixel_size_A": 0.5, **kwargs}
    data = kwargs.pop("data")
    with pytest.raises(exc, match=match):
        aet.TiltSeries(data, **kwargs)


def test_wrong_dims_dataarray():
    da_ = xr.DataArray(np.zeros((2, 3, 4)), dims=("z", "y", "x"))
    with pytest.raises(ValueError, match=r"expected \('angle', 'y', 'x'\)"):
        aet.TiltSeries(da_, angles=[0, 1], pixel_size_A=1)
