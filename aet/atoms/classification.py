"""Species classification of traced atoms from the local volume around each of them.

1. A local profile around every atom: a box of ``box³`` samples (spacing ``box_step`` voxels)
   centred on the traced position, sampled with trilinear interpolation (3³/5³ voxel boxes,
   or 7³ at 1/3-voxel spacing, i.e. the 7³ box of a 3× upsampled volume). Its sum is the
   box-integrated intensity.
2. Initial labels from a 1D Gaussian mixture (or k-means) on the integrated intensities, with
   one extra lowest class for peaks that are not atoms (noise) when the data call for it
   (``non_atom="auto"``: chosen by BIC).
3. Iterative reassignment: every atom goes to the class whose average profile is closest
   (least squares), class averages are recomputed, until no label changes. The local variant
   (``local_radius_A``) averages only over the atoms within that radius, which follows slow
   intensity variations across a particle (thickness, missing wedge).
4. Per-atom confidence: the margin ``(d2 - d1) / (d2 + d1)`` between the squared distances to
   the best and the second-best class (0: a toss-up, 1: unambiguous).
5. Checks on the result (``check=True``), each reported in the result dict:

   * **heavier is brighter** — species are given to the classes in order of their mean
     box-integrated intensity, after the reassignment as well as before it, so the labels
     cannot come out inverted; ``order_fixed`` says whether the reassignment had swapped two
     classes' intensity order (it is put right).
   * **every species is supported** — the intensity ratio of each pair of neighbouring
     classes must be one an ADF reconstruction can give for their atomic numbers
     (``(Z₂/Z₁)^n`` with n in 0.5–3; a heavier atom of a neighbouring element, e.g. Au after
     Pt, allows at most a few per cent) and every class must hold atoms; otherwise a
     :class:`SpeciesMismatchError` names the species and the fix.
   * **non-atoms are not atoms** — peaks of the non-atom class that sit at atom-like sites
     (≥ 4 neighbours at 0.9–1.2 × the bond distance, none closer) are counted
     (``n_non_atoms_at_atom_sites``); when they are most of that class (a lighter species
     missing from ``species``, e.g. ``["Fe"]`` for FePt) they are kept as the lightest
     species and a :class:`SpeciesWarning` names the fix. What was dropped is always counted
     (``n_dropped``; a tracing threshold low enough to keep dim atoms gives many noise peaks,
     so a large count alone is no cause for a warning).
   * **non-atoms are not in the empty region** — where most of the peaks the
     intensity cut keeps lie outside the object's body (the volume smoothed over 2 Å,
     Otsu's threshold, grown by 1 Å), the cut did not separate noise from atoms (low dose: no
     valley between the noise peaks and the light species) and the peaks outside the body
     are the non-atoms instead; ``non_atom_fallback`` says how many and why. A body that
     fills the view (a film) has no empty region and is not checked.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import dask.array as dsa
import numpy as np
import xarray as xr
from ase.data import atomic_numbers
from scipy import sparse
from scipy.spatial import cKDTree

from ..core.meta import positions_to_indices
from ..core.schema import build_model_dataset
from ._common import check_model, check_positive, check_volume, model_positions

__all__ = ["SpeciesMismatchError", "SpeciesWarning", "classify", "gmm_1d", "kmeans_1d",
           "local_profiles"]

NON_ATOM = "X"
# intensity ∝ Z^n of an atom in an ADF reconstruction: n from 0.5 (strongly blurred, very
# non-linear detectors) to 3 (generous; Rutherford-like scattering gives n ≈ 1.7–2)
Z_EXPONENT_RANGE = (0.5, 3.0)
# and a margin on the measured ratio (noise, missing wedge, mixed columns)
RATIO_MARGIN = 1.15


class SpeciesMismatchError(ValueError):
    """The data do not support the species list given to :func:`classify`."""


class SpeciesWarning(UserWarning):
    """:func:`classify` found something about the species that needs the user's eye."""


def _check_species_list(species) -> list[str]:
    if isinstance(species, str) or not isinstance(species, Sequence) or len(species) == 0:
        raise TypeError(
            f"species must be a non-empty list of element symbols ordered light → heavy "
            f"(e.g. ['Fe', 'Pt']), got {species!r}"
        )
    sp = [str(s) for s in species]
    bad = [s for s in sp if s not in atomic_numbers or s == NON_ATOM]
    if bad:
        raise ValueError(f"species contains unknown element symbol(s) {bad}; use e.g. 'Fe', 'Pt'")
    z = [atomic_numbers[s] for s in sp]
    if any(b <= a for a, b in zip(z, z[1:])):
        raise ValueError(
            f"species must be distinct and ordered light → heavy (increasing atomic number), "
            f"got {sp}; pass e.g. {sorted(set(sp), key=atomic_numbers.get)}"
        )
    return sp


def _gather(arr, iz, iy, ix) -> np.ndarray:
    if isinstance(arr, dsa.Array):
        return np.asarray(arr.vindex[iz, iy, ix].compute(), dtype=np.float64)
    return np.asarray(arr[iz, iy, ix], dtype=np.float64)


