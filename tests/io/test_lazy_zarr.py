"""A 2 GiB Zarr volume opens lazily and one slice reads only the chunks it needs.

The store is made with xarray ``to_zarr(compute=False)`` from a dask array: metadata and
coordinates are written, data chunks are not (Zarr returns the fill value for them), so the
"2 GiB" volume takes a few MiB of disk. Chunk reads are counted by wrapping
``zarr.storage.LocalStore.get``.
"""

from __future__ import annotations

import re

import dask.array as dsa
import numpy as np
import pytest
import zarr

import aet
from aet.io.zarr_ import to_dataset
from aet.testing import raise_if_dask_computes

SHAPE = (512, 1024, 1024)  # float32: 2 GiB
CHUNKS = (32, 256, 256)  # 8 MiB chunks, 16 × 4 × 4 = 256 of them


@pytest.fixture
def big_store(tmp_path):
    vol = aet.Volume(dsa.zeros(SHAPE, chunks=CHUNKS, dtype=np.float32), voxel_size_A=0.5,
                     note="sparse test store")
    assert vol.data.nbytes == 2 * 2**30
    path = tmp_path / "big.zarr"
    ds = to_dataset(vol)
    for v in ds.variables.values():
        v.encoding = {}
    ds.to_zarr(path, mode="w", compute=False, consolidated=True, zarr_format=2)
    # write real values into one chunk: z block 5, y block 1, x block 2
    arr = zarr.open_array(path / "volume", mode="r+")
    block = np.arange(np.prod(CHUNKS), dtype=np.float32).reshape(CHUNKS)
    arr[160:192, 256:512, 512:768] = block
    return path, block


@pytest.fixture
def chunk_reads(monkeypatch):
    reads: list[str] = []
    orig = zarr.storage.LocalStore.get

    async def counting_get(self, key, *args, **kwargs):
        reads.append(key)
        return await orig(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "get", counting_get)
    return reads


def _data_chunks(keys):
    return {k for k in keys if re.fullmatch(r"volume/\d+\.\d+\.\d+", k)}


def test_disk_use_is_small(big_store):
    path, _ = big_store
    used = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    assert used < 10 * 2**20  # one 8 MiB chunk plus metadata and coordinates


def test_open_is_lazy_and_one_slice_reads_its_chunks_only(big_store, chunk_reads):
    path, block = big_store
    with raise_if_dask_computes():
        vol = aet.open(path)
        assert vol.is_lazy and vol.shape == SHAPE
        assert vol.voxel_size_A == 0.5 and vol.attrs["note"] == "sparse test store"
        z_value = float(vol.data.z[170])  # inside z block 5 (indices 160..191)
        sl = vol.sel(z=[z_value])
        assert sl.is_lazy and sl.shape == (1, 1024, 1024)
    assert _data_chunks(chunk_reads) == set()  # opening and selecting read no data chunk

    values = sl.values
    read = _data_chunks(chunk_reads)
    # the z slice crosses 4 × 4 chunks of z block 5, and nothing else
    assert read == {f"volume/5.{j}.{i}" for j in range(4) for i in range(4)}
    assert len(chunk_reads) - len(read) < 10  # besides them only a few metadata keys
    np.testing.assert_array_equal(values[0, 256:512, 512:768], block[170 - 160])
    assert np.isnan(values[0, :256]).all()  # never-written chunks read as the fill value
