"""DFT input sets from atomic models: VASP (through pymatgen) and Quantum ESPRESSO (through ASE).

Two kinds of structure:

* a **cluster** carved from the model — every atom within ``radius_A`` of a centre (a point, the
  centroid of chosen atoms, or of a grain) — in a vacuum box (``vacuum_A`` on every side,
  Γ-point only): :func:`carve_cluster`, :func:`cluster_structure`;
* a **periodic cell** from a grain's fitted lattice (:func:`aet.analysis.fit_lattice`): the
  conventional cell with the fitted constants, each sublattice occupied by the species most of
  the grain's atoms on it have: :func:`periodic_cell`.

:func:`write_inputs` writes one folder per calculation plus ``manifest.json`` saying what each
is for, into ``folder`` atomically (built in a temporary folder, then renamed into place):

* ``preset="scf"``: one collinear spin-polarised run;
* ``preset="magnetic_anisotropy"``: the usual force-theorem workflow for the magnetocrystalline
  anisotropy energy — ``00_scf_collinear`` (spin-polarised, writes CHGCAR), then one non-self-
  consistent spin–orbit run per axis (``01_soc_<axis>``, ...: ``LSORBIT = .TRUE.``,
  ``SAXIS = axis``, ``ICHARG = 11`` reading the collinear CHGCAR, ``MAGMOM = 0 0 m`` per atom in
  the SAXIS frame, ``ISYM = -1``, ``LORBMOM``). MAE = E(axis 2) − E(axis 1) from the band
  energies. Quantum ESPRESSO: one self-consistent ``noncolin``/``lspinorb`` run per axis with
  ``angle1``/``angle2`` (polar/azimuthal angles of the magnetisation, degrees) per species.

Initial moments per species (μB) default to ``{"Fe": 3.0, "Co": 1.7, "Ni": 0.6, "Mn": 3.5,
"Pt": 0.4, "Pd": 0.3}`` (others 0), overridable with ``magmom``.

POTCARs are licensed and cannot be fetched here: instead of a POTCAR each VASP folder holds
``POTCAR.spec`` (one POTCAR symbol per species, in POSCAR order; ``potcar_symbols`` overrides the
defaults, e.g. ``Fe_pv``) — concatenate those POTCARs into ``POTCAR`` before running.
Quantum ESPRESSO pseudopotential file names (default: PSlibrary 1.0.0 fully relativistic PAW
data sets with semicore s and p states, ``<El>.rel-pbe-spn-kjpaw_psl.1.0.0.UPF``, needed for
spin–orbit) are written into the input; the files themselves must be supplied.

pw.x does not take moments in μB: ``starting_magnetization(i)`` is the spin polarisation of the
valence electrons of species *i*, documented to range from −1 (all down) to 1 (all up); pw.x
silently clips larger values to ±1 (``PW/src/input.f90``). aet writes
``moment (μB) / z_valence`` of the pseudopotential: Fe 3.0 μB / 16 = 0.1875 with the default
Fe data set (3s² 3p⁶ 3d⁶ 4s²). The valence charges of the default data sets are in
:data:`QE_DEFAULT_VALENCE`; with other pseudopotentials pass ``qe_valence={"Fe": 8, ...}``
(their ``z_valence``), and a moment larger than the valence charge is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ..core.meta import to_jsonable
from ..core.schema import as_xarray
from ..io._outdir import output_folder

DEFAULT_MAGMOM = {"Fe": 3.0, "Co": 1.7, "Ni": 0.6, "Mn": 3.5, "Cr": 1.0, "Pt": 0.4,
                  "Pd": 0.3, "Rh": 0.5, "Ir": 0.2}
DEFAULT_POTCAR = {"Fe": "Fe_pv", "Co": "Co", "Ni": "Ni_pv", "Mn": "Mn_pv", "Cr": "Cr_pv",
                  "Pt": "Pt", "Pd": "Pd", "Rh": "Rh_pv", "Ir": "Ir", "Au": "Au", "Cu": "Cu",
                  "W": "W_sv", "Ta": "Ta_pv"}
#: z_valence of the default pseudopotentials (PSlibrary 1.0.0 "spn" fully relativistic PAW:
#: semicore s and p in the valence; pslibrary's paw_ps_*.job inputs give the configurations)
QE_DEFAULT_VALENCE = {"Cr": 14, "Mn": 15, "Fe": 16, "Co": 17, "Ni": 18, "Cu": 19, "Rh": 17,
                      "Pd": 18, "Ta": 13, "W": 14, "Ir": 17, "Pt": 18, "Au": 19}
PRESETS = ("scf", "magnetic_anisotropy")
CODES = ("vasp", "qe")


def _base(ds) -> xr.Dataset:
    return as_xarray(ds, xr.Dataset)


def _pos_sp(ds):
    ds = _base(ds)
    if not isinstance(ds, xr.Dataset) or "position" not in ds:
        raise TypeError(f"expected an AtomicModel or its Dataset, got {type(ds).__name__}")
    return (np.asarray(ds["position"].transpose("atom", "axis").values, dtype=np.float64),
            np.asarray(ds["species"].values).astype(str))


# --------------------------------------------------------------------------- structures
def carve_cluster(ds, *, radius_A: float, centre_A=None, atoms=None, labels=None,
                  grain: int | None = None) -> xr.Dataset:
    """Atoms within ``radius_A`` (Å) of a centre, as a model Dataset (positions unchanged).

    The centre is ``centre_A`` (x, y, z Å), else the centroid of ``atoms`` (indices), else of
    the atoms with ``labels == grain``, else of the whole model. The per-atom array
    ``source_index`` keeps each atom's index in the input.
    """
    pos, sp = _pos_sp(ds)
    if not (np.isfinite(radius_A) and radius_A > 0):
        raise ValueError(f"radius_A must be a positive radius in Å, got {radius_A!r}")
    if centre_A is not None:
        c = np.asarray(centre_A, dtype=np.float64).reshape(3)
    elif atoms is not None:
        idx = np.atleast_1d(np.asarray(atoms, dtype=np.int64))
        if idx.size == 0 or idx.min() < 0 or idx.max() >= len(pos):
            raise ValueError(f"atoms must be indices in [0, {len(pos)}), got {idx.tolist()[:5]}")
        c = pos[idx].mean(0)
    elif grain is not None:
        if labels is None:
            base = _base(ds)
            if "grain" not in base:
                raise ValueError("grain= needs labels=... or a 'grain' array in the model "
                                 "(run aet.analysis.grains first)")
            labels = base["grain"].values
        labels = np.asarray(labels)
        if not np.any(labels == grain):
            raise ValueError(f"no atom has grain label {grain!r}; labels present: "
                             f"{sorted(set(labels.tolist()))[:10]}")
        c = pos[labels == grain].mean(0)
    else:
        c = pos.mean(0)
    sel = np.flatnonzero(np.linalg.norm(pos - c, axis=1) <= radius_A)
    if not len(sel):
        raise ValueError(f"no atom within radius_A={radius_A} Å of {c.tolist()}; enlarge it")
    out = _base(ds).isel(atom=sel)
    out = out.assign_coords(atom=np.arange(len(sel)))
    out["source_index"] = ("atom", sel)
    out.attrs = {**{k: v for k, v in out.attrs.items() if k != "provenance"},
                 "cluster_centre_A": c.tolist(), "cluster_radius_A": float(radius_A)}
    return out


def cluster_structure(ds, *, vacuum_A: float = 8.0):
    """pymatgen ``Structure`` of a (carved) cluster in an orthorhombic vacuum box.

    The box is the bounding box plus ``vacuum_A`` (Å) on every side; positions are shifted by
    ``-min + vacuum_A`` (the shift is kept in ``structure.properties["aet_origin_shift_A"]``).
    """
    from .ase_pymatgen import to_pymatgen

    if not (np.isfinite(vacuum_A) and vacuum_A > 0):
        raise ValueError(f"vacuum_A must be a positive length in Å, got {vacuum_A!r}")
    base = _base(ds)
    keep = {k: base[k] for k in ("position", "species")}
    slim = xr.Dataset(keep, attrs={})
    return to_pymatgen(slim, structure=True, padding_A=vacuum_A)


def periodic_cell(fit, ds, *, supercell=(1, 1, 1)):
    """pymatgen ``Structure`` of the conventional cell of a fitted grain.

    ``fit`` is a :class:`~aet.analysis.LatticeFit` of ``ds`` (or of one grain of it). The cell
    is in the crystal frame (a along x) with the fitted ``a``/``c``; each basis site holds the
    majority species of the grain's atoms on that sublattice (so an L1_0 fit gives the 4-atom
    L1_0 cell, an L1_2 fit the L1_2 cell, a disordered fcc grain its majority element).
    """
    from pymatgen.core import Lattice, Structure

    from ..analysis.lattice import LatticeFit, basis, crystal_cell

    if not isinstance(fit, LatticeFit):
        raise TypeError(f"fit must be a LatticeFit from aet.analysis.fit_lattice, got "
                        f"{type(fit).__name__}")
    _, sp = _pos_sp(ds)
    sp = sp[fit.atoms]
    geom = "fcc" if fit.structure in ("L10", "L12") else fit.structure
    bas = basis(geom)
    species = []
    for k in range(len(bas)):
        on = sp[fit.sublattice == k]
        on = on[on != "X"]
        if not len(on):
            raise ValueError(f"no classified atom on sublattice {k} of the fit; classify the "
                             f"model first")
        vals, counts = np.unique(on, return_counts=True)
        species.append(str(vals[np.argmax(counts)]))
    cell = crystal_cell(geom, fit.a_A, fit.c_A)
    st = Structure(Lattice(cell.T), species, bas)
    st.properties["aet_lattice_fit"] = json.dumps(to_jsonable(fit.to_dict()))
    sc = tuple(int(v) for v in supercell)
    if sc != (1, 1, 1):
        st.make_supercell(sc)
    return st


# --------------------------------------------------------------------------- writers
def _magmoms(species: Sequence[str], magmom: Mapping[str, float] | None) -> list[float]:
    table = {**DEFAULT_MAGMOM, **dict(magmom or {})}
    return [float(table.get(s, 0.0)) for s in species]


def _axis_name(ax) -> str:
    return "".join(str(int(round(v))) if float(v).is_integer() else f"{v:g}" for v in ax)


def _check_axes(axes):
    arr = np.asarray(axes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) < 1:
        raise ValueError(f"axes must be a list of 3-vectors such as [(0, 0, 1), (1, 0, 0)], "
                         f"got {axes!r}")
    if np.any(np.linalg.norm(arr, axis=1) == 0):
        raise ValueError("axes must not contain a zero vector")
    return arr


def _kpoints(structure, periodic: bool, kpoint_length_A: float):
    from pymatgen.io.vasp import Kpoints

    if not periodic:
        return Kpoints.gamma_automatic((1, 1, 1)), (1, 1, 1)
    abc = structure.lattice.abc
    mesh = tuple(max(1, int(np.ceil(kpoint_length_A / x))) for x in abc)
    return Kpoints.gamma_automatic(mesh), mesh


def _write_vasp(folder: Path, structure, incar: dict, kpoints, potcar_symbols, comment):
    from pymatgen.io.vasp import Incar, Poscar

    folder.mkdir(parents=True)
    Poscar(structure, comment=comment).write_file(folder / "POSCAR")
    Incar(incar).write_file(folder / "INCAR")
    kpoints.write_file(folder / "KPOINTS")
    elems = [str(e) for e in Poscar(structure).site_symbols]
    syms = [dict(potcar_symbols).get(e, DEFAULT_POTCAR.get(e, e)) for e in elems]
    (folder / "POTCAR.spec").write_text("\n".join(syms) + "\n")
    return syms


def qe_starting_magnetization(species: Sequence[str], magm: Sequence[float],
                              pseudopotentials: Mapping[str, str] | None = None,
                              valence: Mapping[str, float] | None = None) -> dict[str, float]:
    """pw.x ``starting_magnetization`` per element: moment (μB) / z_valence, in [−1, 1].

    ``valence`` gives z_valence per element; by default :data:`QE_DEFAULT_VALENCE`, which holds
    only for the default pseudopotentials: an element with a non-zero moment and a
    user-supplied pseudopotential needs its z_valence in ``valence``.
    """
    pps = dict(pseudopotentials or {})
    val = dict(valence or {})
    out: dict[str, float] = {}
    for el, m in zip(species, magm):
        if el in out:
            continue
        if m == 0:
            out[el] = 0.0
            continue
        z = val.get(el)
        if z is None:
            if el in pps:
                raise ValueError(
                    f"qe_valence has no entry for {el}, which has a pseudopotential of your own "
                    f"({pps[el]!r}) and an initial moment of {m} μB; pw.x needs the moment as a "
                    f"fraction of the valence charge: pass qe_valence={{{el!r}: <z_valence of "
                    f"that file>}}")
            z = QE_DEFAULT_VALENCE.get(el)
            if z is None:
                raise ValueError(
                    f"no default z_valence for {el} (initial moment {m} μB); pass "
                    f"qe_valence={{{el!r}: <z_valence of its pseudopotential>}}")
        if not (np.isfinite(z) and z > 0):
            raise ValueError(f"qe_valence[{el!r}] must be a positive charge, got {z!r}")
        frac = float(m) / float(z)
        if abs(frac) > 1:
            raise ValueError(
                f"the initial moment of {el} ({m} μB) exceeds its {z:g} valence electrons; "
                f"pw.x's starting_magnetization must lie in [-1, 1]: lower magmom[{el!r}]")
        out[el] = frac
    return out


def _write_qe(folder: Path, structure, *, periodic, mesh, magm, axis, pseudopotentials,
              ecutwfc, soc: bool, valence=None):
    import ase.io
    from pymatgen.io.ase import AseAtomsAdaptor

    folder.mkdir(parents=True)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.set_pbc(True)
    for k in list(atoms.arrays):
        if k not in ("numbers", "positions"):
            del atoms.arrays[k]
    symbols = atoms.get_chemical_symbols()
    pp = {e: dict(pseudopotentials).get(e, f"{e}.rel-pbe-spn-kjpaw_psl.1.0.0.UPF")
          for e in dict.fromkeys(symbols)}
    frac = qe_starting_magnetization(symbols, magm, pseudopotentials, valence)
    # ASE writes starting_magnetization = initial moment / rescale_magmom_fac: hand it the
    # fraction already and a factor of 1
    atoms.set_initial_magnetic_moments([frac[e] for e in symbols])
    order = list(dict.fromkeys(symbols))
    system = {"ecutwfc": float(ecutwfc), "ecutrho": float(ecutwfc) * 8,
              "occupations": "smearing", "smearing": "mv", "degauss": 0.01}
    if soc:
        theta, phi = _angles(axis)
        system.update({"noncolin": True, "lspinorb": True})
        for i in range(len(order)):
            system[f"angle1({i + 1})"] = theta
            system[f"angle2({i + 1})"] = phi
    else:
        system["nspin"] = 2
    if not periodic:
        system["assume_isolated"] = "mt"
    input_data = {"control": {"calculation": "scf", "prefix": "aet", "tprnfor": True},
                  "system": system, "electrons": {"conv_thr": 1e-9, "mixing_beta": 0.3}}
    ase.io.write(folder / "pw.in", atoms, format="espresso-in", input_data=input_data,
                 pseudopotentials=pp, kpts=tuple(mesh), rescale_magmom_fac=1.0)
    return pp, order, frac


def _angles(axis) -> tuple[float, float]:
    """(angle1 = polar θ from z, angle2 = azimuth φ) in degrees of a direction."""
    v = np.asarray(axis, dtype=np.float64)
    v = v / np.linalg.norm(v)
    return (float(np.degrees(np.arccos(np.clip(v[2], -1, 1)))),
            float(np.degrees(np.arctan2(v[1], v[0]))))


def write_inputs(folder, structure, *, preset: str = "magnetic_anisotropy",
                 codes: Sequence[str] = ("vasp", "qe"), axes=((0, 0, 1), (1, 0, 0)),
                 magmom: Mapping[str, float] | None = None, periodic: bool | None = None,
                 encut_eV: float = 450.0, ecutwfc_Ry: float = 60.0,
                 kpoint_length_A: float = 40.0, incar: Mapping | None = None,
                 potcar_symbols: Mapping[str, str] | None = None,
                 pseudopotentials: Mapping[str, str] | None = None, purpose: str = "",
                 qe_valence: Mapping[str, float] | None = None,
                 overwrite: bool = False) -> Path:
    """Write a set of DFT calculations for one structure, one folder each, with a manifest.

    Parameters
    ----------
    folder : path
        Output folder (assembled under a temporary name, then moved in). An existing folder
        with content is refused unless ``overwrite``; even then only what aet wrote there is
        replaced, the user's own files stay.
    structure : pymatgen Structure
        From :func:`cluster_structure` or :func:`periodic_cell` (or any Structure).
    preset : {"scf", "magnetic_anisotropy"}
    codes : sequence of {"vasp", "qe"}
    axes : sequence of 3-vectors
        Magnetisation directions (cartesian, the structure's frame) of the spin–orbit runs.
    magmom : mapping, optional
        Initial moment (μB) per element, overriding :data:`DEFAULT_MAGMOM`.
    periodic : bool, optional
        k-point mesh from ``kpoint_length_A`` (periodic) or Γ only (cluster); default: cluster
        when the structure carries ``aet_origin_shift_A`` (made by :func:`cluster_structure`).
    incar : mapping, optional
        Extra/overriding INCAR tags for every VASP run.
    qe_valence : mapping, optional
        z_valence per element of the Quantum ESPRESSO pseudopotentials, to write
        ``starting_magnetization`` = moment / z_valence in pw.x's range [−1, 1] (default
        :data:`QE_DEFAULT_VALENCE`, right for the default pseudopotentials only).

    Returns
    -------
    pathlib.Path
        ``folder``; ``folder/manifest.json`` lists every calculation, its purpose, code,
        files, settings and what it depends on.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {list(PRESETS)}, got {preset!r}")
    codes = [codes] if isinstance(codes, str) else list(codes)
    bad = [c for c in codes if c not in CODES]
    if bad or not codes:
        raise ValueError(f"codes must be a non-empty subset of {list(CODES)}, got {codes!r}")
    axes = _check_axes(axes)
    if periodic is None:
        periodic = "aet_origin_shift_A" not in (structure.properties or {})
    # group sites by element (one POSCAR block / POTCAR per element), light to heavy
    props = dict(structure.properties or {})
    structure = structure.get_sorted_structure(key=lambda site: site.specie.Z)
    structure.properties = props
    species = [site.specie.symbol for site in structure]
    magm = _magmoms(species, magmom)
    folder = Path(folder)
    kp, mesh = _kpoints(structure, periodic, kpoint_length_A)
    common = {"PREC": "Accurate", "ENCUT": float(encut_eV), "EDIFF": 1e-7, "LMAXMIX": 4,
              "LORBIT": 11, "LASPH": True, "NELM": 200, "ALGO": "Normal"}
    if periodic:
        common.update({"ISMEAR": -5, "LREAL": False})
    else:
        common.update({"ISMEAR": 0, "SIGMA": 0.05, "LREAL": "Auto"})
    common.update(dict(incar or {}))
    calcs = []
    if "qe" in codes:  # fail before writing anything
        qe_starting_magnetization(species, magm, pseudopotentials, qe_valence)
    with output_folder(folder, overwrite=overwrite) as tmp:
        if "vasp" in codes:
            scf = {**common, "ISPIN": 2, "MAGMOM": magm, "ISYM": -1, "LCHARG": True,
                   "LWAVE": False}
            name = "vasp/00_scf_collinear"
            syms = _write_vasp(tmp / name, structure, scf, kp, potcar_symbols or {},
                               f"aet collinear scf {structure.formula}")
            calcs.append({"name": name, "code": "vasp", "purpose":
                          "collinear spin-polarised self-consistent run; its CHGCAR seeds the "
                          "spin-orbit runs" if preset == "magnetic_anisotropy" else
                          "collinear spin-polarised self-consistent run",
                          "files": ["POSCAR", "INCAR", "KPOINTS", "POTCAR.spec"],
                          "potcar_symbols": syms, "depends_on": [],
                          "settings": {"ISPIN": 2, "MAGMOM": magm}})
            if preset == "magnetic_anisotropy":
                for k, ax in enumerate(axes):
                    soc = {**common, "LSORBIT": True, "SAXIS": [float(v) for v in ax],
                           "MAGMOM": [x for m in magm for x in (0.0, 0.0, m)], "ISYM": -1,
                           "ICHARG": 11, "LORBMOM": True, "GGA_COMPAT": False,
                           "LCHARG": False, "LWAVE": False}
                    name = f"vasp/{k + 1:02d}_soc_{_axis_name(ax)}"
                    _write_vasp(tmp / name, structure, soc, kp, potcar_symbols or {},
                                f"aet SOC M||{_axis_name(ax)} {structure.formula}")
                    calcs.append({"name": name, "code": "vasp", "purpose":
                                  f"non-self-consistent spin-orbit run, magnetisation along "
                                  f"{ax.tolist()} (SAXIS); copy CHGCAR from "
                                  f"vasp/00_scf_collinear; MAE from the energy differences",
                                  "files": ["POSCAR", "INCAR", "KPOINTS", "POTCAR.spec"],
                                  "potcar_symbols": syms,
                                  "depends_on": ["vasp/00_scf_collinear"],
                                  "settings": {"LSORBIT": True, "SAXIS": ax.tolist(),
                                               "ICHARG": 11}})
        if "qe" in codes:
            runs = ([(None, "qe/00_scf_collinear", False)] if preset == "scf" else
                    [(ax, f"qe/{k + 1:02d}_soc_{_axis_name(ax)}", True)
                     for k, ax in enumerate(axes)])
            for ax, name, soc in runs:
                pp, order, frac = _write_qe(tmp / name, structure, periodic=periodic,
                                            mesh=mesh, magm=magm, axis=ax,
                                            pseudopotentials=pseudopotentials or {},
                                            ecutwfc=ecutwfc_Ry, soc=soc, valence=qe_valence)
                settings = {"noncolin": soc, "lspinorb": soc, "species_order": order,
                            "starting_magnetization": {e: frac[e] for e in order}}
                if soc:
                    settings["angle1_deg"], settings["angle2_deg"] = _angles(ax)
                calcs.append({"name": name, "code": "qe", "files": ["pw.in"],
                              "purpose": (f"self-consistent spin-orbit run (pw.x), "
                                          f"magnetisation along {ax.tolist()}" if soc else
                                          "collinear spin-polarised scf (pw.x)"),
                              "pseudopotentials": pp, "depends_on": [],
                              "settings": settings})
        manifest = {"preset": preset, "purpose": purpose, "formula": structure.formula,
                    "n_atoms": len(structure), "periodic": bool(periodic),
                    "kpoint_mesh": list(mesh), "initial_magmom_muB": dict(zip(species, magm)),
                    "axes": axes.tolist(), "calculations": calcs,
                    "notes": ["POTCARs are not included: build POTCAR from POTCAR.spec "
                              "(one symbol per species, POSCAR order)",
                              "QE pseudopotential files are named in pw.in and must be "
                              "supplied (fully relativistic for spin-orbit)",
                              "QE starting_magnetization = initial moment (muB) / z_valence "
                              "of the pseudopotential (pw.x's range is -1..1)"]}
        (tmp / "manifest.json").write_text(json.dumps(to_jsonable(manifest), indent=2))
    return folder


