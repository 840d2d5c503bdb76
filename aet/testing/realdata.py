"""Scoring a model of a sub-area against a published model of the whole object (real data).

Real data have no ground truth; the published atomic model of the same sample is the
reference. A sub-area (sAET) reconstruction lives in its own frame, centred on its crop of
the film, so before scoring it must be *placed* in the published model's frame:

1. :func:`place_model` searches the rigid placement. Both point sets are rendered on a
   0.6 Å grid and band-passed (difference of Gaussians, 0.6 and 1.8 Å) so only atomic-scale
   structure correlates (not where the film happens to be dense); the translation is the
   peak of their FFT cross-correlation over the whole published model, tried for the
   identity and the three two-fold flips about x, y and z (the frames may differ by a
   convention's sign). The best peak (reported as a z-score over the correlation map) is
   refined by ICP: one-to-one matches within 1 Å, Kabsch rotation and translation.
2. :func:`score_region` scores inside the sub-area's box inset by ``inset_A`` from each face
   (the edges of a crop are poorly determined in both models): recall = published atoms in
   the region with an aet atom within 1 Å, precision = aet atoms in the region with a
   published atom within 1 Å (one-to-one: :func:`aet.simulate.scoring.match_atoms`, matched
   over the box plus a 2 Å margin so a pair straddling the region's face still counts), and
   the RMSD of the matched pairs.
3. :func:`rdf_first_peak` and the number density compare the structure in the same region.

Nothing here is used by the pipeline; it reads the published model, the pipeline never does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.fft as sfft
from scipy import ndimage
from scipy.spatial import cKDTree

from ..core.geometry import kabsch_rotation
from ..simulate.scoring import match_atoms

__all__ = ["Placement", "box_of", "correlation", "evaluate_against_published",
           "number_density", "open_ta_film", "place_model", "published_ta_model",
           "published_ta_reconstruction", "rdf_first_peak", "score_region"]

TA_PIXEL_A = 0.3216  # Yuan et al. 2022 (the source's tracing and refinement scripts)
_FLIPS = tuple(np.diag(d).astype(float) for d in ((1, 1, 1), (1, -1, -1), (-1, 1, -1),
                                                  (-1, -1, 1)))


# ----------------------------------------------------------------------------- data access
def open_ta_film(shared_data, area: int = 1):
    """Projections of sub-area ``area`` (1–3) of the Ta film, in aet's frame (RESIRE Euler
    triples converted, pixel 0.3216 Å)."""
    import aet

    d = Path(shared_data) / "aet_ta_film_sAET"
    return aet.open(d / f"Projections_area{area}.mat", angles=d / "angles.mat",
                    euler_convention="resire", pixel_size_A=TA_PIXEL_A)


def published_ta_model(shared_data) -> np.ndarray:
    """The published final atomic model of the Ta film: ``(8284, 3)`` positions (x, y, z) Å
    in its own frame."""
    import scipy.io as sio

    f = (Path(shared_data) / "published_models" / "aet_amorphous_yuan2022"
         / "Final_atomic_model_Ta_film.mat")
    return np.asarray(sio.loadmat(f)["model"], dtype=np.float64).T


def published_ta_reconstruction(shared_data):
    """The published RESIRE reconstruction of Ta area 1 as an :class:`aet.Volume`."""
    import aet

    d = Path(shared_data) / "aet_ta_film_sAET"
    return aet.open(d / "ReconObj_sub1_RESIRE.mat", kind="volume", voxel_size_A=TA_PIXEL_A)


def box_of(volume) -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``: the (x, y, z) Å extent of a volume's voxel centres."""
    da = getattr(volume, "data", volume)
    lo = np.array([float(da[d].values[0]) for d in ("x", "y", "z")])
    hi = np.array([float(da[d].values[-1]) for d in ("x", "y", "z")])
    return lo, hi


# ----------------------------------------------------------------------------- placement
@dataclass(frozen=True)
class Placement:
    """``reference ≈ moving @ rotation.T + translation_A``."""

    rotation: np.ndarray
    translation_A: np.ndarray
    zscore: float
    runner_up_zscore: float
    flip: tuple
    n_matched: int

    def to_reference(self, pos: np.ndarray) -> np.ndarray:
        return np.asarray(pos) @ self.rotation.T + self.translation_A

    def from_reference(self, pos: np.ndarray) -> np.ndarray:
        return (np.asarray(pos) - self.translation_A) @ self.rotation

    def to_dict(self) -> dict:
        return {"rotation": np.round(self.rotation, 5).tolist(),
                "translation_A": np.round(self.translation_A, 3).tolist(),
                "zscore": round(self.zscore, 1), "runner_up_zscore": round(
                    self.runner_up_zscore, 1), "flip": list(self.flip),
                "n_matched": self.n_matched}


