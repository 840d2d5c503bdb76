"""Shared plumbing of the data classes: validation of array data, save, provenance.

The classes wrap an xarray object by composition (``_da`` or ``_ds``) and are rebuilt, never
mutated: every method returns a new object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from ..core.meta import (
    CLASS_ATTR,
    PROVENANCE_ATTR,
    get_provenance,
    set_provenance,
    with_provenance,
)
from ..core.schema import is_dask  # noqa: F401  (re-exported at its old path)
from ..errors import MetadataError


def as_array(data, name: str):
    """Accept numpy-like or dask arrays; reject everything that is not real numeric."""
    if isinstance(data, dsa.Array):
        arr = data
    else:
        if isinstance(data, (str, bytes, Mapping)) or data is None:
            raise TypeError(f"{name} must be an array (numpy or dask), got {type(data).__name__}")
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must hold real numbers (integer or float), got dtype {arr.dtype}; convert "
            f"with .astype('float32') (complex data: take abs() or .real first)"
        )
    return arr


def check_finite(arr, name: str) -> None:
    """Raise on NaN/inf in an in-memory array; dask arrays are checked by the stages lazily."""
    if isinstance(arr, dsa.Array) or arr.dtype.kind != "f":
        return
    if not np.isfinite(arr).all():
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {n_bad} non-finite value(s) (NaN or inf); replace them first, e.g. "
            f"with numpy.nan_to_num or by masking the bad pixels"
        )


class _XarrayFacade:
    """Base of every facade over one xarray object (``TiltSeries`` and ``Volume`` over a
    DataArray in ``_da``, ``AtomicModel`` over a Dataset in ``_ds``): immutable, the class name
    and provenance in its attrs; the wrapped object, metadata, history and saving."""

    __slots__ = ()
    _slot = "_da"  # the slot holding the wrapped xarray object

    @property
    def _xr(self):
        return object.__getattribute__(self, self._slot)

    @classmethod
    def _wrap(cls, obj):
        """Build from an already-valid xarray object without re-validating values."""
        new = object.__new__(cls)
        obj = obj.copy(deep=False)
        obj.attrs = dict(obj.attrs)
        obj.attrs[CLASS_ATTR] = cls.__name__
        obj.attrs.setdefault(PROVENANCE_ATTR, "[]")
        object.__setattr__(new, cls._slot, obj)
        return new

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable; methods return new objects")

    def __reduce__(self):
        # pickle (dask.distributed workers, multiprocessing, saving a session) rebuilds the
        # object from its xarray object: the default protocol would set the slot through the
        # refusing __setattr__
        return type(self)._wrap, (self._xr,)

    @property
    def data(self):
        """The wrapped xarray object (:class:`xarray.DataArray`; :class:`xarray.Dataset` for an
        ``AtomicModel``), lazy if it was."""
        return self._xr

    @property
    def attrs(self) -> dict:
        """A copy of the metadata (units in the key names, e.g. ``pixel_size_A``)."""
        return {k: v for k, v in self._xr.attrs.items() if k not in (PROVENANCE_ATTR, CLASS_ATTR)}

    @property
    def provenance(self) -> list[dict]:
        """The list of operations that produced this object, oldest first."""
        return get_provenance(self._xr.attrs)

    def save(self, path, *, overwrite: bool = True):
        """Write to a Zarr store (atomically) that :func:`aet.open` restores with metadata.

        Returns the path written.
        """
        from ..io import save

        return save(self, path, overwrite=overwrite)


class _Facade(_XarrayFacade):
    """Base of the array facades (``TiltSeries``, ``Volume``): wraps one DataArray as ``_da``."""

    __slots__ = ("_da",)
    _slot = "_da"
    _dims: tuple[str, ...] = ()

    def _replace(self, da: xr.DataArray, op: str, params: Mapping[str, Any] | None = None,
                 **extra):
        """New object of the same class with ``da`` and a provenance record appended."""
        return type(self)._wrap(with_provenance(da, op, params, parent_attrs=self._da.attrs,
                                                **extra))

    @property
    def values(self) -> np.ndarray:
        """The data as an in-memory NumPy array (computes a dask-backed object)."""
        return np.asarray(self._da.values)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._da.shape)

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(self._da.dims)

    @property
    def is_lazy(self) -> bool:
        """True when backed by dask."""
        return is_dask(self._da)

    def __len__(self) -> int:
        return int(self._da.shape[0])

    def __array__(self, dtype=None, copy=None):
        arr = np.asarray(self._da.values)
        return arr.astype(dtype) if dtype is not None else arr

    # -- xarray-like selection ------------------------------------------------------------
    def sel(self, indexers=None, **kw):
        """Label-based selection (Å, degrees) returning the same class; see ``xarray.sel``."""
        return self._select("sel", indexers, kw)

    def isel(self, indexers=None, **kw):
        """Index-based selection returning the same class; see ``xarray.isel``."""
        return self._select("isel", indexers, kw)

    def _select(self, how, indexers, kw):
        da = getattr(self._da, how)(indexers, **kw)
        missing = [d for d in self._da.dims if d not in da.dims]
        if missing:
            raise ValueError(
                f"{how}() dropped dimension(s) {missing}; a {type(self).__name__} needs them. "
                f"Use a slice or a list (e.g. {missing[0]}=[value]) to keep the dimension, or "
                f"use .data.{how}(...) for a plain xarray object"
            )
        return self._replace(da, how, {"indexers": {**(indexers or {}), **kw}})

    def chunk(self, chunks: Any = "auto"):
        """Return a dask-backed copy with the given chunks (see ``xarray.DataArray.chunk``)."""
        return type(self)._wrap(self._da.chunk(chunks))

    def compute(self):
        """Return an in-memory copy (computes the dask graph)."""
        return type(self)._wrap(self._da.compute())

    def load(self):
        """Alias of :meth:`compute` (returns a new object; nothing is changed in place)."""
        return self.compute()

    def persist(self):
        """Return a copy whose dask chunks are computed and kept in (distributed) memory."""
        return type(self)._wrap(self._da.persist())

    def _repr_lines(self) -> list[str]:  # pragma: no cover - overridden
        return []

    def __repr__(self) -> str:
        head = f"<aet.{type(self).__name__} {dict(self._da.sizes)} {self._da.dtype}"
        head += " (dask)>" if self.is_lazy else ">"
        lines = [head, *("  " + s for s in self._repr_lines())]
        prov = self.provenance
        if prov:
            lines.append("  provenance: " + " → ".join(r.get("op", "?") for r in prov[-6:]))
        return "\n".join(lines)


def copy_provenance(dst_attrs: dict, src_attrs: Mapping[str, Any]) -> dict:
    """Copy the provenance list of ``src_attrs`` into ``dst_attrs``."""
    return set_provenance(dst_attrs, get_provenance(src_attrs))


def coerce_angles(angles, n: int, *, name: str = "angles") -> tuple[np.ndarray, np.ndarray | None]:
    """Validate tilt angles; returns ``(theta_deg (n,), euler_deg (n, 3) or None)``.

    ``angles`` may be a 1D sequence of tilt angles (single axis, degrees) or an ``(n, 3)``
    array of Euler angles (φ, θ, ψ) in degrees (ZYZ, docs/conventions.rst).
    """
    if angles is None:
        raise MetadataError(
            f"{name} is missing; pass one tilt angle per projection in degrees "
            f"(or an (n, 3) array of Euler angles φ, θ, ψ)"
        )
    a = np.asarray(angles)
    if a.dtype == object or a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numbers in degrees, got dtype {a.dtype}")
    a = a.astype(np.float64)
    euler = None
    if a.ndim == 2 and a.shape[1] == 3:
        euler = a
        a = a[:, 1]
    elif a.ndim == 0:
        a = a.reshape(1)
    elif a.ndim != 1:
        raise ValueError(
            f"{name} must be 1D (tilt angles) or (n, 3) (Euler φ, θ, ψ), got shape {a.shape}"
        )
    if a.shape[0] != n:
        raise ValueError(
            f"{name} has {a.shape[0]} entries but the tilt series has {n} projections "
            f"(dim 'angle'); pass one angle per projection"
        )
    if not np.all(np.isfinite(a)) or (euler is not None and not np.all(np.isfinite(euler))):
        raise ValueError(f"{name} contains non-finite values; every angle must be a number")
    if np.any(np.abs(a) > 180):
        raise ValueError(
            f"{name} has values beyond ±180° (max |θ| = {np.abs(a).max():.4g}); angles are in "
            f"degrees — convert radians with numpy.degrees"
        )
    return a, euler


def check_dims(dims: Sequence[str], allowed: Sequence[tuple[str, ...]], name: str) -> None:
    if tuple(dims) not in [tuple(a) for a in allowed]:
        want = " or ".join(str(a) for a in allowed)
        raise ValueError(f"{name} has dims {tuple(dims)}; expected {want}")