def local_profiles(volume: xr.DataArray, positions_xyz_A: np.ndarray, *, box: int = 5,
                   box_step: float = 1.0) -> np.ndarray:
    """Trilinearly sampled ``box³`` profiles ``(n_atoms, box³)`` centred on each position.

    Offsets run from ``-(box // 2) * box_step`` to ``+(box // 2) * box_step`` voxels along
    (z, y, x); samples outside the volume take the nearest border value. A dask-backed volume
    is read only at the voxels needed (one compute).
    """
    volume, _ = check_volume(volume)
    idx = positions_to_indices(positions_xyz_A, volume)
    h = box // 2
    off = np.arange(-h, h + 1, dtype=np.float64) * box_step
    oz, oy, ox = np.meshgrid(off, off, off, indexing="ij")
    pts = idx[:, None, :] + np.stack([oz.ravel(), oy.ravel(), ox.ravel()], axis=1)[None]
    shape = np.array(volume.shape)
    pts = np.clip(pts, 0, shape - 1)
    i0 = np.minimum(np.floor(pts).astype(np.int64), shape - 2 if np.all(shape > 1) else 0)
    i0 = np.maximum(i0, 0)
    fr = pts - i0
    corners = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    iz = np.concatenate([np.minimum(i0[..., 0] + a, shape[0] - 1).ravel() for a, _, _ in corners])
    iy = np.concatenate([np.minimum(i0[..., 1] + b, shape[1] - 1).ravel() for _, b, _ in corners])
    ix = np.concatenate([np.minimum(i0[..., 2] + c, shape[2] - 1).ravel() for _, _, c in corners])
    vals = _gather(volume.data, iz, iy, ix).reshape(8, *pts.shape[:2])
    out = np.zeros(pts.shape[:2])
    for k, (a, b, c) in enumerate(corners):
        w = ((fr[..., 0] if a else 1 - fr[..., 0]) * (fr[..., 1] if b else 1 - fr[..., 1])
             * (fr[..., 2] if c else 1 - fr[..., 2]))
        out += w * vals[k]
    return out


def _kmeans_from(x, c, max_iter):
    c = np.array(c, dtype=np.float64)
    k = len(c)
    lab = np.full(len(x), -1, dtype=np.int64)
    for _ in range(max_iter):
        new = np.argmin(np.abs(x[:, None] - c[None]), axis=1)
        for j in range(k):
            if np.any(new == j):
                c[j] = x[new == j].mean()
        if np.array_equal(new, lab):
            break
        lab = new
    return lab, c, float(((x - c[lab]) ** 2).sum())


def _starts(x, k):
    """Starting centres: even over the robust range, at quantiles, and geometrically spaced
    from the bottom (dim species next to a large population of weak noise peaks)."""
    lo, hi = np.quantile(x, [0.005, 0.995])
    if k == 1:
        return [np.array([x.mean()])]
    out = [np.linspace(lo, hi, k), np.quantile(x, (np.arange(k) + 0.5) / k)]
    out.append(lo + (hi - lo) * np.geomspace(0.01, 1.0, k))
    out.append(lo + (hi - lo) * np.r_[0.0, np.geomspace(0.05, 1.0, k - 1)])
    return out


def kmeans_1d(x: np.ndarray, k: int, *, max_iter: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's k-means on 1D data; returns (labels sorted by centre, centres ascending).

    Several starts (even over the robust range, quantiles, geometric from the bottom) are
    run and the lowest within-class sum of squares kept: a large population of weak noise
    peaks must not pull every start into it.
    """
    x = np.asarray(x, dtype=np.float64)
    best = None
    for c0 in _starts(x, k):
        lab, c, sse = _kmeans_from(x, c0, max_iter)
        if best is None or sse < best[2] - 1e-12 * abs(best[2]):
            best = (lab, c, sse)
    lab, c, _ = best
    order = np.argsort(c)
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    return rank[lab], c[order]


def _gmm_from(x, lab, mu, k, max_iter, tol):
    n = len(x)
    var_floor = 1e-6 * max(np.var(x), 1e-300)
    sd = np.array([max(np.std(x[lab == j]) if np.sum(lab == j) > 1 else np.std(x) / k,
                       np.sqrt(var_floor)) for j in range(k)])
    w = np.array([max(np.mean(lab == j), 1.0 / n) for j in range(k)])
    w /= w.sum()
    mu = np.array(mu, dtype=np.float64)
    prev = -np.inf
    ll = -np.inf
    resp = np.ones((n, k)) / k
    for _ in range(max_iter):
        logp = (-0.5 * ((x[:, None] - mu[None]) / sd[None]) ** 2 - np.log(sd[None])
                + np.log(w[None]) - 0.5 * np.log(2 * np.pi))
        m = logp.max(axis=1, keepdims=True)
        ll_i = m[:, 0] + np.log(np.exp(logp - m).sum(axis=1))
        resp = np.exp(logp - ll_i[:, None])
        nk = resp.sum(axis=0) + 1e-300
        w = np.maximum(nk / n, 1e-300)
        mu = (resp * x[:, None]).sum(0) / nk
        sd = np.sqrt(np.maximum((resp * (x[:, None] - mu[None]) ** 2).sum(0) / nk, var_floor))
        ll = ll_i.sum()
        if ll - prev < tol * abs(ll):
            break
        prev = ll
    return resp, mu, sd, w, float(ll)


def gmm_1d(x: np.ndarray, k: int, *, max_iter: int = 500, tol: float = 1e-10):
    """EM fit of a 1D Gaussian mixture, started from each k-means start (see
    :func:`kmeans_1d`), the highest likelihood kept. Returns ``(labels, means, sds, weights,
    bic)`` with components sorted by mean."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    best = None
    for c0 in _starts(x, k):
        lab, c, _ = _kmeans_from(x, c0, 300)
        fit = _gmm_from(x, lab, c, k, max_iter, tol)
        if best is None or fit[4] > best[4] + 1e-9 * abs(best[4]):
            best = fit
    resp, mu, sd, w, ll = best
    order = np.argsort(mu)
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    bic = (3 * k - 1) * np.log(n) - 2 * ll
    return rank[np.argmax(resp, axis=1)], mu[order], sd[order], w[order], float(bic)


def _class_means(prof, lab, n_cls, prev=None):
    means = np.zeros((n_cls, prof.shape[1]))
    for c in range(n_cls):
        sel = lab == c
        if np.any(sel):
            means[c] = prof[sel].mean(axis=0)
        elif prev is not None:
            means[c] = prev[c]
        else:
            means[c] = np.nan
    return means


def _sqdist(prof, means):
    d = ((prof[:, None, :] - means[None]) ** 2).sum(axis=2)
    return np.where(np.isnan(d), np.inf, d)


def _neighbour_matrix(pos: np.ndarray, radius: float):
    n = len(pos)
    pairs = cKDTree(pos).query_pairs(radius, output_type="ndarray")
    rows = np.r_[pairs[:, 0], pairs[:, 1], np.arange(n)]
    cols = np.r_[pairs[:, 1], pairs[:, 0], np.arange(n)]
    return sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))