def _render(pos, lo, shape, h):
    g = np.zeros(shape, np.float32)
    idx = np.round((pos - lo) / h).astype(np.int64)
    ok = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
    np.add.at(g, tuple(idx[ok].T), 1.0)
    return ndimage.gaussian_filter(g, 0.6 / h) - ndimage.gaussian_filter(g, 1.8 / h)


def place_model(moving, reference, *, grid_A: float = 0.6, radius_A: float = 1.0,
                max_iter: int = 30) -> Placement:
    """Rigid placement of ``moving`` (n, 3) Å in the frame of ``reference`` (m, 3) Å: FFT
    search of the translation for the identity and the three two-fold flips, then ICP with
    one-to-one matches within ``radius_A`` (module docstring)."""
    mv = np.asarray(moving, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if len(mv) < 4 or len(ref) < 4:
        raise ValueError(f"place_model needs ≥ 4 atoms on each side, got {len(mv)} and "
                         f"{len(ref)}")
    ext = float(np.ptp(mv, axis=0).max())
    lo = ref.min(axis=0) - 5.0
    shape = tuple(sfft.next_fast_len(int(v), real=True)
                  for v in np.ceil((ref.max(axis=0) + 5.0 + ext - lo) / grid_A))
    F = sfft.rfftn(_render(ref, lo, shape, grid_A), workers=-1)
    tries = []
    for R in _FLIPS:
        m = mv @ R.T
        mlo = m.min(axis=0)
        c = sfft.irfftn(F * np.conj(sfft.rfftn(_render(m, mlo, shape, grid_A), workers=-1)),
                        s=shape, workers=-1)
        k = np.array(np.unravel_index(int(np.argmax(c)), shape))
        z = float((c.max() - c.mean()) / c.std())
        span = np.ceil((m.max(axis=0) - mlo) / grid_A) + 1
        k = np.where(k > np.array(shape) - span, k - np.array(shape), k)  # circular wrap
        tries.append((z, R, lo + k * grid_A - mlo))
    tries.sort(key=lambda t: -t[0])
    z, R, t = tries[0]
    pairs = np.zeros((0, 2), np.int64)
    for _ in range(max_iter):
        pairs = match_atoms(mv @ R.T + t, ref, radius_A)
        if len(pairs) < 3:
            break
        a, b = mv[pairs[:, 0]], ref[pairs[:, 1]]
        ac, bc = a.mean(axis=0), b.mean(axis=0)
        R2 = kabsch_rotation(a - ac, b - bc)
        t2 = bc - ac @ R2.T
        done = np.allclose(R2, R, atol=1e-9) and np.allclose(t2, t, atol=1e-9)
        R, t = R2, t2
        if done:
            break
    flip = tuple(int(v) for v in np.sign(np.round(np.diag(R))))
    return Placement(R, t, z, tries[1][0], flip, int(len(pairs)))


# ----------------------------------------------------------------------------- scoring
def _inside(p, lo, hi):
    return np.all((p >= lo) & (p <= hi), axis=1)


def score_region(positions, reference, placement: Placement, box_lo, box_hi, *,
                 inset_A: float = 3.0, radius_A: float = 1.0) -> dict:
    """Recall, precision and RMSD of ``positions`` (aet frame) against ``reference`` (the
    published frame) inside the box ``[box_lo, box_hi]`` (aet frame, Å) inset by
    ``inset_A`` (module docstring). Also the counts and number densities of both."""
    pos = np.asarray(positions, dtype=np.float64)
    ref = placement.from_reference(reference)
    blo, bhi = np.asarray(box_lo, float), np.asarray(box_hi, float)
    lo, hi = blo + inset_A, bhi - inset_A
    near_p = _inside(pos, blo - 2, bhi + 2)
    near_r = _inside(ref, blo - 2, bhi + 2)
    P, Q = pos[near_p], ref[near_r]
    pairs = match_atoms(P, Q, radius_A)
    mp = np.zeros(len(P), bool)
    mq = np.zeros(len(Q), bool)
    mp[pairs[:, 0]] = True
    mq[pairs[:, 1]] = True
    ip, iq = _inside(P, lo, hi), _inside(Q, lo, hi)
    use = ip[pairs[:, 0]] | iq[pairs[:, 1]]
    d = P[pairs[use, 0]] - Q[pairs[use, 1]]
    vol = float(np.prod(hi - lo))
    n_p, n_q = int(ip.sum()), int(iq.sum())
    return {
        "recall": float(mq[iq].mean()) if n_q else float("nan"),
        "precision": float(mp[ip].mean()) if n_p else float("nan"),
        "rmsd_pm": float(np.sqrt((d ** 2).sum(axis=1).mean()) * 100) if len(d) else
        float("nan"),
        "rmsd_pm_xyz": [float(v) for v in np.sqrt((d ** 2).mean(axis=0)) * 100] if len(d)
        else [float("nan")] * 3,
        "n_aet": n_p, "n_published": n_q,
        "density_aet_per_A3": n_p / vol, "density_published_per_A3": n_q / vol,
        "region_lo_A": lo.tolist(), "region_hi_A": hi.tolist(),
    }


def number_density(positions, lo, hi) -> float:
    """Atoms per Å³ inside the box ``[lo, hi]``."""
    p = np.asarray(positions, dtype=np.float64)
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return float(_inside(p, lo, hi).sum() / np.prod(hi - lo))


def rdf_first_peak(positions, lo, hi, *, r_range_A=(2.0, 3.8), sigma_A: float = 0.08,
                   neighbours=None) -> dict:
    """Radial distribution around the atoms inside ``[lo, hi]`` and the position of its first
    peak.

    Pair distances from each centre atom (inside the box) to every atom of ``neighbours``
    (default: ``positions``) are smoothed with a Gaussian kernel of ``sigma_A`` and divided
    by 4πr² (g(r) up to a constant: the peak position does not need the density). The peak is
    the maximum within ``r_range_A``, refined by a parabola through it and its neighbours.

    Returns ``{"r_A": grid, "g": values, "peak_A": float, "n_centres": int}``.
    """
    p = np.asarray(positions, dtype=np.float64)
    nb = p if neighbours is None else np.asarray(neighbours, dtype=np.float64)
    c = p[_inside(p, np.asarray(lo, float), np.asarray(hi, float))]
    r = np.arange(1.5, 4.5, 0.005)
    if len(c) == 0:
        return {"r_A": r, "g": np.zeros_like(r), "peak_A": float("nan"), "n_centres": 0}
    lists = cKDTree(nb).query_ball_point(c, r[-1] + 4 * sigma_A)
    d = np.concatenate([np.linalg.norm(nb[js] - ci, axis=1) for ci, js in zip(c, lists)])
    d = d[d > 1e-6]
    g = np.zeros_like(r)
    for chunk in np.array_split(d, max(1, len(d) // 20000)):
        g += np.exp(-0.5 * ((r[:, None] - chunk[None]) / sigma_A) ** 2).sum(axis=1)
    g /= 4 * np.pi * r ** 2 * len(c) * sigma_A * np.sqrt(2 * np.pi)
    sel = np.flatnonzero((r >= r_range_A[0]) & (r <= r_range_A[1]))
    k = int(sel[np.argmax(g[sel])])
    peak = float(r[k])
    if 0 < k < len(r) - 1:
        y0, y1, y2 = g[k - 1], g[k], g[k + 1]
        den = y0 - 2 * y1 + y2
        if den < 0:
            peak += 0.5 * (y0 - y2) / den * (r[1] - r[0])
    return {"r_A": r, "g": g, "peak_A": peak, "n_centres": int(len(c))}


def correlation(a, b) -> float:
    """Pearson correlation of two arrays of the same shape."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float((a @ b) / np.sqrt((a @ a) * (b @ b)))


def evaluate_against_published(positions, box_lo, box_hi, reference, *,
                               inset_A: float = 3.0, radius_A: float = 1.0) -> dict:
    """Everything the real-data benchmark reports for one sub-area model: the searched
    placement, recall/precision/RMSD (:func:`score_region`), the number densities and the
    first RDF peaks of both models inside the same inset box."""
    pos = np.asarray(positions, dtype=np.float64)
    pl = place_model(pos, reference, radius_A=radius_A)
    sc = score_region(pos, reference, pl, box_lo, box_hi, inset_A=inset_A, radius_A=radius_A)
    lo, hi = np.asarray(sc["region_lo_A"]), np.asarray(sc["region_hi_A"])
    ref_here = pl.from_reference(reference)
    r_aet = rdf_first_peak(pos, lo, hi)
    r_pub = rdf_first_peak(ref_here, lo, hi)
    sc.update(placement=pl.to_dict(), rdf_peak_aet_A=r_aet["peak_A"],
              rdf_peak_published_A=r_pub["peak_A"],
              rdf_peak_difference_A=r_aet["peak_A"] - r_pub["peak_A"],
              density_ratio=sc["density_aet_per_A3"] / sc["density_published_per_A3"]
              if sc["density_published_per_A3"] else float("nan"))
    return sc
