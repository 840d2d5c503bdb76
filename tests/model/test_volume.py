from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.errors import MetadataError


def test_volume_dims_coords(backend):
    v = aet.Volume(backend(np.zeros((5, 6, 7), np.float32)), voxel_size_A=0.4, source="sim")
    assert v.dims == ("z", "y", "x")
    np.testing.assert_allclose(v.data.z.values, (np.arange(5) - 2) * 0.4)
    assert v.voxel_size_A == 0.4 and v.attrs["source"] == "sim"
    assert v.is_lazy == (backend.name == "dask")
    assert "voxel_size_A: 0.4" in repr(v)


def test_sel_slice_keeps_dims_and_single_label_explains():
    v = aet.Volume(np.random.default_rng(0).random((8, 8, 8)), voxel_size_A=1.0)
    s = v.sel(z=slice(-1, 1))
    assert s.shape == (3, 8, 8)
    np.testing.assert_allclose(s.data.z.values, [-1, 0, 1])
    with pytest.raises(ValueError, match="dropped dimension"):
        v.sel(z=0)


@pytest.mark.parametrize(
    ("data", "vs", "exc", "match"),
    [
        (np.zeros((4, 4)), 1.0, ValueError, r"3 dims \(z, y, x\)"),
        (np.zeros((2, 2, 2)), 0.0, MetadataError, "finite positive"),
        (np.zeros((2, 2, 2)), None, MetadataError, "voxel_size_A is missing"),
        (np.zeros((0, 2, 2)), 1.0, ValueError, "empty"),
        (np.array([[[np.inf]]]), 1.0, ValueError, "non-finite"),
        (np.zeros((2, 2, 2)), "1", TypeError, "must be a number"),
    ],
)
def test_bad_volume_input(data, vs, exc, match):
    with pytest.raises(exc, match=match):
        aet.Volume(data, voxel_size_A=vs)
