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


# -- ordered domains of chosen sizes at chosen times (the two-time case of issue #16) ------

def _fcc_sublattice(pos_c, a):
    """fcc sublattice 0–3 of crystal-frame positions (basis 0 (0,0,0), 1 (0,½,½), 2 (½,0,½),
    3 (½,½,0), as :func:`aet.analysis.fit_lattice` numbers them)."""
    parity = (np.rint(2 * (pos_c - pos_c[0]) / a) % 2).astype(int)
    return np.select([~parity.any(1), (parity == [0, 1, 1]).all(1),
                      (parity == [1, 0, 1]).all(1)], [0, 1, 2], 3)


def _variant_species(phase: str, index: int, sub: np.ndarray) -> np.ndarray:
    """Species of an ordered variant on sublattices ``sub`` (tables of
    :func:`aet.analysis.variant_table`, A = Fe, B = Pt)."""
    from ..analysis import variant_table

    holdsA = variant_table(phase)[index][sub]
    return np.where(holdsA, "Fe", "Pt")


def _surface_mask(pos, d_nn):
    """Outer-layer atoms: fewer than 12 neighbours within 1.2 d_nn."""
    cnt = np.array([len(x) for x in cKDTree(pos).query_ball_point(pos, 1.2 * d_nn)]) - 1
    return cnt < 12


