"""Extended objects (films): padded box, data term on the measured field of view only."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io as sio

import aet
from aet.reconstruct import reconstruct
from aet.testing import gaussian_atoms_volume
from aet.testing.reconstruct import gaussian_atom_projections, relative_error


def _corr(a, b):
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_padded_film_beats_the_unpadded_box():
    """A 9 Å amorphous slab far wider than the 40-pixel field of view, tilted to ±60°:
    material that enters the view at high tilt must be reconstructed outside it."""
    rng = np.random.default_rng(3)
    vs = 0.4
    n_atoms = 260
    pos = np.column_stack([rng.uniform(-30, 30, n_atoms), rng.uniform(-2.4, 2.4, n_atoms),
                           rng.uniform(-4.5, 4.5, n_atoms)])
    th = np.linspace(-60, 60, 25)
    eul = np.stack([0 * th, th, 0 * th], 1)
    proj = gaussian_atom_projections(pos, eul, (12, 40), vs, sigma_A=0.5)
    ts = aet.TiltSeries(proj.astype(np.float32), angles=th, pixel_size_A=vs)
    truth = gaussian_atoms_volume(pos, (40, 12, 40), vs, sigma_A=0.5).values
    err = {}
    for pad in (0, 24):
        vol, res = reconstruct(ts.data, method="resire", pad_x=pad, n_iter=60, holdout=0.0,
                               progress=False)
        assert vol.shape == (40, 12, 40)
        err[pad] = relative_error(vol.values, truth)
    # measured: unpadded box 0.93, padded 0.28
    assert err[24] < 0.35 and err[24] < 0.5 * err[0]


@pytest.mark.slow
@pytest.mark.requires_data
def test_ta_film_agrees_with_published_resire(shared_data):
    """Real data (Yuan et al., Nat. Mater. 21, 95 (2022)): area 1 of the amorphous Ta film,
    46 aligned projections, against the published RESIRE reconstruction of the same data."""
    from aet.io.matlab import euler_to_zyz, matlab_to_aet

    d = shared_data / "aet_ta_film_sAET"
    if not (d / "Projections_area1.mat").exists():
        pytest.skip("Ta film data not present")
    # MATLAB (x, y, n) -> (angle, y, x); (x, y, z) -> (z, y, x)
    proj = matlab_to_aet(sio.loadmat(d / "Projections_area1.mat")["Proj_sub"])
    # RESIRE composes z, y, x rotations of the sampling grid: convert through the matrices
    euler = euler_to_zyz(sio.loadmat(d / "angles.mat")["angle"], "resire")
    published = matlab_to_aet(sio.loadmat(d / "ReconObj_sub1_RESIRE.mat")["reconstruction"])
    ts = aet.TiltSeries(np.ascontiguousarray(proj, np.float32), angles=euler,
                        pixel_size_A=0.3216)
    vol, res = reconstruct(ts.data, method="resire", pad_x=48, n_iter=150, progress=False)
    assert vol.shape == published.shape == (131, 61, 131)
    c = _corr(vol.values, published)
    # measured: 0.86 (29 iterations, early-stopped on held-out pixels); without the padding
    # (pad_x=0) only 0.63
    assert c >= 0.8
    assert res["r1"] < 0.2
