"""Synthetic 4D series for the tests of :mod:`aet.dynamics` (small, fast, fully known).

An fcc particle whose per-atom order parameter is planted by hand: each nucleus is a union of
spheres; inside a sphere of radius ``R`` around ``c`` an atom gets
``order = 0.35 + 0.55 (1 − |x − c| / R)`` (0.9 at the centre, 0.35 at the rim, i.e. above the
default threshold 0.3 everywhere inside), outside every nucleus a uniform background in
``[0, background]``. At each time the particle is measured with position jitter, species
errors and order noise, then moved by a known rigid motion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["fcc_particle", "intensity_measurement", "noise_only_series", "planted_order",
           "random_rotation", "synthetic_series"]


def fcc_particle(radius_A: float = 20.0, *, a_A: float = 3.85) -> tuple[np.ndarray, np.ndarray]:
    """A spherical fcc particle centred at 0 with L1_0-like layers (Fe/Pt alternating along z).

    Returns positions ``(n, 3)`` (x, y, z) Å and species ``(n,)``.
    """
    m = int(np.ceil(radius_A / a_A)) + 1
    g = np.arange(-m, m + 1)
    cells = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3).astype(float)
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    pos = ((cells[:, None, :] + basis[None]) * a_A).reshape(-1, 3)
    # shift off the symmetric origin slightly so the particle is not perfectly symmetric
    pos = pos[np.linalg.norm(pos - [0.3, -0.2, 0.1], axis=1) <= radius_A]
    layer = np.rint(pos[:, 2] / (a_A / 2)).astype(int)
    species = np.where(layer % 2 == 0, "Fe", "Pt")
    return pos, species


def intensity_measurement(species, positions, rng: np.random.Generator, *,
                          error_rate: float = 0.01, species_AB=("Fe", "Pt")):
    """Species measured as ``aet.run`` measures them, for a binary A–B model: each atom's
    integrated intensity drawn from its species' Gaussian class (A at 1, B at 2, the classes
    ``Δ/σ`` apart so that ``error_rate`` of the atoms fall on the wrong side), classified to
    the nearer class, with each atom's error probability from its intensity
    (:func:`aet.dynamics.scan.species_error_probability`).

    Returns ``(measured species, error probability)``, both ``(n,)``."""
    from scipy.special import ndtri

    from ..dynamics.scan import species_error_probability
    from ..model.atomicmodel import AtomicModel

    a, b = species_AB
    sp = np.asarray(species).astype(str)
    x = np.where(sp == a, 1.0, 2.0) + rng.normal(0.0, -0.5 / ndtri(error_rate), sp.size)
    m = np.where(x < 1.5, a, b)
    e, _ = species_error_probability(AtomicModel(positions, m, arrays={
        "box_intensity": x}).data, species_AB=species_AB)
    return m, e


def planted_order(positions, nuclei: Mapping[str, Sequence], *, background: float = 0.2,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Order parameter of each atom and the truth nucleus name index (-1 = none).

    ``nuclei`` maps a name to a list of ``(center_xyz_A, radius_A)`` spheres.
    """
    pos = np.asarray(positions, dtype=float)
    order = rng.uniform(0.0, background, pos.shape[0])
    truth = np.full(pos.shape[0], -1, dtype=np.int64)
    for k, spheres in enumerate(nuclei.values()):
        for c, r in spheres:
            d = np.linalg.norm(pos - np.asarray(c, float), axis=1)
            inside = d < r
            val = 0.35 + 0.55 * (1.0 - d / r)
            upd = inside & (val > order)
            order[upd] = val[upd]
            truth[inside] = k
    return order, truth


