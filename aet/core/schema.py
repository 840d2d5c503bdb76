"""Dataset schemas and the unwraps shared by the core and the facades.

- :func:`build_model_dataset`: validate and assemble the ``xarray.Dataset`` behind an
  ``AtomicModel`` (dim ``atom``; ``position`` (atom, axis) in Å with axis labels x, y, z;
  ``species``; optional per-atom arrays) — see ``docs/conventions.rst``;
- :func:`as_xarray`: the xarray object behind a facade (``TiltSeries``, ``Volume``,
  ``AtomicModel``), or the argument itself when it is already xarray;
- :func:`is_dask`: whether an array or xarray object is backed by dask;
- :func:`register_facade` / :func:`facade_class`: the facade classes register themselves here,
  so the readers in :mod:`aet.io` build them by name without importing :mod:`aet.model` (the
  facades call :mod:`aet.io` to save; the arrow points one way).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr
from ase.data import atomic_numbers

from .meta import AXES_XYZ


def is_dask(x) -> bool:
    """True when ``x`` (array or xarray object) is backed by dask.

    Examples
    --------
    >>> import dask.array as dsa, numpy as np, xarray as xr
    >>> is_dask(np.zeros(3)), is_dask(dsa.zeros(3)), is_dask(xr.DataArray(dsa.zeros(3)))
    (False, True, True)
    """
    if isinstance(x, xr.DataArray):
        return isinstance(x.variable._data, dsa.Array)
    if isinstance(x, xr.Dataset):
        return any(isinstance(v.variable._data, dsa.Array) for v in x.data_vars.values())
    return isinstance(x, dsa.Array)


_FACADES: dict[str, type] = {}


def register_facade(cls: type) -> type:
    """Class decorator: make ``cls`` available as ``facade_class(cls.__name__)``."""
    _FACADES[cls.__name__] = cls
    return cls


def facade_class(name: str) -> type:
    """The registered facade class called ``name`` (``"TiltSeries"``, ``"Volume"``,
    ``"AtomicModel"``). ``import aet`` registers them; a name not registered is a bug."""
    try:
        return _FACADES[name]
    except KeyError:
        raise LookupError(f"no facade class {name!r} is registered (registered: "
                          f"{sorted(_FACADES)}); import aet first") from None


def as_xarray(obj, kind: type | tuple[type, ...] = (xr.DataArray, xr.Dataset)):
    """The ``xarray`` object behind a facade; ``obj`` itself when it is not a facade.

    A facade (``TiltSeries``, ``Volume``, ``AtomicModel``) exposes its ``DataArray`` or
    ``Dataset`` as ``.data``; that object is returned when it is an instance of ``kind``. An
    xarray object (or anything else) is returned unchanged, so the core functions accept
    either without importing the facade classes. The one unwrap of the package.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> da = xr.DataArray(np.zeros(2))
    >>> as_xarray(da) is da
    True
    >>> class Wrapped:
    ...     data = da
    >>> as_xarray(Wrapped()) is da, isinstance(as_xarray(Wrapped(), xr.Dataset), Wrapped)
    (True, True)
    """
    if isinstance(obj, xr.DataArray | xr.Dataset):
        return obj
    inner = getattr(obj, "data", None)
    if isinstance(inner, kind):
        return inner
    return obj
    inner = getattr(obj, "data", None)
    if isinstance(inner, xr.DataArray | xr.Dataset):
        return inner
    return obj


_OPTIONAL = ("intensity", "b_factor", "uncertainty", "label")


def _check_species(species, n: int) -> np.ndarray:
    if isinstance(species, str):
        species = [species] * n
    sp = np.asarray(species)
    if sp.ndim != 1 or sp.shape[0] != n:
        raise ValueError(
            f"species has shape {sp.shape} but there are {n} positions; pass one element "
            f"symbol per atom (or one symbol for all)"
        )
    sp = sp.astype(str)
    bad = sorted({s for s in sp.tolist() if s not in atomic_numbers})
    if bad:
        raise ValueError(
            f"species contains unknown element symbol(s) {bad[:5]}; use symbols such as 'Fe', "
            f"'Pt' (or 'X' for an unclassified atom)"
        )
    width = max(2, max((len(s) for s in sp.tolist()), default=2))
    return sp.astype(f"<U{width}")


def _per_atom(name: str, values, n: int) -> np.ndarray:
    v = np.asarray(values)
    if v.ndim == 0:
        v = np.full(n, v)
    if v.shape[0] != n:
        raise ValueError(f"{name} has {v.shape[0]} entries but there are {n} atoms")
    if v.dtype.kind == "U" or v.dtype == object:
        v = v.astype(str)
    return v


def build_model_dataset(positions, species=None, *, arrays: Mapping[str, Any] | None = None,
                        attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Validate and assemble the Dataset behind :class:`AtomicModel` (the one schema)."""
    pos = np.asarray(positions)
    if pos.dtype == object or pos.dtype.kind not in "iuf":
        raise TypeError(f"positions must be numbers in Å, got dtype {pos.dtype}")
    if pos.ndim == 1 and pos.size == 0:
        pos = pos.reshape(0, 3)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise ValueError(
            f"positions must have shape (n_atoms, 3) in (x, y, z) order, got {pos.shape}"
        )
    pos = pos.astype(np.float64)
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contain non-finite values (NaN or inf); remove those atoms")
    n = pos.shape[0]
    sp = _check_species("X" if species is None else species, n)
    data_vars: dict[str, Any] = {
        "position": (("atom", "axis"), pos, {"units": "Å"}),
        "species": ("atom", sp),
    }
    for k, v in (arrays or {}).items():
        if v is None:
            continue
        if k in ("position", "species"):
            raise ValueError(f"per-atom array name {k!r} is reserved")
        data_vars[k] = ("atom", _per_atom(k, v, n))
    ds = xr.Dataset(data_vars, coords={"atom": np.arange(n), "axis": list(AXES_XYZ)},
                    attrs=dict(attrs or {}))
    if "b_factor" in ds:
        ds["b_factor"].attrs["units"] = "Å²"
    if "uncertainty" in ds:
        ds["uncertainty"].attrs["units"] = "Å"
    return ds


_SKIP_ARRAYS = {"numbers", "positions"}
_MAGMOM = "initial_magmom"


def dataset_from_ase(atoms) -> xr.Dataset:
    """The model Dataset of an :class:`ase.Atoms` (what :func:`aet.export.from_ase` returns):
    positions, symbols, 1D per-atom arrays (``initial_magmoms`` → ``initial_magmom``) and the
    scalar ``info`` entries as attrs."""
    arrays = {k: np.asarray(v) for k, v in atoms.arrays.items()
              if k not in _SKIP_ARRAYS and np.ndim(v) == 1}
    if "initial_magmoms" in arrays:
        arrays[_MAGMOM] = arrays.pop("initial_magmoms")
    attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in atoms.info.items()
             if isinstance(v, (str, int, float, bool, np.generic))}
    return build_model_dataset(atoms.get_positions(), atoms.get_chemical_symbols(),
                               arrays=arrays, attrs=attrs)
