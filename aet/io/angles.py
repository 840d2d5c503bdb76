"""Tilt angles from where microscopists keep them: numbers, text files, SerialEM ``.mdoc``,
MATLAB ``.mat``, and the sidecar files next to a tilt series.

Sources (:func:`read_angles`)
-----------------------------
numbers
    A sequence of tilt angles θ (degrees) or an ``(n, 3)`` array of Euler angles (φ, θ, ψ).
IMOD ``.tlt`` / ``.rawtlt`` and plain text (``.txt``, ``.angles``, ``.csv``, ``.dat``)
    One tilt angle per line (IMOD writes ``%.2f``), or three columns φ θ ψ; blank lines and
    ``#`` comments are skipped, columns may be separated by spaces, tabs or commas. IMOD's
    ``.rawtlt`` holds the nominal angles of the raw stack (``.st``), ``.tlt`` the angles
    refined by ``tiltalign`` for the aligned stack (``.ali``).
SerialEM ``.mdoc``
    One ``[ZValue = k]`` section per image with ``TiltAngle = θ``; sections are put in ``k``
    order (the order of the images in the stack). The acquisition's tilt-axis angle (the
    ``[T = ... Tilt axis angle = 85.3, ...]`` title line, or a ``TiltAxisAngle`` key) and
    ``PixelSpacing`` (Å) are kept as ``tilt_axis_angle_deg`` and ``pixel_size_A``.
    SerialEM's tilt-axis angle is measured from the image x axis, counter-clockwise, in the
    image as displayed (y up); aet's tilt axis is the array's y axis, so a value near ±90°
    means the axis already runs along y.
MATLAB ``.mat``
    Through :mod:`aet.io.matlab` (a variable such as ``angles``; ``(n, 3)`` Euler angles need
    ``euler_convention=``).

A file that does not parse raises :class:`~aet.errors.MetadataError` naming the file and the
line. Angles whose magnitudes all stay below π/2 with at least 10 projections look like
radians and give an :class:`~aet.errors.AngleUnitWarning` (aet takes degrees everywhere).

Sidecars (:func:`find_sidecar`)
-------------------------------
When a tilt series file carries no angles, aet looks beside it for, in order:
``<stem>.tlt``, ``<stem>.rawtlt`` (``.rawtlt`` first for a raw ``.st`` stack), SerialEM's
``<name>.mdoc`` (``tilts.mrc.mdoc``) and ``<stem>.mdoc``, ``<stem>_angles.txt``,
``<stem>.angles``.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import AngleUnitWarning, MetadataError

TEXT_SUFFIXES = (".tlt", ".rawtlt", ".txt", ".angles", ".csv", ".dat", ".tilt")
#: Suffixes stripped from a data file's name to find its sidecars.
DATA_SUFFIXES = (".zarr", ".mrc", ".mrcs", ".tiff", ".tif", ".npy", ".npz", ".st", ".ali",
                 ".preali", ".dm3", ".dm4", ".emd", ".ser", ".emi", ".h5", ".hdf5", ".nc",
                 ".rec", ".map", ".mat")
RADIANS_MIN_PROJECTIONS = 10

__all__ = ["Angles", "check_degrees", "find_sidecar", "read_angles"]


@dataclass(frozen=True)
class Angles:
    """Angles read from a source: ``values`` (n,) θ or (n, 3) Euler (φ, θ, ψ), degrees;
    ``attrs`` metadata the source carried (``tilt_axis_angle_deg``, ``pixel_size_A``);
    ``source`` a short description for messages and provenance."""

    values: np.ndarray
    source: str
    attrs: dict = field(default_factory=dict)


def check_degrees(theta, source: str, *, stacklevel: int = 3) -> None:
    """Warn (:class:`~aet.errors.AngleUnitWarning`) when tilt angles look like radians.

    The rule: at least :data:`RADIANS_MIN_PROJECTIONS` projections, all below π/2 in magnitude. A
    tilt series in degrees spans tens of degrees; one in radians stays within ±1.57.
    """
    t = np.asarray(theta, dtype=np.float64)
    if t.ndim == 2 and t.shape[-1] == 3:
        t = t[:, 1]
    t = t.reshape(-1)
    if t.size >= RADIANS_MIN_PROJECTIONS and np.all(np.isfinite(t)) \
            and float(np.max(np.abs(t))) < math.pi / 2:
        warnings.warn(
            f"{source}: all {t.size} tilt angles lie within ±{float(np.max(np.abs(t))):.3g}, "
            f"below π/2: they look like radians, but aet reads degrees. If they are radians, "
            f"convert them (numpy.degrees); if the tilt range really is this small, ignore "
            f"this warning", AngleUnitWarning, stacklevel=stacklevel)


def _fail(path, lineno: int | None, what: str) -> MetadataError:
    where = f"{str(path)!r}" + (f", line {lineno}" if lineno is not None else "")
    return MetadataError(f"angle file {where}: {what}")


def _read_text_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise _fail(path, None, "is not a text file (expected one angle per line, degrees)") \
            from None
    except IsADirectoryError:
        raise _fail(path, None, "is a folder, not an angle file") from None


_SPLIT = re.compile(r"[,\s;]+")


def read_text(path) -> np.ndarray:
    """Angles from a text file: one θ per line or three columns φ θ ψ (degrees)."""
    path = Path(path)
    rows: list[list[float]] = []
    width = None
    for k, line in enumerate(_read_text_lines(path), start=1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        parts = [p for p in _SPLIT.split(s) if p]
        try:
            vals = [float(p) for p in parts]
        except ValueError:
            bad = next(p for p in parts if not _is_float(p))
            raise _fail(path, k, f"{bad!r} in {line.strip()!r} is not a number; an angle file "
                                 f"holds one tilt angle per line (or φ θ ψ columns), in "
                                 f"degrees") from None
        if len(vals) not in (1, 3):
            raise _fail(path, k, f"{line.strip()!r} has {len(vals)} values; expected 1 (θ) or "
                                 f"3 (φ θ ψ) per line")
        if width is None:
            width = len(vals)
        elif len(vals) != width:
            raise _fail(path, k, f"{line.strip()!r} has {len(vals)} values but the lines "
                                 f"before have {width}")
        if not all(math.isfinite(v) for v in vals):
            raise _fail(path, k, f"{line.strip()!r} is not a finite angle")
        rows.append(vals)
    if not rows:
        raise _fail(path, None, "holds no angles")
    a = np.asarray(rows, dtype=np.float64)
    return a[:, 0] if width == 1 else a


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


_SECTION = re.compile(r"^\[\s*(\w+)\s*=\s*(.*?)\s*\]\s*$")
_KEYVAL = re.compile(r"^(\w+)\s*=\s*(.*?)\s*$")
_AXIS_TITLE = re.compile(r"tilt\s*axis\s*angle\s*=\s*([-+0-9.eE]+)", re.IGNORECASE)


def read_mdoc(path) -> Angles:
    """Tilt angles, tilt-axis angle and pixel size from a SerialEM ``.mdoc`` file."""
    path = Path(path)
    glob: dict[str, tuple[str, int]] = {}
    sections: dict[int, dict[str, tuple[str, int]]] = {}
    section_line: dict[int, int] = {}
    axis = None
    cur = None
    for k, raw in enumerate(_read_text_lines(path), start=1):
        line = raw.strip()
        if not line:
            continue
        m = _SECTION.match(line)
        if m:
            key, val = m.group(1), m.group(2)
            if key == "T":
                am = _AXIS_TITLE.search(val)
                if am and axis is None:
                    axis = float(am.group(1))
                continue
            if key == "ZValue":
                try:
                    z = int(val)
                except ValueError:
                    raise _fail(path, k, f"section {line!r}: ZValue {val!r} is not an "
                                         f"integer") from None
                if z in sections:
                    raise _fail(path, k, f"ZValue {z} appears twice (first at line "
                                         f"{section_line[z]})")
                sections[z] = {}
                section_line[z] = k
                cur = sections[z]
            else:
                cur = {}  # another kind of section (FrameSet, MontSection): not an image
            continue
        m = _KEYVAL.match(line)
        if not m:
            raise _fail(path, k, f"{line!r} is neither a [section] nor a 'Key = value' line "
                                 f"(is this a SerialEM .mdoc file?)")
        (glob if cur is None else cur)[m.group(1)] = (m.group(2), k)
    if not sections:
        raise _fail(path, None, "has no [ZValue = ...] image sections; a SerialEM .mdoc of a "
                                "tilt series has one per image")
    zs = sorted(sections)
    if zs != list(range(len(zs))):
        missing = sorted(set(range(zs[-1] + 1)) - set(zs))
        raise _fail(path, None, f"the ZValue sections are not 0..{len(zs) - 1}: missing "
                                f"{missing[:10]}")
    theta = []
    for z in zs:
        if "TiltAngle" not in sections[z]:
            raise _fail(path, section_line[z], f"section [ZValue = {z}] has no TiltAngle")
        val, ln = sections[z]["TiltAngle"]
        try:
            theta.append(float(val.split()[0]))
        except (ValueError, IndexError):
            raise _fail(path, ln, f"TiltAngle {val!r} is not a number") from None
    attrs: dict = {}
    if axis is None and "TiltAxisAngle" in glob:
        val, ln = glob["TiltAxisAngle"]
        try:
            axis = float(val.split()[0])
        except (ValueError, IndexError):
            raise _fail(path, ln, f"TiltAxisAngle {val!r} is not a number") from None
    if axis is not None:
        attrs["tilt_axis_angle_deg"] = axis
    px = glob.get("PixelSpacing") or sections[zs[0]].get("PixelSpacing")
    if px is not None:
        val, ln = px
        try:
            v = float(val.split()[0])
        except (ValueError, IndexError):
            raise _fail(path, ln, f"PixelSpacing {val!r} is not a number") from None
        if math.isfinite(v) and v > 0:
            attrs["pixel_size_A"] = v
    a = np.asarray(theta, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise _fail(path, None, "holds a non-finite TiltAngle")
    return Angles(a, str(path), attrs)


def _from_path(p: Path, *, euler_convention=None, variable=None) -> Angles:
    suffix = p.suffix.lower()
    if suffix == ".mdoc":
        return read_mdoc(p)
    if suffix == ".mat":
        from ._matvars import _angles_array, resolve_angles

        arr, _ = _angles_array(p, n=None, source=str(p), variable=variable)
        arr = resolve_angles(arr, n=None, euler_convention=euler_convention, from_file=True,
                             source=str(p))
        return Angles(np.asarray(arr, dtype=np.float64), str(p))
    return Angles(read_text(p), str(p))


def read_angles(source, *, n: int | None = None, frames_per_angle: int = 1,
                euler_convention: str | None = None, variable: str | None = None,
                name: str = "angles") -> Angles:
    """Read tilt angles from numbers or a file (see the module docstring for the formats).

    Parameters
    ----------
    source : array_like, str or path-like
        Angles in degrees, a path, or (for the command line) a comma-separated list.
    n : int, optional
        Number of projections the angles must match. A file with ``n × frames_per_angle``
        entries (one per image of a movie stack) is reduced to one per tilt when the frames of
        each tilt share their angle.
    frames_per_angle : int
        Frames recorded at each tilt (see ``n``).
    euler_convention : str, optional
        For ``(n, 3)`` Euler angles read from a ``.mat`` file (see :mod:`aet.io.matlab`).
    variable : str, optional
        The ``.mat`` variable holding the angles.
    name : str
        How the caller calls the angles in messages (``"angles"``, ``"--angles"``).

    Returns
    -------
    Angles
    """
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if p.exists():
            got = _from_path(p, euler_convention=euler_convention, variable=variable)
        elif isinstance(source, str) and all(_is_float(v) for v in source.split(",")):
            vals = np.array([float(v) for v in source.split(",")])
            got = Angles(vals, f"the comma-separated {name}")
        elif isinstance(source, str) and "," in source:
            raise ValueError(f"{name} {source!r} is neither a file nor a comma-separated "
                             f"list of angles in degrees")
        else:
            raise FileNotFoundError(f"{name}: no such angle file {str(source)!r}")
    else:
        a = np.asarray(source)
        if a.dtype == object or a.dtype.kind not in "iuf":
            raise TypeError(f"{name} must be numbers in degrees or the path of an angle file "
                            f"(.tlt, .rawtlt, .mdoc, .txt, .mat), got {type(source).__name__}")
        got = Angles(a.astype(np.float64), name)
    vals = got.values
    if n is not None:
        vals = _match_count(vals, n, frames_per_angle, got.source, name)
    check_degrees(vals, got.source, stacklevel=3)
    return Angles(vals, got.source, got.attrs)


def _match_count(vals: np.ndarray, n: int, fpa: int, source: str, name: str) -> np.ndarray:
    m = vals.shape[0] if vals.ndim else 1
    if m == n:
        return vals
    if fpa > 1 and m == n * fpa:
        groups = vals.reshape(n, fpa, *vals.shape[1:])
        spread = np.max(np.abs(groups - groups[:, :1]))
        if spread > 0.05:
            raise MetadataError(
                f"{source} has {m} angles, one per image of {n} tilts × {fpa} frames, but "
                f"the frames of a tilt differ by up to {spread:.3g}°; pass one angle per tilt"
            )
        return groups[:, 0]
    per = f" ({n} tilts × {fpa} frames = {n * fpa} images)" if fpa > 1 else ""
    raise ValueError(f"{source} has {m} angles but the tilt series has {n} projections{per}; "
                     f"pass one angle per projection ({name})")


def find_sidecar(path) -> Path | None:
    """The angle file kept beside a tilt series file (see the module docstring), or None."""
    path = Path(path)
    name = path.name
    stem = name
    for suffix in DATA_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    order = [f"{stem}.tlt", f"{stem}.rawtlt"]
    if name.lower().endswith(".st"):
        order.reverse()
    order += [f"{name}.mdoc", f"{stem}.mdoc", f"{stem}_angles.txt", f"{stem}.angles"]
    for cand in order:
        p = path.parent / cand
        if p.is_file() and p != path:
            return p
    return None
