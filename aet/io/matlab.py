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
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, MetadataError, MissingVariableError
from ..model._meta import with_provenance
from ._common import make_object

EULER_CONVENTIONS = {
    "zyz": "object rotated by Rz(φ)·Ry(θ)·Rz(ψ) (aet's own)",
    "zyx": "object rotated by Rz(φ)·Ry(θ)·Rx(ψ)",
    "genfire": "GENFIRE: grid rotated by Rz(φ)·Ry(θ)·Rz(ψ), object by its transpose",
    "resire": "RESIRE: grid rotated by Rz(φ)·Ry(θ)·Rx(ψ), object by its transpose",
}
_PASSIVE = ("genfire", "resire")
#: Variable names tried, in order, for each role.
POSITION_VARS = ("model", "model_refined", "modelarr", "final_atom_coord_inAngstrom",
                 "atom_coord", "coords", "positions", "atom_pos")
TYPE_VARS = ("atoms", "atom_type", "atom_types", "final_atom_types", "atomtype", "types")
ANGLE_VARS = ("angles", "angle", "refined_angles", "Angles", "tilt_angles", "euler_angles")
PIXEL_VARS = ("pixel_size_A", "voxel_size_A", "Res")


# --------------------------------------------------------------------------- frames
def matlab_to_aet(arr):
    """Reverse the axis order of an array indexed the MATLAB AET way.

    ``(x, y, n)`` projections -> ``(n, y, x)`` = (angle, y, x); ``(x, y, z)`` volume ->
    ``(z, y, x)``; ``(x, y)`` image -> ``(y, x)``. Works on NumPy and dask arrays (a view).

    Examples
    --------
    >>> import numpy as np
    >>> matlab_to_aet(np.zeros((131, 61, 46))).shape
    (46, 61, 131)
    """
    return arr.transpose(tuple(range(arr.ndim))[::-1])


# --------------------------------------------------------------------------- Euler angles
def _rz(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1),
                     np.stack([z, z, o], -1)], -2)


def _ry(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1),
                     np.stack([-s, z, c], -1)], -2)


def _rx(a):
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1),
                     np.stack([z, s, c], -1)], -2)


def _check_convention(convention) -> str:
    if not isinstance(convention, str) or convention.lower() not in EULER_CONVENTIONS:
        choices = "; ".join(f"{k!r}: {v}" for k, v in EULER_CONVENTIONS.items())
        raise ValueError(f"euler_convention must be one of {choices}; got {convention!r}")
    return convention.lower()


def euler_matrix(angles_deg, convention: str) -> np.ndarray:
    """The matrices ``(n, 3, 3)`` that rotate the object (active, right-handed, acting on
    (x, y, z) columns) for ``(n, 3)`` Euler triples (φ, θ, ψ) in degrees in ``convention``
    (see :data:`EULER_CONVENTIONS`)."""
    conv = _check_convention(convention)
    a = np.radians(np.asarray(angles_deg, dtype=np.float64).reshape(-1, 3))
    last = _rz if conv in ("zyz", "genfire") else _rx
    m = _rz(a[:, 0]) @ _ry(a[:, 1]) @ last(a[:, 2])
    return np.swapaxes(m, 1, 2) if conv in _PASSIVE else m


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def euler_to_zyz(angles_deg, convention: str) -> np.ndarray:
    """Convert ``(n, 3)`` Euler angles (degrees) from ``convention`` to aet's ZYZ (φ, θ, ψ).

    The conversion goes through the rotation matrix, so the result describes exactly the same
    rotation of the object. Of the two ZYZ triples of a matrix (θ and −θ) the one nearest to
    the source numbers (negated for the grid-rotating conventions) is returned, so a tilt of
    −30° in "zyx" stays −30°; at θ = 0 or 180° (gimbal lock) ψ = 0.

    Examples
    --------
    >>> import numpy as np
    >>> np.round(euler_to_zyz([[0.0, -30.0, 0.0]], "zyx"), 6) + 0.0
    array([[  0., -30.,   0.]])
    >>> np.round(euler_to_zyz([[0.0, -30.0, 0.0]], "genfire"), 6) + 0.0
    array([[ 0., 30.,  0.]])
    """
    src = np.asarray(angles_deg, dtype=np.float64).reshape(-1, 3)
    conv = _check_convention(convention)
    if conv == "zyz":
        return src.copy()
    r = euler_matrix(src, conv)
    if conv == "genfire":  # Mᵀ = Rz(−ψ)·Ry(−θ)·Rz(−φ) exactly
        src = -src[:, ::-1]
    elif conv == "resire":  # Mᵀ = Rx(−ψ)·Ry(−θ)·Rz(−φ): near (−φ, −θ, −ψ) for small φ, ψ
        src = -src
    b = np.arccos(np.clip(r[:, 2, 2], -1.0, 1.0))
    a = np.arctan2(r[:, 1, 2], r[:, 0, 2])
    c = np.arctan2(r[:, 2, 1], -r[:, 2, 0])
    lock = np.abs(np.sin(b)) < 1e-9
    up = lock & (r[:, 2, 2] > 0)
    down = lock & (r[:, 2, 2] < 0)
    a = np.where(up, np.arctan2(r[:, 1, 0], r[:, 0, 0]), a)
    a = np.where(down, np.arctan2(-r[:, 1, 0], -r[:, 0, 0]), a)
    c = np.where(lock, 0.0, c)
    cand1 = np.stack([_wrap(a), b, _wrap(c)], 1)
    cand2 = np.stack([_wrap(a + np.pi), -b, _wrap(c + np.pi)], 1)
    s = np.radians(src)
    d1 = np.abs(_wrap(cand1 - s)).sum(1)
    d2 = np.abs(_wrap(cand2 - s)).sum(1)
    out = np.where((d2 < d1)[:, None] & ~lock[:, None], cand2, cand1)
    return np.degrees(out)