def _reassign(prof, lab, k, max_iter, neigh=None):
    """Reassign every atom to the closest class-average profile (global, or averaged over
    its neighbourhood ``neigh``) until no label changes; returns (labels, d, iterations,
    converged)."""
    n = len(prof)
    means = _class_means(prof, lab, k)
    d = _sqdist(prof, means)
    converged = False
    n_done = 0
    for it in range(1, max_iter + 1):
        n_done = it
        if neigh is None:
            d = _sqdist(prof, means)
        else:
            d = np.empty((n, k))
            for c in range(k):
                onehot = (lab == c).astype(np.float64)
                cnt = neigh @ onehot
                loc = (neigh @ (prof * onehot[:, None])) / np.maximum(cnt, 1)[:, None]
                loc[cnt == 0] = means[c]
                d[:, c] = ((prof - loc) ** 2).sum(axis=1)
            d = np.where(np.isnan(d), np.inf, d)
        new = np.argmin(d, axis=1)
        if np.array_equal(new, lab):
            converged = True
            break
        lab = new
        means = _class_means(prof, lab, k, prev=means)
    return lab, d, n_done, converged


def _non_atom_candidates(x: np.ndarray, n_species: int = 1) -> tuple[list[float], list[float]]:
    """Candidate intensities below which a peak is not an atom, most likely first: a split of
    ``log(x)`` into two classes (non-atoms and all atoms; values below 10⁻³ of the maximum are
    clipped there), then the least dense point of ``log(x)`` (Gaussian kernel density, Scott's
    bandwidth) between the two lowest class centres. In log the noise peaks are one compact
    group and the atoms one more when the species are alike in Z (Pt/Au); species far apart in
    Z (Fe/Pt, 6–8× in intensity) are a group each, and a two-class split then puts the light
    species with the noise — the second candidate, from an ``n_species + 1`` class split, is
    the valley below the lightest species there; then every clear minimum of the log density
    (:func:`_log_density`), the clearest first. :func:`classify` tries them clearest valley
    first (:func:`_valley_prominence`) and keeps the first whose atoms split into classes the
    species' atomic numbers allow. A valley does not depend on how many of each there are.

    Returns ``(valleys, ends)``: with several species, a class split whose density is lowest
    at a class centre (no valley between the two classes) goes to ``ends``, tried last."""
    from scipy.stats import gaussian_kde

    top = float(np.max(x))
    if not top > 0:
        return [0.0], []
    lx = np.log(np.maximum(x, 1e-3 * top))
    ks = [2] + ([n_species + 1] if n_species > 1 and len(lx) >= 3 * (n_species + 1) else [])
    cuts, last = [], []
    for k in ks:
        lab, mu, sd, *_ = gmm_1d(lx, k)
        if not mu[1] > mu[0]:
            cuts.append(float(np.exp(0.5 * (mu[0] + mu[1]))))
            continue
        g = np.linspace(mu[0], mu[1], 400)
        if np.ptp(lx) == 0:
            cuts.append(float(np.exp(g[200])))
            continue
        # bandwidth: the narrower of the two lowest groups' own Scott bandwidths (one for all
        # data is set by the distance between the groups and would smooth the gap away)
        bw = min(sd[c] * max(np.count_nonzero(lab == c), 1) ** -0.2 for c in (0, 1))
        dens = gaussian_kde(lx, bw_method=max(bw, 1e-6) / max(np.std(lx), 1e-12))(g)
        i = int(np.argmin(dens))
        if 0 < i < len(g) - 1:
            cuts.append(float(np.exp(g[i])))
        elif n_species == 1:  # no Z test to try the others against: the split stands
            cuts.append(float(np.exp(g[i])))
        else:
            # the density still falls at a class centre: no valley between the two (abTEM
            # 3 nm FePt, a second acquisition: the upper class centre sat on the falling
            # tail of a broad Fe class beside the empty Fe/Pt gap; the point there scored
            # clearer than the true noise/Fe valley, passed the Z check with 22 'Fe' and
            # dropped 605 of 627 Fe atoms): tried after every valley
            last.append(float(np.exp(g[i])))
    # then every clear valley of the log density, the deepest first (a field of thousands of
    # noise peaks spans decades in log: the class splits above can fall inside it)
    if len(lx) >= 20 and (gd := _log_density(lx)) is not None:
        g, dens = gd
        mins = np.flatnonzero((dens[1:-1] < dens[:-2]) & (dens[1:-1] <= dens[2:])) + 1
        prom = np.array([min(dens[:m].max(), dens[m + 1:].max()) / max(dens[m], 1e-300)
                         for m in mins])
        for m in mins[np.argsort(-prom)][prom[np.argsort(-prom)] >= 2.0]:
            cuts.append(float(np.exp(g[m])))
    return cuts, last


