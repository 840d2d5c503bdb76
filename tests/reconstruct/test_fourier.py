"""Fourier-slice forward model (NUFFT vs gridding), GENFIRE's R_free, FSC and resolution."""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.reconstruct import (
    fourier_shell_correlation,
    fourier_slice_values,
    genfire,
    reconstruct,
    resolution_from_fsc,
)
from aet.testing.reconstruct import fcc_phantom, relative_error


def _dft(vol, q):
    z, y, x = (np.arange(n) - n // 2 for n in vol.shape)
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")
    return np.array([(vol * np.exp(-2j * np.pi * (a * X + b * Y + c * Z))).sum()
                     for a, b, c in q])


@pytest.mark.parametrize("shape", [(6, 7, 8), (9, 8, 7)])
def test_nufft_equals_direct_dft(shape, rng):
    vol = rng.random(shape)
    q = rng.uniform(-0.5, 0.5, (25, 3))
    _, v = fourier_slice_values(vol, None, q, method="nufft", eps=1e-12)
    np.testing.assert_allclose(v, _dft(vol, q), atol=1e-9 * np.abs(v).max())


def test_gridding_is_approximate_and_improves_with_oversampling():
    ph = fcc_phantom(32, noise=0.0)
    vol = ph["truth"]
    eul = np.array([[0, 10, 0], [0, 47, 0], [15, -30, 5]], float)
    q, exact = fourier_slice_values(vol, eul, method="nufft", eps=1e-12)
    err = {}
    for os_ in (2.0, 4.0):
        _, g = fourier_slice_values(vol, None, q, method="gridding", oversampling=os_)
        err[os_] = np.linalg.norm(g - exact) / np.linalg.norm(exact)
    # measured: 4.3e-2 at 2×, 1.1e-2 at 4× (trilinear between grid points)
    assert err[2.0] < 0.06 and err[4.0] < 0.4 * err[2.0]


def test_fourier_slice_theorem_matches_the_projector():
    """The 2D DFT of aet's projection equals the 3D spectrum on the rotated central slice."""
    ph = fcc_phantom(32, noise=0.0)
    vol = ph["truth"]
    e = np.array([[0.0, 35.0, 0.0]])
    proj = aet.reconstruct.forward_project(vol, e)[0].astype(np.float64)
    ky, kx = np.meshgrid(np.fft.fftfreq(32), np.fft.fftfreq(32), indexing="ij")
    sel = (kx**2 + ky**2) < 0.15**2
    R = aet.reconstruct.rotation_matrices(e)[0]
    q = (R.T @ np.stack([kx[sel], ky[sel], 0 * kx[sel]])).T
    _, f3 = fourier_slice_values(vol, None, q, method="nufft", eps=1e-10)
    pad = np.fft.ifftshift(proj)  # centre (index n // 2) to index 0
    f2 = np.fft.fft2(pad)[sel]
    assert np.linalg.norm(f2 - f3) / np.linalg.norm(f3) < 0.02


def test_genfire_reports_r_free_and_converges():
    ph = fcc_phantom(32, noise=0.01, n_proj=31)
    eul = np.stack([0 * ph["angles"], ph["angles"], 0 * ph["angles"]], 1)
    vol, rec = genfire(ph["projections"], eul, (32, 32, 32), n_iter=30, seed=1)
    assert rec["grid_size"] == 64 and len(rec["error"]) == 29
    assert rec["error"][-1] < rec["error"][len(rec["error"]) // 2]
    assert 0 < rec["r_free_mean"] < 1 and len(rec["r_free"]) == 10
    inner = ph["truth"] > 0.1 * ph["truth"].max()
    # measured: 0.084 (R_free 0.27)
    assert relative_error(vol, ph["truth"], inner) < 0.15
    v2, _ = genfire(ph["projections"], eul, (32, 32, 32), n_iter=30, seed=1)
    np.testing.assert_array_equal(vol, v2)


def test_fsc_and_resolution():
    rng = np.random.default_rng(0)
    ph = fcc_phantom(32, noise=0.0)
    a = ph["truth"] + rng.normal(0, 0.05, ph["truth"].shape)
    b = ph["truth"] + rng.normal(0, 0.05, ph["truth"].shape)
    f, c = fourier_shell_correlation(a, b, voxel_size_A=0.375)
    assert c[0] > 0.99 and c[-1] < c[0]
    assert f[-1] == pytest.approx(0.5 / 0.375 * (1 - 1 / 32), rel=1e-6)
    res = resolution_from_fsc(f, c)
    assert 0.75 <= res < 3.0
    # exact crossing on a synthetic curve
    assert resolution_from_fsc([0.1, 0.2, 0.3], [0.9, 0.5, 0.1], threshold=0.3) == \
        pytest.approx(1 / 0.25)
    with pytest.raises(ValueError, match="same shape"):
        fourier_shell_correlation(a, b[:-1])


def test_half_set_fsc_in_result():
    ph = fcc_phantom(32, noise=0.01, n_proj=31)
    ts = aet.TiltSeries(ph["projections"], angles=ph["angles"], pixel_size_A=0.375)
    _, res = reconstruct(ts.data, method="resire", n_iter=30, fsc=True, progress=False)
    fsc = res["fsc"]
    assert fsc["fsc"][1] > 0.8
    assert 0.75 <= fsc["resolution_A"] < 4.0