# --------------------------------------------------------------------------- loading
LAZY_THRESHOLD_BYTES = 256 * 2**20


class _H5Dataset:
    """Array-like over one HDF5 dataset that opens the file for each read (so a lazy array
    holds no open file handle)."""

    def __init__(self, path: Path, name: str, shape, dtype):
        self.path, self.name = path, name
        self.shape, self.dtype, self.ndim = tuple(shape), np.dtype(dtype), len(shape)

    def __getitem__(self, key):
        import h5py

        try:
            with h5py.File(self.path, "r") as h:
                return np.asarray(h[self.name][key])
        except Exception as exc:  # h5py raises OSError/KeyError/... on a damaged file
            raise CorruptFileError(f"{str(self.path)!r}: variable {self.name!r} could not be "
                                   f"read: {type(exc).__name__}: {exc}") from None


def load_variables(path: Path, *, lazy_threshold_bytes: int = LAZY_THRESHOLD_BYTES
                   ) -> dict[str, np.ndarray]:
    """All numeric variables of a ``.mat`` file (v5 or v7.3) in MATLAB index order.

    v7.3 variables larger than ``lazy_threshold_bytes`` (MATLAB writes every variable over
    2 GB as v7.3) come back as dask arrays read from the file only when used.

    Raises
    ------
    CorruptFileError
        When the file is neither a readable v5 nor a v7.3 (HDF5) MAT-file.
    """
    import h5py

    path = Path(path)
    try:
        if h5py.is_hdf5(path):
            out = {}
            with h5py.File(path, "r") as h:
                for k, ds in h.items():
                    if k.startswith("#") or not isinstance(ds, h5py.Dataset):
                        continue
                    if ds.dtype.kind not in "iufb" or ds.attrs.get("MATLAB_class") in (
                            b"char", "char"):
                        continue
                    if ds.ndim >= 2 and ds.size * ds.dtype.itemsize > lazy_threshold_bytes:
                        out[k] = _lazy_h5(path, k, ds).T
                    else:
                        out[k] = np.asarray(ds[()]).T  # back to MATLAB index order
            return out
        import scipy.io

        from ._mat5check import check_mat5

        # SciPy's C reader segfaults on some damaged files: check the structure first
        check_mat5(path.read_bytes(), str(path))
        raw = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)
    except (OSError, ValueError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise CorruptFileError(f"{str(path)!r} is not a readable MATLAB .mat file: "
                               f"{type(exc).__name__}: {exc}") from None
    except Exception as exc:  # scipy.io raises many types on a broken file
        raise CorruptFileError(f"{str(path)!r} is not a readable MATLAB .mat file: "
                               f"{type(exc).__name__}: {exc}") from None
    return {k: v for k, v in raw.items()
            if not k.startswith("__") and isinstance(v, np.ndarray) and v.dtype.kind in "iufb"}


def _lazy_h5(path: Path, name: str, ds):
    import os

    import dask.array as dsa
    from dask.base import tokenize

    plane = int(np.prod(ds.shape[1:])) * ds.dtype.itemsize
    per = max(1, (64 * 2**20) // max(1, plane))
    chunks = ds.chunks if ds.chunks is not None else (per, *ds.shape[1:])
    return dsa.from_array(_H5Dataset(path, name, ds.shape, ds.dtype), chunks=chunks,
                          name=f"aet-mat-{tokenize(str(path), name, os.stat(path).st_mtime_ns)}",
                          asarray=False, fancy=False)


def _describe(variables: Mapping[str, np.ndarray]) -> str:
    if not variables:
        return "no numeric variables"
    return ", ".join(f"{k} {tuple(v.shape)} {v.dtype}" for k, v in variables.items())


def _pick(variables, names, path, role, *, given=None, required=True):
    if given is not None:
        if given not in variables:
            raise MissingVariableError(
                f"{str(path)!r} has no variable {given!r} ({role}); it holds: "
                f"{_describe(variables)}"
            )
        return given
    for n in names:
        if n in variables:
            return n
    if required:
        raise MissingVariableError(
            f"{str(path)!r} holds no {role} variable (looked for {', '.join(names)}); it "
            f"holds: {_describe(variables)}. Pass the name explicitly"
        )
    return None


# --------------------------------------------------------------------------- angles
def _angles_array(angles, *, n: int | None, source: str, variable=None):
    """Angles from an array or a path (.mat, or text); returns (array, came_from_file)."""
    if isinstance(angles, (str, Path)):
        p = Path(angles)
        if not p.exists():
            raise FileNotFoundError(f"angles file {str(p)!r} does not exist")
        if p.suffix.lower() == ".mat":
            v = load_variables(p)
            name = variable
            if name is None:
                name = next((k for k in ANGLE_VARS if k in v), None)
            if name is None:
                shaped = [k for k, a in v.items() if _angle_shaped(a, n)]
                if len(shaped) != 1:
                    raise MissingVariableError(
                        f"angles file {str(p)!r}: cannot tell which variable holds the angles "
                        f"(looked for {', '.join(ANGLE_VARS)}); it holds: {_describe(v)}. "
                        f"Pass angles_variable=..."
                    )
                name = shaped[0]
            elif name not in v:
                raise MissingVariableError(f"angles file {str(p)!r} has no variable {name!r}; "
                                           f"it holds: {_describe(v)}")
            return _orient_angles(v[name], n, f"{p}:{name}"), True
        try:
            arr = np.loadtxt(p, dtype=np.float64, ndmin=1)
        except ValueError as exc:
            raise MetadataError(f"angles file {str(p)!r} is not numeric text: {exc}") from None
        return _orient_angles(arr, n, str(p)), True
    return np.asarray(angles), False


def _angle_shaped(a, n) -> bool:
    a = np.asarray(a)
    if a.ndim == 2 and 3 in a.shape and a.dtype.kind in "iuf":
        return n is None or n in a.shape
    return a.ndim <= 2 and 1 in a.shape and (n is None or a.size == n) and a.dtype.kind in "f"


def _orient_angles(a, n, source):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] != 3 and a.shape[0] == 3:
        a = a.T  # 3 × n
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim == 2 and a.shape[1] != 3:
        raise MetadataError(f"angles from {source} have shape {a.shape}; expected n values or "
                            f"n × 3 Euler angles (degrees)")
    return a


def resolve_angles(angles, *, n: int | None, euler_convention, from_file: bool, source: str):
    """Apply the Euler convention to ``(n, 3)`` angles; 1D tilt angles pass through."""
    a = np.asarray(angles, dtype=np.float64)
    if a.ndim == 2 and a.shape[1] == 3:
        if euler_convention is None:
            if from_file:
                choices = "; ".join(f"{k!r}: {v}" for k, v in EULER_CONVENTIONS.items())
                raise MetadataError(
                    f"the Euler angles from {source} need their convention: pass "
                    f"euler_convention= one of {choices}"
                )
            return a
        return euler_to_zyz(a, euler_convention)
    return a


# --------------------------------------------------------------------------- species
def map_species(types, species, *, source: str) -> np.ndarray:
    """Element symbols for integer atom ``types``.

    ``species``: a mapping ``{type: symbol}``, one symbol for every atom, or a sequence of
    symbols for types 1, 2, 3, ... (MATLAB numbering: ``species[0]`` is type 1).
    """
    t = np.asarray(types).reshape(-1)
    if t.dtype.kind == "f":
        if not np.all(np.isfinite(t)) or not np.all(t == np.round(t)):
            raise CorruptFileError(f"atom types in {source} are not integers")
    t = t.astype(np.int64)
    if isinstance(species, str):
        return np.full(t.shape, species)
    if isinstance(species, Mapping):
        table = {int(k): str(v) for k, v in species.items()}
    elif isinstance(species, Sequence):
        table = {i + 1: str(s) for i, s in enumerate(species)}
    else:
        raise TypeError(f"species must be a mapping {{type: symbol}}, a sequence of symbols "
                        f"for types 1, 2, ... or one symbol; got {type(species).__name__}")
    missing = sorted(set(np.unique(t).tolist()) - set(table))
    if missing:
        raise ValueError(
            f"species has no symbol for atom type(s) {missing} found in {source}; pass e.g. "
            f"species={{{', '.join(f'{m}: ...' for m in missing)}}}"
        )
    return np.array([table[int(v)] for v in t])


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
    if euler_convention is not None:  # how the file's angles were turned into DESIGN's
        rec["euler_convention"] = _check_convention(euler_convention)
    return type(obj)._wrap(_replace_last_params(da, rec))


def _last_params(da) -> dict:
    from ..model._meta import get_provenance

    return dict(get_provenance(da.attrs)[-1]["params"])


def _replace_last_params(da, params):
    from ..model._meta import get_provenance, set_provenance

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
    from ..model.atomicmodel import AtomicModel

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