def _log_density(lx: np.ndarray):
    """``(grid, density)`` of log intensities ``lx`` (Gaussian kernel density with half
    Silverman's bandwidth, 512 points over the range), or None when they are all equal."""
    from scipy.stats import gaussian_kde

    if np.ptp(lx) == 0:
        return None
    q25, q75 = np.percentile(lx, [25, 75])
    h = 0.5 * 0.9 * min(np.std(lx), (q75 - q25) / 1.34 or np.std(lx)) * len(lx) ** -0.2
    g = np.linspace(lx.min(), lx.max(), 512)
    return g, gaussian_kde(lx, bw_method=max(h, 1e-6) / max(np.std(lx), 1e-12))(g)


def _valley_prominence(x: np.ndarray, cuts: Sequence[float]) -> np.ndarray:
    """How clear a valley of the log-intensity density each cut sits in: the lower of the
    highest densities on either side over the density at the cut (Gaussian kernel density,
    half Silverman's bandwidth). A cut inside one population scores about 1; the gap between
    the noise peaks and the lightest species scores ≫ 1 (abTEM 3 nm FePt with projection
    matching: a two-class split fell inside 3,568 noise peaks, the valley below Fe is
    clear)."""
    top = float(np.max(x))
    out = np.ones(len(cuts))
    if not top > 0 or len(x) < 5:
        return out
    gd = _log_density(np.log(np.maximum(x, 1e-3 * top)))
    if gd is None:
        return out
    g, dens = gd
    for i, c in enumerate(cuts):
        if not c > 0:
            continue
        m = int(np.clip(np.searchsorted(g, np.log(c)), 1, len(g) - 2))
        out[i] = min(dens[:m].max(), dens[m:].max()) / max(dens[m], 1e-300)
    return out


def _bayes_cut(x: np.ndarray, cut: float, n_species: int) -> float:
    """Where a peak below the lightest species becomes more likely a non-atom than an atom of
    it: a two-class Gaussian mixture of ``log(x)`` over the peaks dimmer than the next
    species (the non-atoms and the lightest species), its equal-posterior point. The noise
    tail and a broad light class overlap; :func:`classify` takes the lower of this and the
    valley (the clean-up and the refinement remove a kept noise peak, a dropped atom is
    lost: measured on a 63-atom FePt particle, the valley at 55 dropped 12 of 29 Fe, this
    point at 35 one, keeping 10 of 97 noise peaks)."""
    top = float(np.max(x))
    if not top > 0:
        return cut
    lx = np.log(np.maximum(x, 1e-3 * top))
    above = x >= cut
    upper = np.inf
    if n_species > 1 and np.count_nonzero(above) >= n_species:
        lab = gmm_1d(x[above], n_species)[0]
        if np.any(lab >= 1):
            upper = float(np.min(x[above][lab >= 1]))
    v = lx[x < upper]
    if len(v) < 6 or np.ptp(v) == 0:
        return cut
    _, mu, sd, w, _ = gmm_1d(v, 2)
    # the two components must be the non-atoms and the light species: one centred on each
    # side of the valley (a field of noise peaks spanning decades splits into two of its own)
    lc = np.log(cut)
    if not (mu[0] < lc < mu[1] and np.all(sd > 0)):
        return cut
    g = np.linspace(mu[0], mu[1], 400)
    f0 = w[0] * np.exp(-0.5 * ((g - mu[0]) / sd[0]) ** 2) / sd[0]
    f1 = w[1] * np.exp(-0.5 * ((g - mu[1]) / sd[1]) ** 2) / sd[1]
    i = np.flatnonzero(f1 >= f0)
    return float(np.exp(g[i[0]])) if len(i) else cut


# the empty-region fallback (no valley): the particle's body is the volume smoothed at about an
# interatomic distance, above Otsu's threshold between it and the vacuum; a peak whose centre
# lies within SUPPORT_MARGIN_A of that body is in the particle (surface atoms sit near the
# half-density surface of the smoothed body: on abTEM 3 nm FePt at 2e4 e/Å², margins 0 / 1 /
# 2 Å kept 1047 / 1247 / 1444 of 8656 peaks, 764 / 815 / 823 of them atoms)
SUPPORT_SMOOTH_A = 2.0
SUPPORT_MARGIN_A = 1.0
# a body that fills more than this fraction of the volume leaves no empty region to speak of
# (a film that fills the view)
SUPPORT_MAX_FRACTION = 0.7
# the largest fraction of the peaks kept by an intensity cut that may lie outside the body
# before the cut is judged not to separate noise from atoms: most of them. Surface atoms
# beyond the grown body are 1 % of the atoms on the case above; a true valley can still keep
# a few sparse noise peaks in the vacuum, which the clean-up removes (the small FePt demo:
# 31 of 252, 12 %; replacing that cut by the body kept 12 more dim peaks inside it, and the
# clean-up's precision fell from 0.99 to 0.85), where the failed cut kept 85 %
BODY_OUTSIDE_MAX = 0.5


