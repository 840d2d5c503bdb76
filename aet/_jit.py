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
"""

from __future__ import annotations

import functools
import os
import sys
import warnings

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
    """
    decorate = numba.njit(cache=False, nogil=True, parallel=parallel, fastmath=fastmath, **kw)

    def wrap(func):
        disp = decorate(func)
        disp._cache = _KernelCache(disp.py_func)  # what Dispatcher.enable_caching sets
        return disp

    return wrap


prange = numba.prange
