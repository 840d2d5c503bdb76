"""Metadata, coordinates and provenance shared by the data classes.

Conventions (``docs/conventions.rst``): lengths in Å, angles in degrees, the coordinate value 0
at index ``n // 2`` of every spatial axis. Provenance is a list of ``{"op", "params", "aet_version",
"time"}`` records stored in ``attrs["provenance"]`` as JSON text, so it survives Zarr, NetCDF and
any other store that keeps string attributes.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from .._version import __version__
from ..errors import MetadataError

PROVENANCE_ATTR = "provenance"
CLASS_ATTR = "aet_class"


# --------------------------------------------------------------------------- coordinates
def centred_coord(n: int, spacing: float) -> np.ndarray:
    """Physical coordinates (Å) of ``n`` samples ``spacing`` apart with 0 at index ``n // 2``.

    Examples
    --------
    >>> centred_coord(4, 0.5)
    array([-1. , -0.5,  0. ,  0.5])
    >>> centred_coord(5, 1.0)
    array([-2., -1.,  0.,  1.,  2.])
    """
    return (np.arange(n, dtype=np.float64) - (n // 2)) * float(spacing)


def spacing_from_coord(coord: np.ndarray, name: str) -> float:
    """Return the uniform spacing of a 1D coordinate; raise if it is not uniform."""
    coord = np.asarray(coord, dtype=np.float64)
    if coord.size < 2:
        raise MetadataError(f"coordinate {name!r} has {coord.size} value(s); cannot infer spacing")
    d = np.diff(coord)
    if not np.allclose(d, d[0], rtol=1e-6, atol=1e-9) or d[0] <= 0:
        raise MetadataError(
            f"coordinate {name!r} is not uniformly increasing; pass data with evenly spaced "
            f"coordinates or give the spacing explicitly"
        )
    return float(d[0])


def check_positive_length(name: str, value: Any, *, required: bool = True) -> float | None:
    """Validate a physical length in Å (pixel/voxel size): finite and > 0."""
    if value is None:
        if required:
            raise MetadataError(
                f"{name} is missing; pass {name}=<Å per pixel> (e.g. {name}=0.35) — it sets the "
                f"physical coordinates of every later stage"
            )
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in Å, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise MetadataError(f"{name} must be a finite positive length in Å, got {value!r}")
    return v


# --------------------------------------------------------------------------- positions
AXES_XYZ = ("x", "y", "z")


def positions_to_indices(positions_xyz_A: np.ndarray, volume: xr.DataArray) -> np.ndarray:
    """Convert atom positions ``(N, 3)`` in (x, y, z) Å to fractional voxel indices ``(N, 3)``
    in the volume's (z, y, x) index order.

    Index ``i`` along an axis sits at ``coord[0] + i * spacing``; for a centred volume the
    position 0 Å is index ``n // 2``.
    """
    pos = np.asarray(positions_xyz_A, dtype=np.float64).reshape(-1, 3)
    out = np.empty_like(pos)
    for j, dim in enumerate(("z", "y", "x")):
        c = volume.coords[dim].values
        step = spacing_from_coord(c, dim)
        out[:, j] = (pos[:, 2 - j] - float(c[0])) / step
    return out


def indices_to_positions(indices_zyx: np.ndarray, volume: xr.DataArray) -> np.ndarray:
    """Inverse of :func:`positions_to_indices`: (z, y, x) fractional indices to (x, y, z) Å."""
    idx = np.asarray(indices_zyx, dtype=np.float64).reshape(-1, 3)
    out = np.empty_like(idx)
    for j, dim in enumerate(("z", "y", "x")):
        c = volume.coords[dim].values
        step = spacing_from_coord(c, dim)
        out[:, 2 - j] = float(c[0]) + idx[:, j] * step
    return out


def rotation_matrices(euler_deg) -> np.ndarray:
    """``(n, 3, 3)`` rotation matrices R = R_z(φ)·R_y(θ)·R_z(ψ) (docs/conventions.rst: ZYZ, active,
    right-handed, acting on (x, y, z) columns) for an ``(n, 3)`` array of Euler angles
    (φ, θ, ψ) in **degrees**. The one implementation of the convention in the package
    (:func:`aet.testing.phantoms.rotation_matrix_zyz` is the independent test twin)."""
    e = np.radians(np.asarray(euler_deg, dtype=np.float64).reshape(-1, 3))
    cf, sf = np.cos(e[:, 0]), np.sin(e[:, 0])
    ct, st = np.cos(e[:, 1]), np.sin(e[:, 1])
    cp, sp = np.cos(e[:, 2]), np.sin(e[:, 2])
    n = e.shape[0]
    rz1 = np.zeros((n, 3, 3))
    rz1[:, 0, 0], rz1[:, 0, 1], rz1[:, 1, 0], rz1[:, 1, 1], rz1[:, 2, 2] = cf, -sf, sf, cf, 1
    ry = np.zeros((n, 3, 3))
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 2, 0], ry[:, 2, 2], ry[:, 1, 1] = ct, st, -st, ct, 1
    rz2 = np.zeros((n, 3, 3))
    rz2[:, 0, 0], rz2[:, 0, 1], rz2[:, 1, 0], rz2[:, 1, 1], rz2[:, 2, 2] = cp, -sp, sp, cp, 1
    return rz1 @ ry @ rz2


def euler_angles_of(da: xr.DataArray) -> np.ndarray:
    """``(n, 3)`` Euler angles (φ, θ, ψ) in degrees from the ``angle`` (θ) and optional
    ``phi``/``psi`` coords of a tilt-series DataArray (φ = ψ = 0 where absent)."""
    th = np.asarray(da.coords["angle"].values, dtype=np.float64)
    phi = da.coords["phi"].values if "phi" in da.coords else np.zeros_like(th)
    psi = da.coords["psi"].values if "psi" in da.coords else np.zeros_like(th)
    return np.stack([phi, th, psi], axis=1).astype(np.float64)


# --------------------------------------------------------------------------- provenance
def to_jsonable(value: Any, *, _depth: int = 0) -> Any:
    """Best-effort conversion of operation parameters/results to JSON-compatible values.

    Arrays become (nested) lists; large arrays and arbitrary objects are summarised so the
    record stays readable.
    """
    if _depth > 6:
        return repr(value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else str(v)
    if isinstance(value, np.ndarray):
        if value.size <= 10_000:
            return to_jsonable(value.tolist(), _depth=_depth + 1)
        return f"<ndarray shape={value.shape} dtype={value.dtype}>"
    if isinstance(value, (xr.DataArray, xr.Dataset)):
        return f"<{type(value).__name__} dims={dict(value.sizes)}>"
    if hasattr(value, "_da") or hasattr(value, "_ds"):  # one of our facades
        return f"<{type(value).__name__}>"
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, _depth=_depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v, _depth=_depth + 1) for v in value]
    if hasattr(value, "dtype") and hasattr(value, "shape"):  # dask array and friends
        return f"<{type(value).__name__} shape={tuple(value.shape)} dtype={value.dtype}>"
    return repr(value)


def provenance_record(op: str, params: Mapping[str, Any] | None = None, **extra) -> dict:
    """One provenance record: ``{"op", "params", "aet_version", "time"}`` (+ ``extra``)."""
    rec = {
        "op": str(op),
        "params": to_jsonable(dict(params or {})),
        "aet_version": __version__,
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    for k, v in extra.items():
        rec[k] = to_jsonable(v)
    return rec


def get_provenance(attrs: Mapping[str, Any]) -> list[dict]:
    """Decode the provenance list stored in ``attrs`` (empty list when absent)."""
    raw = attrs.get(PROVENANCE_ATTR)
    if raw is None:
        return []
    if isinstance(raw, str):
        try:
            out = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise MetadataError(f"attrs['provenance'] is not valid JSON: {exc}") from None
    else:
        out = raw
    if not isinstance(out, list):
        raise MetadataError("attrs['provenance'] must be a JSON list of records")
    return [dict(r) for r in out]


def set_provenance(attrs: dict, records: list[dict]) -> dict:
    """Store ``records`` in ``attrs`` as JSON text (returns ``attrs`` for chaining)."""
    attrs[PROVENANCE_ATTR] = json.dumps(to_jsonable(records))
    return attrs


def with_provenance(obj, op: str, params: Mapping[str, Any] | None = None, *,
                    parent_attrs: Mapping[str, Any] | None = None, **extra):
    """Return a shallow copy of an xarray object with a provenance record appended.

    ``parent_attrs``: take the history from these attrs (e.g. the input of an operation whose
    output lost them) instead of ``obj.attrs``.
    """
    out = obj.copy(deep=False)
    out.attrs = dict(out.attrs)
    history = get_provenance(parent_attrs if parent_attrs is not None else obj.attrs)
    history.append(provenance_record(op, params, **extra))
    set_provenance(out.attrs, history)
    return out


def user_attrs(attrs: Mapping[str, Any]) -> dict:
    """Attrs that must be JSON/Zarr safe: validate and return a plain dict copy."""
    out = {}
    for k, v in attrs.items():
        if not isinstance(k, str):
            raise TypeError(f"attribute names must be strings, got {k!r}")
        out[k] = v
    return out
