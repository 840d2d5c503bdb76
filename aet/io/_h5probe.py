"""Probe an HDF5 file's metadata in a child process before reading it in this one.

The HDF5 C library can crash the interpreter (segmentation fault) or loop without end on a
damaged file: a single flipped byte in an EMD sample's attribute headers does either inside
``h5py.AttributeManager.__getitem__``. No Python ``try`` can catch that, so before any
HDF5-based reader (EMD, HDF5, MATLAB v7.3, NetCDF-4) touches a file, a child interpreter opens
it with h5py and reads every object header and attribute. If the child dies by a signal or
runs past the time limit, the file is reported damaged with :class:`~aet.errors.CorruptFileError`;
if it merely raises (not HDF5, unreadable), the real reader runs and raises its own clear error.
A dataset whose header declares > 256 MiB but whose file storage is under 1/10⁴ of that is
also reported (a damaged shape field; reading it would try to allocate the declared size).
Data are not read, so the probe costs one interpreter start (~0.3 s) whatever the file size.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..errors import CorruptFileError

# a dataset declaring > 256 MiB while storing < 1/10⁴ of it: a damaged shape field (one flipped
# byte turned an EMD sample's 3×3×3 into 3×3×16711683 and RosettaSciIO then took 24 GB)
_HOLLOW_BYTES = 256 * 2**20
_HOLLOW_RATIO = 1e4
_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# HDF5 looks for its signature at 0 and at 512 · 2^k (a user block, e.g. MATLAB v7.3's 512 B)
_OFFSETS = (0, 512, 1024, 2048, 4096)

_CHILD = """
import sys
import h5py
import numpy as np

limit_bytes, min_ratio = int(sys.argv[2]), float(sys.argv[3])
bad = []

def visit(name, obj):
    for k in obj.attrs.keys():
        obj.attrs[k]
    if isinstance(obj, h5py.Dataset):
        nominal = int(np.prod(obj.shape, dtype=np.float64)) * obj.dtype.itemsize
        stored = obj.id.get_storage_size()
        if nominal > limit_bytes and nominal > min_ratio * max(stored, 1):
            bad.append(f"{name} {obj.shape} declares {nominal} bytes, stores {stored}")

with h5py.File(sys.argv[1], "r") as f:
    visit("/", f)
    f.visititems(visit)
if bad:
    print("; ".join(bad[:3]))
    sys.exit(3)
"""


def is_hdf5(path: Path) -> bool:
    """True when the file carries the HDF5 signature (at 0 or after a user block)."""
    try:
        with open(path, "rb") as fh:
            for off in _OFFSETS:
                fh.seek(off)
                if fh.read(8) == _SIGNATURE:
                    return True
    except OSError:
        return False
    return False


def check_hdf5(path, *, timeout_s: float = 60.0) -> None:
    """Raise :class:`CorruptFileError` if reading the HDF5 metadata of ``path`` crashes or
    hangs the HDF5 library (tried in a child process). Files without the HDF5 signature and
    files the child reports as unreadable pass through (their reader gives the error)."""
    path = Path(path)
    if not path.is_file() or not is_hdf5(path):
        return
    try:
        res = subprocess.run([sys.executable, "-c", _CHILD, str(path), str(_HOLLOW_BYTES),
                              str(_HOLLOW_RATIO)], capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise CorruptFileError(
            f"{str(path)!r}: the HDF5 library did not finish reading the file's headers in "
            f"{timeout_s:.0f} s — the file is damaged (a corrupt header makes it loop). "
            f"Restore or re-export the file") from None
    if res.returncode < 0:
        raise CorruptFileError(
            f"{str(path)!r}: reading the file's HDF5 headers crashed the HDF5 library "
            f"(signal {-res.returncode}) — the file is damaged. Restore or re-export the file")
    if res.returncode == 3:
        raise CorruptFileError(
            f"{str(path)!r}: a dataset's header declares far more data than the file holds "
            f"({res.stdout.decode(errors='replace').strip()}) — a damaged header or an "
            f"acquisition cut off; reading it would allocate the declared size. Restore or "
            f"re-export the file")
