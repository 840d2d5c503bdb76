"""Assertion helpers for tests of aet objects."""

from __future__ import annotations

import numpy as np


def assert_provenance_has(obj, *ops: str) -> None:
    """Assert that the provenance of ``obj`` contains the operations ``ops`` in this order."""
    got = [r["op"] for r in obj.provenance]
    it = iter(got)
    missing = [op for op in ops if op not in it]
    if missing:
        raise AssertionError(f"provenance {got} lacks {missing} (in order {list(ops)})")


def assert_same_frame(a, b) -> None:
    """Assert two xarray-backed objects share dims and coordinates (same physical frame)."""
    da, db = getattr(a, "data", a), getattr(b, "data", b)
    if tuple(da.dims) != tuple(db.dims):
        raise AssertionError(f"dims differ: {da.dims} vs {db.dims}")
    for d in da.dims:
        if d in da.coords and d in db.coords:
            np.testing.assert_allclose(da.coords[d].values, db.coords[d].values, atol=1e-9,
                                       err_msg=f"coordinate {d!r} differs")
