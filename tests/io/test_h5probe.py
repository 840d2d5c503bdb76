"""The HDF5 probe: a damaged header that crashes or hangs the HDF5 C library becomes a
CorruptFileError instead of killing or freezing the user's interpreter."""

import h5py
import numpy as np
import pytest

import aet
from aet.errors import CorruptFileError
from aet.io import _h5probe


def _h5(path, userblock=0):
    with h5py.File(path, "w", userblock_size=userblock) as f:
        f.attrs["version_major"] = 0
        g = f.create_group("data")
        g.create_dataset("x", data=np.arange(6.0)).attrs["units"] = "nm"
    return path


def _flipped_sample(shared_data, tmp_path, byte):
    """RosettaSciIO's example_signal.emd with one byte inverted, written to tmp_path."""
    raw = bytearray((shared_data / "io_samples" / "example_signal.emd").read_bytes())
    raw[byte] ^= 0xFF
    p = tmp_path / "damaged.emd"
    p.write_bytes(bytes(raw))
    return p


def test_signature_found_at_start_and_after_a_user_block(tmp_path):
    assert _h5probe.is_hdf5(_h5(tmp_path / "a.h5"))
    assert _h5probe.is_hdf5(_h5(tmp_path / "b.h5", userblock=512))  # MATLAB v7.3 layout
    (tmp_path / "c.h5").write_bytes(b"not hdf5" * 100)
    assert not _h5probe.is_hdf5(tmp_path / "c.h5")


def test_healthy_file_passes(tmp_path):
    _h5probe.check_hdf5(_h5(tmp_path / "a.h5"))


def test_child_crash_and_hang_become_corrupt_file_errors(tmp_path, monkeypatch):
    p = _h5(tmp_path / "a.h5")
    monkeypatch.setattr(_h5probe, "_CHILD", "import os, signal; os.kill(os.getpid(), "
                                            "signal.SIGSEGV)")
    with pytest.raises(CorruptFileError, match=r"crashed the HDF5 library \(signal 11\).*"
                                               r"re-export"):
        _h5probe.check_hdf5(p)
    monkeypatch.setattr(_h5probe, "_CHILD", "import time; time.sleep(30)")
    with pytest.raises(CorruptFileError, match=r"did not finish .* in 1 s .* damaged"):
        _h5probe.check_hdf5(p, timeout_s=1)


def test_hollow_dataset_is_reported_and_a_compressed_one_is_not(tmp_path):
    p = tmp_path / "hollow.h5"
    with h5py.File(p, "w") as f:  # 1 GiB declared, nothing written
        f.create_dataset("data", shape=(64, 2048, 2048), dtype="float32", chunks=(1, 64, 64))
    with pytest.raises(CorruptFileError, match=r"declares 1073741824 bytes, stores 0"):
        _h5probe.check_hdf5(p)
    q = tmp_path / "zeros.h5"
    with h5py.File(q, "w") as f:  # 8 MiB of zeros, gzip: small but honest
        f.create_dataset("data", data=np.zeros((8, 512, 512), "float32"), compression="gzip")
    _h5probe.check_hdf5(q)


def test_non_hdf5_skips_the_child(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("no child process for a non-HDF5 file")
    monkeypatch.setattr(_h5probe.subprocess, "run", boom)
    (tmp_path / "c.txt").write_text("x")
    _h5probe.check_hdf5(tmp_path / "c.txt")


def test_flipped_byte_that_segfaulted_h5py_is_reported(shared_data, tmp_path):
    """Byte 857 of RosettaSciIO's example_signal.emd, flipped, crashed the interpreter
    inside h5py's attribute read (found by tests/io/test_fuzz.py)."""
    with pytest.raises(CorruptFileError, match="crashed the HDF5 library"):
        aet.open(_flipped_sample(shared_data, tmp_path, 857), pixel_size_A=1.0)


def test_flipped_shape_byte_that_took_24_gb_is_reported(shared_data, tmp_path):
    """Byte 10818 flipped turns a 3×3×3 dataset into 3×3×16711683: RosettaSciIO's reader then
    peaked at 24 GB and was killed by the OOM killer."""
    with pytest.raises(CorruptFileError, match="declares far more data than the file holds"):
        aet.open(_flipped_sample(shared_data, tmp_path, 10818), pixel_size_A=1.0)
