"""The one place that sets Numba JIT flags for every kernel in the package.

Kernels live in ``_kernels.py`` modules beside their users and are decorated with
:func:`jit`; nothing else in the package calls :func:`numba.njit` directly.

Compiled kernels are cached on disk in a per-user cache folder (:func:`kernel_cache_dir`),
never beside the sources: Numba's own ``cache=True`` writes ``*.nbi``/``*.nbc`` files into the
package's ``__pycache__`` folders, which inside ``site-packages`` are files that pip did not
install and does not remove (a later ``pip install -e`` then left a ``site-packages/aet/``
without ``__init__.py`` that shadowed the editable install). The folder is chosen per kernel
by :class:`_KernelCache`, attached to each dispatcher; no process-wide Numba setting and no
environment variable is touched, and nothing is created until a kernel is first compiled.

Kernels compile lazily, on their first call, for the argument types of that call only: a run
compiles the kernels it uses, and a later process loads them from the cache.

Compiling is most of a first run's wait (issue #18; ``benchmarks/bench_startup.py`` measures
it), so kernels are kept cheap to compile: one compiled variant per kernel where possible
(wrappers pass one dtype), no ``np.linalg`` inside kernels (each pulls in LAPACK bindings
worth seconds of compiling), and no ``parallel=True`` twin of a kernel that is parallel over
an outer index. Such a kernel takes the index range as arguments and :func:`map_ranges` runs
the one serial variant on a pool of threads (kernels release the GIL: ``nogil=True``), which
gives the same results as the serial call (each range is computed as the serial kernel
computes it) without compiling a Numba ``prange`` twin: a parallel variant costs several
times the serial one's compile, and with a thread pool dask's per-chunk calls and in-memory
calls share one compiled kernel.

A jitted function that calls another is compiled with its callee's code linked in, optimised
and turned into machine code again, so entry points that only forward to a kernel are plain
Python functions, outputs and scratch arrays are allocated by a Python wrapper rather than
inside the kernel (each rank and dtype of ``np.zeros``/``np.empty`` is an allocation routine
compiled for each kernel that uses it), and two near-copies of one loop (a projector and its
adjoint, two splats) are one kernel with a flag or a parameter.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numba
from numba.core import caching

from ._version import __version__


@functools.cache
def kernel_cache_dir() -> str:
    """Folder of the compiled-kernel cache: ``<user cache dir>/kernels-<key>``.

    The user cache dir is :func:`platformdirs.user_cache_dir` ``("aet")`` (``~/.cache/aet``
    on Linux, honouring ``XDG_CACHE_HOME``); the key names the aet, Numba and Python versions,
    so an upgrade starts a fresh folder (delete old ``kernels-*`` folders freely). Numba also
    checks a hash of each kernel's source file, so an edited kernel is recompiled. The folder
    is created on the first save, not here.
    """
    import platformdirs

    key = (f"kernels-aet{__version__}-numba{numba.__version__}"
           f"-py{sys.version_info[0]}{sys.version_info[1]}")
    return os.path.join(platformdirs.user_cache_dir("aet", appauthor=False), key)


class _KernelCacheLocator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Numba cache locator: ``kernel_cache_dir()/<source folder name>_<hash of its path>``
    (the source path is hashed so two checkouts of aet never share entries)."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(kernel_cache_dir(),
                                        self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self):
        return self._cache_path

    @classmethod
    def from_function(cls, py_func, py_file):
        # no mkdir here (decoration happens at import): Cache._save_overload calls
        # ensure_cache_path before it writes
        if not os.path.exists(py_file):
            return None
        return cls(py_func, py_file)


class _KernelCacheImpl(caching.CompileResultCacheImpl):
    _locator_classes = [_KernelCacheLocator]


class _KernelCache(caching.FunctionCache):
    """Numba's function cache, located by :class:`_KernelCacheLocator`. A cache that cannot
    be written (read-only home, full disk) costs a recompile in the next process, never the
    computation: the failure is reported once as a warning and caching stops for the kernel."""

    _impl_class = _KernelCacheImpl

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except OSError as e:
            self.disable()
            warnings.warn(f"aet could not write its kernel cache in {self.cache_path} ({e}); "
                          f"kernels will be compiled again in the next process",
                          RuntimeWarning, stacklevel=2)


def jit(*, parallel: bool = False, fastmath: bool = False, **kw):
    """Return a ``numba.njit`` decorator with the project's flags.

    Compiled code is cached on disk in :func:`kernel_cache_dir` and ``nogil=True`` lets
    dask's threaded scheduler run kernels on several chunks at once. Use ``parallel=True`` only
    for the in-memory variant of a kernel (a serial twin is what dask calls per chunk, so
    threads are not oversubscribed).

    No C-callback (cfunc) wrapper is compiled unless ``no_cfunc_wrapper=False`` is passed: only
    a kernel passed as a first-class function value into another kernel needs one.
    """
    kw.setdefault("no_cfunc_wrapper", True)
    decorate = numba.njit(cache=False, nogil=True, parallel=parallel, fastmath=fastmath, **kw)

    def wrap(func):
        disp = decorate(func)
        disp._cache = _KernelCache(disp.py_func)  # what Dispatcher.enable_caching sets
        return disp

    return wrap


prange = numba.prange


# ----------------------------------------------------------------------------- thread pool
_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_in_pool = threading.local()


def n_threads() -> int:
    """Threads for in-memory kernel calls: Numba's thread count (``NUMBA_NUM_THREADS``, the
    CPU count by default, or what :func:`numba.set_num_threads` set once Numba's threading
    layer has started)."""
    from numba.np.ufunc import parallel as _npar

    if _npar._is_initialized:
        return max(int(numba.get_num_threads()), 1)
    return max(int(numba.config.NUMBA_NUM_THREADS), 1)


def _mark_worker():
    _in_pool.active = True


def _get_pool(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _pool_lock:
        if _pool is None or _pool_size != n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="aet-kernel",
                                       initializer=_mark_worker)
            _pool_size = n
        return _pool


def split_range(n: int, *, min_chunk: int = 1, per_thread: int = 4,
                threads: int | None = None) -> list[tuple[int, int]]:
    """``[0, n)`` cut into contiguous ``(lo, hi)`` ranges: about ``per_thread`` ranges per
    thread (uneven work balances across the pool), none shorter than ``min_chunk`` (one
    range when ``n < 2 min_chunk``)."""
    n = int(n)
    if n <= 0:
        return []
    t = n_threads() if threads is None else max(int(threads), 1)
    k = max(1, min(t * per_thread, n // max(int(min_chunk), 1)))
    if t == 1:
        k = 1
    edges = [n * i // k for i in range(k + 1)]
    return [(edges[i], edges[i + 1]) for i in range(k) if edges[i + 1] > edges[i]]


def map_ranges(func, ranges):
    """``[func(lo, hi) for (lo, hi) in ranges]``, run on aet's kernel thread pool (in order).

    ``func`` calls a ``nogil`` kernel on the range, so the calls run in parallel. One range,
    a single thread, or a call from inside the pool (no nested waiting) runs in the caller's
    thread. Exceptions propagate.
    """
    ranges = list(ranges)
    n = n_threads()
    if len(ranges) <= 1 or n == 1 or getattr(_in_pool, "active", False):
        return [func(lo, hi) for lo, hi in ranges]
    pool = _get_pool(n)
    futures = [pool.submit(func, lo, hi) for lo, hi in ranges]
    return [f.result() for f in futures]
