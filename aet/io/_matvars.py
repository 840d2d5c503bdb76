"""The MATLAB variables of an AET ``.mat`` file: loading (v5 and v7.3), picking variables,
the axis transposition into aet's frame and the Euler-angle conventions.

The parts of :mod:`aet.io.matlab` that build no aet object, so :mod:`aet.io.angles` reads
angles from a ``.mat`` file without importing the object reader (which reads angles through
:mod:`aet.io.angles`). The conventions are documented in :mod:`aet.io.matlab`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, MetadataError, MissingVariableError

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
