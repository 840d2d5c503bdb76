"""``NucleusTracker``: atomic models of one particle at several annealing times (4D AET).

A thin facade over :mod:`aet.dynamics`: it validates the models and times, calls the core
functions (registration, nuclei, tracking, order fields, export) and wraps their results with
provenance. It holds no algorithm.

Examples
--------
>>> import aet
>>> from aet.testing.dynamics import synthetic_series
>>> models, _ = synthetic_series([{"A": [((0, 0, 0), 5.0)]},
...                               {"A": [((0, 0, 0), 6.5)]}], radius_A=14.0, seed=1)
>>> tracker = aet.NucleusTracker(models, times_min=[9, 16])
>>> result = tracker.track(threshold=0.3)
>>> result.event_counts()["growth"]
1
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..core.meta import (
    CLASS_ATTR,
    PROVENANCE_ATTR,
    get_provenance,
    provenance_record,
    set_provenance,
    to_jsonable,
    with_provenance,
)
from ..core.schema import register_facade
from ..errors import MetadataError
from .atomicmodel import AtomicModel

_REG_PREFIX = "registration_"


def _as_dataset(m, i: int) -> xr.Dataset:
    if isinstance(m, AtomicModel):
        return m.data
    if isinstance(m, xr.Dataset):
        return AtomicModel(m).data
    raise TypeError(f"models[{i}] must be an aet.AtomicModel (or its xarray.Dataset), got "
                    f"{type(m).__name__}")


@register_facade
class NucleusTracker:
    """Models of one particle at several annealing times, registered and tracked.

    Parameters
    ----------
    models : sequence of AtomicModel
        The same particle at successive times (at least 2). Each model needs a per-atom order
        parameter array (``order`` by default; see ``order``) or species from which
        :func:`aet.analysis.order_parameters` computes one.
    times_min : sequence of float, optional
        Annealing time of each model in minutes, strictly increasing; by default read from each
        model's ``attrs["annealing_time_min"]``.
    order : str, optional
        Name of the per-atom order-parameter array in the models (default: ``"order"`` or the
        single array whose name starts with ``"order"``; else computed with ``kind``).
    kind : str or sequence of str
        Order-parameter kind(s) passed to :func:`aet.analysis.order_parameters` when the order
        is computed (``("L10", "L12")``: the per-atom maximum of both).
    **attrs
        Metadata kept with the tracker (and saved).

    Notes
    -----
    Models with species and no order array (what the pipeline makes) are tracked by the
    likelihood-ratio scan with time used jointly (:mod:`aet.dynamics.detect`; see
    :meth:`track`). The rest of this note is about the threshold detector, used when the
    models carry an order array or ``order`` / ``local_order_sigma_A`` / ``smooth_A`` is given.

    Nuclei are regions of order ≥ ``threshold`` (default 0.3) in the per-atom order array.
    Smooth order arrays (e.g. a fitted field) can be used as they are. Raw per-atom order
    parameters computed from the 12 neighbours of each atom (``aet.analysis.
    order_parameters``) fluctuate by about ±0.3 in a random alloy, as much as a small nucleus.
    For measured models pass ``local_order_sigma_A=3.0`` to :meth:`track`: nuclei are then
    found on the variant-resolved local order computed from the species
    (:func:`aet.dynamics.local_order`), and ``min_atoms="null"`` sets the smallest nucleus
    from the random-alloy null distribution of the models themselves at a 1 % false-positive
    rate (:func:`aet.dynamics.min_nucleus_size`). Nuclei of ≳ 80 atoms in a 50/50 random
    matrix are then detected: on ``aet.simulate.nucleation_series(size_scale=2,
    diameter_A=100)`` (pass ``size_column="n_ordered", change_fraction=0.15`` too) 94 of 95
    true events of seeds 0–4 are recovered with the right type, the miss a nucleus that shrinks
    to 59 atoms, and noise-only series give no event (``benchmarks/bench_dynamics.py``); the
    default series' nuclei of 11–25 atoms are below that random-alloy limit.
    """

    __slots__ = ("_models", "_times", "_order", "_kind", "_attrs", "_registered", "_summary",
                 "_matches")

    def __init__(self, models: Sequence[AtomicModel], *, times_min: Sequence[float] | None = None,
                 order: str | None = None, kind: str = "L10", **attrs):
        if isinstance(models, (AtomicModel, xr.Dataset)) or not isinstance(models, Sequence):
            raise TypeError("models must be a list of AtomicModel objects, one per time")
        dss = [_as_dataset(m, i) for i, m in enumerate(models)]
        if len(dss) < 2:
            raise ValueError(f"models has {len(dss)} model(s); a NucleusTracker needs at least "
                             f"2 times")
        if times_min is None:
            missing = [i for i, d in enumerate(dss) if "annealing_time_min" not in d.attrs]
            if missing:
                raise MetadataError(
                    f"times_min is missing and models {missing} have no "
                    f"attrs['annealing_time_min']; pass times_min=[...] (minutes, one per "
                    f"model)")
            times_min = [d.attrs["annealing_time_min"] for d in dss]
        t = np.asarray(times_min)
        if t.dtype == object or t.dtype.kind not in "iuf":
            raise TypeError(f"times_min must be numbers (minutes), got dtype {t.dtype}")
        t = t.astype(np.float64).reshape(-1)
        if t.size != len(dss):
            raise ValueError(f"times_min has {t.size} values but there are {len(dss)} models; "
                             f"pass one time (minutes) per model")
        if not np.all(np.isfinite(t)) or np.any(np.diff(t) <= 0):
            raise ValueError(f"times_min must be finite and strictly increasing (minutes), got "
                             f"{t.tolist()}; sort the models by time")
        if order is not None and not isinstance(order, str):
            raise TypeError(f"order must be the name (str) of a per-atom array, got "
                            f"{type(order).__name__}")
        if order is not None:
            lacking = [i for i, d in enumerate(dss) if order not in d]
            if lacking:
                raise KeyError(f"models {lacking} have no per-atom array {order!r}; add it with "
                               f"model.with_arrays({order}=values) or pass order=None")
        attrs = dict(attrs)
        attrs.setdefault(PROVENANCE_ATTR, "[]")
        kind = str(kind) if isinstance(kind, str) else tuple(str(k) for k in kind)
        self._set(dss, t, order, kind, attrs, None, None, None)

    def _set(self, models, times, order, kind, attrs, registered, summary, matches):
        for name, v in (("_models", list(models)), ("_times", times), ("_order", order),
                        ("_kind", kind), ("_attrs", attrs), ("_registered", registered),
                        ("_summary", summary), ("_matches", matches)):
            object.__setattr__(self, name, v)

    def __setattr__(self, name, value):
        raise AttributeError("NucleusTracker is immutable; methods return new objects")

    def __getstate__(self):
        return {name: getattr(self, name) for name in self.__slots__}

    def __setstate__(self, state):
        # pickle sets the slots through object.__setattr__, not the refusing __setattr__
        self._set(*(state[name] for name in self.__slots__))

    def _derive(self, op: str, params: Mapping[str, Any], *, registered=None, summary=None,
                matches=None, result=None) -> NucleusTracker:
        obj = object.__new__(type(self))
        attrs = dict(self._attrs)
        hist = get_provenance(attrs)
        hist.append(provenance_record(op, params, **({"result": result} if result else {})))
        set_provenance(attrs, hist)
        obj._set(self._models, self._times, self._order, self._kind, attrs, registered,
                 summary, matches)
        return obj

    # -- basics ---------------------------------------------------------------------------
    @property
    def models(self) -> list[AtomicModel]:
        """The models as given (their own frames)."""
        return [AtomicModel._wrap(d) for d in self._models]

    @property
    def times_min(self) -> np.ndarray:
        """Annealing times in minutes (a copy)."""
        return self._times.copy()

    @property
    def attrs(self) -> dict:
        return {k: v for k, v in self._attrs.items() if k not in (PROVENANCE_ATTR, CLASS_ATTR)}

    @property
    def provenance(self) -> list[dict]:
        return get_provenance(self._attrs)

    @property
    def is_registered(self) -> bool:
        return self._registered is not None

    @property
    def registration(self) -> xr.Dataset | None:
        """Registration summary over ``time_index`` (rotation, translation_A, angle_deg, rmsd_A,
        fraction_moved, fraction_species_changed, ...; see
        :func:`aet.dynamics.register_series`), or None before :meth:`register`."""
        return None if self._summary is None else self._summary.copy()

    @property
    def registered_models(self) -> list[AtomicModel] | None:
        """The models moved into the first model's frame, with a per-atom ``atom_identity`` (same id
        = same atom across times), or None before :meth:`register`."""
        if self._registered is None:
            return None
        return [AtomicModel._wrap(d) for d in self._registered]

    def __len__(self) -> int:
        return len(self._models)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{t:g} min: {d.sizes['atom']}" for t, d in
                          zip(self._times, self._models))
        lines = [f"<aet.NucleusTracker {len(self)} times ({sizes} atoms)>"]
        if self._summary is not None:
            lines.append("  registered: angles (deg) " + ", ".join(
                f"{a:.2f}" for a in self._summary["angle_deg"].values) + "; rmsd (Å) " +
                ", ".join(f"{r:.3f}" for r in self._summary["rmsd_A"].values))
        prov = self.provenance
        if prov:
            lines.append("  provenance: " + " → ".join(r.get("op", "?") for r in prov[-6:]))
        return "\n".join(lines)

    # -- stages (each one core call) ------------------------------------------------------
    @property
    def has_order(self) -> bool:
        """True when every model carries the per-atom order array the tracker uses."""
        name = self._order or "order"
        return all(name in d for d in self._models)

    def with_order(self, **order_kw) -> NucleusTracker:
        """A tracker whose models carry a per-atom ``order`` array computed once with
        :func:`aet.analysis.order_parameters` (``kind`` of the tracker, ``**order_kw``).
        :meth:`track` calls this itself when the models have no order array."""
        from .. import dynamics

        if self.has_order and not order_kw:
            return self
        name = self._order or "order"
        models = []
        for d in self._models:
            vals = dynamics.order_values(d.drop_vars(name, errors="ignore"), kind=self._kind,
                                         **order_kw)
            out = d.copy()
            out[name] = ("atom", vals)
            models.append(out)
        reg = None
        if self._registered is not None:
            reg = [r.assign({name: ("atom", m[name].values)}) for r, m in
                   zip(self._registered, models)]
        obj = self._derive("with_order", {"kind": self._kind, **order_kw}, registered=reg,
                           summary=self._summary, matches=self._matches)
        object.__setattr__(obj, "_models", models)
        object.__setattr__(obj, "_order", name)
        if reg is not None:
            object.__setattr__(obj, "_registered", reg)
        return obj

    def register(self, *, match_radius_A: float = 1.0, **kw) -> NucleusTracker:
        """Rigidly register every model onto the first and pair atoms across times
        (:func:`aet.dynamics.register_series`; ``**kw``: :func:`aet.dynamics.register_rigid`
        options). Returns a new, registered tracker."""
        from .. import dynamics

        reg, summary, matches = dynamics.register_series(self._models,
                                                         match_radius_A=match_radius_A, **kw)
        result = {"angle_deg": summary["angle_deg"].values.tolist(),
                  "rmsd_A": summary["rmsd_A"].values.tolist(),
                  "fraction_moved": summary["fraction_moved"].values.tolist(),
                  "fraction_species_changed":
                      summary["fraction_species_changed"].values.tolist()}
        return self._derive("register", {"match_radius_A": match_radius_A, **kw},
                            registered=reg, summary=summary, matches=matches, result=result)

    def track(self, *, threshold: float = 0.3, **kw):
        """Find the nuclei at every time and track them (:func:`aet.dynamics.track`).
        Registers first (with defaults) unless :meth:`register` was called.

        Models with species and no order array (what the pipeline makes) are tracked by the
        likelihood-ratio scan with time used jointly (``method="scan"``): every nucleus gets
        a false-alarm probability (``nuclei["p_value"]``), every event a ``confidence`` and
        the ``atoms`` involved, and hopped atoms are listed in ``params["moved"]``; the
        ``threshold`` then does not apply. Models with an order array, or with ``order``,
        ``smooth_A`` or ``local_order_sigma_A`` given, are tracked on order ≥ ``threshold``
        (``method="threshold"``).

        Returns
        -------
        aet.dynamics.TrackResult
            ``.events``, ``.nuclei``, ``.links`` (lineage edges), ``.tracks`` (pandas
            DataFrames), ``.series()`` (xarray Dataset over track × time), ``.labels``,
            ``.plot_sizes()``, ``.plot_lineage()``; ``.provenance``.
        """
        from .. import dynamics

        # the scan detector and the local order (local_order_sigma_A) work on the species: no
        # order array needed
        method = dynamics.resolve_method(self._models, kw.get("method", "auto"),
                                         order=self._order, smooth_A=kw.get("smooth_A"),
                                         local_order_sigma_A=kw.get("local_order_sigma_A"))
        kw["method"] = method
        tr = (self if method == "scan" or kw.get("local_order_sigma_A") is not None
              else self.with_order())
        tr = tr if tr.is_registered else tr.register()
        params = {"threshold": threshold, "order": tr._order, "kind": self._kind, **kw}
        res, _ = dynamics.track(tr._registered, times_min=self._times, order=tr._order,
                                kind=self._kind, threshold=threshold, registered=True,
                                matches=tr._matches, **kw)
        hist = tr.provenance
        hist.append(provenance_record("track", params, result=res.summary()))
        return dataclasses.replace(res, provenance=hist)

    def order_fields(self, *, voxel_size_A: float = 0.5, sigma_A: float = 1.5,
                     padding_A: float = 3.0, **kw) -> xr.DataArray:
        """Smoothed order-parameter field of every time on one common grid (the first model's
        frame): DataArray ``(time, z, y, x)``, coords Å centred at ``n // 2``, ``time`` in
        minutes (:func:`aet.dynamics.order_fields`)."""
        from .. import dynamics

        tr = self.with_order()
        tr = tr if tr.is_registered else tr.register()
        pos = [np.asarray(d["position"].transpose("atom", "axis").values) for d in tr._registered]
        orders = [dynamics.order_values(d, order=tr._order) for d in tr._registered]
        out = dynamics.order_fields(pos, orders, times_min=self._times,
                                    voxel_size_A=voxel_size_A, sigma_A=sigma_A,
                                    padding_A=padding_A, **kw)
        return with_provenance(out, "order_fields", {"voxel_size_A": voxel_size_A,
                                                     "sigma_A": sigma_A, "padding_A": padding_A,
                                                     **kw}, parent_attrs=tr._attrs)

    def plot_order_slices(self, *, axis: str = "z", position_A: float = 0.0,
                          levels: Sequence[float] = (0.3, 0.5, 0.7), **field_kw):
        """Figure: a slice of the order field at each time with contours at ``levels``."""
        from .. import dynamics

        return dynamics.plot_order_slices(self.order_fields(**field_kw), axis=axis,
                                          position_A=position_A, levels=levels)

    def write_extxyz(self, path, result=None, *, overwrite: bool = True) -> Path:
        """Write every time as one frame of an extended-XYZ file for OVITO (registered
        positions, species, per-atom ``order``, ``atom_identity`` and — with a ``result`` of
        :meth:`track` — ``nucleus`` and ``track``; -1 = none)."""
        from .. import dynamics

        tr = self.with_order()
        tr = tr if tr.is_registered else tr.register()
        pos, sp, arrays = [], [], []
        for k, d in enumerate(tr._registered):
            pos.append(np.asarray(d["position"].transpose("atom", "axis").values))
            sp.append(np.asarray(d["species"].values).astype(str))
            a = {"order": dynamics.order_values(d, order=tr._order),
                 "atom_identity": np.asarray(d["atom_identity"].values)}
            if result is not None:
                if len(result.labels) != len(self) or result.labels[k].shape[0] != pos[-1].shape[0]:
                    raise ValueError("result does not belong to this tracker (different number "
                                     "of times or atoms); pass the result of this tracker's "
                                     "track()")
                a["nucleus"] = result.labels[k]
                a["track"] = result.atom_tracks[k]
            arrays.append(a)
        return dynamics.write_extxyz_series(path, pos, sp, arrays=arrays, times_min=self._times,
                                            overwrite=overwrite)

    # -- persistence ----------------------------------------------------------------------
    def to_dataset(self) -> xr.Dataset:
        """All models in one Dataset along ``atom`` (``time_index`` tells which model), plus
        the registration summary (``registration_*`` over ``time_index``) when registered."""
        names: list[str] = []
        for d in self._models:
            for k in d.data_vars:
                if k not in ("position", "species") and d[k].dims == ("atom",) and k not in names:
                    names.append(k)
        pos, sp, tix, ids = [], [], [], []
        cols: dict[str, list] = {k: [] for k in names}
        for i, d in enumerate(self._models):
            n = d.sizes["atom"]
            pos.append(np.asarray(d["position"].transpose("atom", "axis").values))
            sp.append(np.asarray(d["species"].values).astype(str))
            tix.append(np.full(n, i, dtype=np.int64))
            if self._registered is not None:
                ids.append(np.asarray(self._registered[i]["atom_identity"].values))
            for k in names:
                if k in d:
                    cols[k].append(np.asarray(d[k].values))
                else:
                    cols[k].append(np.full(n, np.nan))
        data = {"position": (("atom", "axis"), np.concatenate(pos), {"units": "Å"}),
                "species": ("atom", np.concatenate(sp)),
                "time_index": ("atom", np.concatenate(tix))}
        for k in names:
            data[k] = ("atom", np.concatenate(cols[k]))
        if ids:
            data["atom_identity"] = ("atom", np.concatenate(ids))
        ds = xr.Dataset(data, coords={"atom": np.arange(sum(len(p) for p in pos)),
                                      "axis": ["x", "y", "z"]})
        if self._summary is not None:
            summ = self._summary.drop_vars("time_index").rename(
                {"time_index": "time", "row": "registration_row", "col": "registration_col"})
            for k, v in summ.data_vars.items():
                ds[_REG_PREFIX + k] = v
            ds = ds.assign_coords(time=self._times)
        attrs = dict(self._attrs)
        attrs.update({CLASS_ATTR: "NucleusTracker", "times_min": self._times.tolist(),
                      "order": "" if self._order is None else self._order,
                      "kind": json.dumps(self._kind),
                      "model_attrs": json.dumps([to_jsonable({k: v for k, v in d.attrs.items()
                                                              if k != CLASS_ATTR})
                                                 for d in self._models]),
                      "registered": int(self._registered is not None)})
        if self._summary is not None:
            attrs["registration_attrs"] = json.dumps(to_jsonable(self._summary.attrs))
        ds.attrs = attrs
        return ds

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> NucleusTracker:
        """Inverse of :meth:`to_dataset` (used by :func:`aet.open` on a saved tracker)."""
        ds = ds.compute()
        attrs = dict(ds.attrs)
        if attrs.get(CLASS_ATTR) != "NucleusTracker":
            raise MetadataError(f"not a NucleusTracker dataset (attrs['aet_class'] is "
                                f"{attrs.get(CLASS_ATTR)!r})")
        times = np.asarray(attrs.pop("times_min"), dtype=np.float64).reshape(-1)
        order = attrs.pop("order") or None
        kind = json.loads(attrs.pop("kind"))
        kind = kind if isinstance(kind, str) else tuple(kind)
        model_attrs = json.loads(attrs.pop("model_attrs"))
        registered = bool(int(attrs.pop("registered")))
        reg_attrs = json.loads(attrs.pop("registration_attrs", "{}"))
        attrs.pop(CLASS_ATTR, None)
        tix = np.asarray(ds["time_index"].values)
        per_atom = [k for k in ds.data_vars if ds[k].dims == ("atom",)
                    and k not in ("species", "time_index", "atom_identity")]
        models, idlists = [], []
        for i in range(times.size):
            sel = np.flatnonzero(tix == i)
            arrays = {}
            for k in per_atom:
                v = np.asarray(ds[k].values[sel])
                if not (v.dtype.kind == "f" and np.all(np.isnan(v))):
                    arrays[k] = v
            d = AtomicModel(np.asarray(ds["position"].transpose("atom", "axis").values[sel]),
                            np.asarray(ds["species"].values[sel]).astype(str),
                            arrays=arrays).data
            ma = dict(model_attrs[i])
            d.attrs.update(ma)
            models.append(d)
            if "atom_identity" in ds:
                idlists.append(np.asarray(ds["atom_identity"].values[sel]))
        obj = object.__new__(cls)
        obj._set(models, times, order, kind, attrs, None, None, None)
        if registered:
            summary = xr.Dataset({k[len(_REG_PREFIX):]: ds[k] for k in ds.data_vars
                                  if k.startswith(_REG_PREFIX)})
            summary = summary.drop_vars([c for c in summary.coords if c != "axis"])
            summary = summary.rename({"time": "time_index", "registration_row": "row",
                                      "registration_col": "col"})
            summary = summary.assign_coords(time_index=np.arange(times.size))
            summary.attrs = reg_attrs
            reg = []
            for i, d in enumerate(models):
                R = summary["rotation"].values[i]
                t = summary["translation_A"].values[i]
                out = d.copy()
                p = np.asarray(d["position"].values) @ R.T + t
                out["position"] = (("atom", "axis"), p, dict(d["position"].attrs))
                out["atom_identity"] = ("atom", idlists[i])
                reg.append(out)
            matches = []
            for s in range(1, len(reg)):
                _, ia, ib = np.intersect1d(idlists[s - 1], idlists[s], assume_unique=True,
                                           return_indices=True)
                o = np.argsort(ia, kind="stable")
                matches.append((ia[o].astype(np.int64), ib[o].astype(np.int64)))
            obj._set(models, times, order, kind, attrs, reg, summary, matches)
        return obj

    def save(self, path, *, overwrite: bool = True) -> Path:
        """Write to a Zarr store (atomically) that :func:`aet.open` restores (models, times,
        registration, provenance) through the format registry (:func:`aet.io.save`), like
        every facade; the layout is :meth:`to_dataset`'s."""
        from ..io import save

        return save(self, path, overwrite=overwrite)
