"""Out-of-core single-axis reconstruction: a lazy tilt series reconstructs y-block by y-block
(each block reading only its own rows of projections) into Zarr, equal to the in-memory result."""

from __future__ import annotations

import threading

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

import aet
from aet.reconstruct import reconstruct
from aet.testing.reconstruct import fcc_phantom, relative_error

N, CHUNK = 32, 8


@pytest.fixture(scope="module")
def phantom32():
    return fcc_phantom(N, noise=0.02, n_proj=21, max_tilt_deg=60, seed=3)


def _lazy_series(ph, calls):
    """A dask tilt series whose y-blocks come from separate delayed reads (counted in calls)."""
    lock = threading.Lock()

    def read(y0, y1):
        with lock:
            calls.append((y0, y1))
        return ph["projections"][:, y0:y1].copy()

    na = len(ph["angles"])
    parts = [dsa.from_delayed(dask.delayed(read)(y0, y0 + CHUNK), shape=(na, CHUNK, N),
                              dtype=np.float32) for y0 in range(0, N, CHUNK)]
    return aet.TiltSeries(dsa.concatenate(parts, axis=1), angles=ph["angles"],
                          pixel_size_A=ph["voxel_size_A"]).data


@pytest.mark.parametrize("method", ["resire", "sirt"])
def test_one_block_of_slices_reads_only_its_rows_and_equals_eager(phantom32, method):
    calls = []
    kw = dict(method=method, n_iter=12, holdout=0.0, progress=False, film=False)
    lazy, res = reconstruct(_lazy_series(phantom32, calls), **kw)
    assert res["lazy"] and lazy.data.chunks[1] == (CHUNK,) * (N // CHUNK)
    assert calls == []  # building the graph read nothing
    with dask.config.set(scheduler="synchronous"):
        block = lazy.isel(y=slice(CHUNK, 2 * CHUNK)).values
    assert calls == [(CHUNK, 2 * CHUNK)]  # only the projections' rows of that block
    eager, _ = reconstruct(aet.TiltSeries(phantom32["projections"], angles=phantom32["angles"],
                                          pixel_size_A=phantom32["voxel_size_A"]).data, **kw)
    ref = eager.values[:, CHUNK:2 * CHUNK]
    np.testing.assert_allclose(block, ref, rtol=0, atol=2e-5 * float(np.abs(ref).max()))


def test_lazy_reconstruction_streams_into_zarr_and_matches_truth(phantom32, tmp_path):
    calls = []
    lazy, _ = reconstruct(_lazy_series(phantom32, calls), method="resire", n_iter=30,
                          holdout=0.0, progress=False, film=False)
    store = tmp_path / "vol.zarr"
    with dask.config.set(scheduler="threads", num_workers=2):
        lazy.to_dataset(name="volume").to_zarr(store, mode="w", consolidated=False)
    assert sorted(calls) == [(y0, y0 + CHUNK) for y0 in range(0, N, CHUNK)]  # each block once
    back = xr.open_zarr(store, consolidated=False)["volume"]
    assert back.encoding["chunks"] == (N, CHUNK, N)  # stored block by block along y
    assert back.attrs["voxel_size_A"] == pytest.approx(phantom32["voxel_size_A"])
    np.testing.assert_array_equal(back["y"].values, lazy["y"].values)
    truth = phantom32["truth"]
    # measured: 0.226 whole box (30 RESIRE iterations, 21 projections over ±60°, 2 % noise;
    # 0.849 after one iteration)
    assert relative_error(back.values, truth) < 0.27
