"""A structural check of MATLAB v5 ``.mat`` files before SciPy parses them.

``scipy.io.loadmat``'s C reader trusts the sizes and flags written in the file: a single
damaged byte (e.g. the "complex" bit of an array's flags, or a dimension) makes it read past
its buffer and crash the interpreter with a segmentation fault, which no ``try`` can catch.
This module walks the file's element tree in pure Python (format: MathWorks, "MAT-File
Format", version 5) and checks every size against what the header, flags and dimensions
imply; anything inconsistent raises :class:`~aet.errors.CorruptFileError` first.
"""

from __future__ import annotations

import math
import struct
import zlib

from ..errors import CorruptFileError

_MI_MATRIX, _MI_COMPRESSED = 14, 15
# data-type sizes in bytes (miINT8 .. miUTF32)
_SIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
_NUMERIC = set(range(6, 16))  # mxDOUBLE .. mxUINT64
_CHAR, _CELL, _STRUCT, _OBJECT, _SPARSE = 4, 1, 2, 3, 5
_MAX_DEPTH = 32


class _Bad(Exception):
    pass


def _tag(buf, pos: int, end: int, bo: str) -> tuple[int, int, int, int]:
    """(type, nbytes, data start, next element) of the element at ``pos``."""
    if pos + 8 > end:
        raise _Bad(f"element tag at byte {pos} runs past the end")
    first, n = struct.unpack_from(bo + "II", buf, pos)
    if first >> 16:  # small data element: size in the upper half, data in the tag
        n, t = first >> 16, first & 0xFFFF
        if n > 4:
            raise _Bad(f"small element at byte {pos} claims {n} bytes")
        return t, n, pos + 4, pos + 8
    start = pos + 8
    if start + n > end:
        raise _Bad(f"element at byte {pos} claims {n} bytes, only {end - start} left")
    return first, n, start, min(end, start + ((n + 7) // 8) * 8)


def _matrix(buf, start: int, end: int, bo: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _Bad("arrays nested too deeply")
    if start == end:  # an empty miMATRIX is allowed (empty cell content)
        return
    t, n, s, pos = _tag(buf, start, end, bo)
    if t != 6 or n != 8:
        raise _Bad("array flags missing")
    flags = struct.unpack_from(bo + "I", buf, s)[0]
    cls, is_complex = flags & 0xFF, bool(flags & 0x800)
    t, n, s, pos = _tag(buf, pos, end, bo)
    if t != 5 or n < 8 or n % 4:
        raise _Bad("array dimensions missing")
    dims = struct.unpack_from(bo + f"{n // 4}i", buf, s)
    if min(dims) < 0:
        raise _Bad(f"negative dimension {dims}")
    count = math.prod(dims)
    t, n, s, pos = _tag(buf, pos, end, bo)  # array name
    if t != 1:
        raise _Bad("array name missing")
    if cls in _NUMERIC or cls == _CHAR:
        for _ in range(2 if is_complex else 1):
            t, n, s, pos = _tag(buf, pos, end, bo)
            size = _SIZE.get(t)
            if size is None or n != count * size:
                raise _Bad(f"data of a {dims} array has {n} bytes of type {t}")
        if pos != end and cls != _CHAR:
            raise _Bad("unexpected data after an array")
    elif cls == _CELL:
        for _ in range(count):
            t, n, s, pos = _tag(buf, pos, end, bo)
            if t != _MI_MATRIX:
                raise _Bad("cell element is not an array")
            _matrix(buf, s, s + n, bo, depth + 1)
    elif cls in (_STRUCT, _OBJECT):
        if cls == _OBJECT:
            t, n, s, pos = _tag(buf, pos, end, bo)  # class name
        t, n, s, pos = _tag(buf, pos, end, bo)
        if t != 5 or n != 4:
            raise _Bad("struct field-name length missing")
        flen = struct.unpack_from(bo + "i", buf, s)[0]
        t, n, s, pos = _tag(buf, pos, end, bo)
        if flen <= 0 or t != 1 or n % flen:
            raise _Bad("struct field names inconsistent")
        for _ in range(count * (n // flen)):
            t, n, s, pos = _tag(buf, pos, end, bo)
            if t != _MI_MATRIX:
                raise _Bad("struct field is not an array")
            _matrix(buf, s, s + n, bo, depth + 1)
    elif cls == _SPARSE:
        _sparse(buf, pos, end, bo, dims, is_complex)
    else:  # function handles, opaque objects: bounds of every sub-element only
        while pos < end:
            t, n, s, pos = _tag(buf, pos, end, bo)


def _ints(buf, pos, end, bo, what):
    t, n, s, nxt = _tag(buf, pos, end, bo)
    if t != 5 or n % 4:
        raise _Bad(f"sparse {what} is not int32")
    return struct.unpack_from(bo + f"{n // 4}i", buf, s), nxt


def _sparse(buf, pos, end, bo, dims, is_complex) -> None:
    """ir (row indices), jc (column starts), pr (values) must agree with each other and
    with the 2D dimensions: SciPy indexes with them unchecked."""
    if len(dims) != 2:
        raise _Bad(f"sparse array with dims {dims}")
    ir, pos = _ints(buf, pos, end, bo, "row indices")
    jc, pos = _ints(buf, pos, end, bo, "column starts")
    if len(jc) != dims[1] + 1 or jc[0] != 0 or any(b < a for a, b in zip(jc, jc[1:])):
        raise _Bad("sparse column starts inconsistent")
    nnz = jc[-1]
    if nnz > len(ir) or any(not 0 <= r < dims[0] for r in ir[:nnz]):
        raise _Bad("sparse row indices inconsistent")
    for _ in range(2 if is_complex else 1):
        t, n, s, pos = _tag(buf, pos, end, bo)
        size = _SIZE.get(t)
        if size is None or n // size < nnz:
            raise _Bad("sparse values inconsistent")


def check_mat5(data: bytes, name: str) -> None:
    """Raise :class:`CorruptFileError` unless ``data`` is a structurally sound v5 file.

    Files without a v5 header (MATLAB v4) are left to SciPy.
    """
    if len(data) < 128 or data[126:128] not in (b"IM", b"MI"):
        return
    bo = "<" if data[126:128] == b"IM" else ">"
    try:
        pos, end = 128, len(data)
        while pos < end:
            t, n, s, nxt = _tag(data, pos, end, bo)
            if t == _MI_COMPRESSED:
                try:
                    inner = zlib.decompressobj().decompress(data[s:s + n])
                except zlib.error as exc:
                    raise _Bad(f"compressed element at byte {pos}: {exc}") from None
                it, inn, ins, _ = _tag(inner, 0, len(inner), bo)
                if it == _MI_MATRIX:
                    _matrix(inner, ins, ins + inn, bo, 0)
                nxt = s + n  # compressed elements are not padded
            elif t == _MI_MATRIX:
                _matrix(data, s, s + n, bo, 0)
            pos = nxt
    except (_Bad, struct.error) as exc:
        raise CorruptFileError(f"{name!r} is not a readable MATLAB .mat file: {exc}") from None
