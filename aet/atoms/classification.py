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
"""

from __future__ import annotations

from collections.abc import Sequence

import dask.array as dsa
import numpy as np
import xarray as xr
from ase.data import atomic_numbers
from scipy import sparse
from scipy.spatial import cKDTree

from ..model._meta import positions_to_indices
from ..model.atomicmodel import build_model_dataset
from ._common import check_model, check_positive, check_volume, model_positions

__all__ = ["classify", "local_profiles", "gmm_1d", "kmeans_1d"]

NON_ATOM = "X"


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


def classify(model: xr.Dataset, species: Sequence[str], *, volume: xr.DataArray | None = None,
             box: int = 5, box_step: float = 1.0, method: str = "gmm",
             non_atom: bool | str = "auto", local_radius_A: float | None = None,
             max_iter: int = 100, drop_non_atoms: bool = True):
    """Assign a species (light → heavy) to every traced atom.

    The local variant (``local_radius_A``) first divides each profile by the mean integrated
    intensity of the atoms within the radius (so a slow intensity gradient across the object
    does not shift the classes), then compares each atom with the class averages of its own
    neighbourhood.

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
    local_radius_A : float, optional
        Local variant: class-average profiles from the atoms within this radius (Å) only.
    max_iter : int
        Cap on reassignment sweeps (stops earlier when no label changes).
    drop_non_atoms : bool
        Remove non-atom peaks from the model (default); else keep them with species ``"X"``.

    Returns
    -------
    (xarray.Dataset, dict)
        The model with ``species``, ``class_confidence`` (margin in [0, 1]) and
        ``box_intensity``; the dict has ``counts``, ``n_iterations``, ``n_non_atoms``,
        ``converged`` and the class means of the initial split.
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

    neigh = None
    if local_radius_A is not None:
        r = check_positive("local_radius_A", local_radius_A)
        pairs = cKDTree(pos).query_pairs(r, output_type="ndarray")
        rows = np.r_[pairs[:, 0], pairs[:, 1], np.arange(n)]
        cols = np.r_[pairs[:, 1], pairs[:, 0], np.arange(n)]
        neigh = sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
        # remove slow intensity variations (thickness, missing wedge): scale every profile
        # by the mean integrated intensity of its neighbourhood
        local_scale = (neigh @ feat) / np.asarray(neigh.sum(axis=1)).ravel()
        ref = float(np.mean(local_scale))
        if ref > 0 and np.all(local_scale > 0):
            prof = prof * (ref / local_scale)[:, None]
            feat = prof.sum(axis=1)
    # -- initial split
    use_non = bool(non_atom) if non_atom != "auto" else False
    if non_atom == "auto" and n >= 3 * (n_sp + 1):
        _, _, _, _, bic_a = gmm_1d(feat, n_sp)
        lab_b, mu_b, sd_b, w_b, bic_b = gmm_1d(feat, n_sp + 1)
        # the extra class must be a genuine low-intensity population
        use_non = bic_b < bic_a - 10 and mu_b[0] < 0.6 * mu_b[1]
    k = n_sp + int(use_non)
    if method == "gmm":
        lab, mu, *_ = gmm_1d(feat, k)
    else:
        lab, mu = kmeans_1d(feat, k)
    init_means = mu.tolist()

    # -- iterative reassignment to the closest average profile
    means = _class_means(prof, lab, k)
    converged = False
    n_done = 0
    d = _sqdist(prof, means)
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
    ds_sorted = np.sort(d, axis=1)
    d1, d2 = ds_sorted[:, 0], ds_sorted[:, 1] if k > 1 else np.full(n, np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(np.isfinite(d2), (d2 - d1) / (d2 + d1 + 1e-300), 1.0)

    names = ([NON_ATOM] if use_non else []) + sp
    labels = np.array(names)[lab]
    keep = np.ones(n, dtype=bool)
    if use_non and drop_non_atoms:
        keep = lab > 0
    arrays = {k2: ds[k2].values for k2 in ds.data_vars
              if k2 not in ("position", "species") and ds[k2].dims == ("atom",)}
    arrays["class_confidence"] = conf
    arrays["box_intensity"] = feat_raw
    arrays = {k2: np.asarray(v)[keep] for k2, v in arrays.items()}
    out = build_model_dataset(pos[keep], labels[keep], arrays=arrays, attrs=dict(ds.attrs))
    counts = {s: int(np.count_nonzero(labels == s)) for s in names}  # before dropping
    result = {"counts": counts, "n_iterations": n_done, "converged": converged,
              "n_non_atoms": int(np.count_nonzero(lab == 0)) if use_non else 0,
              "initial_means": init_means, "method": method}
    return out, result