def _in_support(volume: xr.DataArray, pos: np.ndarray, *, smooth_A: float = SUPPORT_SMOOTH_A,
                margin_A: float = SUPPORT_MARGIN_A) -> tuple[np.ndarray, dict]:
    """Which peaks lie in the object's body: the volume Gaussian-smoothed (``smooth_A``, Å,
    about an interatomic distance, so the atoms merge into one body and the noise averages
    out), thresholded by Otsu's method between the body and the empty region, grown by
    ``margin_A``. Returns ``(inside, info)``; a dask-backed volume is smoothed chunk by chunk
    (one pass for the histogram, one for the peaks)."""
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    vs = float(volume.attrs.get("voxel_size_A") or abs(float(volume.x[1] - volume.x[0])))
    sig = smooth_A / vs
    r = int(round(margin_A / vs))
    zz, yy, xx = np.mgrid[-r:r + 1, -r:r + 1, -r:r + 1]
    ball = zz ** 2 + yy ** 2 + xx ** 2 <= r * r

    def smooth(a):
        return ndimage.gaussian_filter(np.asarray(a, dtype=np.float32), sig, mode="nearest")

    arr = volume.data
    if isinstance(arr, dsa.Array):
        sm = arr.astype(np.float32).map_overlap(smooth, depth=int(np.ceil(4 * sig)) + 1,
                                                boundary="nearest")
        lo, hi = dsa.compute(sm.min(), sm.max())
        counts, edges = dsa.histogram(sm, bins=256, range=(float(lo), float(hi)))
        counts = np.asarray(counts.compute())
        t = float(threshold_otsu(hist=(counts, 0.5 * (edges[1:] + edges[:-1]))))
        frac = float(counts[0.5 * (edges[1:] + edges[:-1]) >= t].sum() / max(counts.sum(), 1))
        body = sm >= t
        if r > 0:
            body = body.map_overlap(lambda b: ndimage.binary_dilation(b, structure=ball),
                                    depth=r + 1, boundary="none")
    else:
        sm = smooth(arr)
        t = float(threshold_otsu(sm))
        body = sm >= t
        frac = float(np.mean(body))
        if r > 0:
            body = ndimage.binary_dilation(body, structure=ball)
    idx = np.clip(np.rint(positions_to_indices(pos, volume)).astype(np.int64), 0,
                  np.array(volume.shape) - 1)
    inside = _gather(body, idx[:, 0], idx[:, 1], idx[:, 2]) > 0.5
    return inside, {"smooth_A": smooth_A, "margin_A": margin_A, "threshold": t,
                    "body_fraction": round(frac, 4)}


def _body_check(volume, pos, atom, cut, accepted, n_sp):
    """Non-atoms are not in the empty region: where more than :data:`BODY_OUTSIDE_MAX` (most)
    of the peaks kept as atoms by the intensity cut lie outside the object's body
    (:func:`_in_support`), the cut did not separate the noise from the atoms, and the peaks
    outside the body are the non-atoms instead.

    At low dose the noise peaks of a reconstruction (thousands, all over the volume) overlap
    the light species in intensity and no valley separates them; where they are is what
    tells them apart (abTEM 3 nm FePt, 2×10⁴ e/Å², seed 1: 7,832 of 8,656 traced peaks are
    noise; a dip in the density below the two dimmest peaks passed for the valley and every
    other peak was kept, recall 0.714 / precision 0.095). Where the cut sits in a true
    valley, what it keeps outside the body is a few surface atoms and sparse noise peaks that
    the clean-up removes, and nothing changes. A body that fills the view (a film) leaves no
    empty region: no check.

    Returns ``(atom, account)``: the atom mask and what the check found (the result's
    ``non_atom_fallback``: None where the intensity cut stands)."""
    inside, info = _in_support(volume, pos)
    n_kept = int(np.count_nonzero(atom))
    n_out = int(np.count_nonzero(atom & ~inside))
    n_in = int(np.count_nonzero(inside))
    if (info["body_fraction"] > SUPPORT_MAX_FRACTION or n_out <= BODY_OUTSIDE_MAX * n_kept
            or n_in < n_sp + 1):
        return atom, None
    why = (f"{n_out} of the {n_kept} peaks above the intensity cut {cut:.4g} lie outside the "
           f"object's body, in the empty region: the cut "
           + ("was the clearest of the candidates, but " if accepted else "")
           + "did not separate the noise peaks from the atoms (no valley in the "
           "log-intensity density between them)")
    # the body replaces the intensity cut: that cut is not known to separate anything (a dim
    # atom below it inside the body is kept; the clean-up and the refinement judge it)
    fb = {"method": "outside the object's body", "reason": why, "intensity_cut": cut,
          "n_above_intensity_cut": n_kept, "n_outside_body": len(pos) - n_in,
          "n_dropped": len(pos) - n_in, **info}
    return inside, fb


def _rank_by_brightness(feat, lab, k):
    """Relabel classes so that class index grows with mean intensity (empty classes keep
    their place at the end of their neighbours); returns (labels, was_out_of_order)."""
    means = np.array([feat[lab == c].mean() if np.any(lab == c) else np.nan
                      for c in range(k)])
    filled = np.flatnonzero(np.isfinite(means))
    order = filled[np.argsort(means[filled], kind="stable")]
    if np.array_equal(order, filled):
        return lab, False
    remap = np.arange(k)
    remap[filled] = order
    inv = np.empty(k, dtype=np.int64)
    inv[remap] = np.arange(k)
    return inv[lab], True


def _atom_like_sites(pos, lab, k_first_species):
    """Boolean per peak: at least 4 of the peaks classed as species (``lab >=
    k_first_species``) within 0.9–1.2 × the bond distance and none closer than 0.8 × it. The
    bond distance is their median nearest-neighbour distance. Counting only atoms keeps a
    dense field of noise peaks (a low tracing threshold in a noisy volume) from looking like a
    lattice; the closeness test rejects the centre of a cage — an interstitial gap, whose
    neighbours are nearer (0.61–0.87 × in fcc, bcc and simple cubic lattices)."""
    n = len(pos)
    atoms = lab >= k_first_species
    if n < 5 or np.count_nonzero(atoms) < 5:
        return np.zeros(n, dtype=bool), float("nan")
    tree_a = cKDTree(pos[atoms])
    d, _ = tree_a.query(pos[atoms], k=2)
    bond = float(np.median(d[:, 1]))
    dd, _ = tree_a.query(pos, k=min(14, int(np.count_nonzero(atoms))))
    dd = np.where(dd < 1e-9, np.inf, dd)  # an atom itself
    count = np.sum((dd >= 0.9 * bond) & (dd <= 1.2 * bond), axis=1)
    close = np.any(dd < 0.8 * bond, axis=1)
    return (count >= 4) & ~close, bond


