"""``raise_if_dask_computes``: prove a stage stays lazy (after xarray's test helper)."""

from __future__ import annotations

import dask


class CountingScheduler:
    """A dask scheduler that counts computes and raises past ``max_computes``."""

    def __init__(self, max_computes: int = 0):
        self.total_computes = 0
        self.max_computes = max_computes

    def __call__(self, dsk, keys, **kwargs):
        self.total_computes += 1
        if self.total_computes > self.max_computes:
            raise RuntimeError(
                f"Too many dask computations: {self.total_computes} > {self.max_computes} "
                f"allowed; something computed a dask array eagerly"
            )
        return dask.get(dsk, keys, **kwargs)


def raise_if_dask_computes(max_computes: int = 0):
    """Context manager: raise ``RuntimeError`` if dask computes more than ``max_computes``
    times inside it.

    Examples
    --------
    >>> import dask.array as da
    >>> from aet.testing import raise_if_dask_computes
    >>> with raise_if_dask_computes():
    ...     y = da.ones(4) + 1          # building a graph is fine
    """
    return dask.config.set(scheduler=CountingScheduler(max_computes))
