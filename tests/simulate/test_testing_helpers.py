"""aet.testing.simulate: cached cases are shared and read-only; perturbed models score as
their parameters say."""

from __future__ import annotations

import numpy as np
import pytest

from aet.simulate import score
from aet.testing.simulate import benchmark_case, perturbed_model


def test_benchmark_case_is_cached_and_read_only():
    a = benchmark_case("small", seed=0, n_angles=5)
    b = benchmark_case("small", seed=0, n_angles=5)
    assert a is b
    assert a.tilt_series.values.shape[0] == 5
    with pytest.raises(ValueError, match="read-only"):
        a.tilt_series.values[0, 0, 0, 0] = 1.0
    assert benchmark_case("small", seed=1, n_angles=5) is not a


def test_perturbed_model_scores_as_specified():
    truth = benchmark_case("small", seed=0, n_angles=5).truth
    p = perturbed_model(truth, sigma_A=0.1, species_error_rate=0.1, drop_fraction=0.1,
                        n_spurious=7, shift_A=(0.4, -0.2, 0.1), seed=3)
    s = score(p, truth)
    assert s.recall == pytest.approx(0.9, abs=0.05)
    assert s.n_predicted - s.n_matched == 7
    assert s.rmsd_pm == pytest.approx(10 * np.sqrt(3), rel=0.15)
    assert s.species_accuracy == pytest.approx(0.9, abs=0.05)
