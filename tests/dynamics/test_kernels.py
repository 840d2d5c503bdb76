"""The Gaussian splat kernel equals its dense NumPy twin."""

import numpy as np
import pytest

from aet.dynamics import _kernels
from tests.reference.dynamics import gaussian_splat_reference


@pytest.mark.parametrize("shape", [(7, 8, 9), (6, 6, 6), (5, 9, 4)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_splat_equals_reference(shape, dtype, rng):
    n = 15
    # atoms inside, on the border and partly outside the grid
    half = (np.array(shape) + 1)[None, :] / 2
    idx = rng.uniform(-1.0, 1.0, (n, 3)) * half + (np.array(shape) - 1)[None, :] / 2
    idx = idx.astype(dtype)
    vals = rng.uniform(0, 1, n).astype(dtype)
    num, den = _kernels.splat(idx, vals, shape, 1.3, 3.1)
    rnum, rden = gaussian_splat_reference(idx.astype(float), vals.astype(float), shape, 1.3, 3.1)
    assert num.dtype == np.float64
    np.testing.assert_allclose(num, rnum, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(den, rden, rtol=1e-12, atol=1e-12)
    assert den.max() > 0.5  # the test exercised real overlaps


def test_splat_single_atom_on_voxel_peak_is_one():
    num, den = _kernels.splat(np.array([[2.0, 3.0, 4.0]]), np.array([0.7]), (5, 7, 9), 1.0, 2.5)
    assert den[2, 3, 4] == pytest.approx(1.0)
    assert num[2, 3, 4] == pytest.approx(0.7)
    # exp(-1/2) one voxel away, zero beyond the radius
    assert den[2, 3, 5] == pytest.approx(np.exp(-0.5))
    assert den[2, 3, 7] == 0.0
