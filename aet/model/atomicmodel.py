"""``AtomicModel``: positions (x, y, z) in Å and species of every atom, struct-of-arrays.

Stored as an :class:`xarray.Dataset` along dim ``atom``:

=================  ===============  ===================================================
variable           dims             meaning
=================  ===============  ===================================================
``position``       (atom, axis)     Å, axis coords ``["x", "y", "z"]``, the Volume frame
``species``        (atom,)          element symbol (``"X"`` = not yet classified)
``intensity``      (atom,)          optional, integrated intensity (arbitrary units)
``b_factor``       (atom,)          optional, Å²
``uncertainty``    (atom,)          optional, 1σ position uncertainty in Å
``label``          (atom,)          optional, integer label (grain, nucleus, ...)
anything else      (atom,)          further per-atom arrays (order parameter, ...)
=================  ===============  ===================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import xarray as xr
from ase.data import atomic_numbers

from ..core.meta import (
    AXES_XYZ,
    CLASS_ATTR,
    PROVENANCE_ATTR,
    with_provenance,
)
from ..core.schema import (
    _check_species,
    _per_atom,
    as_xarray,
    build_model_dataset,
    facade_class,
    is_dask,
    register_facade,
)
from ..errors import MetadataError
from ._base import _XarrayFacade
from ._namespaces import ModelAnalysis, ModelNeighbours


class Refinement(NamedTuple):
    """What :meth:`AtomicModel.refine` returns with ``return_series=True``."""

    #: the refined model (its provenance records the fitted alignment; it carries none)
    model: AtomicModel
    #: the tilt series with the refinement's geometry update applied: the series to use
    #: for a later refine or uncertainty
    tilt_series: Any


def _deprecated(name: str) -> None:
    warnings.warn(f"AtomicModel.{name}() is deprecated; use model.analysis.{name}()",
                  DeprecationWarning, stacklevel=3)


def _validate_dataset(ds: xr.Dataset) -> xr.Dataset:
    missing = [v for v in ("position", "species") if v not in ds]
    if missing:
        raise MetadataError(
            f"an AtomicModel dataset needs variables 'position' (atom, axis) and 'species' "
            f"(atom); missing {missing}; found {sorted(ds.data_vars)}"
        )
    ds = ds.compute() if is_dask(ds) else ds  # per-atom data is small: keep it in memory
    pos = ds["position"].transpose("atom", "axis")
    if "axis" in ds.coords:
        pos = pos.sel(axis=list(AXES_XYZ))
    arrays = {k: ds[k].values for k in ds.data_vars
              if k not in ("position", "species") and ds[k].dims == ("atom",)}
    return build_model_dataset(pos.values, ds["species"].values, arrays=arrays,
                               attrs=dict(ds.attrs))


@register_facade
class AtomicModel(_XarrayFacade):
    """Positions and species of every atom (struct-of-arrays over an ``xarray.Dataset``).

    Parameters
    ----------
    positions : (n_atoms, 3) array_like or xarray.Dataset or AtomicModel
        Positions in Å, columns (x, y, z), in the frame of the :class:`~aet.Volume`.
    species : sequence of str or str, optional
        Element symbols (``"X"`` for unclassified atoms; default).
    intensity, b_factor, uncertainty, label : array_like, optional
        Standard per-atom arrays (units: arbitrary, Å², Å, integer).
    arrays : mapping, optional
        Further per-atom arrays (e.g. ``{"order_L10": values}``).
    **attrs
        Metadata (``annealing_time_min``, ``voxel_size_A``...).

    Examples
    --------
    >>> import aet
    >>> m = aet.AtomicModel([[0, 0, 0], [2.7, 0, 0]], ["Fe", "Pt"])
    >>> m.species_counts()
    {'Fe': 1, 'Pt': 1}
    >>> m.positions[1]
    array([2.7, 0. , 0. ])
    """

    __slots__ = ("_ds",)
    _slot = "_ds"

    def __init__(self, positions, species=None, *, intensity=None, b_factor=None,
                 uncertainty=None, label=None, arrays: Mapping[str, Any] | None = None,
                 **attrs):
        if isinstance(positions, AtomicModel):
            positions = positions.data
        if isinstance(positions, xr.Dataset):
            ds = _validate_dataset(positions)
            if attrs:
                ds.attrs.update(attrs)
        else:
            std = {"intensity": intensity, "b_factor": b_factor, "uncertainty": uncertainty,
                   "label": label}
            ds = build_model_dataset(positions, species, arrays={**std, **(arrays or {})},
                                     attrs=attrs)
        ds.attrs[CLASS_ATTR] = type(self).__name__
        ds.attrs.setdefault(PROVENANCE_ATTR, "[]")
        object.__setattr__(self, "_ds", ds)

    @classmethod
    def _from_core(cls, ds: xr.Dataset, *, parent_attrs: Mapping[str, Any] | None = None,
                   op: str, params: Mapping[str, Any] | None = None, result=None
                   ) -> AtomicModel:
        """Wrap a core function's Dataset, validating it and appending provenance."""
        ds = _validate_dataset(ds)
        ds = with_provenance(ds, op, params, parent_attrs=parent_attrs,
                             **({"result": result} if result is not None else {}))
        return cls._wrap(ds)

    def _replace(self, ds: xr.Dataset, op: str, params: Mapping[str, Any] | None = None,
                 result=None) -> AtomicModel:
        return type(self)._from_core(ds, parent_attrs=self._ds.attrs, op=op, params=params,
                                     result=result)

    # -- basics ---------------------------------------------------------------------------
    @property
    def positions(self) -> np.ndarray:
        """``(n_atoms, 3)`` positions (x, y, z) in Å (a copy)."""
        return np.array(self._ds["position"].values, dtype=np.float64)

    @property
    def species(self) -> np.ndarray:
        """Element symbol of each atom."""
        return np.asarray(self._ds["species"].values).astype(str)

    @property
    def atomic_numbers(self) -> np.ndarray:
        return np.array([atomic_numbers[s] for s in self.species], dtype=np.int64)

    @property
    def elements(self) -> list[str]:
        """Distinct species, light → heavy (by atomic number)."""
        return sorted(set(self.species.tolist()), key=lambda s: atomic_numbers[s])

    @property
    def n_atoms(self) -> int:
        return int(self._ds.sizes["atom"])

    def __len__(self) -> int:
        return self.n_atoms

    def __getitem__(self, name: str) -> np.ndarray:
        """A per-atom array by name (``model["intensity"]``)."""
        if name not in self._ds:
            raise KeyError(f"no per-atom array {name!r}; available: {sorted(self._ds.data_vars)}")
        return np.asarray(self._ds[name].values)

    def __contains__(self, name: str) -> bool:
        return name in self._ds.data_vars

    def species_counts(self) -> dict[str, int]:
        """Number of atoms of each species, light → heavy."""
        sp = self.species
        return {e: int(np.count_nonzero(sp == e)) for e in self.elements}

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in self.species_counts().items())
        lines = [f"<aet.AtomicModel {self.n_atoms} atoms ({counts})>"]
        if self.n_atoms:
            lo, hi = self.positions.min(0), self.positions.max(0)
            lines.append("  extent (x, y, z) Å: " + ", ".join(
                f"{a:.1f}..{b:.1f}" for a, b in zip(lo, hi)))
        extra = [k for k in self._ds.data_vars if k not in ("position", "species")]
        if extra:
            lines.append("  per-atom: " + ", ".join(extra))
        prov = self.provenance
        if prov:
            lines.append("  provenance: " + " → ".join(r.get("op", "?") for r in prov[-6:]))
        return "\n".join(lines)

    def __eq__(self, other) -> bool:  # value equality of positions/species
        if not isinstance(other, AtomicModel):
            return NotImplemented
        return (self.n_atoms == other.n_atoms
                and np.array_equal(self.positions, other.positions)
                and np.array_equal(self.species, other.species))

    __hash__ = None  # mutable-looking value semantics; not hashable

    # -- derived models ---------------------------------------------------------------------
    def isel(self, atom) -> AtomicModel:
        """Select atoms by integer index, slice or boolean mask."""
        idx = np.asarray(atom) if not isinstance(atom, slice) else atom
        if isinstance(idx, np.ndarray) and idx.dtype == bool:
            if idx.shape != (self.n_atoms,):
                raise ValueError(f"boolean mask has shape {idx.shape}; expected ({self.n_atoms},)")
            idx = np.flatnonzero(idx)
        ds = self._ds.isel(atom=idx)
        return self._replace(ds.assign_coords(atom=np.arange(ds.sizes["atom"])), "isel",
                             {"atom": atom if isinstance(atom, slice) else "<index>"})

    def select(self, species: str | Sequence[str] | None = None, *, box=None, center=None,
               radius_A: float | None = None, mask=None) -> AtomicModel:
        """Atoms of the given species and/or inside a region.

        Parameters
        ----------
        species : str or list of str, optional
        box : ((xmin, xmax), (ymin, ymax), (zmin, zmax)) in Å, optional (bounds inclusive;
            ``None`` for an open side)
        center, radius_A : sphere of radius ``radius_A`` (Å) around ``center`` (x, y, z) Å.
        mask : boolean array over atoms, optional
        """
        keep = np.ones(self.n_atoms, dtype=bool)
        pos = self.positions
        if species is not None:
            wanted = [species] if isinstance(species, str) else list(species)
            keep &= np.isin(self.species, wanted)
        if box is not None:
            b = list(box)
            if len(b) != 3:
                raise ValueError("box must be ((xmin, xmax), (ymin, ymax), (zmin, zmax)) in Å")
            for j, (lo, hi) in enumerate(b):
                if lo is not None:
                    keep &= pos[:, j] >= lo
                if hi is not None:
                    keep &= pos[:, j] <= hi
        if (center is None) != (radius_A is None):
            raise ValueError("pass both center=(x, y, z) and radius_A= for a spherical region")
        if center is not None:
            c = np.asarray(center, dtype=float).reshape(3)
            keep &= np.linalg.norm(pos - c, axis=1) <= float(radius_A)
        if mask is not None:
            m = np.asarray(mask, dtype=bool)
            if m.shape != (self.n_atoms,):
                raise ValueError(f"mask has shape {m.shape}; expected ({self.n_atoms},)")
            keep &= m
        ds = self._ds.isel(atom=np.flatnonzero(keep))
        ds = ds.assign_coords(atom=np.arange(ds.sizes["atom"]))
        return self._replace(ds, "select", {"species": species, "box": box, "center": center,
                                            "radius_A": radius_A,
                                            "mask": None if mask is None else "<mask>"})

    def with_arrays(self, **arrays) -> AtomicModel:
        """Copy with per-atom arrays added or replaced (``model.with_arrays(order=values)``)."""
        ds = self._ds.copy()
        for k, v in arrays.items():
            if k in ("position", "species"):
                raise ValueError(f"use set_species()/with_positions() to change {k!r}")
            ds[k] = ("atom", _per_atom(k, v, self.n_atoms))
        return self._replace(ds, "with_arrays", {"names": sorted(arrays)})

    def with_positions(self, positions) -> AtomicModel:
        """Copy with new positions ``(n_atoms, 3)`` (x, y, z) Å."""
        ds = self._ds.copy()
        new = build_model_dataset(positions, self.species)
        ds["position"] = new["position"]
        return self._replace(ds, "with_positions", {})

    # manual corrections, each recorded in provenance
    def set_species(self, indices, species) -> AtomicModel:
        """Set the species of the atoms at ``indices`` (a manual correction, recorded)."""
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        self._check_indices(idx)
        sp = self.species.astype(object)
        sp[idx] = _check_species(species, idx.size)
        ds = self._ds.copy()
        ds["species"] = ("atom", _check_species(sp.astype(str), self.n_atoms))
        return self._replace(ds, "set_species", {"indices": idx, "species": species})

    def add_atom(self, position, species: str = "X", **values) -> AtomicModel:
        """Append one atom (a manual correction, recorded); other per-atom arrays get NaN/0."""
        one = build_model_dataset(np.asarray(position, dtype=float).reshape(1, 3), [species])
        for k in self._ds.data_vars:
            if k in ("position", "species"):
                continue
            arr = self._ds[k].values
            fill = values.get(k, np.nan if arr.dtype.kind == "f" else 0)
            one[k] = ("atom", np.asarray([fill], dtype=arr.dtype))
        ds = xr.concat([self._ds, one], dim="atom", data_vars="all", coords="minimal",
                       compat="override", combine_attrs="override")
        ds = ds.assign_coords(atom=np.arange(ds.sizes["atom"]))
        return self._replace(ds, "add_atom", {"position": position, "species": species})

    def remove_atoms(self, indices) -> AtomicModel:
        """Remove the atoms at ``indices`` (a manual correction, recorded)."""
        idx = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        self._check_indices(idx)
        keep = np.ones(self.n_atoms, dtype=bool)
        keep[idx] = False
        ds = self._ds.isel(atom=np.flatnonzero(keep))
        ds = ds.assign_coords(atom=np.arange(ds.sizes["atom"]))
        return self._replace(ds, "remove_atoms", {"indices": idx})

    def _check_indices(self, idx: np.ndarray) -> None:
        if idx.size and (idx.min() < -self.n_atoms or idx.max() >= self.n_atoms):
            raise IndexError(f"atom index out of range for a model of {self.n_atoms} atoms")

    # -- namespaces -----------------------------------------------------------------------
    @property
    def analysis(self) -> ModelAnalysis:
        """Structure analysis: ``strain``, ``order_parameters``, ``fit_lattice``,
        ``local_strain``, ``grains``, ``defects``, ``bond_order``, ``rdf``
        (:class:`aet.model.ModelAnalysis`)."""
        return ModelAnalysis(self)

    @property
    def neighbours(self) -> ModelNeighbours:
        """Neighbour queries: ``kdtree``, ``pairs``, ``coordination``, ``nearest``
        (:class:`aet.model.ModelNeighbours`)."""
        return ModelNeighbours(self)

    def strain(self, **kw) -> xr.Dataset:
        """Deprecated alias of :meth:`ModelAnalysis.strain` (``model.analysis.strain``)."""
        _deprecated("strain")
        return self.analysis.strain(**kw)

    def order_parameters(self, kind: str = "L10", **kw) -> xr.Dataset:
        """Deprecated alias of :meth:`ModelAnalysis.order_parameters`
        (``model.analysis.order_parameters``)."""
        _deprecated("order_parameters")
        return self.analysis.order_parameters(kind, **kw)

    # -- I/O and hand-off ---------------------------------------------------------------------
    def write(self, path, *, format: str | None = None, overwrite: bool = True):
        """Write to ``.csv`` (columns ``x_A, y_A, z_A, species`` + extras), ``.xyz``/extXYZ,
        ``.cif``, ``POSCAR``/``.vasp`` or ``.zarr`` (chosen by extension or ``format``)."""
        from ..io import write_model

        return write_model(self, path, format=format, overwrite=overwrite)

    @classmethod
    def read(cls, path, *, format: str | None = None) -> AtomicModel:
        """Read a model from any atom format :meth:`write` supports."""
        from ..io import read_model

        return read_model(path, format=format)

    def to_ase(self, *, cell=None, pbc: bool = False):
        """An :class:`ase.Atoms`: symbols ← ``species``, positions ← ``position`` (Å),
        ``atoms.arrays[name]`` ← every other per-atom array, ``atoms.info`` ← attrs (the
        provenance as JSON text under ``"provenance"``)."""
        from ..export.ase_pymatgen import to_ase

        return to_ase(self._ds, cell=cell, pbc=pbc)

    @classmethod
    def from_ase(cls, atoms) -> AtomicModel:
        """Inverse of :meth:`to_ase` (per-atom arrays come back by name)."""
        from ..export.ase_pymatgen import from_ase

        return cls._from_core(from_ase(atoms), op="from_ase")

    def to_pymatgen(self, *, structure: bool = False, lattice=None, padding_A: float = 10.0):
        """A pymatgen ``Molecule`` (default, a particle) or a ``Structure`` in a box lattice
        (``structure=True``: box = bounding box + ``padding_A``; or the given ``lattice``).
        Per-atom arrays become ``site_properties``."""
        from ..export.ase_pymatgen import to_pymatgen

        return to_pymatgen(self._ds, structure=structure, lattice=lattice, padding_A=padding_A)

    @classmethod
    def from_pymatgen(cls, obj) -> AtomicModel:
        """From a pymatgen ``Molecule`` or ``Structure`` (site properties → per-atom arrays)."""
        from ..export.ase_pymatgen import from_pymatgen

        return cls._from_core(from_pymatgen(obj), op="from_pymatgen")

    def dft_inputs(self, folder, *, radius_A: float | None = None,
                   preset: str = "magnetic_anisotropy", codes=("vasp", "qe"), **kw):
        """Write DFT input sets (VASP, Quantum ESPRESSO) for a cluster carved from this model
        (:func:`aet.export.dft.cluster_inputs`): the atoms within ``radius_A`` (Å) of the
        centre, or the whole model; ``preset`` "scf" or "magnetic_anisotropy"; returns the
        folder (with ``manifest.json``)."""
        from ..export import dft

        return dft.cluster_inputs(self._ds, folder, radius_A=radius_A, preset=preset,
                                  codes=codes, **kw)

    # -- stages (thin: one core call each) ------------------------------------------------
    def classify(self, species: Sequence[str], *, volume=None, **kw) -> AtomicModel:
        """Assign species (light → heavy) from the volume (:func:`aet.atoms.classify`)."""
        from .. import atoms

        vol_da = as_xarray(volume)
        params = {"species": list(species), **kw}
        out = atoms.classify(self._ds, list(species), volume=vol_da, **kw)
        ds, result = out if isinstance(out, tuple) else (out, None)
        return self._replace(ds, "classify", params, result=result)

    def refine(self, ts, *, return_series: bool = False, **kw):
        """Refine positions, per-species radial profiles and the detector response against
        the projections (:func:`aet.atoms.refine`), optionally with the per-projection
        alignment (``refine_alignment=("shifts", "angles")``).

        The alignment lives in the tilt series, never in the model: the refinement starts from
        the geometry of ``ts`` and returns what it fitted as a geometry update, which
        ``return_series=True`` turns into the updated series (:meth:`TiltSeries.apply_geometry`:
        images moved back by the fitted shifts, Euler angles corrected). Pass that series to a
        later :meth:`refine` or :meth:`uncertainty`; the model keeps only a provenance record
        of the fitted numbers.

        Parameters
        ----------
        ts : TiltSeries
            The aligned projections ``(angle, y, x)``.
        return_series : bool
            Also return the tilt series with the refinement's geometry update applied.
        **kw
            Options of :func:`aet.atoms.refine`.

        Returns
        -------
        AtomicModel or Refinement
            The refined model; with ``return_series``, a :class:`~aet.model.Refinement` named tuple
            ``(model, tilt_series)`` (the series unchanged when no alignment was fitted).
        """
        from .. import atoms

        ts_da = as_xarray(ts)
        out = atoms.refine(self._ds, ts_da, **kw)
        ds, result = out if isinstance(out, tuple) else (out, None)
        geometry = None if result is None else result.pop("geometry", None)
        params = dict(kw)
        if params.get("holdout_mask") is not None:  # a count, not the mask, in the record
            params["holdout_mask"] = int(np.count_nonzero(params["holdout_mask"]))
        model = self._replace(ds, "refine", params, result=result)
        if not return_series:
            return model
        TiltSeries = facade_class("TiltSeries")  # the sibling facade, looked up by name

        series = ts if isinstance(ts, TiltSeries) else TiltSeries(ts_da)
        if geometry is not None:
            series = series.apply_geometry(geometry)
        return Refinement(model, series)

    # -- atoms: uncertainty, surface, clean-up (aet.atoms) ------------------------------------
    def uncertainty(self, ts, *, method: str = "jackknife", **kw) -> AtomicModel:
        """Per-atom position uncertainty (Å) against the projections: by default the
        jackknife over projections of the refinement's atom model, the method
        :meth:`refine` uses (:func:`aet.atoms.uncertainty`)."""
        from .. import atoms

        ds, result = atoms.uncertainty(self._ds, as_xarray(ts), method=method, **kw)
        return self._replace(ds, "uncertainty", {"method": method, **kw}, result=result)

    def flag_surface(self, *, method: str = "coordination", **kw) -> AtomicModel:
        """Flag surface atoms by coordination and/or alpha shape
        (:func:`aet.atoms.flag_surface`)."""
        from .. import atoms

        ds, result = atoms.flag_surface(self._ds, method=method, **kw)
        return self._replace(ds, "flag_surface", {"method": method, **kw}, result=result)

    def cleanup(self, **kw) -> AtomicModel:
        """Drop isolated peaks / merge too-close pairs, recorded (:func:`aet.atoms.cleanup`)."""
        from .. import atoms

        ds, result = atoms.cleanup(self._ds, **kw)
        return self._replace(ds, "cleanup", kw, result=result)
