"""Preprocessing stages on synthetic series with known degradations (errors vs truth)."""

from __future__ import annotations

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import aet
from aet.preprocess import AngleOrderWarning, anscombe, inverse_anscombe
from aet.testing import raise_if_dask_computes

from .synthetic import gauge_residual, make_series, project_blobs, to_series

PX = 0.4


@pytest.fixture(scope="module")
def framed():
    """8 angles × 5 Poisson frames with a random-walk drift (truth in Å)."""
    s = make_series(n_angles=8, shape=(64, 64), pixel_size_A=PX, shift_sigma_A=0.0)
    rng = np.random.default_rng(1)
    nf = 5
    drift = np.cumsum(rng.normal(0.3, 0.25, (8, nf, 2)), axis=1)
    drift -= drift[:, :1]
    frames = np.stack([project_blobs(s["pos"], s["euler"], shape=(64, 64), pixel_size_A=PX,
                                     shifts_xy_A=drift[:, f]) for f in range(nf)], axis=1)
    lam = frames * 50 + 5
    noisy = rng.poisson(lam).astype(np.float64)
    return {"noisy": noisy, "drift": drift, "clean": s["clean"] * 50 + 5, "angles": s["angles"]}


def test_register_frames_recovers_drift_and_noise_model(framed):
    ts = aet.TiltSeries(framed["noisy"], angles=framed["angles"], pixel_size_A=PX)
    merged = ts.register_frames()
    assert merged.dims == ("angle", "y", "x")
    res = merged.provenance[-1]["result"]
    err_x = np.asarray(res["shift_x_A"]) - framed["drift"][..., 0]
    err_y = np.asarray(res["shift_y_A"]) - framed["drift"][..., 1]
    assert np.sqrt(np.mean(err_x**2)) / PX < 0.05
    assert np.sqrt(np.mean(err_y**2)) / PX < 0.05
    # fitted drift velocity (Å/frame) matches the least-squares slope of the true drift
    v_true = np.polyfit(np.arange(5), framed["drift"][..., 0].T, 1)[0]
    np.testing.assert_allclose(merged.data.coords["drift_x_A"].values, v_true, atol=0.02)
    # merged noise: Poisson mean λ averaged over 5 frames → variance λ/5
    resid = merged.values - framed["clean"]
    assert abs(np.mean(resid**2) / np.mean(framed["clean"]) - 0.2) < 0.02
    slope = merged.data.coords["noise_var_slope"].values
    assert np.all(np.abs(slope - 0.2) < 0.05)


def test_register_frames_lazy_matches_eager(framed):
    arr = dsa.from_array(framed["noisy"], chunks=(3, 5, 64, 64))
    lazy = aet.TiltSeries(arr, angles=framed["angles"], pixel_size_A=PX)
    with raise_if_dask_computes():
        m = lazy.register_frames()
        d = m.remove_background(order=0)
    assert m.is_lazy and d.is_lazy
    eager = aet.TiltSeries(framed["noisy"], angles=framed["angles"],
                           pixel_size_A=PX).register_frames()
    computed = m.compute()
    np.testing.assert_allclose(computed.values, eager.values, atol=1e-9)
    np.testing.assert_allclose(computed.data.coords["drift_x_A"].values,
                               eager.data.coords["drift_x_A"].values)


def test_denoise_raises_psnr(framed):
    ts = aet.TiltSeries(framed["noisy"][:3], angles=framed["angles"][:3], pixel_size_A=PX)
    merged = ts.register_frames()
    clean = framed["clean"][:3]

    def psnr(x):
        return 10 * np.log10(np.ptp(clean) ** 2 / np.mean((x - clean) ** 2))

    p0 = psnr(merged.values)
    den = merged.denoise()
    assert den.provenance[-1]["result"]["noise"] == "poisson"
    assert psnr(den.values) - p0 > 2.5
    assert psnr(merged.denoise(method="nlm").values) - p0 > 1.5


def test_anscombe_roundtrip_is_unbiased():
    rng = np.random.default_rng(0)
    for lam in (3.0, 20.0, 200.0):
        z = anscombe(rng.poisson(lam, 100_000).astype(float))
        assert abs(z.std() - 1) < 0.05
        # the unbiased inverse of the mean of the transformed data returns λ
        assert abs(inverse_anscombe(np.array([z.mean()]))[0] - lam) / lam < 0.02


def test_remove_background_recovers_object(rng):
    s = make_series(n_angles=4, shape=(64, 64), pixel_size_A=PX, shift_sigma_A=0.0)
    yy, xx = np.mgrid[:64, :64] / 64.0
    bg = 3.0 + 2.0 * xx - 1.5 * yy + 1.0 * xx * yy
    data = s["clean"] + bg[None] + rng.normal(0, 0.02, s["clean"].shape)
    ts = to_series(data, s["angles"], PX)
    out = ts.remove_background(order=2)
    bg_err = (data - out.values) - bg[None]  # fitted minus true background
    assert np.sqrt(np.mean(bg_err**2)) < 0.005
    clipped = ts.remove_background(order=2, negative="clip")
    assert clipped.values.min() == 0.0
    # a user mask (True = object) works and a wrong shape is refused
    mask = np.abs(s["clean"]).max(axis=0) > 1e-3
    out2 = ts.remove_background(mask=mask)
    assert np.sqrt(np.mean(((data - out2.values) - bg[None]) ** 2)) < 0.005
    with pytest.raises(ValueError, match=r"mask has shape \(10, 10\) but the projections"):
        ts.remove_background(mask=np.zeros((10, 10), bool))


