"""MATLAB ``.mat`` files as the AET groups publish them (v5 through :func:`scipy.io.loadmat`,
v7.3 = HDF5 through :mod:`h5py`).

Layout and the transposition into aet's frame
----------------------------------------------
The AET codes (GENFIRE, RESIRE and the Miao/Zhou group scripts) index arrays as MATLAB does,
``A(x, y, ...)``: the first index runs along x, the second along y (the tilt axis), the third
over projections or, in a volume, along z. So

- projections are stored ``(x, y, n)`` and become aet's ``(angle, y, x)``;
- volumes are stored ``(x, y, z)`` and become aet's ``(z, y, x)``;
- a single image ``(x, y)`` becomes ``(y, x)``.

That is a reversal of the axis order, done in exactly one place, :func:`matlab_to_aet`.
(v7.3 files hold the column-major MATLAB array, which h5py shows with the axes already
reversed; the reader first restores the MATLAB order, ``dataset[()].T``, so both versions go
through the same function.)

Atomic models are ``3 × N`` (or ``N × 3``) arrays of (x, y, z) in Å in the same frame as the
volume, so positions keep their (x, y, z) meaning unchanged; the per-atom types are integer
arrays (``1 × N``) that ``species=`` maps to element symbols.

Euler angles
------------
Angles are ``n × 3`` arrays (φ, θ, ψ) in degrees, one row per projection. The source's
convention must be named with ``euler_convention=``; each names the composition *and* the
sense of the rotation:

``"zyz"``
    aet's own: the object is rotated by R = R_z(φ)·R_y(θ)·R_z(ψ) (active), then summed along z.
``"zyx"``
    active R = R_z(φ)·R_y(θ)·R_x(ψ).
``"genfire"``
    GENFIRE (MATLAB, Miao group): M = R_z(φ)·R_y(θ)·R_z(ψ) rotates the *sampling grid*
    (``calculate3Dprojection_interp``: the central slice is sampled at ``R'·k`` with
    ``R = Mᵀ``), so the object is rotated by Mᵀ. A single-axis GENFIRE tilt θ is aet's −θ.
``"resire"``
    RESIRE (the Ta film data): M = R_z(φ)·R_y(θ)·R_x(ψ), applied to the grid the same way;
    the object is rotated by Mᵀ. Checked on the published data: the measured projections of
    ``Projections_area1.mat`` match aet's projection of the published RESIRE reconstruction
    with "resire" (mean correlation 0.86 over the 32 projections with 10° ≤ |θ| ≤ 50°), not
    with "zyx" (0.62); see ``tests/io/test_matlab.py``.

The triples are converted to aet's ZYZ through their rotation matrices
(:func:`euler_to_zyz`); nothing is guessed: Euler angles read from a file without a convention
raise :class:`~aet.errors.MetadataError`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..core.meta import with_provenance
from ..core.schema import facade_class
from ..errors import CorruptFileError, MetadataError, MissingVariableError
from ._common import make_object
from ._matvars import (  # noqa: F401  (the public names stay importable from here)
    _PASSIVE,
    ANGLE_VARS,
    EULER_CONVENTIONS,
    LAZY_THRESHOLD_BYTES,
    PIXEL_VARS,
    POSITION_VARS,
    TYPE_VARS,
    _angle_shaped,
    _angles_array,
    _check_convention,
    _describe,
    _H5Dataset,
    _lazy_h5,
    _orient_angles,
    _pick,
    _rx,
    _ry,
    _rz,
    _wrap,
    euler_matrix,
    euler_to_zyz,
    load_variables,
    map_species,
    matlab_to_aet,
    resolve_angles,
)


# --------------------------------------------------------------------------- readers
def read(path: Path, *, kind=None, variable: str | None = None, angles=None,
         angles_variable: str | None = None, euler_convention: str | None = None,
         species=None, types=None, types_variable: str | None = None,
         lazy_threshold_bytes: int = LAZY_THRESHOLD_BYTES, **metadata):
    """Read a tilt series, volume or atomic model from a ``.mat`` file.

    Parameters
    ----------
    kind : {"tilt_series", "volume", "model"}, optional
        Default: "model" when the file holds a 3 × N position variable and no 3D array, a tilt
        series when angles are known, otherwise an error asking for ``angles`` or ``kind``.
    variable : str, optional
        The array (projections, volume or positions) to read; by default the only 3D array,
        or for models the first of :data:`POSITION_VARS` present.
    angles : array_like or path, optional
        Tilt angles (n,) or Euler angles (n, 3) in degrees, or a path to a ``.mat``/text file
        holding them; by default a variable of :data:`ANGLE_VARS` in the file itself.
    angles_variable : str, optional
        The variable of the angles file (or of this file) holding the angles.
    euler_convention : {"zyz", "zyx", "genfire", "resire"}
        Required for (n, 3) angles read from a file (see the module docstring). An (n, 3)
        array passed directly as ``angles`` is taken as aet's own ZYZ unless this is given.
        Without angles from the argument or the file, a sidecar ``<stem>.tlt`` is used.
    species : mapping, sequence or str, optional
        Models: element for each atom type (see :func:`map_species`). Without it atoms are
        "X" and the integer types are kept in the per-atom array ``type``.
    types : array_like or path, optional
        Models: atom types (or a ``.mat`` holding them) when not in this file.
    lazy_threshold_bytes : int
        v7.3 arrays above this size open lazily (dask); default 256 MiB.
    **metadata
        ``pixel_size_A`` / ``voxel_size_A`` and further attrs.
    """
    variables = load_variables(path, lazy_threshold_bytes=lazy_threshold_bytes)
    if kind is None:
        has_3d = any(v.ndim == 3 for v in variables.values())
        has_pos = any(k in variables for k in POSITION_VARS) or (
            variable is not None and variable in variables
            and variables[variable].ndim == 2 and 3 in variables[variable].shape)
        if has_pos and not has_3d:
            kind = "model"
    if kind == "model":
        return _read_model(path, variables, variable=variable, species=species, types=types,
                           types_variable=types_variable, metadata=metadata)
    # ------------------------------------------------------------------ arrays
    name = variable
    if name is None:
        cands = [k for k, v in variables.items() if v.ndim == 3 and min(v.shape) > 1]
        if len(cands) != 1:
            if not cands:
                raise MissingVariableError(
                    f"{str(path)!r} holds no 3D array (projections (x, y, n) or a volume "
                    f"(x, y, z)); it holds: {_describe(variables)}"
                )
            raise MetadataError(f"{str(path)!r} holds several 3D arrays ({', '.join(cands)}); "
                                f"pass variable=... to choose one")
        name = cands[0]
    elif name not in variables:
        raise MissingVariableError(f"{str(path)!r} has no variable {name!r}; it holds: "
                                   f"{_describe(variables)}")
    arr = matlab_to_aet(variables[name])
    if arr.dtype.kind == "b":
        arr = arr.astype(np.uint8)
    n = arr.shape[0]
    from_file = False
    source = f"{path}"
    if angles is not None:
        a, from_file = _angles_array(angles, n=n, source=source, variable=angles_variable)
        source = str(angles)
    else:
        an = angles_variable or next((k for k in ANGLE_VARS if k in variables), None)
        a = None
        if an is not None and kind != "volume":
            if an not in variables:
                raise MissingVariableError(f"{str(path)!r} has no variable {an!r}; it holds: "
                                           f"{_describe(variables)}")
            a, from_file = _orient_angles(variables[an], n, f"{path}:{an}"), True
            source = f"{path}:{an}"
    if a is not None:
        a = resolve_angles(a, n=n, euler_convention=euler_convention, from_file=from_file,
                           source=source)
    file_attrs = {}
    for k in PIXEL_VARS:
        if k in variables and variables[k].size == 1:
            v = float(variables[k].reshape(-1)[0])
            if math.isfinite(v) and v > 0:
                file_attrs["pixel_size_A"] = v
                break
    if euler_convention is not None:
        file_attrs["source_euler_convention"] = _check_convention(euler_convention)
    md = dict(metadata)
    if a is not None:
        md["angles"] = a
    obj = make_object(arr, path=path, fmt="matlab", kind=kind, metadata=md,
                      file_attrs=file_attrs)
    da = obj.data
    rec = _last_params(da)
    rec.update({"variable": name, "layout": "MATLAB (x, y, n|z) -> aet reversed axes"})
    # how the file's angles were turned into aet's (docs/conventions.rst)
    if euler_convention is not None:
        rec["euler_convention"] = _check_convention(euler_convention)
    return type(obj)._wrap(_replace_last_params(da, rec))


def _last_params(da) -> dict:
    from ..core.meta import get_provenance

    return dict(get_provenance(da.attrs)[-1]["params"])


def _replace_last_params(da, params):
    from ..core.meta import get_provenance, set_provenance

    recs = get_provenance(da.attrs)
    recs[-1]["params"] = params
    out = da.copy(deep=False)
    out.attrs = dict(da.attrs)
    set_provenance(out.attrs, recs)
    return out


def _positions(arr, path, name):
    a = np.asarray(arr)
    if a.dtype.kind not in "iuf" or a.ndim != 2 or 3 not in a.shape:
        raise CorruptFileError(f"{str(path)!r}: variable {name!r} has shape {a.shape} "
                               f"{a.dtype}; atom positions must be 3 × N (x, y, z in Å)")
    # the AET layout is 3 × N (also when N = 3); N × 3 only when the first dim is not 3
    return (a.T if a.shape[0] == 3 else a).astype(np.float64)


def _read_model(path, variables, *, variable, species, types, types_variable, metadata):
    AtomicModel = facade_class("AtomicModel")

    pname = _pick(variables, POSITION_VARS, path, "atom position (3 × N)", given=variable)
    pos = _positions(variables[pname], path, pname)
    n = pos.shape[0]
    t = None
    tsource = str(path)
    if types is not None:
        if isinstance(types, (str, Path)):
            tp = Path(types)
            if not tp.exists():
                raise FileNotFoundError(f"types file {str(tp)!r} does not exist")
            tv = load_variables(tp)
            tname = _pick(tv, TYPE_VARS, tp, "atom type", given=types_variable)
            t = tv[tname]
            tsource = f"{tp}:{tname}"
        else:
            t = np.asarray(types)
            tsource = "types="
    else:
        tname = _pick(variables, TYPE_VARS, path, "atom type", given=types_variable,
                      required=species is not None and not isinstance(species, str))
        if tname is not None:
            t = variables[tname]
            tsource = f"{path}:{tname}"
    arrays = {}
    if t is not None:
        t = np.asarray(t).reshape(-1)
        if t.size != n:
            raise CorruptFileError(f"{tsource} has {t.size} atom types but {str(path)!r}:"
                                   f"{pname} has {n} positions")
        arrays["type"] = t.astype(np.int64)
    if species is None:
        sp = "X"
    elif t is None:
        if not isinstance(species, str):
            raise MissingVariableError(
                f"species maps atom types but {str(path)!r} holds no atom types (looked for "
                f"{', '.join(TYPE_VARS)}); it holds: {_describe(variables)}. Pass types=..."
            )
        sp = species
    else:
        sp = map_species(t, species, source=tsource)
    model = AtomicModel(pos, sp, arrays=arrays, **metadata)
    params = {"path": str(path), "format": "matlab", "variable": pname}
    if t is not None:
        params["types"] = tsource
    return AtomicModel._wrap(with_provenance(model.data, "open", params))
