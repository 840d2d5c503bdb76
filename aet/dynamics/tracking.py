"""Tracking nuclei across times: overlap links, events, tracks, lineage and time series.

Two nuclei at consecutive times are *linked* when enough of their atoms are the same atoms
(identity from :func:`aet.dynamics.match_atoms` after registration): the overlap ``k`` must be
``≥ min_overlap_atoms`` and ``≥ min_overlap_fraction × min(size_a, size_b)``.

Events of a step ``t-1 → t`` (one row each in ``events``):

==============  =========================================================================
``birth``       a nucleus at ``t`` with no link back
``dissolution`` a nucleus at ``t-1`` with no link forward
``merge``       a nucleus at ``t`` linked to ≥ 2 nuclei at ``t-1``
``division``    a nucleus at ``t-1`` linked to ≥ 2 nuclei at ``t``
``growth``      a one-to-one link whose size change ``Δn ≥ max(min_change_atoms,
                change_fraction × n_{t-1})``
``shrinkage``   a one-to-one link with ``Δn ≤ −max(min_change_atoms, change_fraction ×
                n_{t-1})``
==============  =========================================================================

A one-to-one link below both thresholds is *stable* (listed in ``links``, not an event). The
size ``n`` of these two rules is the nucleus table's ``size_column`` (default ``n_atoms``;
``n_ordered``, the atoms above the 0.5 contour, is the robust choice for nuclei found on a
noisy, computed order field, whose rim gains or loses random blobs at the threshold).

Tracks: a track continues through one-to-one links; at a merge the child continues the
track of the parent it shares most atoms with, at a division the child sharing most atoms
continues the parent's track; every other nucleus starts a new track (its ``parent_track`` is
recorded). A track's ``behaviour`` over its one-to-one steps is ``growth``, ``shrinkage``,
``fluctuation`` (both) or ``stable``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["EVENT_TYPES", "TrackResult", "link_nuclei", "track_nuclei"]

EVENT_TYPES = ("birth", "growth", "shrinkage", "fluctuation", "merge", "division", "dissolution")
_SERIES_VARS = ("n_atoms", "volume_A3", "max_order", "mean_order", "order_gradient_per_A",
                "centroid_x_A", "centroid_y_A", "centroid_z_A")


def link_nuclei(labels_a, labels_b, ia, ib, *, min_overlap_atoms: int = 3,
                min_overlap_fraction: float = 0.2) -> pd.DataFrame:
    """Overlap links between the nuclei of two consecutive times.

    Parameters
    ----------
    labels_a, labels_b : (n_a,), (n_b,) int arrays
        Nucleus index of each atom at the two times (``-1`` = none).
    ia, ib : (k,) int arrays
        Corresponding atoms (``a[ia[i]]`` is the same atom as ``b[ib[i]]``).
    min_overlap_atoms, min_overlap_fraction : int, float
        Link criterion (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        Columns ``nucleus_from, nucleus_to, overlap, n_from, n_to``.
    """
    la = np.asarray(labels_a, dtype=np.int64)
    lb = np.asarray(labels_b, dtype=np.int64)
    ia = np.asarray(ia, dtype=np.int64)
    ib = np.asarray(ib, dtype=np.int64)
    if ia.shape != ib.shape:
        raise ValueError(f"ia and ib must pair up one to one, got shapes {ia.shape}, {ib.shape}")
    a, b = la[ia], lb[ib]
    both = (a >= 0) & (b >= 0)
    size_a = np.bincount(la[la >= 0], minlength=max(la.max() + 1, 0) if la.size else 0)
    size_b = np.bincount(lb[lb >= 0], minlength=max(lb.max() + 1, 0) if lb.size else 0)
    cols = ["nucleus_from", "nucleus_to", "overlap", "n_from", "n_to"]
    if not both.any():
        return pd.DataFrame({c: pd.Series(dtype="int64") for c in cols})
    pairs, counts = np.unique(np.stack([a[both], b[both]], 1), axis=0, return_counts=True)
    rows = []
    for (x, y), k in zip(pairs.tolist(), counts.tolist()):
        smaller = min(size_a[x], size_b[y])
        if k >= min_overlap_atoms and k >= min_overlap_fraction * smaller:
            rows.append((x, y, k, int(size_a[x]), int(size_b[y])))
    return pd.DataFrame(rows, columns=cols).astype("int64")


@dataclass(frozen=True, repr=False)
class TrackResult:
    """Nuclei, links, events, tracks and per-track time series of a tracked series.

    Attributes
    ----------
    nuclei : pandas.DataFrame
        One row per nucleus per time: ``time_index, time_min, nucleus, track`` and the
        columns of :func:`aet.dynamics.find_nuclei`.
    links : pandas.DataFrame
        Every overlap link (the lineage graph's edges): ``step, time_from_min, time_to_min,
        nucleus_from, nucleus_to, track_from, track_to, overlap, n_from, n_to``.
    events : pandas.DataFrame
        One row per event (types :data:`EVENT_TYPES`): ``step, time_from_min, time_to_min,
        event, nuclei_from, nuclei_to, tracks_from, tracks_to, n_atoms_from, n_atoms_to``
        (nucleus and track ids as space-separated text, e.g. ``"0 3"``).
    tracks : pandas.DataFrame
        One row per track: ``track, start_min, end_min, start, end, parent_track,
        behaviour, n_atoms_first, n_atoms_last, n_atoms_max``.
    labels : list of (n_t,) int ndarrays
        Nucleus index of every atom at every time (``-1`` = none).
    atom_tracks : list of (n_t,) int ndarrays
        Track id of every atom at every time (``-1`` = none).
    times_min : ndarray
        The times (minutes).
    params : dict
        The tracking options used.
    provenance : list of dict
        Provenance records (filled by :meth:`aet.NucleusTracker.track`).
    """

    nuclei: pd.DataFrame
    links: pd.DataFrame
    events: pd.DataFrame
    tracks: pd.DataFrame
    labels: list = field(repr=False)
    atom_tracks: list = field(repr=False)
    times_min: np.ndarray = field(repr=False)
    params: dict = field(default_factory=dict, repr=False)
    provenance: list = field(default_factory=list, repr=False)

    def plot_sizes(self, *, quantity: str = "n_atoms", ax=None):
        """Figure: nucleus size (atoms, or ``quantity``) against time, one line per track."""
        from .plot import plot_sizes

        return plot_sizes(self, quantity=quantity, ax=ax)

    def plot_lineage(self, *, ax=None):
        """Figure: the lineage diagram (tracks over time, links, coloured events)."""
        from .plot import plot_lineage

        return plot_lineage(self, ax=ax)

    def __repr__(self) -> str:
        sm = self.summary()
        ev = ", ".join(f"{k}: {v}" for k, v in sm["events"].items() if v)
        return (f"<aet.dynamics.TrackResult {len(self.times_min)} times "
                f"({', '.join(f'{t:g}' for t in sm['times_min'])} min), nuclei per time "
                f"{sm['n_nuclei']}, {sm['n_tracks']} tracks, events: {ev or 'none'}>")

    def event_counts(self) -> dict[str, int]:
        """Number of events of each type (every type listed, zeros included)."""
        vc = self.events["event"].value_counts() if len(self.events) else {}
        return {e: int(vc.get(e, 0)) for e in EVENT_TYPES}

    def series(self) -> xr.Dataset:
        """Per-track time series as an :class:`xarray.Dataset` over ``(track, time)``.

        Variables ``n_atoms``, ``volume_A3`` (Å³), ``max_order``, ``mean_order``,
        ``order_gradient_per_A`` (Å⁻¹), ``centroid_{x,y,z}_A`` (Å); NaN where the track has no
        nucleus; coords ``time`` (minutes) and ``track``.
        """
        tracks = np.sort(self.tracks["track"].to_numpy()) if len(self.tracks) else \
            np.zeros(0, dtype=np.int64)
        nt = len(self.times_min)
        pos = {t: i for i, t in enumerate(tracks.tolist())}
        data = {v: np.full((tracks.size, nt), np.nan) for v in _SERIES_VARS}
        for row in self.nuclei.itertuples(index=False):
            i, j = pos[int(row.track)], int(row.time_index)
            for v in _SERIES_VARS:
                data[v][i, j] = float(getattr(row, v))
        ds = xr.Dataset({v: (("track", "time"), a) for v, a in data.items()},
                        coords={"track": tracks, "time": np.asarray(self.times_min, float)})
        ds["time"].attrs["units"] = "min"
        ds["volume_A3"].attrs["units"] = "Å³"
        ds["order_gradient_per_A"].attrs["units"] = "1/Å"
        return ds

    def to_networkx(self):
        """The lineage as a :class:`networkx.DiGraph` (nodes ``(time_index, nucleus)`` with
        the nucleus table's columns as attributes; edges with ``overlap``). Needs networkx."""
        import networkx as nx

        g = nx.DiGraph()
        for row in self.nuclei.to_dict("records"):
            g.add_node((int(row["time_index"]), int(row["nucleus"])), **row)
        for row in self.links.to_dict("records"):
            g.add_edge((int(row["step"]) - 1, int(row["nucleus_from"])),
                       (int(row["step"]), int(row["nucleus_to"])), overlap=int(row["overlap"]))
        return g

    def summary(self) -> dict:
        """JSON-able counts: nuclei per time and events per type."""
        per_time = self.nuclei.groupby("time_index").size() if len(self.nuclei) else {}
        return {"times_min": [float(t) for t in self.times_min],
                "n_nuclei": [int(per_time.get(i, 0)) for i in range(len(self.times_min))],
                "events": self.event_counts(), "n_tracks": int(len(self.tracks))}


def _ids(xs) -> str:
    return " ".join(str(int(x)) for x in sorted(xs))


def track_nuclei(labels: Sequence[np.ndarray], tables: Sequence[pd.DataFrame],
                 matches: Sequence[tuple[np.ndarray, np.ndarray]], *,
                 times_min: Sequence[float], min_overlap_atoms: int = 3,
                 min_overlap_fraction: float = 0.2, min_change_atoms: int = 5,
                 change_fraction: float = 0.2, size_column: str = "n_atoms") -> TrackResult:
    """Link nuclei between consecutive times and classify the events.

    Parameters
    ----------
    labels : sequence of (n_t,) int arrays
        Per-atom nucleus index at each time (from :func:`aet.dynamics.find_nuclei`).
    tables : sequence of pandas.DataFrame
        The matching nucleus tables.
    matches : sequence of (ia, ib)
        Atom correspondence of each step ``t-1 → t`` (``len(labels) - 1`` entries).
    times_min : sequence of float
        Time of each model in minutes (increasing).
    min_overlap_atoms, min_overlap_fraction : int, float
        Link criterion.
    min_change_atoms, change_fraction : int, float
        Growth/shrinkage thresholds of a one-to-one link (see the module docstring).
    size_column : str
        Column of the nucleus tables whose change classifies growth / shrinkage
        (``"n_atoms"`` or ``"n_ordered"``).

    Returns
    -------
    TrackResult
    """
    nt = len(labels)
    if len(tables) != nt or len(matches) != nt - 1 or len(times_min) != nt:
        raise ValueError(f"labels ({nt}), tables ({len(tables)}), times_min ({len(times_min)}) "
                         f"need one entry per time and matches ({len(matches)}) one per step")
    times = np.asarray(times_min, dtype=float)
    if any(size_column not in tb.columns for tb in tables):
        raise ValueError(f"size_column {size_column!r} is not a column of the nucleus tables; "
                         f"pass 'n_atoms' or 'n_ordered'")
    track_of: list[dict[int, int]] = []
    parent_track: dict[int, int] = {}
    start_kind: dict[int, str] = {}
    end_kind: dict[int, str] = {}
    steps_kind: dict[int, list[str]] = {}
    next_track = 0

    def new_track(kind, parent=None):
        nonlocal next_track
        tid = next_track
        next_track += 1
        start_kind[tid] = kind
        steps_kind[tid] = []
        if parent is not None:
            parent_track[tid] = parent
        return tid

    first = {int(k): new_track("initial") for k in tables[0]["nucleus"].tolist()}
    track_of.append(first)
    link_rows, event_rows = [], []
    for s in range(1, nt):
        ia, ib = matches[s - 1]
        lk = link_nuclei(labels[s - 1], labels[s], ia, ib,
                         min_overlap_atoms=min_overlap_atoms,
                         min_overlap_fraction=min_overlap_fraction)
        prev_ids = [int(k) for k in tables[s - 1]["nucleus"].tolist()]
        cur_ids = [int(k) for k in tables[s]["nucleus"].tolist()]
        size_prev = dict(zip(prev_ids, tables[s - 1]["n_atoms"].astype(int).tolist()))
        size_cur = dict(zip(cur_ids, tables[s]["n_atoms"].astype(int).tolist()))
        grade_prev = dict(zip(prev_ids, tables[s - 1][size_column].astype(float).tolist()))
        grade_cur = dict(zip(cur_ids, tables[s][size_column].astype(float).tolist()))
        children = {p: [] for p in prev_ids}
        parents = {c: [] for c in cur_ids}
        ov = {}
        for r in lk.itertuples(index=False):
            children[int(r.nucleus_from)].append(int(r.nucleus_to))
            parents[int(r.nucleus_to)].append(int(r.nucleus_from))
            ov[(int(r.nucleus_from), int(r.nucleus_to))] = int(r.overlap)
        # primary partners: largest overlap, then larger partner, then lower id
        prim_child = {p: max(cs, key=lambda c, p=p: (ov[(p, c)], size_cur[c], -c))
                      for p, cs in children.items() if cs}
        prim_parent = {c: max(ps, key=lambda p, c=c: (ov[(p, c)], size_prev[p], -p))
                       for c, ps in parents.items() if ps}
        cur_track = {}
        for c in cur_ids:
            ps = parents[c]
            if not ps:
                cur_track[c] = new_track("birth")
                continue
            p = prim_parent[c]
            if prim_child.get(p) == c:
                cur_track[c] = track_of[s - 1][p]
            else:
                cur_track[c] = new_track("division" if len(children[p]) > 1 else "merge",
                                         parent=track_of[s - 1][p])
        track_of.append(cur_track)
        prev_track = track_of[s - 1]
        ev = {"step": s, "time_from_min": times[s - 1], "time_to_min": times[s]}

        def add_event(kind, nf, nto, ev=ev, prev_track=prev_track, cur_track=cur_track,
                      size_prev=size_prev, size_cur=size_cur):
            event_rows.append({**ev, "event": kind, "nuclei_from": _ids(nf),
                               "nuclei_to": _ids(nto),
                               "tracks_from": _ids(prev_track[x] for x in nf),
                               "tracks_to": _ids(cur_track[x] for x in nto),
                               "n_atoms_from": int(sum(size_prev[x] for x in nf)),
                               "n_atoms_to": int(sum(size_cur[x] for x in nto))})

        for c in cur_ids:
            if not parents[c]:
                add_event("birth", [], [c])
            elif len(parents[c]) > 1:
                add_event("merge", parents[c], [c])
                for p in parents[c]:
                    if prim_child.get(p) != c or prim_parent[c] != p:
                        if len(children[p]) == 1:
                            end_kind[prev_track[p]] = "merge"
        for p in prev_ids:
            if not children[p]:
                add_event("dissolution", [p], [])
                end_kind[prev_track[p]] = "dissolution"
            elif len(children[p]) > 1:
                add_event("division", [p], children[p])
        for p in prev_ids:
            cs = children[p]
            if len(cs) == 1 and len(parents[cs[0]]) == 1:
                c = cs[0]
                dn = grade_cur[c] - grade_prev[p]
                tol = max(min_change_atoms, change_fraction * grade_prev[p])
                kind = "growth" if dn >= tol else "shrinkage" if dn <= -tol else "stable"
                steps_kind[prev_track[p]].append(kind)
                if kind != "stable":
                    add_event(kind, [p], [c])
        for r in lk.itertuples(index=False):
            link_rows.append({**ev, "nucleus_from": int(r.nucleus_from),
                              "nucleus_to": int(r.nucleus_to),
                              "track_from": prev_track[int(r.nucleus_from)],
                              "track_to": cur_track[int(r.nucleus_to)],
                              "overlap": int(r.overlap), "n_from": int(r.n_from),
                              "n_to": int(r.n_to)})

    # nuclei table with time and track
    frames = []
    for s in range(nt):
        tb = tables[s].copy()
        tb.insert(0, "track", [track_of[s][int(k)] for k in tb["nucleus"].tolist()])
        tb.insert(0, "time_min", times[s])
        tb.insert(0, "time_index", s)
        frames.append(tb)
    nuclei = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    nuclei = nuclei.astype({"time_index": "int64", "track": "int64", "nucleus": "int64",
                            "n_atoms": "int64"})
    link_cols = ["step", "time_from_min", "time_to_min", "nucleus_from", "nucleus_to",
                 "track_from", "track_to", "overlap", "n_from", "n_to"]
    links = pd.DataFrame(link_rows, columns=link_cols)
    ev_cols = ["step", "time_from_min", "time_to_min", "event", "nuclei_from", "nuclei_to",
               "tracks_from", "tracks_to", "n_atoms_from", "n_atoms_to"]
    order = {e: i for i, e in enumerate(EVENT_TYPES)}
    events = pd.DataFrame(event_rows, columns=ev_cols)
    if len(events):
        events = events.sort_values(["step", "event", "nuclei_from", "nuclei_to"],
                                    key=lambda c: c.map(order) if c.name == "event" else c,
                                    kind="stable").reset_index(drop=True)
    # tracks table
    rows = []
    for tid in range(next_track):
        sel = nuclei[nuclei["track"] == tid].sort_values("time_index")
        kinds = set(steps_kind[tid])
        behaviour = ("fluctuation" if {"growth", "shrinkage"} <= kinds else
                     "growth" if "growth" in kinds else
                     "shrinkage" if "shrinkage" in kinds else "stable")
        last = int(sel["time_index"].iloc[-1])
        rows.append({"track": tid, "start_min": float(sel["time_min"].iloc[0]),
                     "end_min": float(sel["time_min"].iloc[-1]), "start": start_kind[tid],
                     "end": end_kind.get(tid, "present" if last == nt - 1 else "ended"),
                     "parent_track": parent_track.get(tid, -1), "behaviour": behaviour,
                     "n_atoms_first": int(sel["n_atoms"].iloc[0]),
                     "n_atoms_last": int(sel["n_atoms"].iloc[-1]),
                     "n_atoms_max": int(sel["n_atoms"].max())})
    tracks = pd.DataFrame(rows, columns=["track", "start_min", "end_min", "start", "end",
                                         "parent_track", "behaviour", "n_atoms_first",
                                         "n_atoms_last", "n_atoms_max"])
    atom_tracks = []
    for s in range(nt):
        lab = np.asarray(labels[s], dtype=np.int64)
        lut = np.full(max(len(track_of[s]), 1) + 1, -1, dtype=np.int64)
        for k, tid in track_of[s].items():
            lut[k] = tid
        atom_tracks.append(np.where(lab >= 0, lut[np.clip(lab, 0, None)], -1))
    params = {"min_overlap_atoms": min_overlap_atoms,
              "min_overlap_fraction": min_overlap_fraction,
              "min_change_atoms": min_change_atoms, "change_fraction": change_fraction,
              "size_column": size_column}
    return TrackResult(nuclei, links, events, tracks, [np.asarray(x) for x in labels],
                       atom_tracks, times, params)