@pytest.mark.parametrize("rotation", [0.0, 1.3])
def test_align_shifts_and_tilt_axis(rotation):
    s = make_series(n_angles=25, shape=(64, 64), pixel_size_A=PX, shift_sigma_A=1.0,
                    rotation_deg=rotation, seed=2)
    ts = to_series(s["raw"], s["angles"], PX)
    al = ts.align()
    res = al.provenance[-1]["result"]
    assert abs(res["tilt_axis_rotation_deg"] - rotation) < 0.1
    meas = np.stack([al.data.shift_x_A.values, al.data.shift_y_A.values], axis=1)
    r = gauge_residual(meas, s["shifts_xy_A"], s["euler"]) / PX
    assert np.sqrt(np.mean(r[:, 0] ** 2)) < 0.1 and np.sqrt(np.mean(r[:, 1] ** 2)) < 0.1
    # the aligned series matches the clean one
    assert np.sqrt(np.mean((al.values - s["clean"]) ** 2)) < 0.05 * s["clean"].max()


def test_align_lazy_measures_per_projection_and_applies_lazily(backend):
    s = make_series(n_angles=9, shape=(48, 48), pixel_size_A=PX, shift_sigma_A=1.0, seed=3)
    ts = to_series(backend(s["raw"]), s["angles"], PX)
    eager = to_series(s["raw"], s["angles"], PX).align(tilt_axis=None)
    # measurement: two small reductions (centroids, line profiles), never the stack
    with raise_if_dask_computes(max_computes=2 if backend.name == "dask" else 0):
        al = ts.align(tilt_axis=None)
    assert al.is_lazy == (backend.name == "dask")
    np.testing.assert_allclose(al.data.shift_x_A.values, eager.data.shift_x_A.values)
    np.testing.assert_allclose(al.values, eager.values, atol=1e-9)
    # applying known shifts is fully lazy
    with raise_if_dask_computes():
        ap = ts.align(tilt_axis=None, shifts=(s["shifts_xy_A"][:, 0], s["shifts_xy_A"][:, 1]))
        den = ap.denoise(method="nlm", noise="gaussian", sigma=0.01)
    assert den.is_lazy == (backend.name == "dask")


# --------------------------------------------------------------------------- bad input
def _framed_ts(arr):
    return xr.DataArray(arr, dims=("angle", "frame", "y", "x"),
                        coords={"angle": np.linspace(-30, 30, arr.shape[0])},
                        attrs={"pixel_size_A": 0.5})


def test_bad_input_messages():
    rng = np.random.default_rng(0)
    arr = rng.random((3, 2, 16, 16)) + 1
    arr[1, 1] = 0
    with pytest.raises(ValueError, match=r"frame\(s\) \[1\] of the projection at angle 0°"):
        aet.preprocess.register_frames(_framed_ts(arr))
    out, res = aet.preprocess.register_frames(_framed_ts(arr), zero_frames="drop")
    assert out.coords["n_frames_used"].values.tolist() == [2, 1, 2]
    nan = rng.random((3, 16, 16))
    nan[0, 2, 2] = np.nan
    da = xr.DataArray(nan, dims=("angle", "y", "x"), coords={"angle": [0.0, 1, 2]},
                      attrs={"pixel_size_A": 1.0})
    with pytest.raises(ValueError, match=r"denoise: da contains 1 NaN/inf value"):
        aet.preprocess.denoise(da)
    lazy = da.chunk({"angle": 1})
    out, _ = aet.preprocess.remove_background(lazy, mask=np.zeros((16, 16), bool))
    with pytest.raises(ValueError, match="remove_background: the data contain 1 NaN/inf"):
        out.compute()
    one = aet.TiltSeries(rng.random((1, 16, 16)), angles=[0.0], pixel_size_A=1.0)
    with pytest.raises(ValueError, match=r"align: the series has 1 projection\(s\) but needs"):
        one.align()
    unequal = [rng.random((16, 16)), rng.random((16, 15))]
    with pytest.raises(ValueError):
        aet.TiltSeries(np.array(unequal, dtype=object).astype(float), angles=[0, 1],
                       pixel_size_A=1.0)
    with pytest.raises(ValueError, match="align: the series still has 2 frames per angle"):
        aet.preprocess.align(_framed_ts(rng.random((3, 2, 8, 8))))


def test_unsorted_angles_are_sorted_with_warning():
    s = make_series(n_angles=9, shape=(48, 48), pixel_size_A=PX, shift_sigma_A=1.0, seed=3)
    order = np.random.default_rng(0).permutation(9)
    ts = to_series(s["raw"][order], s["angles"][order], PX)
    with pytest.warns(AngleOrderWarning, match="angles were not in increasing order"):
        al = ts.align(tilt_axis=None)
    assert np.all(np.diff(al.angles) > 0)
    ref = to_series(s["raw"], s["angles"], PX).align(tilt_axis=None)
    np.testing.assert_allclose(al.values, ref.values, atol=1e-9)
