"""Hand-off of atomic models to ASE and pymatgen.

Field mapping (both directions):

===================  ============================  ==========================================
AtomicModel          ase.Atoms                     pymatgen Molecule / Structure
===================  ============================  ==========================================
``species``          symbols                       site species
``position`` (Å)     positions (Å, Cartesian)      Cartesian coords (Å)
other per-atom vars  ``atoms.arrays[name]``        ``site_properties[name]``
attrs (JSON-able)    ``atoms.info``                ``properties`` (Molecule/Structure)
===================  ============================  ==========================================

ASE's own ``numbers``/``positions`` arrays are not duplicated in the per-atom arrays.

Initial magnetic moments (μB): the per-atom array ``initial_magmom`` becomes ASE's initial
magnetic moments (``atoms.get_initial_magnetic_moments()``) and pymatgen's ``magmom`` site
property, and comes back under the same name. :func:`to_ase` also takes ``magmoms=`` (a mapping
element → μB, or one value per atom) to set them directly.
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from ..core.meta import PROVENANCE_ATTR, to_jsonable
from ..core.schema import _MAGMOM, build_model_dataset, dataset_from_ase


def _per_atom_vars(ds: xr.Dataset) -> dict[str, np.ndarray]:
    return {k: np.asarray(ds[k].values) for k in ds.data_vars
            if k not in ("position", "species") and ds[k].dims == ("atom",)}


def _info(ds: xr.Dataset) -> dict:
    info = {}
    for k, v in ds.attrs.items():
        info[k] = v if k == PROVENANCE_ATTR else to_jsonable(v)
    return info


def to_ase(ds: xr.Dataset, *, cell=None, pbc: bool = False, magmoms=None):
    """:class:`ase.Atoms` from a model Dataset (see the module table).

    ``magmoms``: initial magnetic moments in μB — a mapping element → moment (others 0) or
    one value per atom; default the ``initial_magmom`` array when the model has one.
    """
    from ase import Atoms

    symbols = [str(s) for s in ds["species"].values]
    atoms = Atoms(symbols=symbols,
                  positions=np.asarray(ds["position"].values, dtype=np.float64),
                  cell=cell, pbc=pbc)
    per_atom = _per_atom_vars(ds)
    mm = per_atom.pop(_MAGMOM, None)
    if magmoms is not None:
        if isinstance(magmoms, dict):
            mm = np.array([float(magmoms.get(s, 0.0)) for s in symbols])
        else:
            mm = np.asarray(magmoms, dtype=np.float64)
            if mm.shape != (len(symbols),):
                raise ValueError(
                    f"magmoms has shape {mm.shape}; pass a dict element -> μB or one value "
                    f"per atom ({len(symbols)})"
                )
    if mm is not None:
        atoms.set_initial_magnetic_moments(np.asarray(mm, dtype=np.float64))
    for k, v in per_atom.items():
        atoms.arrays[k] = v.copy()
    atoms.info.update(_info(ds))
    return atoms


def from_ase(atoms) -> xr.Dataset:
    """Model Dataset from :class:`ase.Atoms` (inverse of :func:`to_ase`)."""
    return dataset_from_ase(atoms)


def to_pymatgen(ds: xr.Dataset, *, structure: bool = False, lattice=None,
                padding_A: float = 10.0):
    """pymatgen ``Molecule`` (default) or ``Structure`` (box lattice) from a model Dataset."""
    from pymatgen.core import Lattice, Molecule, Structure

    species = [str(s) for s in ds["species"].values]
    if "X" in species:
        raise ValueError(
            "the model has unclassified atoms (species 'X'); classify them first "
            "(model.classify([...])) — pymatgen needs real elements"
        )
    pos = np.asarray(ds["position"].values, dtype=np.float64)
    props = {("magmom" if k == _MAGMOM else k): v.tolist()
             for k, v in _per_atom_vars(ds).items()}
    properties = {k: v for k, v in _info(ds).items()}
    if not structure and lattice is None:
        return Molecule(species, pos, site_properties=props or None, properties=properties)
    if lattice is None:
        if not padding_A >= 0:
            raise ValueError(f"padding_A must be ≥ 0 Å, got {padding_A!r}")
        lo, hi = pos.min(0), pos.max(0)
        lengths = (hi - lo) + 2 * padding_A
        lengths = np.maximum(lengths, 1.0)
        lattice = Lattice.orthorhombic(*lengths)
        shift = -lo + padding_A
    else:
        lattice = lattice if isinstance(lattice, Lattice) else Lattice(lattice)
        shift = np.zeros(3)
    st = Structure(lattice, species, pos + shift, coords_are_cartesian=True,
                   site_properties=props or None, properties=properties)
    st.properties["aet_origin_shift_A"] = json.dumps((-shift).tolist())
    return st


def from_pymatgen(obj) -> xr.Dataset:
    """Model Dataset from a pymatgen ``Molecule`` or ``Structure``.

    For a ``Structure`` made by :func:`to_pymatgen` the box shift is undone, so positions
    come back in the original frame.
    """
    pos = np.asarray(obj.cart_coords, dtype=np.float64)
    props = getattr(obj, "properties", {}) or {}
    if "aet_origin_shift_A" in props:
        pos = pos + np.asarray(json.loads(props["aet_origin_shift_A"]))
    species = [site.specie.symbol for site in obj]
    arrays = {(_MAGMOM if k == "magmom" else k): np.asarray(v)
              for k, v in obj.site_properties.items() if np.ndim(np.asarray(v)) == 1}
    attrs = {k: v for k, v in props.items()
             if isinstance(v, (str, int, float, bool)) and k != "aet_origin_shift_A"}
    return build_model_dataset(pos, species, arrays=arrays, attrs=attrs)