def cluster_inputs(ds, folder, *, radius_A: float | None = None, centre_A=None, atoms=None,
                   labels=None, grain: int | None = None, vacuum_A: float = 8.0, fit=None,
                   **kw) -> Path:
    """Carve a cluster (:func:`carve_cluster`) and write its DFT inputs (:func:`write_inputs`).

    ``radius_A=None`` takes the whole model (every atom, centred on its centroid).

    The cluster keeps the model's (sample) frame, so ``axes`` are sample-frame directions —
    unless ``fit`` (a :class:`~aet.analysis.LatticeFit` of the grain) is given: then ``axes``
    are crystal directions (e.g. ``(0, 0, 1)`` = the L1_0 c axis) rotated into the sample frame
    with ``fit.rotation`` (the manifest records both).
    """
    if fit is not None:
        from ..analysis.lattice import LatticeFit

        if not isinstance(fit, LatticeFit):
            raise TypeError(f"fit must be a LatticeFit from aet.analysis.fit_lattice, got "
                            f"{type(fit).__name__}")
        crystal = _check_axes(kw.get("axes", ((0, 0, 1), (1, 0, 0))))
        kw["axes"] = [np.round(fit.rotation @ (a / np.linalg.norm(a)), 12) for a in crystal]
        kw.setdefault("purpose", f"cluster, radius {radius_A} Å, {vacuum_A} Å vacuum; "
                                 f"magnetisation along crystal axes {crystal.tolist()} of grain "
                                 f"{fit.label}")
    if radius_A is None:
        pos, _ = _pos_sp(ds)
        c = pos.mean(0) if centre_A is None else np.asarray(centre_A, dtype=np.float64)
        radius_A = float(np.linalg.norm(pos - c, axis=1).max()) * (1 + 1e-9) + 1e-9
    cl = carve_cluster(ds, radius_A=radius_A, centre_A=centre_A, atoms=atoms, labels=labels,
                       grain=grain)
    st = cluster_structure(cl, vacuum_A=vacuum_A)
    kw.setdefault("purpose", f"cluster of {len(st)} atoms, radius {radius_A} Å, "
                             f"{vacuum_A} Å vacuum")
    return write_inputs(folder, st, periodic=False, **kw)


def periodic_inputs(ds, fit, folder, *, supercell=(1, 1, 1), **kw) -> Path:
    """Periodic cell of a fitted grain (:func:`periodic_cell`) and its DFT inputs."""
    st = periodic_cell(fit, ds, supercell=supercell)
    kw.setdefault("purpose", f"periodic {fit.structure} cell of grain {fit.label}: "
                             f"a = {fit.a_A:.4f} Å, c = {fit.c_A:.4f} Å")
    return write_inputs(folder, st, periodic=True, **kw)


__all__ = ["DEFAULT_MAGMOM", "DEFAULT_POTCAR", "QE_DEFAULT_VALENCE", "carve_cluster",
           "cluster_inputs", "cluster_structure", "periodic_cell", "periodic_inputs",
           "qe_starting_magnetization", "write_inputs"]
