"""Scoring a traced/refined atomic model against the ground truth.

Procedure (:func:`score`):

1. **Rigid fit.** The predicted positions are moved onto the truth by the translation (and,
   with ``allow_rotation=True``, the rotation about the centroid; Kabsch) that minimises the
   squared distances of matched pairs, alternating matching and fitting (ICP with
   one-to-one matches) until the matches stop changing. The translation is registered on
   the close pairs: from the frames as given, the centroid difference and the translation
   that lines up the most atoms, the ICP within half the matching radius that pairs the most
   atoms wins (on a lattice, a registration shifted by a lattice vector can pair more atoms
   of a poor model within the full radius — atoms between sites — with the species all
   wrong, but far fewer within half of it); the fit is then refined within the full radius.
   The rotation starts from that fit and is kept only if it matches at least as many atoms.
2. **One-to-one matching.** Candidate pairs closer than ``radius_A`` come from a KD-tree; the
   candidate graph splits into small connected components, and each is solved exactly with
   the Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`), maximising first the
   number of matches and then minimising the summed squared distance. This scales to 10⁵ atoms.
3. **Figures.** recall = matched / n_truth, precision = matched / n_predicted, position RMSD in
   pm over matched pairs (overall √⟨‖Δr‖²⟩ and per axis x, y, z — with a single tilt axis y
   and the beam along z, z carries the missing wedge), species accuracy over matched pairs and
   the confusion matrix truth × predicted (rows truth, columns predicted, plus unmatched).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr
from ase.data import atomic_numbers
from scipy.spatial import cKDTree

from ..core.geometry import kabsch_rotation
from ..core.geometry import match_atoms as _match_atoms
from ..model.atomicmodel import AtomicModel

__all__ = ["Score", "match_atoms", "score"]

UNMATCHED = "none"


@dataclass(frozen=True)
class Score:
    """Result of :func:`score` (lengths: Å unless the name says pm).

    Attributes
    ----------
    recall, precision : float
        Matched / truth atoms, matched / predicted atoms.
    rmsd_pm : float
        √⟨‖Δr‖²⟩ over matched pairs after the rigid fit, in pm.
    rmsd_pm_xyz : tuple of float
        Per-axis RMSD (x, y, z) in pm; ``rmsd_pm² = Σ rmsd_pm_xyz²``.
    rmsd_pm_by_species : dict
        RMSD (pm) of the matched pairs grouped by the true species.
    species_accuracy : float
        Fraction of matched pairs whose species agree (NaN when nothing matched).
    confusion : xarray.DataArray
        Counts, dims ``(truth, predicted)``; coords are species plus ``"none"`` for
        unmatched atoms (missing truth atoms in column ``none``, spurious predicted atoms in
        row ``none``).
    n_truth, n_predicted, n_matched : int
    radius_A : float
        Matching radius.
    translation_A : (3,) ndarray
        Translation added to the (rotated) predicted positions.
    rotation : (3, 3) ndarray
        Rotation applied to the predicted positions about their centroid (identity unless
        ``allow_rotation``).
    matches : (n_matched, 2) ndarray
        Index pairs (predicted, truth).
    displacement_A : (n_matched, 3) ndarray
        Truth − fitted predicted position of each match.
    """

    recall: float
    precision: float
    rmsd_pm: float
    rmsd_pm_xyz: tuple[float, float, float]
    species_accuracy: float
    confusion: xr.DataArray
    n_truth: int
    n_predicted: int
    n_matched: int
    radius_A: float
    rmsd_pm_by_species: dict = field(repr=False)
    translation_A: np.ndarray = field(repr=False)
    rotation: np.ndarray = field(repr=False)
    matches: np.ndarray = field(repr=False)
    displacement_A: np.ndarray = field(repr=False)

    @property
    def rotation_deg(self) -> float:
        """Angle of the fitted rotation in degrees."""
        c = (np.trace(self.rotation) - 1) / 2
        return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))

    def to_dict(self) -> dict:
        """JSON-able summary (numbers and lists)."""
        return {
            "recall": self.recall, "precision": self.precision, "rmsd_pm": self.rmsd_pm,
            "rmsd_pm_xyz": list(self.rmsd_pm_xyz), "species_accuracy": self.species_accuracy,
            "rmsd_pm_by_species": dict(self.rmsd_pm_by_species),
            "n_truth": self.n_truth, "n_predicted": self.n_predicted,
            "n_matched": self.n_matched, "radius_A": self.radius_A,
            "translation_A": self.translation_A.tolist(), "rotation_deg": self.rotation_deg,
            "confusion": {"truth": self.confusion.coords["truth"].values.tolist(),
                          "predicted": self.confusion.coords["predicted"].values.tolist(),
                          "counts": self.confusion.values.tolist()},
        }

    def table(self) -> str:
        """A readable plain-text table."""
        x, y, z = self.rmsd_pm_xyz
        rows = [
            ("atoms (truth / predicted / matched)",
             f"{self.n_truth} / {self.n_predicted} / {self.n_matched}"),
            ("recall", f"{self.recall:.4f}"),
            ("precision", f"{self.precision:.4f}"),
            ("RMSD (pm)", f"{self.rmsd_pm:.1f}"),
            ("RMSD x / y / z (pm)", f"{x:.1f} / {y:.1f} / {z:.1f}"),
            *[(f"RMSD {sp} (pm)", f"{v:.1f}") for sp, v in self.rmsd_pm_by_species.items()],
            ("species accuracy", f"{self.species_accuracy:.4f}"),
            ("matching radius (Å)", f"{self.radius_A:g}"),
            ("rigid fit: shift (Å), rotation (°)",
             "(" + ", ".join(f"{v:+.3f}" for v in self.translation_A)
             + f"), {self.rotation_deg:.3f}"),
        ]
        w = max(len(r[0]) for r in rows)
        lines = [f"{k:<{w}}  {v}" for k, v in rows]
        cm = self.confusion
        tr = [str(s) for s in cm.coords["truth"].values]
        pr = [str(s) for s in cm.coords["predicted"].values]
        cw = max(6, *(len(s) for s in pr + tr)) + 1
        lines.append("confusion (rows truth, columns predicted):")
        lines.append(" " * cw + "".join(f"{p:>{cw}}" for p in pr))
        for i, t in enumerate(tr):
            lines.append(f"{t:>{cw}}" + "".join(f"{int(v):>{cw}}" for v in cm.values[i]))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return "<aet.simulate.Score>\n" + self.table()

    __str__ = __repr__


def _as_arrays(model, name):
    if isinstance(model, AtomicModel):
        return model.positions, model.species
    if isinstance(model, xr.Dataset):
        m = AtomicModel(model)
        return m.positions, m.species
    arr = np.asarray(model, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{name} must be an AtomicModel or an (n, 3) array of (x, y, z) Å, "
                         f"got shape {arr.shape}")
    return arr, np.full(len(arr), "X")


def match_atoms(a: np.ndarray, b: np.ndarray, radius_A: float) -> np.ndarray:
    """Optimal one-to-one matching of points ``a`` (n, 3) to ``b`` (m, 3) within ``radius_A``.

    Maximises the number of matched pairs, then minimises their summed squared distance
    (exact: Hungarian per connected component of the candidate graph). Returns
    ``(k, 2)`` index pairs (into ``a``, into ``b``), sorted by the ``a`` index.
    """
    ia, ib, _ = _match_atoms(a, b, radius_A)  # the one implementation: aet.core.geometry
    return np.stack([ia, ib], axis=1).astype(np.int64)


def _coarse_translation(a: np.ndarray, b: np.ndarray, radius_A: float, *, seed: int,
                        search_A: float = 4.5, n_anchor: int = 12,
                        n_probe: int = 1000) -> np.ndarray:
    """The translation t (‖t‖ ≲ ``search_A``) that brings the most points of ``a`` within
    ``radius_A`` of a point of ``b``: candidates are the vectors from a few anchor atoms of
    ``a`` to the atoms of ``b`` around them; each is scored on a random probe subset."""
    rng = np.random.default_rng(seed)
    tb = cKDTree(b)
    probe = a if len(a) <= n_probe else a[rng.choice(len(a), n_probe, replace=False)]
    d0, _ = tb.query(probe, k=1, distance_upper_bound=radius_A)
    best, best_n = np.zeros(3), int(np.count_nonzero(np.isfinite(d0)))  # keep 0 unless beaten
    if best_n >= 0.995 * len(probe):
        return best
    centre = a.mean(axis=0)
    # anchors near the middle of a: their neighbourhoods lie inside both models
    near = np.argsort(np.linalg.norm(a - centre, axis=1))[: max(n_anchor * 4, 1)]
    anchors = rng.choice(near, size=min(n_anchor, len(near)), replace=False)
    cands = [np.zeros(3)]
    for i in anchors:
        for j in tb.query_ball_point(a[i], search_A):
            cands.append(b[j] - a[i])
    # lattice-like candidates repeat across anchors: keep one per 0.5 Å cell (the ICP that
    # follows refines the translation)
    cands = np.array(cands)
    _, first = np.unique(np.floor(cands / 0.5).astype(np.int64), axis=0, return_index=True)
    cands = cands[np.sort(first)]
    for t in cands:
        d, _ = tb.query(probe + t, k=1, distance_upper_bound=radius_A)
        n = int(np.count_nonzero(np.isfinite(d)))
        if n > best_n:
            best, best_n = t, n
    return best


def _msd(pp, tp, centre, rot, shift, pairs) -> float:
    if len(pairs) == 0:
        return float("inf")
    a = (pp[pairs[:, 0]] - centre) @ rot.T + centre + shift
    return float(((tp[pairs[:, 1]] - a) ** 2).sum(axis=1).mean())


def _icp(pp, tp, centre, rot, shift, pairs, radius_A, allow_rotation, max_iter):
    """Alternate one-to-one matching and the rigid fit (translation, and the Kabsch rotation
    about ``centre`` when ``allow_rotation``) until the matches stop changing."""
    rot, shift = rot.copy(), shift.copy()
    for _ in range(max_iter):
        if len(pairs) == 0:
            break
        if allow_rotation and len(pairs) >= 3:
            pa = pp[pairs[:, 0]] - centre
            qb = tp[pairs[:, 1]]
            qc = qb.mean(axis=0)
            rot = _kabsch(pa - pa.mean(axis=0), qb - qc)
            shift = qc - (pa.mean(axis=0) @ rot.T) - centre
        else:
            a = (pp[pairs[:, 0]] - centre) @ rot.T + centre + shift
            shift = shift + (tp[pairs[:, 1]] - a).mean(axis=0)
        new = match_atoms((pp - centre) @ rot.T + centre + shift, tp, radius_A)
        if np.array_equal(new, pairs):
            break
        pairs = new
    return rot, shift, pairs


_kabsch = kabsch_rotation  # one definition: aet.core.geometry


def score(predicted, truth, *, radius_A: float = 1.0, fit_translation: bool = True,
          allow_rotation: bool = False, start_translation_A=None,
          max_iter: int = 50) -> Score:
    """Score a predicted atomic model against the truth.

    Parameters
    ----------
    predicted, truth : AtomicModel (or (n, 3) arrays of (x, y, z) Å; species then ``"X"``)
    radius_A : float
        Two atoms can match only when closer than this (Å), after the rigid fit. Default 1 Å
        (≈ 0.37 × the FePt nearest-neighbour distance).
    fit_translation : bool
        Fit the best translation (default). ``False`` scores the positions as given.
    allow_rotation : bool
        Also fit a rotation about the predicted centroid (Kabsch). Converges for small
        rotations (a few degrees); use it for models that may be slightly misoriented.
    start_translation_A : (3,) array, optional
        Refine the translation locally from this one (Å, added to the predicted positions)
        instead of searching for it. On a lattice, a sparse model (e.g. a subset left by a
        clean-up) can be registered one lattice vector off — with every species wrong — as
        well as correctly; score such a model from the translation found for the complete
        model of the same frame (``Score.translation_A``).
    max_iter : int
        Maximum match/fit iterations.

    Returns
    -------
    Score
        Recall, precision, RMSD (pm, overall and x/y/z), species accuracy, confusion.

    Examples
    --------
    >>> import aet, numpy as np
    >>> t = aet.AtomicModel([[0, 0, 0], [2.7, 0, 0], [0, 2.7, 0]], ["Fe", "Pt", "Pt"])
    >>> p = aet.AtomicModel(t.positions + [0.5, 0.0, 0.0], ["Fe", "Pt", "Fe"])
    >>> s = score(p, t)
    >>> s.recall, s.precision, round(s.rmsd_pm, 6), round(s.species_accuracy, 3)
    (1.0, 1.0, 0.0, 0.667)
    """
    if isinstance(radius_A, bool) or not isinstance(radius_A, (int, float, np.number)) \
            or not radius_A > 0:
        raise ValueError(f"radius_A must be a positive length in Å, got {radius_A!r}")
    radius_A = float(radius_A)
    pp, ps = _as_arrays(predicted, "predicted")
    tp, tsp = _as_arrays(truth, "truth")
    rot = np.eye(3)
    shift = np.zeros(3)
    centre = pp.mean(axis=0) if len(pp) else np.zeros(3)
    if fit_translation and len(pp) and len(tp):
        shift = tp.mean(axis=0) - pp.mean(axis=0)

    def moved():
        return (pp - centre) @ rot.T + centre + shift

    pairs = match_atoms(moved(), tp, radius_A)
    if fit_translation and len(pp) and len(tp):
        # starts: the frames as given, the centroid difference and — when not every atom
        # matched (the centroids may disagree by up to a lattice vector) — the translation
        # that lines up the most atoms among candidate pair vectors. Each is refined by ICP
        # within radius / 2 and the fit with the most such close pairs wins: on a lattice a
        # registration shifted by a lattice vector can match more atoms of a poor model
        # within the full radius (atoms between sites), but far fewer within half of it
        core = 0.5 * radius_A
        if start_translation_A is not None:
            st = np.asarray(start_translation_A, dtype=np.float64).reshape(3)
            starts = [st]
        else:
            starts = [np.zeros(3), shift]
            if len(pairs) < min(len(pp), len(tp)):
                starts.append(shift + _coarse_translation(moved(), tp, core, seed=0))
        fits = []
        for st in starts:
            p0 = match_atoms(pp + st, tp, core)
            fits.append(_icp(pp, tp, centre, np.eye(3), st, p0, core, False, max_iter))
        best = max(fits, key=lambda f: (len(f[2]), -np.linalg.norm(f[1])))
        shift = best[1]
        pairs = match_atoms(pp + shift, tp, radius_A)
        rot, shift, pairs = _icp(pp, tp, centre, np.eye(3), shift, pairs, radius_A, False,
                                 max_iter)
        if allow_rotation:
            # the rotation starts from the translation-only fit and is kept only if it
            # matches at least as many atoms (a wrong local minimum of the joint fit could
            # otherwise lock onto a lattice-shifted registration)
            r2, s2, p2 = _icp(pp, tp, centre, rot, shift, pairs, radius_A, True, max_iter)
            if len(p2) > len(pairs) or (len(p2) == len(pairs) and _msd(
                    pp, tp, centre, r2, s2, p2) <= _msd(pp, tp, centre, rot, shift, pairs)):
                rot, shift, pairs = r2, s2, p2

    def moved():
        return (pp - centre) @ rot.T + centre + shift

    n_m = len(pairs)
    if n_m:
        disp = tp[pairs[:, 1]] - moved()[pairs[:, 0]]
        msd_xyz = (disp**2).mean(axis=0)
        rmsd = float(np.sqrt(msd_xyz.sum())) * 100
        rmsd_xyz = tuple(float(v) for v in np.sqrt(msd_xyz) * 100)
        same = ps[pairs[:, 0]] == tsp[pairs[:, 1]]
        acc = float(same.mean())
    else:
        disp = np.zeros((0, 3))
        rmsd, rmsd_xyz, acc = float("nan"), (float("nan"),) * 3, float("nan")
    labels = sorted(set(ps.tolist()) | set(tsp.tolist()))
    labels.sort(key=lambda s: atomic_numbers.get(s, 0))
    by_species = {}
    if n_m:
        tsm = tsp[pairs[:, 1]]
        for sp in labels:
            sel = tsm == sp
            if sel.any():
                by_species[sp] = float(np.sqrt((disp[sel] ** 2).sum(axis=1).mean())) * 100
    labels = labels + [UNMATCHED]
    idx = {s: i for i, s in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    if n_m:
        np.add.at(cm, (np.array([idx[s] for s in tsp[pairs[:, 1]]]),
                       np.array([idx[s] for s in ps[pairs[:, 0]]])), 1)
    mt = np.ones(len(tp), bool)
    mt[pairs[:, 1]] = False
    mp = np.ones(len(pp), bool)
    mp[pairs[:, 0]] = False
    for s in tsp[mt]:
        cm[idx[s], idx[UNMATCHED]] += 1
    for s in ps[mp]:
        cm[idx[UNMATCHED], idx[s]] += 1
    conf = xr.DataArray(cm, dims=("truth", "predicted"),
                        coords={"truth": labels, "predicted": labels}, name="confusion")
    return Score(
        recall=n_m / len(tp) if len(tp) else float("nan"),
        precision=n_m / len(pp) if len(pp) else float("nan"),
        rmsd_pm=rmsd, rmsd_pm_xyz=rmsd_xyz, species_accuracy=acc, confusion=conf,
        rmsd_pm_by_species=by_species,
        n_truth=len(tp), n_predicted=len(pp), n_matched=n_m, radius_A=radius_A,
        translation_A=shift + centre - centre @ rot.T, rotation=rot, matches=pairs,
        displacement_A=disp,
    )
