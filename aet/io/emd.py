"""Berkeley EMD tilt series (``.emd``, HDF5) as tomviz and the Materials Data Bank write them;
every other EMD file goes to RosettaSciIO (:mod:`aet.io.rsciio_`).

A Berkeley EMD file keeps each array in a group with ``emd_group_type = 1``: ``data`` plus one
dataset ``dimK`` per axis K of ``data`` (1-based), with ``name`` and ``units`` attributes. A
tilt series is recognised by a ``dimK`` whose units are angles (``[deg]``, ``deg``, ``°``,
``[rad]``, ``rad``) or whose name is ``angle``/``angles``/``theta``/``tilt``:

tomviz (``tomviz/EmdFormat.cxx``)
    ``data`` is ``(angle, y, x)``; ``dim1`` holds the angles (``name = "angles"``, units
    ``[deg]``, or ``[rad]``, converted to degrees), ``dim2``/``dim3`` the y and x positions in
    ``[n_m]`` (nm): their spacing is the pixel size.
Materials Data Bank (``materialsdatabank/__init__.py``, ``_emd_proj``)
    ``data`` is the MATLAB array of the AET codes, ``(x, y, n)``; ``dim1``/``dim2`` are pixel
    indices (``[px]``: no pixel size), ``dim3`` the angles (``name = "angle"``, ``[deg]``),
    either one tilt angle per projection or ``n × 3`` Euler angles. The axes are reversed
    into aet's ``(angle, y, x)`` exactly as :func:`aet.io.matlab.matlab_to_aet` does; Euler
    angles need ``euler_convention=`` (see :mod:`aet.io.matlab`), nothing is guessed.

Other layouts with an angle axis: the angle axis is moved to the front and the remaining two
are ordered (y, x) by their names when they are named ``x`` and ``y``, else kept.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, MetadataError

_ANGLE_UNITS = {"deg": 1.0, "degree": 1.0, "degrees": 1.0, "°": 1.0, "rad": 180.0 / math.pi,
                "radian": 180.0 / math.pi, "radians": 180.0 / math.pi}
_ANGLE_NAMES = ("angle", "angles", "theta", "tilt", "tilt_angle", "tilt angles")


def _text(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.size == 1:
        return _text(v.reshape(-1)[0])
    return str(v)


def _units(attrs) -> str:
    u = _text(attrs.get("units", "")).strip()
    return u[1:-1].strip() if u.startswith("[") and u.endswith("]") else u


def _angle_factor(attrs) -> float | None:
    """Degrees per stored unit when the dim is an angle axis, else None."""
    u = _units(attrs).lower()
    if u in _ANGLE_UNITS:
        return _ANGLE_UNITS[u]
    if _text(attrs.get("name", "")).strip().lower() in _ANGLE_NAMES and u in ("", "none"):
        return 1.0
    return None


def _tilt_groups(h5) -> list[tuple[str, int]]:
    """``(group path, angle axis index)`` of every EMD group holding an angle axis."""
    found = []

    def visit(name, obj):
        import h5py

        if not isinstance(obj, h5py.Group) or "data" not in obj:
            return
        t = obj.attrs.get("emd_group_type")
        if t is None or int(np.asarray(t).reshape(-1)[0]) != 1:
            return
        data = obj["data"]
        if not isinstance(data, h5py.Dataset) or data.ndim != 3:
            return
        for k in range(data.ndim):
            d = obj.get(f"dim{k + 1}")
            if isinstance(d, h5py.Dataset) and _angle_factor(d.attrs) is not None:
                found.append((name, k))
                return

    h5.visititems(visit)
    return found


def _spacing_A(d) -> float | None:
    from .tiff import unit_to_angstrom

    u = _units(d.attrs).replace("n_m", "nm").replace("u_m", "µm")
    per = unit_to_angstrom(u) if u else None
    v = np.asarray(d[()], dtype=np.float64).reshape(-1)
    if per is None or v.size < 2:
        return None
    steps = np.diff(v)
    if not (np.all(np.isfinite(steps)) and steps[0] != 0
            and np.allclose(steps, steps[0], rtol=1e-4)):
        return None
    return abs(float(steps[0])) * per


def read(path: Path, *, kind=None, group: str | None = None,
         euler_convention: str | None = None, **metadata):
    """Read a Berkeley EMD file: a tilt series with an angle axis (see the module docstring),
    anything else through RosettaSciIO.

    Parameters
    ----------
    group : str, optional
        The EMD group to read when the file holds several tilt series.
    euler_convention : {"zyz", "zyx", "genfire", "resire"}, optional
        Needed for ``n × 3`` Euler angles (Materials Data Bank files).
    """
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            groups = _tilt_groups(h5)
    except Exception as exc:  # h5py raises OSError, RuntimeError, KeyError on damaged files
        raise CorruptFileError(f"{str(path)!r} is not a readable HDF5/EMD file: "
                               f"{type(exc).__name__}: {exc}") from None
    if not groups:
        from .rsciio_ import read as rsciio_read

        return rsciio_read(path, kind=kind, **metadata)
    try:
        arr, raw_angles, factor, name, k, layout, sy, sx = _read_group(path, groups, group)
    except (MetadataError, CorruptFileError):
        raise
    except Exception as exc:
        raise CorruptFileError(f"{str(path)!r}: the EMD tilt series could not be read: "
                               f"{type(exc).__name__}: {exc}") from None
    return _finish(path, arr, raw_angles, factor, name, k, layout, sy, sx, kind=kind,
                   euler_convention=euler_convention, metadata=metadata)


def _read_group(path, groups, group):
    import h5py

    with h5py.File(path, "r") as h5:
        if group is not None:
            sel = [g for g in groups if g[0].strip("/") == str(group).strip("/")]
            if not sel:
                raise MetadataError(f"{str(path)!r} has no EMD tilt-series group {group!r}; "
                                    f"it has {[g for g, _ in groups]}")
        elif len(groups) > 1:
            raise MetadataError(f"{str(path)!r} holds {len(groups)} tilt series "
                                f"({[g for g, _ in groups]}); pass group=... to choose one")
        else:
            sel = groups
        name, k = sel[0]
        grp = h5[name]
        data = np.asarray(grp["data"][()])
        dims = [grp[f"dim{j + 1}"] for j in range(3)]
        names = [_text(d.attrs.get("name", "")).strip().lower() for d in dims]
        factor = _angle_factor(dims[k].attrs)
        raw_angles = np.asarray(dims[k][()], dtype=np.float64)
        rest = [j for j in range(3) if j != k]
        if k == 2 and names[0] == "x" and names[1] == "y":
            layout = "Materials Data Bank (x, y, angle), MATLAB order -> (angle, y, x)"
            order = (2, 1, 0)
        elif names[rest[0]] == "x" and names[rest[1]] == "y":
            layout = f"angle axis dim{k + 1}, (x, y) -> (angle, y, x)"
            order = (k, rest[1], rest[0])
        else:
            layout = f"angle axis dim{k + 1} first, then dims {rest[0] + 1}, {rest[1] + 1}"
            order = (k, *rest)
        arr = np.transpose(data, order)
        y_dim, x_dim = dims[order[1]], dims[order[2]]
        sy, sx = _spacing_A(y_dim), _spacing_A(x_dim)
    return arr, raw_angles, factor, name, k, layout, sy, sx


def _finish(path, arr, raw_angles, factor, name, k, layout, sy, sx, *, kind, euler_convention,
            metadata):
    n = arr.shape[0]
    from ._matvars import _orient_angles, euler_to_zyz

    a = _orient_angles(raw_angles, n, f"{path}:{name}/dim{k + 1}")
    if a.ndim == 1 and a.shape[0] != n:
        raise CorruptFileError(f"{str(path)!r}: {name}/dim{k + 1} holds {a.shape[0]} angles for "
                               f"{n} projections")
    a = a * factor
    if a.ndim == 2:
        if euler_convention is None:
            from ._matvars import EULER_CONVENTIONS

            choices = "; ".join(f"{c!r}: {v}" for c, v in EULER_CONVENTIONS.items())
            raise MetadataError(f"the Euler angles in {str(path)!r} ({name}/dim{k + 1}) need "
                                f"their convention: pass euler_convention= one of {choices}")
        a = euler_to_zyz(a, euler_convention)
    attrs: dict = {"source_format": "emd"}
    if sy is not None and sx is not None and math.isclose(sy, sx, rel_tol=1e-4):
        attrs["pixel_size_A"] = sx
    if euler_convention is not None:
        attrs["source_euler_convention"] = euler_convention
    md = dict(metadata)
    md.setdefault("angles", a)
    if kind == "volume":
        md.pop("angles")
    from ._common import make_object

    obj = make_object(arr, path=path, fmt="emd", kind=kind, metadata=md, file_attrs=attrs)
    from .matlab import _last_params, _replace_last_params

    rec = _last_params(obj.data)
    rec.update({"group": name, "layout": layout})
    if "angles" not in metadata and kind != "volume":
        rec["angles"] = f"{name}/dim{k + 1}"
    return type(obj)._wrap(_replace_last_params(obj.data, rec))
