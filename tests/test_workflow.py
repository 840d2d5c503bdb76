"""aet.run: the whole default pipeline in one call — its checks of what the user gives.

The pipeline's accuracy is asserted where it is run on data: tests/test_pipeline.py (aet demo,
which is aet.run plus scoring), tests/test_cli.py (``aet run`` on an MRC + .tlt pair) and the
abTEM-engine case of tests/simulate.
"""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.errors import AngleUnitWarning
from aet.workflow import _check_species, _structure_ratio


def _noise_series(n=15, shape=(48, 48), angles=None, seed=0):
    rng = np.random.default_rng(seed)
    data = rng.poisson(50, size=(n, *shape)).astype(float)
    if angles is None:
        angles = np.linspace(-60, 60, n)
    return aet.TiltSeries(data, angles=angles, pixel_size_A=0.35)


def test_species_are_ordered_light_to_heavy():
    assert _check_species(["Pt", "Fe"]) == (["Fe", "Pt"], True)
    assert _check_species(["Fe", "Pt"]) == (["Fe", "Pt"], False)
    assert _check_species("Pd,Co,Pt") == (["Co", "Pd", "Pt"], True)


@pytest.mark.parametrize("species, match", [
    (["Fe", "Xx"], r"unknown element symbol\(s\) \['Xx'\]"),
    (["PT"], r"unknown element.*case matters"),
    ([], r"species is empty"),
    (["Fe", "Fe"], r"lists an element twice"),
])
def test_bad_species_name_the_fix(species, match):
    with pytest.raises(ValueError, match=match):
        aet.run(_noise_series(), species=species)


def test_a_plain_array_needs_angles_and_pixel_size():
    with pytest.raises(TypeError, match=r"pass angles= .* and pixel_size_A="):
        aet.run(np.zeros((5, 16, 16)), species=["Pt"])


def test_a_series_with_no_particle_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"no structure above their noise.*holds no particle"):
        aet.run(_noise_series(), species=["Fe", "Pt"])


def test_radians_by_mistake_warn_before_the_work():
    ts = _noise_series(angles=np.radians(np.linspace(-60, 60, 15)))
    with pytest.warns(AngleUnitWarning, match=r"look like radians"), \
            pytest.raises(ValueError, match=r"no structure"):
        aet.run(ts, species=["Fe", "Pt"])


def test_structure_ratio_separates_noise_from_a_particle():
    """Noise alone: ~1; the small benchmark's raw frames: ≫ 1, at a dose 40× below its own."""
    assert _structure_ratio(_noise_series(seed=1)) < 1.4
    bench = aet.simulate.fept_benchmark("small", seed=0, dose_e_per_A2=500, n_frames=1)
    assert _structure_ratio(bench.tilt_series) > 2.0
