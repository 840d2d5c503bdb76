"""Saving over an existing file and failing half-way leaves the old file intact and no
temporary file behind — for single files and for Zarr directory stores."""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.io import REGISTRY


class Boom(RuntimeError):
    pass


def _fail_after_writing(real_write):
    """A writer that writes its file completely, then raises (the worst moment)."""

    def write(obj, path, **kw):
        real_write(obj, path, **kw)
        assert path.exists()  # the temporary file/folder really was written
        raise Boom("disk full (simulated)")

    return write


def _fail_half_way(real_write):
    """A writer that leaves a half-written temporary file, then raises."""

    def write(obj, path, **kw):
        real_write(obj, path, **kw)
        if path.is_file():
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2])
        raise Boom("disk full (simulated)")

    return write


def _obj(kind, value):
    if kind == "model":
        return aet.AtomicModel([[0.0, 0.0, value], [1.5, 0.0, 0.0]], ["Fe", "Pt"])
    if kind == "volume":
        return aet.Volume(np.full((3, 4, 5), value, np.float32), voxel_size_A=0.5)
    return aet.TiltSeries(np.full((3, 4, 5), value, np.float32), angles=[-10, 0, 10],
                          pixel_size_A=0.5)


CASES = [(f.name, f.extensions[-1] if f.name == "numpy" else f.extensions[0], f.kinds[0])
         for f in REGISTRY.values() if f.writer]  # numpy: .npz, which knows its angles


@pytest.mark.parametrize("failure", [_fail_after_writing, _fail_half_way],
                         ids=["after-writing", "half-way"])
@pytest.mark.parametrize(("name", "ext", "kind"), CASES, ids=[c[0] for c in CASES])
def test_failed_overwrite_keeps_old_file(tmp_path, monkeypatch, name, ext, kind, failure):
    path = tmp_path / f"obj{ext}"
    old = _obj(kind, 1.0)
    aet.io.write(old, path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    module, func = REGISTRY[name].writer.split(":")
    import importlib

    mod = importlib.import_module(module, package="aet.io")
    monkeypatch.setattr(mod, func, failure(getattr(mod, func)))
    with pytest.raises(Boom):
        aet.io.write(_obj(kind, 2.0), path)
    after = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert after == before  # no temporary file or folder left, nothing added or removed
    monkeypatch.undo()
    back = aet.open(path)
    if kind == "model":
        assert back.positions[0, 2] == 1.0
    else:
        assert np.all(back.values == 1.0)


def test_successful_overwrite_of_zarr_store_replaces_it(tmp_path):
    path = tmp_path / "v.zarr"
    aet.Volume(np.ones((2, 3, 4)), voxel_size_A=1.0).save(path)
    aet.Volume(np.zeros((5, 3, 4)), voxel_size_A=2.0).save(path)
    back = aet.open(path)
    assert back.shape == (5, 3, 4) and back.voxel_size_A == 2.0
    assert [p.name for p in tmp_path.iterdir()] == ["v.zarr"]


def test_overwrite_false_refuses(tmp_path):
    path = tmp_path / "v.tif"
    vol = aet.Volume(np.ones((2, 3, 4), np.float32), voxel_size_A=1.0)
    aet.io.write(vol, path)
    with pytest.raises(FileExistsError, match=r"exists; pass overwrite=True to replace it"):
        aet.io.write(vol, path, overwrite=False)


def test_missing_target_folder(tmp_path):
    vol = aet.Volume(np.ones((2, 3, 4), np.float32), voxel_size_A=1.0)
    with pytest.raises(FileNotFoundError, match=r"folder .* does not exist; create it first"):
        aet.io.write(vol, tmp_path / "nope" / "v.tif")
