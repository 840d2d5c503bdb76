"""Shared fixtures: eager/lazy backends, the shared real-data folder, temp paths."""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
from hypothesis import settings

# CI must land or fail on the code, not on which random examples hypothesis drew this time:
# under CI=true the property tests draw a fixed sequence (locally they keep exploring).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

# ../shared/data beside the checkout (real published data; never committed). Tests that read
# it skip when it is absent.
SHARED_DATA = Path(os.environ.get("AET_SHARED_DATA",
                                  Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(params=["numpy", "dask"])
def backend(request):
    """Run a test eager and lazy: returns a function turning a numpy array into the backend's
    array (dask with ragged chunks along the first axis)."""

    def convert(arr: np.ndarray):
        if request.param == "numpy":
            return arr
        n = arr.shape[0]
        first = max(1, n // 3)
        chunks = (first, n - first) if n > 1 else (1,)
        return da.from_array(arr, chunks=(chunks, *arr.shape[1:]))

    convert.name = request.param
    return convert


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
