"""Fourier-space operators and GENFIRE (Pryor et al., Sci. Rep. 7, 10409 (2017)).

Frame: volumes ``(z, y, x)`` centred at index ``n // 2``; the DFT convention is
F(q) = Σ_r V(r) exp(−2πi q·r) with r in voxels relative to the centre and q in cycles/voxel,
so by the Fourier-slice theorem the 2D DFT of the projection at Euler angles (φ, θ, ψ) sampled
at (k_x, k_y) equals F(Rᵀ (k_x, k_y, 0)).

The oversampled grid is cubic (M³, M = even ⌈oversampling × size⌉), stored as the half
spectrum of ``scipy.fft.rfftn`` (last axis = x ≥ 0), with the object wrapped so its centre sits
at index 0.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.fft as sfft

from ._common import progress_bar
from .projector import rotation_matrices

__all__ = ["fourier_slice_values", "genfire", "grid_size", "grid_projections"]


def grid_size(shape, oversampling: float) -> int:
    """Edge M of the cubic oversampled Fourier grid (even, ≥ oversampling × max(shape))."""
    m = int(np.ceil(oversampling * max(shape)))
    return m + (m % 2)


def _wrap_index(n: int, m: int) -> np.ndarray:
    """Positions of the n centred samples (centre n // 2) in a length-m array centred at 0."""
    return (np.arange(n) - n // 2) % m


def _slice_coords(euler, m: int, det_shape):
    """For every projection: in-circle 2D FFT indices (flat into m×m) and their 3D frequency
    (cycles/voxel) as (n, k, 3) in (x, y, z) order."""
    f = np.fft.fftfreq(m)
    ky, kx = np.meshgrid(f, f, indexing="ij")
    inside = (kx**2 + ky**2) <= 0.25 + 1e-12
    flat = np.flatnonzero(inside)
    k2 = np.stack([kx.ravel()[flat], ky.ravel()[flat]], axis=1)  # (k, 2) x, y
    Rt = np.transpose(rotation_matrices(euler), (0, 2, 1))  # Rᵀ
    q = np.einsum("nij,kj->nki", Rt[:, :, :2], k2)  # (n, k, 3) x, y, z
    return flat, q


def _fft_projections(proj, m: int, flat, workers):
    n, nyd, nxd = proj.shape
    out = np.empty((n, flat.size), np.complex64)
    iy = _wrap_index(nyd, m)
    ix = _wrap_index(nxd, m)
    pad = np.zeros((m, m), np.float32)
    for i in range(n):
        pad[...] = 0
        pad[np.ix_(iy, ix)] = proj[i]
        out[i] = sfft.fft2(pad, workers=workers).ravel()[flat]
    return out


def grid_projections(proj, euler, m: int, *, interpolation_cutoff: float = 0.5,
                     workers: int = -1):
    """Assemble measured Fourier values on the oversampled half grid (GENFIRE gridding).

    Every in-circle Fourier sample of every projection (and its Friedel mate) is assigned to the
    grid points within ``interpolation_cutoff`` (grid units) by inverse-distance weighting.

    Returns
    -------
    idx : ndarray of int64
        Flat indices into the ``(m, m, m // 2 + 1)`` rfftn grid of the measured points.
    values : ndarray of complex64
        Weighted mean of the measured values at those points.
    radius : ndarray of float32
        Spatial frequency |q| (cycles/voxel) of each measured point.
    """
    flat, q = _slice_coords(euler, m, proj.shape[1:])
    vals = _fft_projections(np.asarray(proj, np.float32), m, flat, workers)
    g = (q * m).reshape(-1, 3)  # grid units, (x, y, z)
    v = vals.ravel()
    g = np.concatenate([g, -g])
    v = np.concatenate([v, np.conj(v)])
    keep = g[:, 0] > -1.0
    g, v = g[keep], v[keep]
    mh = m // 2 + 1
    base = np.floor(g).astype(np.int64)
    frac = (g - base).astype(np.float32)
    idx_all, w_all, v_all = [], [], []
    for cz in (0, 1):
        for cy in (0, 1):
            for cx in (0, 1):
                dx = frac[:, 0] - cx
                dy = frac[:, 1] - cy
                dz = frac[:, 2] - cz
                d = np.sqrt(dx * dx + dy * dy + dz * dz)
                jx = base[:, 0] + cx
                ok = (d <= interpolation_cutoff) & (jx >= 0) & (jx < mh)
                jz = (base[ok, 2] + cz) % m
                jy = (base[ok, 1] + cy) % m
                idx_all.append((jz * m + jy) * mh + jx[ok])
                w_all.append(1.0 / np.maximum(d[ok], 1e-3))
                v_all.append(v[ok])
    idx = np.concatenate(idx_all)
    w = np.concatenate(w_all).astype(np.float64)
    vv = np.concatenate(v_all)
    uniq, inv = np.unique(idx, return_inverse=True)
    den = np.bincount(inv, weights=w)
    re = np.bincount(inv, weights=w * vv.real) / den
    im = np.bincount(inv, weights=w * vv.imag) / den
    jz, rem = np.divmod(uniq, m * mh)
    jy, jx = np.divmod(rem, mh)
    f = np.fft.fftfreq(m)
    radius = np.sqrt(f[jz] ** 2 + f[jy] ** 2 + (jx / m) ** 2).astype(np.float32)
    return uniq, (re + 1j * im).astype(np.complex64), radius


def fourier_slice_values(vol_zyx, euler_deg, q_xyz=None, *, method: str = "nufft",
                         oversampling: float = 2.0, eps: float = 1e-6, workers: int = -1):
    """The Fourier-slice forward model: F(q) of a volume at 3D frequencies.

    Parameters
    ----------
    vol_zyx : ndarray (nz, ny, nx)
        Volume, centre at index ``n // 2``.
    euler_deg : array_like or None
        If ``q_xyz`` is None, the in-circle frequencies of every projection at these Euler angles
        (degrees) on a grid with ``oversampling`` are used.
    q_xyz : ndarray (k, 3), optional
        Frequencies (x, y, z) in cycles/voxel.
    method : {"nufft", "gridding"}
        ``"nufft"``: exact type-2 non-uniform FFT (finufft, tolerance ``eps``); ``"gridding"``:
        GENFIRE's model — FFT of the volume zero-padded ``oversampling`` times, then trilinear
        interpolation between grid points.

    Returns
    -------
    q_xyz : ndarray (k, 3)
    values : ndarray (k,) complex
    """
    vol = np.asarray(vol_zyx)
    m = grid_size(vol.shape, oversampling)
    if q_xyz is None:
        _, q = _slice_coords(np.asarray(euler_deg, float).reshape(-1, 3), m, vol.shape[1:])
        q_xyz = q.reshape(-1, 3)
    q_xyz = np.asarray(q_xyz, dtype=np.float64)
    if method == "nufft":
        import finufft

        nz, ny, nx = vol.shape
        # finufft's modes run from -N//2 .. (N-1)//2 — the same as index - n // 2 for odd and
        # even N — on an array whose axes are (z, y, x) in C order (first coordinate = axis 0)
        c = np.ascontiguousarray(vol, dtype=np.complex128)
        two_pi = 2 * np.pi
        vals = finufft.nufft3d2(two_pi * q_xyz[:, 2], two_pi * q_xyz[:, 1],
                                two_pi * q_xyz[:, 0], c, isign=-1, eps=eps)
        return q_xyz, vals
    if method != "gridding":
        raise ValueError(f"method must be 'nufft' or 'gridding', got {method!r}")
    grid = np.zeros((m, m, m), np.float32)
    grid[np.ix_(*(_wrap_index(n, m) for n in vol.shape))] = vol
    F = sfft.rfftn(grid, workers=workers)
    g = q_xyz * m
    conj = g[:, 0] < 0
    g = np.where(conj[:, None], -g, g)
    base = np.floor(g).astype(np.int64)
    fr = g - base
    out = np.zeros(len(g), np.complex128)
    mh = m // 2 + 1
    for cz in (0, 1):
        for cy in (0, 1):
            for cx in (0, 1):
                w = ((fr[:, 2] if cz else 1 - fr[:, 2]) * (fr[:, 1] if cy else 1 - fr[:, 1])
                     * (fr[:, 0] if cx else 1 - fr[:, 0]))
                jx = np.minimum(base[:, 0] + cx, mh - 1)
                out += w * F[(base[:, 2] + cz) % m, (base[:, 1] + cy) % m, jx]
    out = np.where(conj, np.conj(out), out)
    return q_xyz, out


def genfire(proj_ayx, euler_deg, volume_shape, *, oversampling: float = 2.0, n_iter: int = 100,
            interpolation_cutoff: float = 0.5, positivity: bool = True, support=None,
            r_free_fraction: float = 0.05, r_free_bins: int = 10,
            resolution_extension: str | None = "suppression", extension_fraction: float = 0.5,
            seed=0, progress=None, workers: int = -1):
    """GENFIRE: iterate between measured Fourier values and real-space constraints.

    Parameters
    ----------
    proj_ayx : ndarray (n, ny_det, nx_det)
        Projections (public layout), centre at index ``n // 2``.
    euler_deg : ndarray (n, 3)
        Euler angles (φ, θ, ψ) in degrees.
    volume_shape : (nz, ny, nx)
    oversampling : float ≥ 1
        Grid edge / object edge (GENFIRE's default is 3; 2 is faster and as accurate here).
    n_iter : int
    interpolation_cutoff : float
        Radius (grid units) within which a measured sample sets a grid point.
    positivity, support
        Real-space constraints (``support``: bool (nz, ny, nx) or None for the whole box).
    r_free_fraction, r_free_bins
        Fraction of measured points withheld from the constraint, in ``r_free_bins`` shells of
        spatial frequency; R_free per shell = Σ|F_obs − F_calc| / Σ|F_obs| over them.
    resolution_extension : {"suppression", "extension", None}
        The dynamic constraint of the paper: during the first ``extension_fraction`` of the
        iterations only measured values below a spatial-frequency radius growing linearly from
        10 % to 100 % of Nyquist are enforced ("extension"); "suppression" also sets every grid
        value beyond that radius to zero, so high-resolution noise cannot build up before the
        low-resolution structure is in place. ``None``: enforce everything from the start.

    Returns
    -------
    vol : ndarray float32 (nz, ny, nx)
    record : dict
        ``error`` (per iteration: Σ|F_calc − F_obs| / Σ|F_obs| over enforced points),
        ``r_free`` (per shell), ``r_free_mean``, ``r_free_shell_edges``, grid size, timings.
    """
    t_start = time.perf_counter()
    m = grid_size((*volume_shape, *proj_ayx.shape[1:]), oversampling)
    mh = m // 2 + 1
    idx, vals, radius = grid_projections(proj_ayx, euler_deg, m,
                                         interpolation_cutoff=interpolation_cutoff,
                                         workers=workers)
    t_grid = time.perf_counter() - t_start
    rng = np.random.default_rng(seed)
    free = np.zeros(idx.size, bool)
    if r_free_fraction > 0:
        free[rng.random(idx.size) < r_free_fraction] = True
    edges = np.linspace(0, 0.5 * np.sqrt(3), r_free_bins + 1)
    enf_idx, enf_vals, enf_rad = idx[~free], vals[~free], radius[~free]
    order = np.argsort(enf_rad, kind="stable")
    enf_idx, enf_vals, enf_rad = enf_idx[order], enf_vals[order], enf_rad[order]
    free_idx, free_vals, free_rad = idx[free], vals[free], radius[free]
    abs_enf = np.abs(enf_vals)

    iz, iy, ix = (_wrap_index(n, m) for n in volume_shape)
    box_ix = np.ix_(iz, iy, ix)
    sup = None if support is None else np.asarray(support, bool)

    F = np.zeros((m, m, mh), np.complex64)
    Ff = F.reshape(-1)
    Ff[enf_idx] = enf_vals
    rad_grid = None
    record_err = []
    grid = np.zeros((m, m, m), np.float32)
    n_ext = int(extension_fraction * n_iter) if resolution_extension else 0
    k_max = float(enf_rad.max()) if enf_rad.size else 0.5
    with progress_bar(n_iter, "GENFIRE", progress) as bar:
        for it in range(n_iter):
            r = sfft.irfftn(F, s=(m, m, m), workers=workers)
            box = r[box_ix]
            if sup is not None:
                box *= sup
            if positivity:
                np.maximum(box, 0, out=box)
            grid[box_ix] = box
            F = sfft.rfftn(grid, workers=workers)
            Ff = F.reshape(-1)
            if it == n_iter - 1:
                break
            if it < n_ext:
                cut = k_max * (0.1 + 0.9 * it / max(1, n_ext))
                n_on = int(np.searchsorted(enf_rad, cut, side="right"))
                if resolution_extension == "suppression":
                    if rad_grid is None:
                        f = np.fft.fftfreq(m).astype(np.float32)
                        fx = np.arange(mh, dtype=np.float32) / m
                        rad_grid = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2
                                           + fx[None, None, :] ** 2)
                    F[rad_grid > cut] = 0
            else:
                n_on = enf_idx.size
            cur = Ff[enf_idx[:n_on]]
            den = float(abs_enf[:n_on].sum())
            record_err.append(float(np.abs(cur - enf_vals[:n_on]).sum() / den) if den else 0.0)
            Ff[enf_idx[:n_on]] = enf_vals[:n_on]
            bar.update()
        bar.update()
    vol = np.ascontiguousarray(box, dtype=np.float32)
    # R_free on the withheld points from the final object's spectrum
    r_free = []
    if free.any():
        calc = Ff[free_idx]
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (free_rad >= lo) & (free_rad < hi)
            den = float(np.abs(free_vals[sel]).sum())
            r_free.append(float(np.abs(calc[sel] - free_vals[sel]).sum() / den) if den else None)
        den = float(np.abs(free_vals).sum())
        r_free_mean = float(np.abs(calc - free_vals).sum() / den) if den else None
    else:
        r_free_mean = None
    return vol, {
        "error": record_err, "r_free": r_free, "r_free_mean": r_free_mean,
        "r_free_shell_edges_per_voxel": edges.tolist(), "grid_size": m,
        "n_measured_points": int(idx.size), "n_iter": n_iter,
        "time_gridding_s": t_grid, "time_s": time.perf_counter() - t_start,
    }
