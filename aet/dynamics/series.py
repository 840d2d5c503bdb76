"""The 4D pipeline on model Datasets: register a time series, find and track its nuclei.

These are the core functions behind :class:`aet.NucleusTracker`; they take the
``xarray.Dataset`` of each :class:`~aet.AtomicModel` (``position`` (atom, axis) Å, ``species``,
per-atom arrays) and return Datasets / pandas tables. Inputs are never modified.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from .local_order import _local_order, min_nucleus_size, null_cluster_sizes
from .nuclei import find_nuclei
from .registration import match_atoms, register_rigid, rotation_angle_deg
from .tracking import TrackResult, track_nuclei

__all__ = ["order_values", "register_series", "resolve_method", "track"]


def resolve_method(models, method: str = "auto", *, order=None, smooth_A=None,
                   local_order_sigma_A=None) -> str:
    """The detector :func:`track` uses: ``"scan"`` or ``"threshold"`` (see its ``method``)."""
    if method not in ("auto", "scan", "threshold"):
        raise ValueError(f"method must be 'auto', 'scan' or 'threshold', got {method!r}")
    if method != "auto":
        return method
    if order is not None or smooth_A is not None or local_order_sigma_A is not None:
        return "threshold"
    for ds in models:
        if any(str(k).startswith("order") and ds[k].dims == ("atom",) for k in ds.data_vars):
            return "threshold"
    return "scan"


def _positions(ds: xr.Dataset) -> np.ndarray:
    pos = ds["position"].transpose("atom", "axis")
    if "axis" in ds.coords:
        pos = pos.sel(axis=["x", "y", "z"])
    return np.asarray(pos.values, dtype=np.float64)


def _check_models(datasets) -> list[xr.Dataset]:
    if isinstance(datasets, xr.Dataset) or not isinstance(datasets, Sequence):
        raise TypeError("models must be a sequence (list) of model Datasets, one per time")
    out = []
    for i, ds in enumerate(datasets):
        if not isinstance(ds, xr.Dataset) or "position" not in ds or "species" not in ds:
            raise TypeError(f"models[{i}] must be an AtomicModel Dataset with 'position' and "
                            f"'species', got {type(ds).__name__}")
        out.append(ds)
    if len(out) < 2:
        raise ValueError(f"models has {len(out)} entry; tracking needs at least 2 times")
    return out


def order_values(ds: xr.Dataset, *, order: str | None = None, kind="L10",
                 **order_kw) -> np.ndarray:
    """The per-atom order parameter of one model.

    ``order`` names a per-atom array of the model. When it is ``None``, the array ``"order"``
    is used if present, else ``"order_<kind>"`` (as :func:`aet.analysis.order_parameters`
    names it), else the single per-atom array whose name starts with ``"order"``;
    failing that the order is computed with :func:`aet.analysis.order_parameters` (``kind``,
    ``**order_kw``). ``kind`` may be a sequence (e.g. ``("L10", "L12")``): the per-atom
    maximum over the kinds is returned (nuclei of either ordered phase).
    """
    if not isinstance(kind, str):
        kinds = list(kind)
        if not kinds:
            raise ValueError("kind is an empty sequence; pass e.g. 'L10' or ('L10', 'L12')")
        vals = [order_values(ds, order=order, kind=k, **order_kw) for k in kinds]
        return np.nanmax(np.stack(vals), axis=0) if len(vals) > 1 else vals[0]
    if order is not None:
        if order not in ds:
            have = [k for k in ds.data_vars if ds[k].dims == ("atom",)]
            raise KeyError(f"model has no per-atom array {order!r}; per-atom arrays: {have}. "
                           f"Pass order=<name> of the order-parameter array, or order=None "
                           f"to compute it with aet.analysis.order_parameters")
        return np.asarray(ds[order].values, dtype=np.float64)
    for name in ("order", f"order_{kind}"):
        if name in ds and ds[name].dims == ("atom",):
            return np.asarray(ds[name].values, dtype=np.float64)
    cands = [k for k in ds.data_vars if str(k).startswith("order") and ds[k].dims == ("atom",)
             and ds[k].dtype.kind == "f"]
    if len(cands) == 1:
        return np.asarray(ds[cands[0]].values, dtype=np.float64)
    from .. import analysis

    if not hasattr(analysis, "order_parameters"):
        raise KeyError("the models carry no order-parameter array and aet.analysis."
                       "order_parameters is not available; pass models with a per-atom "
                       "'order' array (model.with_arrays(order=values))")
    res = analysis.order_parameters(ds, kind, **order_kw)
    for name in ("order", f"order_{kind}", "order_parameter", "S"):
        if name in res and res[name].dims == ("atom",):
            return np.asarray(res[name].values, dtype=np.float64)
    cands = [k for k in res.data_vars if str(k).startswith("order") and res[k].dims == ("atom",)]
    if cands:
        return np.asarray(res[cands[0]].values, dtype=np.float64)
    raise KeyError(f"aet.analysis.order_parameters returned no per-atom order array "
                   f"(variables {sorted(res.data_vars)})")


def register_series(models: Sequence[xr.Dataset], *, reference: int = 0,
                    match_radius_A: float = 1.0, **registration_kw
                    ) -> tuple[list[xr.Dataset], xr.Dataset, list[tuple[np.ndarray, np.ndarray]]]:
    """Register every model of a time series onto one reference and pair their atoms.

    Parameters
    ----------
    models : sequence of xarray.Dataset
        Model Datasets of one particle at successive times.
    reference : int
        Index of the model whose frame is kept (default the first).
    match_radius_A : float
        Largest distance (Å) at which an atom at ``t-1`` and one at ``t`` are the same atom
        (:func:`~aet.dynamics.match_atoms`).
    **registration_kw
        Options of :func:`~aet.dynamics.register_rigid`.

    Returns
    -------
    registered : list of xarray.Dataset
        Copies of the models with positions in the reference frame and a per-atom ``atom_identity``
        (int; the same id at two times means the same atom; new atoms get new ids).
    summary : xarray.Dataset
        Over ``time_index``: ``rotation`` (time_index, row, col), ``translation_A``
        (time_index, axis), ``angle_deg``, ``rmsd_A``, ``inlier_fraction``,
        ``species_mismatch``, ``n_atoms``, ``n_matched_previous``, ``fraction_moved`` (atoms
        of ``t-1`` with no partner at ``t``), ``fraction_species_changed`` (paired atoms
        whose species differ), ``match_rmsd_A`` (pair distances ``t-1 → t``).
    matches : list of (ia, ib)
        Atom pairs of each step ``t-1 → t``.
    """
    models = _check_models(models)
    nt = len(models)
    if not (isinstance(reference, (int, np.integer)) and 0 <= reference < nt):
        raise ValueError(f"reference must be an index in [0, {nt - 1}], got {reference!r}")
    ref_pos = _positions(models[reference])
    ref_sp = np.asarray(models[reference]["species"].values).astype(str)
    Rs, ts, info = [], [], []
    reg_pos = []
    for i, ds in enumerate(models):
        pos = _positions(ds)
        if i == reference:
            R, t = np.eye(3), np.zeros(3)
            d = {"angle_deg": 0.0, "rmsd_A": 0.0, "inlier_fraction": 1.0,
                 "species_mismatch": 0.0}
        else:
            sp = np.asarray(ds["species"].values).astype(str)
            res = register_rigid(pos, ref_pos, moving_species=sp, fixed_species=ref_sp,
                                 **registration_kw)
            R, t = res.R, res.t
            d = {"angle_deg": rotation_angle_deg(R), "rmsd_A": res.rmsd_A,
                 "inlier_fraction": res.inlier_fraction,
                 "species_mismatch": res.species_mismatch}
        Rs.append(R)
        ts.append(t)
        info.append(d)
        reg_pos.append(pos @ R.T + t)
    matches = []
    ids = [np.arange(reg_pos[0].shape[0], dtype=np.int64)]
    next_id = reg_pos[0].shape[0]
    n_matched = [0]
    moved = [0.0]
    sp_changed = [0.0]
    mrmsd = [0.0]
    for s in range(1, nt):
        ia, ib, dist = match_atoms(reg_pos[s - 1], reg_pos[s], radius_A=match_radius_A)
        matches.append((ia, ib))
        cur = np.full(reg_pos[s].shape[0], -1, dtype=np.int64)
        cur[ib] = ids[s - 1][ia]
        new = cur < 0
        cur[new] = np.arange(next_id, next_id + int(new.sum()))
        next_id += int(new.sum())
        ids.append(cur)
        sa = np.asarray(models[s - 1]["species"].values).astype(str)
        sb = np.asarray(models[s]["species"].values).astype(str)
        n_matched.append(int(ia.size))
        moved.append(1.0 - ia.size / max(reg_pos[s - 1].shape[0], 1))
        sp_changed.append(float(np.mean(sa[ia] != sb[ib])) if ia.size else 0.0)
        mrmsd.append(float(np.sqrt(np.mean(dist ** 2))) if ia.size else float("nan"))
    registered = []
    for ds, p, idv in zip(models, reg_pos, ids):
        out = ds.copy()
        out["position"] = (("atom", "axis"), p, dict(ds["position"].attrs))
        if "axis" not in out.coords:
            out = out.assign_coords(axis=["x", "y", "z"])
        out["atom_identity"] = ("atom", idv)
        registered.append(out)
    summary = xr.Dataset(
        {"rotation": (("time_index", "row", "col"), np.stack(Rs)),
         "translation_A": (("time_index", "axis"), np.stack(ts), {"units": "Å"}),
         "angle_deg": ("time_index", [d["angle_deg"] for d in info], {"units": "deg"}),
         "rmsd_A": ("time_index", [d["rmsd_A"] for d in info], {"units": "Å"}),
         "inlier_fraction": ("time_index", [d["inlier_fraction"] for d in info]),
         "species_mismatch": ("time_index", [d["species_mismatch"] for d in info]),
         "n_atoms": ("time_index", [p.shape[0] for p in reg_pos]),
         "n_matched_previous": ("time_index", n_matched),
         "fraction_moved": ("time_index", moved),
         "fraction_species_changed": ("time_index", sp_changed),
         "match_rmsd_A": ("time_index", mrmsd, {"units": "Å"})},
        coords={"time_index": np.arange(nt), "axis": ["x", "y", "z"]},
        attrs={"reference": int(reference), "match_radius_A": float(match_radius_A),
               "convention": "registered = position @ rotation.T + translation_A"})
    return registered, summary, matches


def track(models: Sequence[xr.Dataset], *, times_min: Sequence[float], order: str | None = None,
          kind="L10", threshold: float = 0.3, registered: bool = False,
          matches: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
          match_radius_A: float = 1.0, cutoff_A: float | None = None,
          min_atoms: int | str = 13, smooth_A: float | None = None,
          min_peak_order: float | None = None, core_tolerance: float = 0.1,
          surface_depth: float = 0.95, min_overlap_atoms: int = 3,
          min_overlap_fraction: float = 0.2, min_change_atoms: int = 5,
          change_fraction: float = 0.2, registration: dict | None = None,
          local_order_sigma_A: float | None = None, false_positive_rate: float = 0.01,
          n_null: int = 20, null_seed=0, ordered_level: float = 0.5,
          size_column: str = "n_atoms", method: str = "auto",
          false_alarm_rate: float = 0.01, change_false_alarm_rate: float = 0.001,
          **scan_kw) -> tuple[TrackResult, xr.Dataset | None]:
    """Find the nuclei of every model and track them across times.

    Parameters
    ----------
    models : sequence of xarray.Dataset
        Model Datasets, one per time.
    times_min : sequence of float
        Times in minutes (strictly increasing).
    order, kind : str
        Which per-atom order parameter (see :func:`order_values`). With
        ``local_order_sigma_A`` the order array is not used: ``kind`` names the ordered
        phase(s) of the local order.
    threshold : float
        Order threshold of a nucleus (default 0.3).
    registered : bool
        ``True`` when the models are already in one frame; with ``matches`` given no
        registration or correspondence is computed.
    matches : sequence of (ia, ib), optional
        Atom correspondence of each step (from :func:`register_series`).
    match_radius_A : float
        Pair radius of the correspondence.
    cutoff_A, min_atoms, smooth_A, min_peak_order, core_tolerance, surface_depth
        Options of :func:`~aet.dynamics.find_nuclei`. ``min_atoms="null"`` (with
        ``local_order_sigma_A``) derives the smallest nucleus from the random-alloy null
        distribution of the models themselves (:func:`~aet.dynamics.null_cluster_sizes`,
        :func:`~aet.dynamics.min_nucleus_size`) at ``false_positive_rate``.
    min_overlap_atoms, min_overlap_fraction, min_change_atoms, change_fraction, size_column
        Options of :func:`~aet.dynamics.track_nuclei` (``size_column="n_ordered"``: classify
        growth / shrinkage on the atoms above ``ordered_level``, robust on a computed order
        field).
    ordered_level : float
        Level of the ``n_ordered`` column of the nucleus tables (default 0.5).
    registration : dict, optional
        Options of :func:`~aet.dynamics.register_rigid`.
    local_order_sigma_A : float, optional
        When given, nuclei are found on the variant-resolved local order computed from each
        model's species and positions (:func:`~aet.dynamics.local_order`, Gaussian σ in Å,
        ``kind`` as phases; 3 Å recommended), and atoms connect only within one variant. This
        is the estimator for measured models: the raw per-atom order of a random alloy
        fluctuates as strongly as a small nucleus.
    false_positive_rate, n_null, null_seed
        With ``min_atoms="null"``: allowed expected number of random-alloy clusters per model,
        number of species permutations (cycling through the models) and their seed. With
        the scan detector ``n_null`` is the number of null copies per scan (at least 30 are
        used) and ``null_seed`` their seed.
    method : {"auto", "scan", "threshold"}
        ``"scan"``: the likelihood-ratio scan with time used jointly
        (:func:`aet.dynamics.detect.track_scan`): nuclei from the species, each with a
        false-alarm probability, events from the evidence of change with a confidence, moved
        atoms reported. ``"threshold"``: nuclei are regions of an order array above
        ``threshold`` (the options above). ``"auto"`` (default) takes ``"threshold"`` when
        the models carry an order array, ``order``, ``smooth_A`` or ``local_order_sigma_A``
        is given, and ``"scan"`` otherwise (models with species only, as the pipeline
        makes them).
    false_alarm_rate, change_false_alarm_rate
        Scan detector: largest false-alarm probability of a reported nucleus (per model) and
        of a change region or growth / shrinkage (per pair of models).
    **scan_kw
        Further options of :func:`aet.dynamics.detect.detect_series` (``order_fraction``,
        ``k_min``, ``k_max``, ``min_atoms`` is passed on as well, ``species``).

    Returns
    -------
    result : TrackResult
        ``result.params`` holds the options, and with ``min_atoms="null"`` the derived
        ``min_atoms`` and the null fit (``null``).
    summary : xarray.Dataset or None
        The registration summary (None when registration was skipped).
    """
    models = _check_models(models)
    times = np.asarray(times_min, dtype=np.float64).reshape(-1)
    if times.size != len(models):
        raise ValueError(f"times_min has {times.size} values but there are {len(models)} "
                         f"models; pass one time (minutes) per model")
    if not np.all(np.isfinite(times)) or np.any(np.diff(times) <= 0):
        raise ValueError(f"times_min must be finite and strictly increasing, got "
                         f"{times.tolist()}")
    method = resolve_method(models, method, order=order, smooth_A=smooth_A,
                            local_order_sigma_A=local_order_sigma_A)
    if scan_kw and method != "scan":
        raise TypeError(f"unexpected keyword argument(s) {sorted(scan_kw)} for the threshold "
                        f"detector; they are options of method='scan'")
    summary = None
    if matches is None or not registered:
        if registered:
            pos = [_positions(ds) for ds in models]
            matches = [match_atoms(pos[s - 1], pos[s], radius_A=match_radius_A)[:2]
                       for s in range(1, len(models))]
        else:
            models, summary, matches = register_series(models, match_radius_A=match_radius_A,
                                                       **(registration or {}))
    if method == "scan":
        from .detect import track_scan

        kw = dict(scan_kw)
        if not isinstance(min_atoms, str) and min_atoms != 13:
            kw["min_atoms"] = int(min_atoms)
        result = track_scan(models, matches, times_min=times, kind=kind,
                            min_overlap_atoms=min_overlap_atoms,
                            min_overlap_fraction=min_overlap_fraction,
                            false_alarm_rate=false_alarm_rate,
                            change_false_alarm_rate=change_false_alarm_rate,
                            n_null=max(int(n_null), 30), null_seed=null_seed, **kw)
        result.params.update({"method": "scan", "kind": kind})
        return result, summary
    local = parts = None
    if local_order_sigma_A is not None:
        local, parts = zip(*[_local_order(ds, kind=kind, sigma_A=local_order_sigma_A)
                             for ds in models])
    null_info = None
    if isinstance(min_atoms, str):
        if min_atoms != "null":
            raise ValueError(f"min_atoms must be a whole number of atoms or 'null', got "
                             f"{min_atoms!r}")
        if local_order_sigma_A is None:
            raise ValueError("min_atoms='null' needs local_order_sigma_A (the null "
                             "distribution is that of the local order); pass e.g. "
                             "local_order_sigma_A=3.0, or an integer min_atoms")
        null = null_cluster_sizes(list(parts), n_permutations=n_null, kind=kind,
                                  sigma_A=local_order_sigma_A, threshold=threshold,
                                  cutoff_A=cutoff_A, seed=null_seed)
        min_atoms, null_info = min_nucleus_size(null, false_positive_rate=false_positive_rate,
                                                min_peak_order=min_peak_order)
    labels, tables = [], []
    for t, ds in enumerate(models):
        variant = None
        if local is not None:
            lo = local[t]
            o = np.asarray(lo["local_order"].values, dtype=np.float64)
            variant = np.asarray(lo["local_variant"].values)
        else:
            o = order_values(ds, order=order, kind=kind)
        lab, tb = find_nuclei(_positions(ds), o, threshold=threshold, cutoff_A=cutoff_A,
                              min_atoms=min_atoms, smooth_A=smooth_A,
                              min_peak_order=min_peak_order, core_tolerance=core_tolerance,
                              surface_depth=surface_depth, variant=variant,
                              ordered_level=ordered_level)
        labels.append(lab)
        tables.append(tb)
    result = track_nuclei(labels, tables, matches, times_min=times,
                          min_overlap_atoms=min_overlap_atoms,
                          min_overlap_fraction=min_overlap_fraction,
                          min_change_atoms=min_change_atoms, change_fraction=change_fraction,
                          size_column=size_column)
    result.params.update({"method": "threshold", "threshold": float(threshold),
                          "min_atoms": int(min_atoms),
                          "local_order_sigma_A": local_order_sigma_A})
    if null_info is not None:
        result.params["null"] = {**null_info, "false_positive_rate": false_positive_rate}
    return result, summary