def _ratio_check(sp, means, counts, n):
    """Problems (text) with the class intensities of the species ``sp`` (light → heavy):
    empty classes and neighbour ratios an ADF reconstruction cannot give."""
    problems = []
    for s_, c in zip(sp, counts):
        if c < max(2, int(0.002 * n)):
            problems.append(f"no atoms were found for {s_!r} ({c} peak(s))")
    lo_n, hi_n = Z_EXPONENT_RANGE
    for (s1, m1), (s2, m2) in zip(zip(sp, means), zip(sp[1:], means[1:])):
        if not (np.isfinite(m1) and np.isfinite(m2)) or m1 <= 0:
            continue
        zr = atomic_numbers[s2] / atomic_numbers[s1]
        lo, hi = zr ** lo_n / RATIO_MARGIN, zr ** hi_n * RATIO_MARGIN
        r = m2 / m1
        if not lo <= r <= hi:
            problems.append(
                f"the classes given to {s1!r} (Z {atomic_numbers[s1]}) and {s2!r} "
                f"(Z {atomic_numbers[s2]}) differ {r:.2f}× in intensity, where these elements "
                f"allow {lo:.2f}–{hi:.2f}×")
    return problems


def classify(model: xr.Dataset, species: Sequence[str], *, volume: xr.DataArray | None = None,
             box: int = 5, box_step: float = 1.0, method: str = "gmm",
             non_atom: bool | str = "auto", local_radius_A: float | str | None = "auto",
             max_iter: int = 100, drop_non_atoms: bool = True, check: bool = True):
    """Assign a species (light → heavy) to every traced atom.

    The local variant (``local_radius_A``) first divides each profile by the mean integrated
    intensity of the atoms within the radius (so a slow intensity gradient across the object
    — thickness, the missing wedge — does not shift the classes), then compares each atom
    with the class averages of its own neighbourhood.

    Parameters
    ----------
    model : xarray.Dataset
        Atomic-model dataset (positions in Å, (x, y, z)), e.g. from :func:`aet.atoms.trace`.
    species : list of str
        Element symbols ordered light → heavy (increasing atomic number); any number.
    volume : xarray.DataArray, optional
        The ``(z, y, x)`` volume the atoms were traced in (Å coordinates centred at
        ``n // 2``). Without it only the model's ``intensity`` is split (no profiles).
    box : int
        Profile box edge in samples (odd, ≥ 1): 3 → 3³, 5 → 5³ (default), 7 with
        ``box_step=1/3`` → the 7³ box of a 3× upsampled volume.
    box_step : float
        Sample spacing of the box in voxels (default 1).
    method : {"gmm", "kmeans"}
        Initial split of the box-integrated intensities.
    non_atom : bool or "auto"
        Add a lowest-intensity class for peaks that are not atoms. ``"auto"`` (default)
        keeps it when a Gaussian mixture with it has the lower BIC.
    local_radius_A : float, "auto" or None
        Local re-classification after the global one: profiles divided by the mean intensity
        of the atoms within this radius (Å), compared with the class averages of those atoms
        only — it follows what varies across a particle (thickness, the missing wedge's
        streaks, surface vs core). ``"auto"`` (default): 2.5 × the atoms' median
        nearest-neighbour distance when there are ≥ 30 atoms (on an independently simulated
        3 nm FePt particle, species accuracy 96.9 % → 98.8 %); None: global only.
    max_iter : int
        Cap on reassignment sweeps (stops earlier when no label changes).
    drop_non_atoms : bool
        Remove non-atom peaks from the model (default); else keep them with species ``"X"``.
    check : bool
        Check the result (module docstring, step 5): raise :class:`SpeciesMismatchError`
        when the data do not support a species, keep non-atom peaks at atom-like sites when
        they are most of their class, drop the peaks in the empty region around the object
        where the intensity cut kept them, and warn (:class:`SpeciesWarning`) about what
        needs the user's eye. False: none of this (the order by brightness always holds).

    Returns
    -------
    (xarray.Dataset, dict)
        The model with ``species``, ``class_confidence`` (margin in [0, 1]) and
        ``box_intensity``; the dict has ``counts`` (per class, non-atoms ``"X"`` included,
        before dropping), ``n_non_atoms``, ``n_dropped``, ``n_non_atoms_at_atom_sites``,
        ``n_kept_at_atom_sites``, ``class_means`` (mean box intensity per class, light →
        heavy), ``order_fixed``, ``non_atom_cut``, ``non_atom_fallback`` (None, or what
        the empty-region check dropped instead of the cut and why: ``reason``,
        ``n_dropped``, ``n_outside_body``, ``body_fraction``...), ``warnings`` (text of
        every warning issued),
        ``n_iterations``, ``converged`` and the class means of the initial split.

    Raises
    ------
    SpeciesMismatchError
        (``check=True``) a species' class is empty or two neighbouring classes differ in
        intensity by a ratio their atomic numbers cannot give — e.g. ``["Fe", "Pt", "Au"]``
        for an FePt particle, whose noise, Fe and Pt peaks would otherwise be called Fe, Pt
        and Au. The message names the species and the fix.
    """
    ds = check_model(model)
    sp = _check_species_list(species)
    if method not in ("gmm", "kmeans"):
        raise ValueError(f"method must be 'gmm' or 'kmeans', got {method!r}")
    if non_atom not in (True, False, "auto"):
        raise ValueError(f"non_atom must be True, False or 'auto', got {non_atom!r}")
    box = check_positive("box", box, integer=True)
    if box % 2 == 0:
        raise ValueError(f"box must be odd (3, 5, 7...), got {box}")
    check_positive("box_step", box_step)
    max_iter = check_positive("max_iter", max_iter, integer=True)
    pos = model_positions(ds)
    n = len(pos)
    n_sp = len(sp)
    if n < n_sp + 1:
        raise ValueError(
            f"model has {n} atoms; classifying into {n_sp} species needs more atoms than species"
        )
    if volume is not None:
        prof = local_profiles(volume, pos, box=box, box_step=box_step)
        feat = prof.sum(axis=1)
    else:
        if "intensity" not in ds:
            raise ValueError("pass volume= (the traced volume) or a model with 'intensity'")
        feat = np.asarray(ds["intensity"].values, dtype=np.float64)
        prof = feat[:, None]
    feat_raw = feat.copy()

    # -- 1. non-atoms: whether there are any from a split of the raw intensities (BIC), where
    # they end at the valley of the log intensities between them and the atoms — a
    # nearest-mean rule hands the dim tail of a broad atom class to the non-atom class, and
    # noise peaks (thousands at a low tracing threshold) are neither Gaussian nor few
    use_non = bool(non_atom) if non_atom != "auto" else False
    if non_atom == "auto" and n >= 3 * (n_sp + 1):
        _, _, _, _, bic_a = gmm_1d(feat, n_sp)
        _, mu_b, _, _, bic_b = gmm_1d(feat, n_sp + 1)
        # the extra class must be a genuine low-intensity population
        use_non = bic_b < bic_a - 10 and mu_b[0] < 0.6 * mu_b[1]
    first = int(use_non)
    k = n_sp + first
    if method == "gmm":
        lab, mu, sd, _, _ = gmm_1d(feat, k)
    else:
        lab, mu = kmeans_1d(feat, k)
        sd = np.array([feat[lab == c].std() if np.count_nonzero(lab == c) > 1 else np.nan
                       for c in range(k)])
    init_means = mu.tolist()
    atom = np.ones(n, dtype=bool)
    cut = None
    fallback = None
    messages: list[str] = []
    if use_non:
        # the valley between the non-atoms and all atoms (a split into non-atoms and the
        # lightest species alone lets the noise tail pull that class down)
        valleys, ends = _non_atom_candidates(feat, n_sp)
        cuts = valleys + ends
        cut = cuts[0]
        # the clearest valley first: several candidates can leave atoms that split as Z
        # allows (a cut inside the noise keeps noise + Fe + Pt, which splits 'Fe'/'Pt' too),
        # then the splits whose density still fell at a class centre (a few peaks: the
        # noise and a light species overlap without a valley)
        # (one species: no Z test tells the candidates apart; the two-class split stands)
        if n_sp > 1:
            order = [valleys[i] for i in np.argsort(-_valley_prominence(feat, valleys),
                                                    kind="stable")] + ends
        else:
            order = cuts
        accepted = False
        for c_ in order:
            a_ = feat >= c_
            if np.count_nonzero(a_) < n_sp + 1:
                continue
            sub = feat[a_]
            lab_c = gmm_1d(sub, n_sp)[0] if n_sp > 1 else np.zeros(len(sub), dtype=np.int64)
            m_c = [sub[lab_c == c].mean() if np.any(lab_c == c) else np.nan
                   for c in range(n_sp)]
            cnt = [int(np.count_nonzero(lab_c == c)) for c in range(n_sp)]
            if not _ratio_check(sp, m_c, cnt, n):
                cut = c_
                accepted = True
                break
        if n_sp > 1:  # one species: the valley stands (the lower point kept noise peaks
            cut = min(cut, _bayes_cut(feat, cut, n_sp))  # as atoms in the suite's case)
        atom = feat >= cut
        if np.count_nonzero(atom) < n_sp + 1:
            atom = lab >= 1
        if volume is not None and check:
            atom, fallback = _body_check(volume, pos, atom, cut, accepted, n_sp)
    # -- 2. species among the atoms: split, then reassignment to the closest class-average
    # profile, globally, then (local_radius_A) against the averages of each atom's
    # neighbourhood after dividing out the neighbourhood's mean intensity (thickness, the
    # missing wedge)
    idx = np.flatnonzero(atom)
    p_at, f_at = prof[idx], feat[idx]
    local_used = None
    if n_sp == 1:
        lab_s = np.zeros(len(idx), dtype=np.int64)
        d_s = np.zeros((len(idx), 1))
        n_done, converged = 0, True
    else:
        if use_non:  # a fresh split of the atoms alone
            lab_s = gmm_1d(f_at, n_sp)[0] if method == "gmm" else kmeans_1d(f_at, n_sp)[0]
        else:
            lab_s = lab[idx]
        lab_s, d_s, n_done, converged = _reassign(p_at, lab_s, n_sp, max_iter)
        r = None
        if isinstance(local_radius_A, str):
            if local_radius_A != "auto":
                raise ValueError(f"local_radius_A must be a radius in Å, 'auto' or None, got "
                                 f"{local_radius_A!r}")
            if len(idx) >= 30:
                dnn, _ = cKDTree(pos[idx]).query(pos[idx], k=2)
                r = 2.5 * float(np.median(dnn[:, 1]))
        elif local_radius_A is not None:
            r = check_positive("local_radius_A", local_radius_A)
        local_used = r
        if r is not None:
            neigh = _neighbour_matrix(pos[idx], r)
            local_scale = (neigh @ f_at) / np.asarray(neigh.sum(axis=1)).ravel()
            ref = float(np.mean(local_scale))
            if ref > 0 and np.all(local_scale > 0):
                p_loc = p_at * (ref / local_scale)[:, None]
                f_loc = p_loc.sum(axis=1)
                if method == "gmm":
                    lab_s = gmm_1d(f_loc, n_sp)[0]
                else:
                    lab_s = kmeans_1d(f_loc, n_sp)[0]
                lab_s, d_s, n_loc, converged = _reassign(p_loc, lab_s, n_sp, max_iter, neigh)
                n_done += n_loc
    # heavier is brighter: classes ranked by mean raw intensity after the reassignment too
    # (it could in principle have swapped two classes' order)
    lab_s, order_fixed = _rank_by_brightness(f_at, lab_s, n_sp)
    if order_fixed:
        d_s = d_s[:, np.argsort([f_at[lab_s == c].mean() if np.any(lab_s == c) else np.inf
                                 for c in range(n_sp)])]
    lab = np.zeros(n, dtype=np.int64)
    lab[idx] = lab_s + first
    conf = np.ones(n)
    if n_sp > 1:
        dd = np.sort(d_s, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            conf[idx] = np.where(np.isfinite(dd[:, 1]),
                                 (dd[:, 1] - dd[:, 0]) / (dd[:, 1] + dd[:, 0] + 1e-300), 1.0)
    if use_non:
        # the 1D margin between the non-atom and the lightest class (in widths)
        z0 = ((feat - mu[0]) / max(sd[0], 1e-300)) ** 2
        z1 = ((feat - mu[1]) / max(sd[1], 1e-300)) ** 2
        m_ = np.abs(z1 - z0) / (z1 + z0 + 1e-300)
        conf[~atom] = m_[~atom]
        if n_sp == 1:
            conf[atom] = m_[atom]

    names = ([NON_ATOM] if use_non else []) + sp
    n_at_sites = n_kept = 0
    if check and use_non:
        site = _atom_like_sites(pos, lab, first)[0]
        non = lab == 0
        n_at_sites = int(np.count_nonzero(site & non))
        if np.count_nonzero(non) and n_at_sites > 0.5 * np.count_nonzero(non):
            # most "non-atoms" sit where atoms sit: atoms of a species dimmer than the
            # lightest one given (or a class split the data do not call for)
            keep_site = site & non
            lab = np.where(keep_site, first, lab)
            n_kept = n_at_sites
            ratio = feat_raw[lab == first].mean() / max(feat_raw[keep_site].mean(), 1e-300)
            messages.append(
                f"classify: {n_at_sites} of the {int(np.count_nonzero(non))} peaks in the "
                f"non-atom class sit at atom-like sites (≥ 4 neighbours at the bond "
                f"distance) and are {ratio:.1f}× dimmer than the {sp[0]!r} class: they look "
                f"like atoms of a lighter species missing from species={sp}; they were kept "
                f"as {sp[0]!r}. Pass every species present, light → heavy (e.g. "
                f"['<lighter element>', {', '.join(repr(x) for x in sp)}]).")
    class_means = [float(feat_raw[lab == c].mean()) if np.any(lab == c) else float("nan")
                   for c in range(k)]
    counts_sp = [int(np.count_nonzero(lab == c)) for c in range(first, k)]
    if check and n_sp >= 2:
        problems = _ratio_check(sp, class_means[first:], counts_sp, n)
        if problems:
            raise SpeciesMismatchError(
                f"classify: the data do not support species={sp}: " + "; ".join(problems)
                + ". Pass only the species present in the sample, light → heavy (a species "
                "list longer than the sample's gives noise peaks the lightest name and every "
                "real class the next heavier one), or check=False to skip this test.")
    if check and n_sp == 1:
        # one species asked for: are the kept peaks one population?
        sel = lab >= first
        if np.count_nonzero(sel) >= 30:
            _, mu1, _, w1, bic1 = gmm_1d(feat_raw[sel], 1)
            _, mu2, _, w2, bic2 = gmm_1d(feat_raw[sel], 2)
            if bic2 < bic1 - 10 and mu2[0] > 0 and mu2[1] / mu2[0] > 1.5 and w2.min() > 0.1:
                messages.append(
                    f"classify: the {int(np.count_nonzero(sel))} atoms classified as "
                    f"{sp[0]!r} fall into two intensity groups ({mu2[1] / mu2[0]:.1f}× apart, "
                    f"{100 * w2[0]:.0f} % / {100 * w2[1]:.0f} %): the sample may hold a "
                    f"second species; pass every species present, light → heavy.")
    labels = np.array(names)[lab]
    keep = np.ones(n, dtype=bool)
    if use_non and drop_non_atoms:
        keep = lab >= first
    n_dropped = int(n - np.count_nonzero(keep))
    for msg in messages:
        warnings.warn(SpeciesWarning(msg), stacklevel=3)
    arrays = {k2: ds[k2].values for k2 in ds.data_vars
              if k2 not in ("position", "species") and ds[k2].dims == ("atom",)}
    arrays["class_confidence"] = conf
    arrays["box_intensity"] = feat_raw
    arrays = {k2: np.asarray(v)[keep] for k2, v in arrays.items()}
    out = build_model_dataset(pos[keep], labels[keep], arrays=arrays, attrs=dict(ds.attrs))
    counts = {s_: int(np.count_nonzero(labels == s_)) for s_ in names}  # before dropping
    result = {"counts": counts, "n_iterations": n_done, "converged": converged,
              "n_non_atoms": int(np.count_nonzero(lab == 0)) if use_non else 0,
              "n_dropped": n_dropped, "n_non_atoms_at_atom_sites": n_at_sites,
              "n_kept_at_atom_sites": n_kept,
              "class_means": dict(zip(names, class_means)), "order_fixed": bool(order_fixed),
              "local_radius_A": local_used, "non_atom_cut": cut,
              "non_atom_fallback": fallback,
              "warnings": messages, "initial_means": init_means, "method": method}
    return out, result
