"""Atom formats: CSV (own, with every per-atom column), and XYZ/extXYZ, CIF, POSCAR via ASE.

CSV: a plain table that any CSV reader takes without options (``pandas.read_csv(path)``,
spreadsheets): a header row ``x_A, y_A, z_A, species`` then one column per further per-atom
array, one row per atom. The model's attrs and provenance go beside it into
``<name>-metadata.json`` (the file name the W3C "CSV on the Web" recommendation gives a CSV
file's metadata), which :func:`aet.open` reads back when present. Files written by older aet
versions, with ``# key: JSON value`` lines above the header, are still read.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from ..core.meta import PROVENANCE_ATTR, get_provenance, to_jsonable, with_provenance
from ..core.schema import dataset_from_ase, facade_class
from ..errors import CorruptFileError

_POS_COLS = ("x_A", "y_A", "z_A")


def _model_cls():
    AtomicModel = facade_class("AtomicModel")

    return AtomicModel


def _check_kind(kind, path):
    if kind not in (None, "model"):
        raise ValueError(f"{str(path)!r} is an atom file; it holds a model, not kind={kind!r}")


# --------------------------------------------------------------------------- CSV
SIDECAR_SUFFIX = "-metadata.json"
_UNITS = {"x_A": "Å", "y_A": "Å", "z_A": "Å", "b_factor": "Å²", "uncertainty": "Å"}


def write_csv(model, path: Path) -> dict:
    """Write the plain CSV table; returns the metadata sidecar ``{suffix: document}`` that
    :func:`aet.io.write` writes beside it (atomically, ``url`` filled in)."""
    ds = model.data
    extras = [k for k in ds.data_vars if k not in ("position", "species")
              and ds[k].dims == ("atom",)]
    pos = model.positions
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*_POS_COLS, "species", *extras])
        cols = [np.asarray(ds[k].values) for k in extras]
        for i in range(model.n_atoms):
            row = [repr(float(pos[i, 0])), repr(float(pos[i, 1])), repr(float(pos[i, 2])),
                   str(ds["species"].values[i])]
            for c in cols:
                v = c[i]
                row.append(repr(float(v)) if c.dtype.kind == "f" else str(v))
            w.writerow(row)
    columns = []
    kinds = {"f": "double", "i": "integer", "u": "integer", "b": "boolean"}
    for name in (*_POS_COLS, "species", *extras):
        if name in _POS_COLS:
            kind = "double"
        elif name == "species":
            kind = "string"
        else:
            kind = kinds.get(np.asarray(ds[name].values).dtype.kind, "string")
        col = {"name": name, "datatype": kind}
        units = _UNITS.get(name) or (ds[name].attrs.get("units") if name in ds else None)
        if units:
            col["aet:units"] = str(units)
        columns.append(col)
    attrs = {k: to_jsonable(v) for k, v in ds.attrs.items() if k != PROVENANCE_ATTR}
    doc = {"@context": "http://www.w3.org/ns/csvw", "url": None,
           "tableSchema": {"columns": columns},
           "aet:attrs": attrs, "aet:provenance": get_provenance(ds.attrs)}
    return {SIDECAR_SUFFIX: doc}


def _read_sidecar(path: Path) -> dict | None:
    side = path.parent / (path.name + SIDECAR_SUFFIX)
    if not side.is_file():
        return None
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{str(side)!r} (the metadata of {path.name}) is not JSON: "
                               f"{exc}") from None
    if not isinstance(doc, dict) or doc.get("url") not in (None, path.name):
        return None  # another table's metadata
    return doc


def read_csv(path: Path, *, kind=None, **metadata):
    _check_kind(kind, path)
    attrs: dict = {}
    rows = []
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            lines = []
            for line in fh:
                if line.startswith("#"):
                    key, _, val = line[1:].partition(":")
                    try:
                        attrs[key.strip()] = json.loads(val)
                    except json.JSONDecodeError:
                        attrs[key.strip()] = val.strip()
                else:
                    lines.append(line)
            rows = list(csv.reader(lines))
    except UnicodeDecodeError as exc:
        raise CorruptFileError(f"{str(path)!r} is not a text CSV file: {exc}") from None
    if not rows:
        raise CorruptFileError(f"{str(path)!r} has no header row; expected x_A,y_A,z_A,species")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in (*_POS_COLS, "species") if c not in header]
    if missing:
        raise CorruptFileError(
            f"{str(path)!r} lacks column(s) {missing}; found {header}. The CSV needs "
            f"x_A, y_A, z_A (Å) and species"
        )
    body = [r for r in rows[1:] if r]
    if any(len(r) != len(header) for r in body):
        raise CorruptFileError(f"{str(path)!r} has rows with a different number of columns "
                               f"than its header (truncated?)")
    cols = {h: [r[j] for r in body] for j, h in enumerate(header)}
    try:
        pos = np.array([[float(v) for v in cols[c]] for c in _POS_COLS]).T.reshape(-1, 3)
    except ValueError as exc:
        raise CorruptFileError(f"{str(path)!r}: a position is not a number ({exc})") from None
    arrays = {}
    for h in header:
        if h in (*_POS_COLS, "species"):
            continue
        arrays[h] = _parse_column(cols[h])
    prov = attrs.pop(PROVENANCE_ATTR, None)
    side = _read_sidecar(path)
    if side is not None:
        got = side.get("aet:attrs")
        if isinstance(got, dict):
            attrs.update(got)
        if isinstance(side.get("aet:provenance"), list):
            prov = side["aet:provenance"]
    attrs.pop("aet_class", None)
    model = _model_cls()(pos, cols["species"], arrays=arrays, **attrs, **metadata)
    ds = model.data
    if prov is not None:
        ds.attrs[PROVENANCE_ATTR] = json.dumps(prov)
    return _model_cls()._wrap(with_provenance(ds, "open", {"path": str(path), "format": "csv"}))


def _parse_column(values: list[str]) -> np.ndarray:
    for conv in (int, float):
        try:
            return np.array([conv(v) for v in values])
        except ValueError:
            continue
    return np.array(values, dtype=str)


# --------------------------------------------------------------------------- via ASE
def _write_ase(model, path: Path, fmt: str, **kw) -> None:
    import ase.io

    atoms = model.to_ase()
    if fmt != "extxyz":
        atoms.arrays = {k: v for k, v in atoms.arrays.items() if k in ("numbers", "positions")}
        atoms.info = {}
    else:
        atoms.info = {k: (json.dumps(v) if not isinstance(v, (str, int, float)) else v)
                      for k, v in atoms.info.items()}
    ase.io.write(str(path), atoms, format=fmt, **kw)


def write_xyz(model, path: Path) -> None:
    """Extended XYZ: every per-atom array and the attrs survive (OVITO reads it)."""
    _write_ase(model, path, "extxyz")


def write_cif(model, path: Path) -> None:
    """CIF in a box cell around the particle (positions kept in Å, Cartesian)."""
    import ase.io

    st = model.to_pymatgen(structure=True, padding_A=5.0)
    atoms = model.to_ase(cell=st.lattice.matrix, pbc=True)
    atoms.translate(-np.asarray(json.loads(st.properties["aet_origin_shift_A"])))
    atoms.arrays = {k: v for k, v in atoms.arrays.items() if k in ("numbers", "positions")}
    atoms.info = {"aet_origin_shift_A": st.properties["aet_origin_shift_A"]}
    ase.io.write(str(path), atoms, format="cif")
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"# aet_origin_shift_A {st.properties['aet_origin_shift_A']}\n")


def write_poscar(model, path: Path) -> None:
    """POSCAR in a box cell (10 Å of vacuum), Cartesian coordinates, origin shift recorded in
    the comment line."""
    import ase.io

    st = model.to_pymatgen(structure=True, padding_A=5.0)
    shift = np.asarray(json.loads(st.properties["aet_origin_shift_A"]))
    atoms = model.to_ase(cell=st.lattice.matrix, pbc=True)
    atoms.translate(-shift)
    atoms.arrays = {k: v for k, v in atoms.arrays.items() if k in ("numbers", "positions")}
    atoms.info = {}
    ase.io.write(str(path), atoms, format="vasp", direct=False, sort=False)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[0] = f"aet origin_shift_A {json.dumps(shift.tolist())}\n"  # the free comment line
    path.write_text("".join(lines), encoding="utf-8")


def read_ase(path: Path, *, kind=None, **metadata):
    _check_kind(kind, path)
    import ase.io

    name = path.name.lower()
    fmt = None
    if name.endswith((".xyz", ".extxyz")):
        fmt = "extxyz"
    elif name.endswith(".cif"):
        fmt = "cif"
    elif name.endswith((".vasp", ".poscar")) or name.startswith(("poscar", "contcar")):
        fmt = "vasp"
    try:
        atoms = ase.io.read(str(path), format=fmt)
    except Exception as exc:  # ASE raises many types on malformed files
        raise CorruptFileError(f"{str(path)!r} could not be parsed as {fmt}: {exc}") from None
    shift = _origin_shift(path, fmt)
    if shift is not None:
        atoms.translate(shift)
    if fmt != "extxyz":  # CIF/POSCAR readers add format-specific arrays and info
        atoms.arrays = {k: v for k, v in atoms.arrays.items() if k in ("numbers", "positions")}
        atoms.info = {}
    ds = dataset_from_ase(atoms)
    ds.attrs.pop("aet_origin_shift_A", None)
    prov = atoms.info.get(PROVENANCE_ATTR)
    if isinstance(prov, str):
        ds.attrs[PROVENANCE_ATTR] = prov
    ds.attrs.update(metadata)
    model = _model_cls()._wrap(ds)
    return _model_cls()._wrap(with_provenance(model.data, "open",
                                              {"path": str(path), "format": fmt}))


def _origin_shift(path: Path, fmt: str | None):
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    raw = None
    if fmt == "vasp":
        first = text.splitlines()[0] if text else ""
        if first.startswith("aet origin_shift_A"):
            raw = first.split("aet origin_shift_A", 1)[1]
    if fmt == "cif":
        for line in text.splitlines()[::-1]:
            if line.startswith("# aet_origin_shift_A"):
                raw = line.split("aet_origin_shift_A", 1)[1]
                break
    if raw is None:
        return None
    try:
        shift = np.asarray(json.loads(raw), dtype=np.float64)
    except (json.JSONDecodeError, ValueError, TypeError):
        shift = None
    if shift is None or shift.shape != (3,) or not np.all(np.isfinite(shift)):
        raise CorruptFileError(f"{str(path)!r}: the aet origin shift {raw.strip()!r} is not "
                               f"three numbers (damaged file?)")
    return shift
