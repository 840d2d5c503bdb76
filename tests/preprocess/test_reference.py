"""The vectorised preprocess helpers equal their slow twins (odd/even shapes, f32/f64)."""

from __future__ import annotations

import numpy as np
import pytest

from aet.preprocess._common import fourier_shift_image
from aet.preprocess.align import _profiles_one, _spectra_one
from tests.reference.preprocess import (
    line_profile_reference,
    profile_spectrum_reference,
    shift_reference,
)


@pytest.mark.parametrize("shape", [(12, 12), (13, 11)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_profiles_and_shift_match_reference(shape, dtype, rng):
    img = rng.random(shape).astype(dtype)
    alphas = np.array([0.0, 1.7, -4.0])
    got = _profiles_one(img, alphas, 1)
    for k, a in enumerate(alphas):
        np.testing.assert_allclose(got[k], line_profile_reference(img, a), rtol=1e-5,
                                   atol=1e-5)
    np.testing.assert_allclose(fourier_shift_image(img, (0.3, -1.6)),
                               shift_reference(img.astype(np.float64), (0.3, -1.6)),
                               atol=1e-5)


@pytest.mark.parametrize("shape", [(24, 24), (25, 23)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_profile_spectra_match_reference(shape, dtype, rng):
    img = (rng.random(shape) + 0.5).astype(dtype)
    alphas = np.array([0.0, 1.7, -4.0])
    freqs = np.array([1.0, 3.0, 7.0]) / shape[0]
    win = np.array([0.7, -1.2, 6.5, 2.0])
    got = _spectra_one(img, win, alphas, freqs)
    for k, a in enumerate(alphas):
        np.testing.assert_allclose(got[k], profile_spectrum_reference(
            img.astype(np.float64), win, a, freqs), rtol=1e-9, atol=1e-9)
