"""A simulated 4D (annealing-time) series with true nuclei and true events.

:func:`nucleation_series` builds one chemically disordered (A1) FePt particle and, at each
annealing time, orders the atoms inside a set of nuclei (L1_0 with a c-axis variant and a
sublattice choice, or L1_2). The nuclei follow a script that contains every event type of
:data:`aet.dynamics.EVENT_TYPES`:

=======  ======================================================================
nucleus  history (time index 0, 1, 2, …)
=======  ======================================================================
A        present throughout, grows at every step
B        present throughout, fluctuates (alternately shrinks and grows); L1_2
C        born at time 1, then grows
D        present at 0 and 1, dissolves at time 2
E, F     two separate, in-phase nuclei at 0 and 1 that merge into G at time 2
H        an elongated nucleus at 0 and 1 that divides into I and J at time 2
=======  ======================================================================

(G then grows; I grows and J shrinks.) Between times the whole particle moves by a small
random rigid motion, the atom order is shuffled, positions get Gaussian jitter and a fraction
of species are misassigned — as in a measured series. ``atom_id`` identifies atoms across
times.

Event records use the names of :mod:`aet.dynamics`: ``birth``, ``growth``, ``shrinkage``,
``merge``, ``division``, ``dissolution``; growth/shrinkage are recorded when a continuing
nucleus changes its atom count by at least 10 %.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from ..model.atomicmodel import AtomicModel
from .structures import FEPT_A, fept_particle, orientation_matrix

__all__ = ["NucleationEvent", "NucleationSeries", "nearest_distinct_gap_A", "nucleation_series"]

_NAMES = "ABCDEFGHIJ"


@dataclass(frozen=True)
class NucleationEvent:
    """One true event between time ``time_index − 1`` and ``time_index``: nucleus ids before
    (``parents``) and after (``children``)."""

    time_index: int
    type: str
    parents: tuple[int, ...]
    children: tuple[int, ...]


@dataclass(frozen=True)
class NucleationSeries:
    """Output of :func:`nucleation_series`.

    Attributes
    ----------
    times_min : ndarray
        Annealing times (minutes).
    models : list of AtomicModel
        The "measured" models, one per time: rigidly moved, shuffled, jittered, with species
        errors; per-atom ``atom_id``; attrs ``annealing_time_min``.
    truth_models : list of AtomicModel
        Exact models in the reference frame (time 0, no motion, no jitter, true species), in
        ``atom_id`` order (``atom_id[i] == i``, so ``truth["nucleus_id"][model["atom_id"]]``
        labels a measured model's atoms), with
        per-atom ``atom_id``, ``nucleus_id`` (−1 outside nuclei), ``true_order`` (1 inside a
        nucleus, 0 outside: an ideal order parameter for testing trackers), ``nucleus_phase``,
        ``nucleus_variant`` (L1_0 c axis 0/1/2 in the particle's crystal frame, −1 otherwise),
        ``base_species`` (the disordered matrix).
    nuclei : list of dict
        Per time: nucleus id → sorted ``atom_id`` array.
    events : list of NucleationEvent
    rigid_motions : list of dict
        Per time: ``rotation`` (3×3) and ``translation_A`` (3,), mapping reference positions
        ``p`` to measured ``R p + t`` (before jitter); identity at time 0.
    nucleus_names : dict
        Nucleus id → script letter (A…J).
    params : dict
        Arguments, plus ``nucleus_ordering``: nucleus id → (phase, L1_0 variant, L1_0
        sublattice choice, L1_2 corner sublattice).
    """

    times_min: np.ndarray
    models: list
    truth_models: list
    nuclei: list
    events: list
    rigid_motions: list
    nucleus_names: dict
    params: dict = field(repr=False)

    def events_table(self) -> pd.DataFrame:
        """The true events as a table (time_index, time_min, type, parents, children)."""
        rows = [{"time_index": e.time_index, "time_min": float(self.times_min[e.time_index]),
                 "type": e.type, "parents": e.parents, "children": e.children}
                for e in self.events]
        return pd.DataFrame(rows, columns=["time_index", "time_min", "type", "parents",
                                           "children"])

    def nucleus_sizes(self) -> pd.DataFrame:
        """Atom count of each nucleus (rows) at each time (columns, minutes); 0 = absent."""
        ids = sorted({i for d in self.nuclei for i in d})
        data = [[len(d.get(i, ())) for d in self.nuclei] for i in ids]
        return pd.DataFrame(data, index=pd.Index(ids, name="nucleus_id"),
                            columns=pd.Index(self.times_min, name="time_min"))


def _capsule_mask(pos, p0, p1, r):
    seg = p1 - p0
    L2 = float(seg @ seg)
    rel = pos - p0
    t = np.clip(rel @ seg / L2, 0.0, 1.0) if L2 > 0 else np.zeros(len(pos))
    d = rel - t[:, None] * seg[None, :]
    return np.einsum("ij,ij->i", d, d) <= r * r


def _script(T: int, s: float):
    """Nucleus shapes per time: dict id -> (offset0, offset1, radius) relative to the
    entity centre, plus entity membership. ``s`` scales all lengths."""
    ax = np.array([1.0, 0.0, 0.0])
    z = np.zeros(3)
    grow = [5.0 + 1.0 * t for t in range(T)]
    fluct = [5.5 if t % 2 == 0 else 4.5 for t in range(T)]
    shapes = {k: [None] * T for k in range(10)}
    for t in range(T):
        shapes[0][t] = (z, z, grow[t] * s)                         # A
        shapes[1][t] = (z, z, fluct[t] * s)                        # B (L1_2)
        if t >= 1:
            shapes[2][t] = (z, z, (4.0 + 0.8 * (t - 1)) * s)       # C
        if t <= 1:
            shapes[3][t] = (z, z, (5.0 - 0.8 * t) * s)             # D
            shapes[4][t] = (-6.5 * s * ax, -6.5 * s * ax, (4.0 + 0.5 * t) * s)  # E
            shapes[5][t] = (6.5 * s * ax, 6.5 * s * ax, (4.0 + 0.5 * t) * s)    # F
            shapes[7][t] = (-4.5 * s * ax, 4.5 * s * ax, (4.0 + 0.5 * t) * s)   # H
        else:
            shapes[6][t] = (-6.5 * s * ax, 6.5 * s * ax, (5.0 + 0.7 * (t - 2)) * s)  # G
            shapes[8][t] = (-7.5 * s * ax, -7.5 * s * ax, (4.2 + 0.6 * (t - 2)) * s)  # I
            shapes[9][t] = (7.5 * s * ax, 7.5 * s * ax, max(3.5, 4.2 - 0.6 * (t - 2)) * s)  # J
    entity = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 4, 6: 4, 7: 5, 8: 5, 9: 5}
    bound = {0: (5.0 + T) * s, 1: 5.5 * s, 2: (4.0 + 0.8 * T) * s, 3: 5.0 * s,
             4: (6.5 + 5.0 + 0.7 * T) * s, 5: (7.5 + 4.2 + 0.6 * T) * s}
    return shapes, entity, bound


def nucleation_series(times_min: Sequence[float] = (9.0, 16.0, 26.0, 40.0), *,
                      diameter_A: float = 50.0, position_jitter_A: float = 0.2,
                      species_error_rate: float = 0.01, rotation_deg: float = 2.0,
                      translation_A: float = 1.0, size_scale: float = 1.0,
                      nucleus_order: float = 1.0, orientation="random",
                      seed=0) -> NucleationSeries:
    """The same FePt particle at several annealing times, with true nuclei and events.

    The measured models here are the truths jittered (no images). To test the whole chain on
    images, image each truth with an engine: ``benchmark_from_model(s.truth_models[t],
    engine="abtem", seed=t)`` (:func:`aet.simulate.benchmark_from_model`).

    Parameters
    ----------
    times_min : sequence of float
        Annealing times in minutes (≥ 3 times; every event type happens by time index 2).
    diameter_A : float
        Particle diameter (Å); 50 Å ≈ 4,500 atoms fits the scripted nuclei.
    position_jitter_A : float
        RMS Gaussian position error per axis of the measured models (Å; default 20 pm).
    species_error_rate : float
        Fraction of atoms whose species is flipped in each measured model (default 1 %).
    rotation_deg, translation_A : float
        RMS rotation angle (degrees, random axis) and translation per axis (Å) of the rigid
        motion of the particle at each time after the first.
    size_scale : float
        Scales all nucleus sizes and separations (1 = radii 3.5–9 Å).
    nucleus_order : float
        Fraction of the atoms inside a nucleus that take the ordered species (the others keep
        the disordered matrix's species; the same atoms at every time). 1 = perfect order.
    orientation : None, "random" or (3, 3)
        Crystal orientation of the particle in the reference frame.
    seed : int or Generator

    Returns
    -------
    NucleationSeries

    Examples
    --------
    >>> s = nucleation_series(seed=0)
    >>> [e.type for e in s.events if e.time_index == 2 and e.type in ("merge", "division")]
    ['merge', 'division']
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    times = np.asarray(times_min, dtype=np.float64).reshape(-1)
    T = len(times)
    if T < 3:
        raise ValueError(f"times_min has {T} time(s); the scripted events need at least 3 "
                         f"annealing times, e.g. (9, 16, 26)")
    if np.any(np.diff(times) <= 0):
        raise ValueError("times_min must be strictly increasing (minutes)")
    if not 0 <= species_error_rate < 1:
        raise ValueError(f"species_error_rate must be in [0, 1), got {species_error_rate!r}")
    if not 0 < nucleus_order <= 1:
        raise ValueError(f"nucleus_order must be in (0, 1], got {nucleus_order!r}")
    if position_jitter_A < 0:
        raise ValueError(f"position_jitter_A must be ≥ 0 Å, got {position_jitter_A!r}")
    base = fept_particle(diameter_A, phase="A1", seed=rng)
    pos_c = base.positions  # crystal frame, centred
    a = FEPT_A["A1"]
    parity = (np.rint(2 * (pos_c - pos_c[0]) / a) % 2).astype(int)
    sublattice = np.select(
        [~parity.any(1), (parity == [0, 1, 1]).all(1), (parity == [1, 0, 1]).all(1)],
        [0, 1, 2], 3)
    R0 = orientation_matrix(orientation, rng)
    ref = pos_c @ R0.T
    n = len(ref)
    base_species = base.species.copy()
    orders_here = rng.random(n) < nucleus_order  # atoms that order when inside a nucleus
    atom_id = np.arange(n)
    # place the scripted entities inside the particle, apart from each other
    shapes, entity, bound = _script(T, float(size_scale))
    radius = diameter_A / 2
    centres = {}
    total = sum((2 * b + 3.0) ** 3 for b in bound.values()) * math.pi / 6
    if total > 0.7 * (4 / 3) * math.pi * radius**3:  # hopeless packing: fail fast
        raise ValueError(f"cannot place the scripted nuclei in a {diameter_A} Å particle; "
                         f"increase diameter_A or lower size_scale")
    for _attempt in range(100):
        centres.clear()
        ok = True
        for e in sorted(bound, key=lambda k: -bound[k]):
            for _ in range(2000):
                c = rng.uniform(-radius, radius, 3)
                if np.linalg.norm(c) > radius - 0.55 * bound[e]:
                    continue
                if all(np.linalg.norm(c - centres[o]) >= bound[e] + bound[o] + 3.0
                       for o in centres):
                    centres[e] = c
                    break
            else:
                ok = False
                break
        if ok:
            break
    else:
        raise ValueError(f"cannot place the scripted nuclei in a {diameter_A} Å particle; "
                         f"increase diameter_A or lower size_scale")
    # random direction of the elongated entities; ordering of each nucleus
    dirs = {e: Rotation.random(random_state=rng).as_matrix() for e in bound}
    order = {}
    for k in range(10):
        phase = "L12_FePt3" if k == 1 else "L10"
        order[k] = (phase, int(rng.integers(0, 3)), int(rng.integers(0, 2)),
                    int(rng.integers(0, 4)))
    for k in (5, 6):  # E, F, G share one ordered domain; so do H, I, J
        order[k] = order[4]
    for k in (8, 9):
        order[k] = order[7]

    def ordered_species(k, idx):
        phase, var, sub, corner = order[k]
        if phase == "L10":
            return np.where((parity[idx, var] ^ sub) == 1, "Pt", "Fe")
        return np.where(sublattice[idx] == corner, "Fe", "Pt")

    truth_models, models, nuclei, motions = [], [], [], []
    for t in range(T):
        nid = np.full(n, -1)
        for k in range(10):
            sh = shapes[k][t]
            if sh is None:
                continue
            e = entity[k]
            # segment end points, along the entity's random direction
            p0 = centres[e] + dirs[e] @ sh[0]
            p1 = centres[e] + dirs[e] @ sh[1]
            inside = _capsule_mask(ref, p0, p1, sh[2]) & (nid == -1)
            nid[inside] = k
        sp = base_species.copy()
        ph = np.full(n, "A1", dtype="<U9")
        var = np.full(n, -1)
        for k in np.unique(nid[nid >= 0]):
            idx = np.flatnonzero((nid == k) & orders_here)
            sp[idx] = ordered_species(k, idx)
            idx = np.flatnonzero(nid == k)
            ph[idx] = order[k][0]
            if order[k][0] == "L10":
                var[idx] = order[k][1]
        nuclei.append({int(k): np.sort(atom_id[nid == k]) for k in np.unique(nid[nid >= 0])})
        truth_models.append(AtomicModel(
            ref, sp, arrays={"atom_id": atom_id, "nucleus_id": nid,
                             "true_order": (nid >= 0).astype(np.float64), "nucleus_phase": ph,
                             "nucleus_variant": var, "base_species": base_species},
            annealing_time_min=float(times[t]), orientation_matrix=R0.tolist()))
        # measured model: rigid motion, shuffle, jitter, species errors
        if t == 0:
            Rm, tm = np.eye(3), np.zeros(3)
        else:
            ang = np.radians(rotation_deg) * rng.normal()
            Rm = Rotation.from_rotvec(ang * Rotation.random(random_state=rng).apply(
                [0.0, 0.0, 1.0])).as_matrix()
            tm = rng.normal(0.0, translation_A, 3)
        motions.append({"rotation": Rm, "translation_A": tm})
        perm = rng.permutation(n)
        mpos = ref[perm] @ Rm.T + tm
        if position_jitter_A > 0:
            mpos = mpos + rng.normal(0.0, position_jitter_A, mpos.shape)
        msp = sp[perm].copy()
        flip = rng.random(n) < species_error_rate
        msp[flip] = np.where(msp[flip] == "Fe", "Pt", "Fe")
        models.append(AtomicModel(mpos, msp, arrays={"atom_id": atom_id[perm]},
                                  annealing_time_min=float(times[t])))
    events = _events(nuclei)
    names = {k: _NAMES[k] for k in range(10)}
    params = {"times_min": times.tolist(), "diameter_A": float(diameter_A),
              "position_jitter_A": float(position_jitter_A),
              "species_error_rate": float(species_error_rate),
              "rotation_deg": float(rotation_deg), "translation_A": float(translation_A),
              "size_scale": float(size_scale), "nucleus_order": float(nucleus_order),
              "n_atoms": n,
              "nucleus_ordering": {int(k): list(v) for k, v in order.items()}}
    return NucleationSeries(times, models, truth_models, nuclei, events, motions, names, params)


_SCRIPTED = {2: [("merge", (4, 5), (6,)), ("division", (7,), (8, 9))]}


def _events(nuclei: list[dict]) -> list[NucleationEvent]:
    """True events from the nucleus atom sets: births/dissolutions by presence, the scripted
    merge/division at time 2, growth/shrinkage by a ≥ 10 % change of a continuing nucleus."""
    out = []
    for t in range(1, len(nuclei)):
        prev, cur = nuclei[t - 1], nuclei[t]
        scripted = _SCRIPTED.get(t, [])
        involved_prev = {p for _, ps, _ in scripted for p in ps}
        involved_cur = {c for _, _, cs in scripted for c in cs}
        for typ, ps, cs in scripted:
            if all(p in prev for p in ps) and all(c in cur for c in cs):
                out.append(NucleationEvent(t, typ, ps, cs))
        for k in sorted(cur):
            if k not in prev and k not in involved_cur:
                out.append(NucleationEvent(t, "birth", (), (k,)))
        for k in sorted(prev):
            if k not in cur and k not in involved_prev:
                out.append(NucleationEvent(t, "dissolution", (k,), ()))
        for k in sorted(set(prev) & set(cur)):
            a, b = len(prev[k]), len(cur[k])
            if b >= 1.1 * a:
                out.append(NucleationEvent(t, "growth", (k,), (k,)))
            elif b <= a / 1.1:
                out.append(NucleationEvent(t, "shrinkage", (k,), (k,)))
    return out


def nearest_distinct_gap_A(model: AtomicModel, nucleus_id: np.ndarray) -> float:
    """Smallest distance (Å) between atoms of two different nuclei of one truth model."""
    pos = model.positions
    m = nucleus_id >= 0
    if m.sum() < 2:
        return math.inf
    tree = cKDTree(pos[m])
    d, j = tree.query(pos[m], k=min(40, int(m.sum())))
    lab = nucleus_id[m]
    other = lab[j] != lab[:, None]
    return float(d[other].min()) if other.any() else math.inf
