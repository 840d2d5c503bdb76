"""Numba kernels of aet.analysis equal their NumPy twins (odd/even grids, float32/float64)."""

import numpy as np
import pytest

from aet.analysis._kernels import splat_moments, splat_values
from tests.reference.analysis import splat_moments_reference, splat_values_reference


@pytest.mark.parametrize("shape", [(7, 8, 9), (6, 6, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_splat_kernels_match_reference(shape, dtype, rng):
    spacing = 0.8
    origin = -spacing * (np.array(shape) // 2).astype(np.float64)
    pos = rng.uniform(-3.5, 3.5, (25, 3)).astype(dtype)
    disp = rng.normal(0, 0.1, (25, 3)).astype(dtype)
    vals = rng.normal(size=25).astype(dtype)
    shp = np.array(shape, dtype=np.int64)
    m = splat_moments(pos, disp, origin, spacing, shp, 1.3, 3.0)
    ref = splat_moments_reference(pos, disp, origin, spacing, shape, 1.3, 3.0)
    assert m.shape == (*shape, 22)
    np.testing.assert_allclose(m, ref, rtol=1e-9, atol=1e-12)
    num, den = splat_values(pos, vals, origin, spacing, shp, 1.3, 3.0)
    rnum, rden = splat_values_reference(pos, vals, origin, spacing, shape, 1.3, 3.0)
    np.testing.assert_allclose(num, rnum, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(den, rden, rtol=1e-9, atol=1e-12)
    assert den.max() > 0.5  # the test grid is actually hit