def domain_series(domains: Sequence[dict], *, times_min: Sequence[float] = (9.0, 16.0),
                  diameter_A: float = 32.0, hops: Sequence[int] | None = None,
                  pt_fraction: float = 0.5, orientation="random", seed=0) -> NucleationSeries:
    """One FePt particle at several times with ordered domains of chosen sizes (truth only).

    Every domain is the set of the ``n`` atoms nearest to its centre (so a growing domain
    keeps its atoms and adds a shell), ordered as one L1_0 or L1_2 variant; the rest of the
    particle is a random (A1) alloy whose species never change. Species thus change only where
    a domain appears, grows, shrinks or vanishes, and surface atoms may *hop* to an empty
    neighbouring surface site (moved, not reordered).

    Parameters
    ----------
    domains : sequence of dict
        One per domain: ``sizes`` (atoms at each time, 0 = absent), ``where``
        (``"interior"``, ``"surface"`` or a centre (x, y, z) Å in the particle frame),
        optional ``phase`` (``"L10"`` default, ``"L12_A3B"``, ``"L12_AB3"``), ``variant``
        (row of :func:`aet.analysis.variant_table`; random by default, distinct among the
        domains of one phase) and ``name``. Domains are placed so that no atom of one is a
        first or second neighbour of another (a nucleus touching another of the same variant
        is one nucleus).
    times_min : sequence of float
        Times (minutes), at least 2.
    diameter_A : float
        Particle diameter (Å; 32 Å ≈ 1,250 atoms).
    hops : sequence of int, optional
        Surface atoms that hop between time ``t−1`` and ``t`` (one entry per time; the
        first must be 0). Default none.
    pt_fraction : float
        Pt fraction of the random matrix.
    orientation : None, "random" or (3, 3)
        Crystal orientation of the particle.
    seed : int or Generator

    Returns
    -------
    NucleationSeries
        ``truth_models`` per time (positions in the particle frame, in ``atom_id`` order, with
        per-atom ``atom_id``, ``nucleus_id``, ``nucleus_variant`` (variant name, "" outside),
        ``sublattice`` (true fcc site), ``base_species`` and ``hopped``); ``models`` are the
        truth models themselves (measure them with :func:`measure_model` or image them);
        ``events`` are growth / shrinkage for any size change and birth / dissolution;
        ``params["hops"]`` lists ``(time_index, atom_id, from_xyz, to_xyz)``.

    Examples
    --------
    >>> s = domain_series([{"sizes": (124, 187)}, {"sizes": (86, 86)},
    ...                    {"sizes": (0, 30), "where": "surface"}], hops=(0, 8), seed=1)
    >>> s.nucleus_sizes().to_numpy().tolist(), [e.type for e in s.events]
    ([[124, 187], [86, 86], [0, 30]], ['growth', 'birth'])
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    times = np.asarray(times_min, dtype=np.float64).reshape(-1)
    T = times.size
    if T < 2 or np.any(np.diff(times) <= 0):
        raise ValueError(f"times_min must hold at least 2 strictly increasing times (minutes), "
                         f"got {times.tolist()}")
    hops = [0] * T if hops is None else [int(h) for h in hops]
    if len(hops) != T or hops[0] != 0 or min(hops) < 0:
        raise ValueError(f"hops must give one count per time, 0 at the first, got {hops}")
    base = fept_particle(diameter_A, phase="A1", pt_fraction=pt_fraction, seed=rng)
    pos_c = base.positions
    a = FEPT_A["A1"]
    d_nn = a / math.sqrt(2)
    sub = _fcc_sublattice(pos_c, a)
    R0 = orientation_matrix(orientation, rng)
    ref = pos_c @ R0.T
    n = len(ref)
    radius = float(np.linalg.norm(ref, axis=1).max())
    base_sp = np.asarray(base.species).astype(str)
    specs = []
    for k, d in enumerate(domains):
        sizes = [int(x) for x in d["sizes"]]
        if len(sizes) != T or min(sizes) < 0:
            raise ValueError(f"domains[{k}]['sizes'] must give one atom count ≥ 0 per time "
                             f"({T}), got {d['sizes']!r}")
        phase = str(d.get("phase", "L10"))
        specs.append({"name": d.get("name", _NAMES[k % 10]), "sizes": sizes, "phase": phase,
                      "variant": d.get("variant"), "where": d.get("where", "interior")})
    # random variants: distinct among the domains of one phase while there are enough
    for phase in {s["phase"] for s in specs}:
        nvar = 6 if phase == "L10" else 4
        free = [v for v in rng.permutation(nvar).tolist()
                if v not in [s["variant"] for s in specs if s["phase"] == phase]]
        for sp_ in specs:
            if sp_["phase"] == phase and sp_["variant"] is None:
                sp_["variant"] = int(free.pop(0)) if free else int(rng.integers(nvar))
    for sp_ in specs:
        sp_["variant"] = int(sp_["variant"])
    # centres apart by the sum of their largest radii plus half a neighbour distance; the
    # domains' atoms (nearest to the centres) at least 1.5 neighbour distances apart
    v_atom = a ** 3 / 4
    r_of = [(3 * max(s["sizes"]) * v_atom / (4 * math.pi)) ** (1 / 3) for s in specs]
    tree = cKDTree(ref)
    for _ in range(500):
        centres = []
        for s, r in zip(specs, r_of):
            w = s["where"]
            if not isinstance(w, str):
                centres.append(np.asarray(w, dtype=np.float64))
                continue
            for _ in range(500):
                u = rng.normal(size=3)
                u /= np.linalg.norm(u)
                if w == "surface":
                    c = u * (radius - 0.2 * r)
                elif w == "interior":
                    c = u * max(radius - 0.6 * r, 0.0) * rng.random() ** (1 / 3)
                else:
                    raise ValueError(f"where must be 'interior', 'surface' or (x, y, z), got {w!r}")
                if all(np.linalg.norm(c - c2) >= r + r2 + 0.5 * d_nn
                       for c2, r2 in zip(centres, r_of)):
                    centres.append(c)
                    break
            else:
                break
        if len(centres) != len(specs):
            continue
        order_by = [np.argsort(np.linalg.norm(ref - c, axis=1), kind="stable")
                    for c in centres]
        members = [[np.sort(o[:s["sizes"][t]]) for t in range(T)]
                   for o, s in zip(order_by, specs)]
        owner = np.full(n, -1)
        apart = True
        for k, m in enumerate(members):
            big = m[int(np.argmax([x.size for x in m]))]
            if (owner[big] >= 0).any():
                apart = False
            owner[big] = k
        if apart and len(specs) > 1:
            for k, m in enumerate(members):
                big = m[int(np.argmax([x.size for x in m]))]
                near = np.unique(np.concatenate(tree.query_ball_point(ref[big], 1.5 * d_nn)))
                if ((owner[near] >= 0) & (owner[near] != k)).any():
                    apart = False
                    break
        if apart:
            break
    else:
        raise ValueError(f"cannot place {len(specs)} domains apart in a {diameter_A} Å "
                         f"particle; use a larger diameter_A or smaller sizes")
    in_any = np.zeros(n, dtype=bool)
    for m in members:
        for x in m:
            in_any[x] = True
    pos_t = ref.copy()
    hopped = np.zeros(n, dtype=bool)
    hop_log = []
    truth_models, nuclei = [], []
    nb = (np.array([[0, 1, 1], [0, 1, -1], [1, 0, 1], [1, 0, -1], [1, 1, 0], [1, -1, 0]]) * a / 2)
    nb = np.concatenate([nb, -nb]) @ R0.T
    for t in range(T):
        for _ in range(hops[t]):  # move a surface atom to an empty surface site next to it
            surf = np.flatnonzero(_surface_mask(pos_t, d_nn) & ~in_any & ~hopped)
            tree = cKDTree(pos_t)
            for i in rng.permutation(surf):
                cand = pos_t[i] + nb
                dmin, _ = tree.query(cand)
                cnt = np.array([len(x) for x in tree.query_ball_point(cand, 1.2 * d_nn)])
                ok = np.flatnonzero((dmin > 0.8 * d_nn) & (cnt - 1 >= 3))
                if ok.size:
                    j = ok[rng.integers(ok.size)]
                    hop_log.append((t, int(i), pos_t[i].tolist(), cand[j].tolist()))
                    pos_t[i] = cand[j]
                    hopped[i] = True
                    break
        sp = base_sp.copy()
        nid = np.full(n, -1)
        var = np.full(n, "", dtype="<U12")
        cur = {}
        for k, (s, m) in enumerate(zip(specs, members)):
            idx = m[t]
            if idx.size == 0:
                continue
            sp[idx] = _variant_species(s["phase"], s["variant"], sub[idx])
            nid[idx] = k
            var[idx] = f"{s['phase']}:{s['variant']}"
            cur[k] = idx
        nuclei.append(cur)
        truth_models.append(AtomicModel(
            pos_t.copy(), sp, arrays={"atom_id": np.arange(n), "nucleus_id": nid,
                                      "nucleus_variant": var, "sublattice": sub,
                                      "base_species": base_sp, "hopped": hopped.copy()},
            annealing_time_min=float(times[t]), orientation_matrix=R0.tolist()))
    events = []
    for t in range(1, T):
        for k in range(len(specs)):
            a0, a1 = len(nuclei[t - 1].get(k, ())), len(nuclei[t].get(k, ()))
            typ = ("birth" if a0 == 0 and a1 > 0 else "dissolution" if a1 == 0 and a0 > 0 else
                   "growth" if a1 > a0 > 0 else "shrinkage" if 0 < a1 < a0 else None)
            if typ:
                events.append(NucleationEvent(t, typ, () if typ == "birth" else (k,),
                                              () if typ == "dissolution" else (k,)))
    names = {k: s["name"] for k, s in enumerate(specs)}
    params = {"times_min": times.tolist(), "diameter_A": float(diameter_A), "n_atoms": n,
              "domains": [{**s, "centre_A": c.tolist()} for s, c in zip(specs, centres)],
              "hops": hop_log, "pt_fraction": float(pt_fraction)}
    motions = [{"rotation": np.eye(3), "translation_A": np.zeros(3)} for _ in range(T)]
    return NucleationSeries(times, list(truth_models), truth_models, nuclei, events, motions,
                            names, params)


def two_time_case(seed=0, **kw) -> NucleationSeries:
    """The two-time case of issue #16 (truth): a 32 Å FePt particle; at the first time two
    L1_0 domains of 124 and 86 atoms in an A1 matrix; at the second the first has grown by 63
    atoms, a 30-atom L1_0 nucleus has appeared at the surface, and 8 surface atoms have hopped
    (:func:`domain_series`; ``**kw`` overrides its options)."""
    doms = [{"name": "A", "sizes": (124, 187)}, {"name": "B", "sizes": (86, 86)},
            {"name": "C", "sizes": (0, 30), "where": "surface"}]
    kw = {"times_min": (9.0, 16.0), "diameter_A": 32.0, "hops": (0, 8), **kw}
    return domain_series(doms, seed=seed, **kw)


def measure_model(truth: AtomicModel, *, seed=0, position_jitter_A: float = 0.15,
                  species_error_rate: float = 0.01, rotation_deg: float = 3.0,
                  translation_A: float = 1.0, missing_fraction: float = 0.0) -> AtomicModel:
    """A model as a measurement would give it, at the level of atoms (no images).

    The truth is moved by a random rigid motion (RMS angle ``rotation_deg`` about a random
    axis, ``translation_A`` per axis), its atoms shuffled and jittered (Gaussian,
    ``position_jitter_A`` per axis), a ``missing_fraction`` dropped, and every atom gets an
    integrated intensity drawn from its species' Gaussian class (classes ``Δ/σ`` apart with
    ``Φ(−Δ/2σ) = species_error_rate``); the species is the nearer class, as
    :func:`aet.atoms.classify` assigns it, with the same per-atom ``class_confidence`` margin
    ``(d₂ − d₁)/(d₂ + d₁)`` and ``box_intensity``. Per-atom ``atom_id`` is kept; attrs
    ``rigid_rotation`` / ``rigid_translation_A`` hold the motion (truth → measured).
    """
    from scipy.special import ndtri

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if not 0 < species_error_rate < 0.5:
        raise ValueError(f"species_error_rate must be in (0, 0.5), got {species_error_rate!r}")
    pos = np.asarray(truth.positions, dtype=np.float64)
    sp = np.asarray(truth.species).astype(str)
    ids = (np.asarray(truth["atom_id"]) if "atom_id" in truth.data else np.arange(len(sp)))
    n = sp.size
    keep = rng.random(n) >= missing_fraction
    perm = rng.permutation(np.flatnonzero(keep))
    ang = np.radians(rotation_deg) * rng.normal()
    R = Rotation.from_rotvec(ang * Rotation.random(random_state=rng).apply([0, 0, 1.0])
                             ).as_matrix()
    tr = rng.normal(0.0, translation_A, 3)
    mpos = pos[perm] @ R.T + tr + rng.normal(0.0, position_jitter_A, (perm.size, 3))
    names = sorted(set(sp.tolist()), key=lambda s: {"Fe": 26, "Pt": 78}.get(s, 0))
    k = -2.0 * float(ndtri(species_error_rate))        # Δ/σ
    mu = {s: 1.0 + i for i, s in enumerate(names)}     # class means 1, 2, ...
    sigma = 1.0 / k
    x = np.array([mu[s] for s in sp[perm]]) + rng.normal(0.0, sigma, perm.size)
    means = np.array([mu[s] for s in names])
    d = (x[:, None] - means[None, :]) ** 2
    lab = np.argmin(d, axis=1)
    ds_ = np.sort(d, axis=1)
    conf = (ds_[:, 1] - ds_[:, 0]) / (ds_[:, 1] + ds_[:, 0] + 1e-300)
    return AtomicModel(mpos, np.asarray(names)[lab],
                       arrays={"atom_id": ids[perm], "class_confidence": conf,
                               "box_intensity": x},
                       rigid_rotation=R.tolist(), rigid_translation_A=tr.tolist(),
                       **{k2: v for k2, v in truth.attrs.items()
                          if k2 == "annealing_time_min"})