def random_rotation(angle_deg: float, rng: np.random.Generator) -> np.ndarray:
    """A rotation by ``angle_deg`` about a random axis (3×3)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    th = np.radians(angle_deg)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * K @ K


def synthetic_series(nuclei_per_time: Sequence[Mapping[str, Sequence]], *,
                     radius_A: float = 20.0, rotations_deg: Sequence[float] | None = None,
                     shifts_A: Sequence[Sequence[float]] | None = None, jitter_A: float = 0.2,
                     species_error: float = 0.01, order_noise: float = 0.03,
                     background: float = 0.2, seed: int = 0):
    """Models of one particle at several times with planted nuclei and rigid motions.

    Parameters
    ----------
    nuclei_per_time : sequence of mappings
        Per time, nucleus name → list of ``(center_xyz_A, radius_A)`` spheres (particle frame).
    radius_A : float
        Particle radius (Å).
    rotations_deg, shifts_A : optional
        Rotation angle (about a random axis) and shift (x, y, z Å) applied at each time
        (default: none at time 0, 6° and (1.2, -0.7, 0.5) Å later).
    jitter_A : float
        Gaussian position noise per coordinate (Å; 0.2 Å = 20 pm).
    species_error : float
        Fraction of atoms whose species is flipped Fe ↔ Pt at each time.
    order_noise : float
        Gaussian noise added to the planted order parameters.

    Returns
    -------
    models : list of aet.AtomicModel
        With per-atom arrays ``order`` and ``truth_nucleus`` (index into the names of that
        time's mapping, -1 none).
    truth : dict
        ``R`` (list of 3×3: particle frame → model frame), ``t`` (list of shifts Å),
        ``names`` (per time, the nucleus names in order).
    """
    from ..model.atomicmodel import AtomicModel

    rng = np.random.default_rng(seed)
    base, species = fcc_particle(radius_A)
    nt = len(nuclei_per_time)
    if rotations_deg is None:
        rotations_deg = [0.0] + [6.0] * (nt - 1)
    if shifts_A is None:
        shifts_A = [(0.0, 0.0, 0.0)] + [(1.2, -0.7, 0.5)] * (nt - 1)
    models, Rs, ts, names = [], [], [], []
    for t, nuc in enumerate(nuclei_per_time):
        order, truth = planted_order(base, nuc, background=background, rng=rng)
        order = np.clip(order + rng.normal(0.0, order_noise, order.shape), 0.0, 1.0)
        sp = species.copy()
        flip = rng.random(sp.shape[0]) < species_error
        sp[flip] = np.where(sp[flip] == "Fe", "Pt", "Fe")
        R = np.eye(3) if rotations_deg[t] == 0 else random_rotation(rotations_deg[t], rng)
        shift = np.asarray(shifts_A[t], dtype=float)
        pos = base + rng.normal(0.0, jitter_A, base.shape)
        pos = pos @ R.T + shift
        perm = rng.permutation(pos.shape[0])  # atom order carries no identity
        models.append(AtomicModel(pos[perm], sp[perm],
                                  arrays={"order": order[perm], "truth_nucleus": truth[perm]},
                                  annealing_time_min=float(t)))
        Rs.append(R)
        ts.append(shift)
        names.append(list(nuc))
    return models, {"R": Rs, "t": ts, "names": names}


def noise_only_series(series, time_index: int, *, n_times: int = 4,
                      position_jitter_A: float = 0.2, species_error_rate: float = 0.01,
                      rotation_deg: float = 6.0, translation_A: float = 2.0, seed: int = 0):
    """The true model of one time of a :func:`aet.simulate.nucleation_series`, measured again
    at ``n_times`` times: nothing changes but the measurement noise.

    Each measurement applies, as ``nucleation_series`` does, a random rigid motion (RMS angle
    ``rotation_deg`` about a random axis, translation ``translation_A`` per axis; none at the
    first time), a random atom order, Gaussian position jitter and species flips Fe ↔ Pt at
    ``species_error_rate``, all drawn afresh.

    Returns
    -------
    models : list of aet.AtomicModel
        With per-atom ``atom_id``; attrs ``annealing_time_min`` = 0, 1, 2, ...
    truth_nucleus : list of (n,) int ndarrays
        True nucleus id of each measured atom (−1 none), the same nuclei at every time.
    """
    from scipy.spatial.transform import Rotation

    from ..model.atomicmodel import AtomicModel

    rng = np.random.default_rng(seed)
    truth = series.truth_models[time_index]
    ref = np.asarray(truth.positions, dtype=float)
    sp = np.asarray(truth.species).astype(str)
    nid = np.asarray(truth["nucleus_id"])
    models, tn = [], []
    for t in range(n_times):
        if t == 0:
            R, sh = np.eye(3), np.zeros(3)
        else:
            ang = np.radians(rotation_deg) * rng.normal()
            axis = Rotation.random(random_state=rng).apply([0.0, 0.0, 1.0])
            R = Rotation.from_rotvec(ang * axis).as_matrix()
            sh = rng.normal(0.0, translation_A, 3)
        perm = rng.permutation(ref.shape[0])
        pos = ref[perm] @ R.T + sh + rng.normal(0.0, position_jitter_A, ref.shape)
        msp = sp[perm].copy()
        flip = rng.random(msp.size) < species_error_rate
        msp[flip] = np.where(msp[flip] == "Fe", "Pt", "Fe")
        models.append(AtomicModel(pos, msp, arrays={"atom_id": perm},
                                  annealing_time_min=float(t)))
        tn.append(nid[perm])
    return models, tn


def _s(c, r):
    return [(c, r)]


def event_scenario() -> tuple[list[dict], list[tuple]]:
    """Four times of a 26 Å particle with ten planted events of every type.

    Returns ``(nuclei_per_time, events)``; ``events`` holds ``(step, type, names_from,
    names_to)`` with ``step`` k meaning time k-1 → k. Nuclei are ≥ 3.8 Å apart (more than the
    neighbour cutoff) unless they are meant to touch.
    """
    E = [((0, -7, -17), 5), ((0, 7, -17), 5), ((0, 0, -17), 5)]
    D = [((-16, 6, 0), 5), ((-16, -8, 0), 5), ((-16, -1, 0), 5)]
    t0 = {"A": _s((0, 0, 0), 5), "B": _s((14, 0, 0), 4.5), "D1": _s((-16, 6, 0), 4.5),
          "D2": _s((-16, -8, 0), 4.5), "E": E, "F": _s((10, 10, 10), 5),
          "H": _s((10, -10, 10), 5)}
    t1 = {"A": _s((0, 0, 0), 6), "C": _s((0, 16, 0), 5.5), "D1": _s((-16, 6, 0), 4.5),
          "D2": _s((-16, -8, 0), 4.5), "E": E, "F": _s((10, 10, 10), 5),
          "H": _s((10, -10, 10), 5)}
    t2 = {"A": _s((0, 0, 0), 6), "C": _s((0, 16, 0), 5.5), "D": D,
          "E1": _s((0, -7, -17), 4.5), "E2": _s((0, 7, -17), 4.5), "F": _s((10, 10, 10), 5),
          "H": _s((10, -10, 10), 5), "G": _s((-10, 0, 14), 4.5)}
    t3 = {"A": _s((0, 0, 0), 7), "C": _s((0, 16, 0), 4.2), "D": D,
          "E1": _s((0, -7, -17), 4.5), "E2": _s((0, 7, -17), 4.5), "F": _s((10, 10, 10), 5),
          "G": _s((-10, 0, 14), 6)}
    events = [(1, "growth", ("A",), ("A",)), (1, "dissolution", ("B",), ()),
              (1, "birth", (), ("C",)),
              (2, "merge", ("D1", "D2"), ("D",)), (2, "division", ("E",), ("E1", "E2")),
              (2, "birth", (), ("G",)),
              (3, "growth", ("A",), ("A",)), (3, "shrinkage", ("C",), ("C",)),
              (3, "growth", ("G",), ("G",)), (3, "dissolution", ("H",), ())]
    return [t0, t1, t2, t3], events


def score_events(result, truth_nucleus: Sequence[np.ndarray], names: Sequence[Sequence[str]],
                 planted: Sequence[tuple]) -> dict:
    """Compare detected events with planted ones.

    Each detected nucleus is named after the truth nucleus
    (``truth_nucleus``: per time, per atom, index into ``names`` of that time, -1 none) that
    contributes most of its atoms (at least 25 %; otherwise it is a phantom ``?``); an
    event is recovered when a detected event of the same step and type has the same names on
    both sides. Returns ``recovered`` (fraction of planted events), ``phantoms`` (detected
    events matching no planted one) and the lists.
    """
    naming = []
    for k, (tn, nm) in enumerate(zip(truth_nucleus, names)):
        lab = result.labels[k]
        d = {}
        for j in np.unique(lab[lab >= 0]).tolist():
            v = np.asarray(tn)[lab == j]
            vals, cnt = np.unique(v[v >= 0], return_counts=True)
            # the true nucleus contributing most atoms, if it is a real part of this one
            ok = vals.size and cnt.max() >= 0.25 * v.size
            d[j] = nm[vals[cnt.argmax()]] if ok else f"?{k}.{j}"
        naming.append(d)
    detected = []
    for e in result.events.itertuples(index=False):
        s = int(e.step)
        nf = tuple(sorted(naming[s - 1][int(x)] for x in e.nuclei_from.split()))
        nt = tuple(sorted(naming[s][int(x)] for x in e.nuclei_to.split()))
        detected.append((s, e.event, nf, nt))
    want = [(s, t, tuple(sorted(a)), tuple(sorted(b))) for s, t, a, b in planted]
    hit = [w for w in want if w in detected]
    phantoms = [d for d in detected if d not in want]
    return {"recovered": len(hit) / max(len(want), 1), "phantoms": len(phantoms),
            "missed": [w for w in want if w not in detected], "phantom_events": phantoms,
            "detected": detected}


def score_series(result, series) -> dict:
    """:func:`score_events` of a tracking ``result`` against the planted events of a
    :func:`aet.simulate.nucleation_series`: each measured atom's true nucleus comes from its
    ``atom_id``; the dict also holds ``planted`` (the true events as scored) and
    ``truth_nucleus`` (per time, each measured atom's true nucleus index, -1 outside)."""
    names = [series.nucleus_names[k] for k in sorted(series.nucleus_names)]
    tn = [np.asarray(series.truth_models[t]["nucleus_id"])[np.asarray(m["atom_id"])]
          for t, m in enumerate(series.models)]
    planted = [(e.time_index, e.type, tuple(names[p] for p in e.parents),
                tuple(names[c] for c in e.children)) for e in series.events]
    return {**score_events(result, tn, [names] * len(series.models), planted),
            "planted": planted, "truth_nucleus": tn}


def evaluate_nucleation_series(series=None, *, seed: int = 0, series_kw=None, kind="L10",
                               **track_kw):
    """Track :func:`aet.simulate.nucleation_series` and score against its true events.

    Returns a dict with ``recovered`` (fraction of true events found with the right type and
    the right nuclei), ``phantoms``, ``missed``, ``phantom_events``, the registration errors
    ``rot_err_deg`` / ``shift_err_pm`` (max over times) and the ``result``.
    """
    import aet
    from aet.dynamics import rotation_angle_deg

    s = series if series is not None else aet.simulate.nucleation_series(
        seed=seed, **(series_kw or {}))
    reg = aet.NucleusTracker(s.models, times_min=s.times_min, kind=kind).register()
    res = reg.track(**track_kw)
    sc = score_series(res, s)
    planted = sc.pop("planted")
    sc.pop("truth_nucleus")
    rot, sh = [], []
    summ = reg.registration
    for t, mo in enumerate(s.rigid_motions):
        R, tt = np.asarray(mo["rotation"]), np.asarray(mo["translation_A"])
        Re, te = summ["rotation"].values[t], summ["translation_A"].values[t]
        rot.append(rotation_angle_deg(Re @ R))
        sh.append(100.0 * float(np.linalg.norm(te + Re @ tt)))
    return {**sc, "n_planted": len(planted), "rot_err_deg": max(rot), "shift_err_pm": max(sh),
            "result": res}


def score_domains(result, series, models, *, shell_A: float | None = None) -> dict:
    """Score the nuclei of a tracking ``result`` on measured ``models`` of a
    :func:`aet.simulate.domain_series` (atoms carry ``atom_id``) against its planted domains.

    A planted domain counts as *found* at a time when one detected nucleus holds at least half
    of its (measured) atoms. Its *boundary score* is the fraction of the atoms of the domain and
    of that nucleus together that are in both, or within one neighbour shell (``shell_A``,
    default 1.2 × the nearest-neighbour distance) of an atom of the other set;
    ``boundary_true`` and ``boundary_detected`` are the same fraction over the domain's atoms
    only and over the nucleus' atoms only (atoms left out, atoms added). Detected nuclei
    holding no domain's atoms for half their size are *false*.

    Returns
    -------
    dict
        ``domains`` (rows: time_index, domain, n_true, found, n_detected, boundary,
        boundary_true, boundary_detected),
        ``false_nuclei`` (count over times), ``events`` (detected: (step, type, domain names
        from, to)), ``planted_events`` and ``events_right`` (planted events found with the
        right type and domains).
    """
    from scipy.spatial import cKDTree

    rows, false_n, naming = [], 0, []
    for t, m in enumerate(models):
        truth = series.truth_models[t]
        ids = np.asarray(m["atom_id"])
        # atom_id −1: a measured atom matching no true atom (counted outside every domain)
        nid = np.where(ids >= 0, np.asarray(truth["nucleus_id"])[np.clip(ids, 0, None)], -1)
        pos = np.asarray(m.positions if hasattr(m, "positions") else m["position"].values)
        lab = result.labels[t]
        if shell_A is None:
            from aet.dynamics import nearest_neighbour_distance

            shell = 1.2 * nearest_neighbour_distance(pos)
        else:
            shell = float(shell_A)
        names = {}
        for j in np.unique(lab[lab >= 0]).tolist():
            v = nid[lab == j]
            vals, cnt = np.unique(v[v >= 0], return_counts=True)
            if vals.size and cnt.max() >= 0.5 * v.size:
                names[j] = series.nucleus_names[int(vals[cnt.argmax()])]
            else:
                names[j] = f"?{t}.{j}"
                false_n += 1
        naming.append(names)
        for k in sorted(series.nuclei[t]):
            inside = nid == k
            js, cnt = np.unique(lab[inside & (lab >= 0)], return_counts=True)
            found = bool(js.size and cnt.max() >= 0.5 * inside.sum())
            row = {"time_index": t, "domain": series.nucleus_names[k],
                   "n_true": int(inside.sum()), "found": found, "n_detected": 0,
                   "boundary": 0.0, "boundary_true": 0.0, "boundary_detected": 0.0}
            if found:
                det = lab == js[cnt.argmax()]
                union = inside | det
                ok = inside & det
                for a, b in ((inside, det), (det, inside)):
                    only = np.flatnonzero(a & ~b)
                    if only.size:
                        d, _ = cKDTree(pos[b]).query(pos[only])
                        ok[only[d <= shell]] = True
                row.update(n_detected=int(det.sum()), boundary=float(ok.sum() / union.sum()),
                           boundary_true=float(ok[inside].mean()),
                           boundary_detected=float(ok[det].mean()))
            rows.append(row)
    detected = []
    for e in result.events.itertuples(index=False):
        s = int(e.step)
        nf = tuple(sorted(naming[s - 1][int(x)] for x in str(e.nuclei_from).split()))
        nt = tuple(sorted(naming[s][int(x)] for x in str(e.nuclei_to).split()))
        detected.append((s, e.event, nf, nt))
    names = series.nucleus_names
    planted = [(e.time_index, e.type, tuple(sorted(names[p] for p in e.parents)),
                tuple(sorted(names[c] for c in e.children))) for e in series.events]
    return {"domains": pd.DataFrame(rows), "false_nuclei": false_n, "events": detected,
            "planted_events": planted,
            "events_right": sum(p in detected for p in planted),
            "events_wrong": sum(d not in planted for d in detected)}
