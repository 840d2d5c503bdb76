"""Damaged v5 .mat files must raise CorruptFileError, never crash the interpreter.

SciPy's C reader trusts the sizes and flags in the file (a flipped "complex" bit or a class
byte turned into "sparse" segfaults it); aet checks the structure first. Every single-byte
flip of a small file with numeric, complex, char, struct, cell and sparse variables is fed to
the reader: a segfault would kill this test run.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.io
import scipy.sparse

from aet.errors import CorruptFileError
from aet.io._mat5check import check_mat5
from aet.io.matlab import load_variables


def _mat_bytes(compress: bool) -> bytes:
    buf = io.BytesIO()
    scipy.io.savemat(buf, {
        "proj": np.ones((5, 4, 3), np.float32), "angles": np.zeros((3, 3)),
        "c": np.array([[1 + 2j]]), "s": {"a": np.arange(3), "b": "txt"},
        "cell": np.array([np.ones(2), np.zeros(3)], dtype=object),
        "sp": scipy.sparse.csc_matrix(np.eye(3)),
    }, do_compression=compress)
    return buf.getvalue()


@pytest.mark.parametrize("compress", [False, True])
def test_valid_files_pass_the_check(compress):
    check_mat5(_mat_bytes(compress), "ok.mat")


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("compress", [False, True])
def test_every_single_byte_flip_is_caught_or_read(tmp_path, compress):
    data = _mat_bytes(compress)
    path = tmp_path / "flip.mat"
    rejected = 0
    for i in range(len(data)):
        for v in (0xFF, 0x01, 0x80):
            d = bytearray(data)
            d[i] ^= v
            path.write_bytes(bytes(d))
            try:
                load_variables(path)
            except CorruptFileError:
                rejected += 1
            except (ValueError, TypeError, OSError, KeyError):
                pass
    assert rejected > len(data)  # most damage is caught by the check itself


def test_flipped_complex_bit_names_the_file(tmp_path):
    data = bytearray(_mat_bytes(False))
    data[145] ^= 0xFF  # array flags of the first variable: sets the complex bit
    path = tmp_path / "bad.mat"
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="bad.mat.*not a readable MATLAB"):
        load_variables(path)
