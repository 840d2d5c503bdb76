"""The one place that sets Numba JIT flags for every kernel in the package.

Kernels live in ``_kernels.py`` modules beside their users and are decorated with
:func:`jit`; nothing else in the package calls :func:`numba.njit` directly.
"""

from __future__ import annotations

import numba


def jit(*, parallel: bool = False, fastmath: bool = False, **kw):
    """Return a ``numba.njit`` decorator with the project's flags.

    ``cache=True`` keeps compiled kernels on disk between sessions and ``nogil=True`` lets
    dask's threaded scheduler run kernels on several chunks at once. Use ``parallel=True`` only
    for the in-memory variant of a kernel (a serial twin is what dask calls per chunk, so
    threads are not oversubscribed).
    """
    return numba.njit(cache=True, nogil=True, parallel=parallel, fastmath=fastmath, **kw)


prange = numba.prange
