"""Displacement and strain: Gaussian-smoothed 3D strain tensor fields and per-atom local strain.

Displacements are taken from a fitted ideal lattice (:func:`aet.analysis.fit_lattice`):
``u_i = p_i − (origin + R · C(a_ref) · s_i)`` with the atom's site ``s_i``, the fitted rotation
``R`` and the *reference* lattice constant(s) ``a_ref`` (default: the fitted ones, which removes
the mean dilatation; pass the bulk value, e.g. ``a_A=3.92`` for Pt, to measure it).

Field (:func:`strain`): at every grid point ``r`` the displacement is fitted by a Gaussian-weighted
local *linear* regression ``u(p) ≈ u₀ + G (p − r)`` (weights ``exp(−|p − r|²/2σ²)``); the
gradient ``G_ij = ∂u_i/∂x_j`` gives the strain ``e_ij = (G_ij + G_ji)/2`` and the rotation
``w_ij = (G_ij − G_ji)/2``. Unlike differentiating a Gaussian-smoothed displacement field, a local
linear fit reproduces any uniform strain exactly up to the particle surface. The gradient is
taken w.r.t. the measured (deformed) positions, so for large strains the result is the
Eulerian small strain ``sym(H)``, ``H = G_L (I + G_L)⁻¹`` of the Lagrangian gradient ``G_L``
(they differ at order ``|G|²``, ~1e-4 at 1 % strain). The default
``σ = 4.25 Å`` gives a Gaussian of FWHM 1 nm, i.e. the ~1 nm (1 nm³) 3D resolution of the strain
maps of the W tip in Xu et al., Nat. Mater. 14, 1099 (2015). Position noise sets a floor: deep
inside, a normal component has standard deviation ``σ_pos / sqrt(16 π^{3/2} ρ σ⁵)`` (per-axis
position noise ``σ_pos``, atom density ``ρ``; shear components ``1/√2`` of that), see
:func:`strain_noise` — for 20 pm per axis in Pt (ρ = 0.066 Å⁻³) 2.2e-3 at σ = 4.25 Å and
9e-4 at σ = 6 Å; points near the surface see fewer atoms and are noisier.
:func:`sigma_for_precision` inverts this: it gives the σ a wanted strain precision needs.

Per atom (:func:`local_strain`): least-squares deformation gradient of the neighbour shell,
``F_i = (Σ_j b_ij v_ijᵀ)(Σ_j v_ij v_ijᵀ)⁻¹`` with actual bonds ``b_ij = p_j − p_i`` and ideal bonds
``v_ij = R C(a_ref) (s_j − s_i)``; ``e = sym(F) − I``, ``w = skew(F)``.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from ..core.meta import centred_coord
from ..core.schema import as_xarray
from ._kernels import N_MOMENTS, splat_moments
from .lattice import (
    LatticeFit,
    _canonical_structure,
    _positions_species,
    crystal_cell,
    default_cutoff,
    fit_lattice,
)

DEFAULT_SIGMA_A = 10.0 / (2 * np.sqrt(2 * np.log(2)))  # FWHM 1 nm
_COMPONENTS = (("xx", 0, 0), ("yy", 1, 1), ("zz", 2, 2), ("xy", 0, 1), ("xz", 0, 2),
               ("yz", 1, 2))


def _resolve_structure(ds, structure, lattice, species) -> tuple[str, str]:
    """``(structure, why)``: ``"auto"`` becomes the structure the model has
    (:func:`aet.analysis.reference.identify_structure`)."""
    if lattice is not None:
        return _canonical_structure(structure if structure != "auto" else "fcc"), \
            "the lattice fit(s) passed as lattice="
    if str(structure).lower() == "auto":
        from .reference import identify_structure

        info = identify_structure(ds, species=species)
        return info["structure"], info["reason"]
    return _canonical_structure(structure), "chosen by the caller (structure=)"


_LABEL = {"fcc": "fcc (cubic)", "bcc": "bcc (cubic)", "hcp": "hcp", "L10": "L1₀ (tetragonal)",
          "L12": "L1₂ (cubic)"}


def _fits(ds, structure, lattice, labels, a_A, c_A, species):
    if str(structure).lower() == "auto":
        structure, _ = _resolve_structure(ds, structure, lattice, species)
    if lattice is None:
        lattice = fit_lattice(ds, structure, labels=labels, species=species)
    fits = [lattice] if isinstance(lattice, LatticeFit) else list(dict(lattice).values())
    if not fits:
        raise ValueError("no lattice region was fitted; check labels/min_atoms")
    for f in fits:
        if not isinstance(f, LatticeFit):
            raise TypeError(
                f"lattice must be a LatticeFit or a dict of them (from fit_lattice), got "
                f"{type(f).__name__}"
            )
    out = []
    for f in fits:
        a = f.a_A if a_A is None else float(a_A)
        if c_A is not None:
            c = float(c_A)
        elif a_A is None:
            c = f.c_A
        else:
            c = f.c_A * a / f.a_A
        out.append((f, f.rotation @ crystal_cell(f.structure, a, c)))
    return out


def displacements(ds, *, structure: str = "auto", lattice=None, labels=None,
                  a_A: float | None = None, c_A: float | None = None, species=None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per-atom displacement (x, y, z Å) from the ideal reference lattice.

    Returns ``(u (n, 3), fitted (n,) bool)``; atoms outside every fitted region get NaN.
    """
    pos, _ = _positions_species(ds)
    u = np.full_like(pos, np.nan)
    ok = np.zeros(len(pos), dtype=bool)
    for f, cell in _fits(ds, structure, lattice, labels, a_A, c_A, species):
        ideal = f.origin_A + f.sites @ cell.T
        u[f.atoms] = pos[f.atoms] - ideal
        ok[f.atoms] = True
    return u, ok


def _grid(pos: np.ndarray, spacing: float, margin: float):
    n = []
    for j in (2, 1, 0):  # z, y, x
        ext = np.max(np.abs(pos[:, j])) + margin
        n.append(2 * int(np.ceil(ext / spacing)) + 1)
    coords = [centred_coord(m, spacing) for m in n]
    return tuple(n), coords


def _noise_coefficient(density_per_A3: float) -> float:
    """``16 π^{3/2} ρ``: var(e_ii) = σ_pos² / (this · σ⁵) deep inside (see strain_noise)."""
    return 16 * np.pi ** 1.5 * density_per_A3


def strain_noise(sigma_A: float = DEFAULT_SIGMA_A, *, position_noise_A: float,
                 density_per_A3: float) -> dict:
    """Predicted noise (1σ) of the strain field deep inside a particle.

    Gaussian-weighted local linear regression of displacements with independent per-axis
    position noise ``position_noise_A`` (Å) on atoms of number density ``density_per_A3``
    (Å⁻³; fcc: 4 / a³) gives, in the continuum limit,
    ``std(e_ii) = σ_pos / sqrt(16 π^{3/2} ρ σ⁵)`` and ``std(e_ij) = std(e_ii) / √2``.

    Returns ``{"normal": ..., "shear": ...}``.

    Examples
    --------
    >>> round(strain_noise(4.25, position_noise_A=0.2, density_per_A3=4 / 3.92**3)["normal"], 4)
    0.0022
    """
    for nm, v in (("sigma_A", sigma_A), ("position_noise_A", position_noise_A),
                  ("density_per_A3", density_per_A3)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{nm} must be > 0, got {v!r}")
    normal = position_noise_A / np.sqrt(_noise_coefficient(density_per_A3) * sigma_A ** 5)
    return {"normal": float(normal), "shear": float(normal / np.sqrt(2))}


def sigma_for_precision(strain_precision: float, *, position_noise_A: float,
                        density_per_A3: float) -> float:
    """Kernel σ (Å) at which position noise leaves a given strain noise deep inside.

    The inverse of :func:`strain_noise` for the normal components:
    ``σ = (σ_pos² / (16 π^{3/2} ρ · strain_precision²))^{1/5}``. The resolution (FWHM
    ``2.355 σ``) is the price of the precision: halving the strain noise costs a factor
    ``2^{2/5} ≈ 1.32`` in resolution. Points near the surface are noisier (fewer atoms, one-sided
    fit), by up to ~2× at a kernel weight of 0.8.

    Parameters
    ----------
    strain_precision : float
        Wanted standard deviation of a normal strain component (dimensionless).
    position_noise_A : float
        Per-axis position noise of the atoms in Å (e.g. the model's ``uncertainty``).
    density_per_A3 : float
        Atom number density in Å⁻³ (fcc: ``4 / a³``).

    Examples
    --------
    20 pm per axis in Pt: a 1e-3 strain precision needs σ ≈ 5.8 Å (FWHM 1.4 nm).

    >>> round(sigma_for_precision(1e-3, position_noise_A=0.2, density_per_A3=4 / 3.92**3), 2)
    5.83
    """
    for nm, v in (("strain_precision", strain_precision), ("position_noise_A", position_noise_A),
                  ("density_per_A3", density_per_A3)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{nm} must be > 0, got {v!r}")
    s5 = position_noise_A ** 2 / (_noise_coefficient(density_per_A3) * strain_precision ** 2)
    return float(s5 ** 0.2)


def _grid_like(like):
    from ..core.meta import spacing_from_coord

    da = as_xarray(like, xr.DataArray)
    if not isinstance(da, xr.DataArray) or tuple(da.dims) != ("z", "y", "x"):
        raise TypeError(f"like must be a Volume or a DataArray with dims (z, y, x), got "
                        f"{type(like).__name__}")
    steps = [spacing_from_coord(da[d].values, d) for d in ("z", "y", "x")]
    if not np.allclose(steps, steps[0], rtol=1e-6):
        raise ValueError(f"like has voxel sizes {steps} Å along (z, y, x); the strain grid needs "
                         f"equal spacing on all axes")
    coords = [np.asarray(da[d].values, dtype=np.float64) for d in ("z", "y", "x")]
    return tuple(len(c) for c in coords), coords, float(steps[0])


def _check_pos(name, v):
    if not (isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive length in Å, got {v!r}")
    return float(v)


def solve_moments(mom: np.ndarray, *, ridge: float = 1e-9) -> tuple[np.ndarray, np.ndarray]:
    """Local linear regression from the moments of :func:`splat_moments`.

    Returns ``(u0 (..., 3), G (..., 3, 3))`` with ``G[..., i, j] = ∂u_i/∂x_j``.
    """
    shp = mom.shape[:-1]
    m = mom.reshape(-1, N_MOMENTS)
    A = np.empty((len(m), 4, 4))
    A[:, 0, 0] = m[:, 0]
    A[:, 0, 1:] = m[:, 1:4]
    A[:, 1:, 0] = m[:, 1:4]
    s2 = m[:, 4:10]
    A[:, 1, 1], A[:, 1, 2], A[:, 1, 3] = s2[:, 0], s2[:, 1], s2[:, 2]
    A[:, 2, 1], A[:, 2, 2], A[:, 2, 3] = s2[:, 1], s2[:, 3], s2[:, 4]
    A[:, 3, 1], A[:, 3, 2], A[:, 3, 3] = s2[:, 2], s2[:, 4], s2[:, 5]
    rhs = np.empty((len(m), 4, 3))
    rhs[:, 0, :] = m[:, 10:13]
    rhs[:, 1:, :] = m[:, 13:22].reshape(-1, 3, 3)  # [j, i] = Σ w d_j u_i
    scale = np.maximum(A[:, 0, 0], 1e-300)
    A = A + ridge * scale[:, None, None] * np.eye(4)[None]
    X = np.linalg.solve(A, rhs)
    u0 = X[:, 0, :].reshape(*shp, 3)
    G = np.swapaxes(X[:, 1:, :], 1, 2).reshape(*shp, 3, 3)
    return u0, G


def _atom_density(fits) -> float:
    dens = []
    for f, cell in fits:
        nb = {"fcc": 4, "L10": 4, "L12": 4, "bcc": 2, "hcp": 2}[f.structure]
        dens.append(nb / abs(np.linalg.det(cell)))
    return float(np.mean(dens))


def strain(ds, *, structure: str = "auto", lattice=None, labels=None, a_A: float | None = None,
           c_A: float | None = None, species=None, sigma_A: float = DEFAULT_SIGMA_A,
           voxel_size_A: float = 1.0, cutoff_sigma: float = 3.0, mask_threshold: float = 0.5,
           like=None) -> xr.Dataset:
    """Full 3D strain tensor, rotation and displacement fields on a grid.

    Parameters
    ----------
    ds : xarray.Dataset or AtomicModel
        Atomic model, positions (x, y, z) Å.
    structure : str
        Ideal lattice to fit when ``lattice`` is not given (see :func:`fit_lattice`); default
        ``"auto"``: the structure the model has (:func:`aet.analysis.reference.
        identify_structure`: e.g. L1₀ for an ordered FePt particle, whose tetragonality would
        otherwise read as strain against a cubic reference).
    lattice : LatticeFit or dict, optional
        A previous :func:`fit_lattice` result (per grain when a dict).
    labels : array_like of int, optional
        Grain label per atom: each grain is fitted on its own.
    a_A, c_A : float, optional
        Reference (unstrained) lattice constants in Å; default the fitted ones.
    sigma_A : float
        Gaussian kernel σ in Å (default 4.25 Å: FWHM 1 nm, see the module notes).
    voxel_size_A : float
        Grid step in Å. The grid is centred: coordinate 0 at index ``n // 2``.
    cutoff_sigma : float
        Kernel truncation radius in units of σ.
    mask_threshold : float
        Grid points whose kernel weight ``Σw`` is below this fraction of the bulk value
        ``ρ (2π)^{3/2} σ³`` are outside the particle (fields NaN there).
    like : Volume or xarray.DataArray, optional
        Evaluate on this volume's (z, y, x) grid instead (equal spacing on all axes), e.g. the
        reconstruction the model was traced from; ``voxel_size_A`` is then ignored.

    Returns
    -------
    xarray.Dataset
        dims ``(z, y, x)`` with Å coords; variables ``e_xx, e_yy, e_zz, e_xy, e_xz, e_yz``
        (tensor, not engineering, shear), ``w_xy, w_xz, w_yz`` (rotation, rad,
        ``w_ij = ½(∂u_i/∂x_j − ∂u_j/∂x_i)``), ``u_x, u_y, u_z`` (Å), ``weight`` (Σw relative to
        the bulk) and ``mask`` (inside the particle); attrs ``voxel_size_A``, ``sigma_A``,
        ``structure``, ``reference`` (the reference lattice in words, for captions),
        ``reference_choice`` (why that structure), reference lattice constants.
    """
    sigma_A = _check_pos("sigma_A", sigma_A)
    voxel_size_A = _check_pos("voxel_size_A", voxel_size_A)
    cutoff_sigma = _check_pos("cutoff_sigma", cutoff_sigma)
    if not 0 < mask_threshold < 1:
        raise ValueError(f"mask_threshold must be in (0, 1), got {mask_threshold!r}")
    structure, why = _resolve_structure(ds, structure, lattice, species)
    pos, _ = _positions_species(ds)
    fits = _fits(ds, structure, lattice, labels, a_A, c_A, species)
    u = np.full_like(pos, np.nan)
    ok = np.zeros(len(pos), dtype=bool)
    for f, cell in fits:
        u[f.atoms] = pos[f.atoms] - (f.origin_A + f.sites @ cell.T)
        ok[f.atoms] = True
    p, uu = np.ascontiguousarray(pos[ok]), np.ascontiguousarray(u[ok])
    radius = cutoff_sigma * sigma_A
    if like is not None:
        shape, coords, voxel_size_A = _grid_like(like)
    else:
        shape, coords = _grid(p, voxel_size_A, margin=sigma_A)
    origin = np.array([c[0] for c in coords])
    mom = splat_moments(p, uu, origin, voxel_size_A, np.array(shape, dtype=np.int64),
                        sigma_A, radius)
    bulk = _atom_density(fits) * (2 * np.pi) ** 1.5 * sigma_A ** 3
    weight = mom[..., 0] / bulk
    mask = weight >= mask_threshold
    u0 = np.full((*shape, 3), np.nan)
    G = np.full((*shape, 3, 3), np.nan)
    if mask.any():
        u0[mask], G[mask] = solve_moments(mom[mask])
    dims = ("z", "y", "x")
    cc = {"z": coords[0], "y": coords[1], "x": coords[2]}
    dv = {}
    for name, i, j in _COMPONENTS:
        dv[f"e_{name}"] = (dims, 0.5 * (G[..., i, j] + G[..., j, i]))
    for name, i, j in _COMPONENTS[3:]:
        dv[f"w_{name}"] = (dims, 0.5 * (G[..., i, j] - G[..., j, i]), {"units": "rad"})
    for k, ax in enumerate("xyz"):
        dv[f"u_{ax}"] = (dims, u0[..., k], {"units": "Å"})
    dv["weight"] = (dims, weight)
    dv["mask"] = (dims, mask)
    f0 = fits[0][0]
    ref_a = float(f0.a_A if a_A is None else a_A)
    ref_c = float(np.linalg.norm(fits[0][1][:, 2]))
    how = "fitted to the model" if a_A is None and c_A is None else "with the given constants"
    consts = f"a = {ref_a:.3f} Å" + (f", c = {ref_c:.3f} Å" if f0.structure in ("L10", "hcp")
                                     else "")
    attrs = {"voxel_size_A": voxel_size_A, "sigma_A": sigma_A, "cutoff_sigma": cutoff_sigma,
             "structure": f0.structure,
             "reference": f"{_LABEL.get(f0.structure, f0.structure)} lattice {how}, {consts}",
             "reference_choice": why,
             "reference_a_A": ref_a,
             "reference_c_A": ref_c,
             "strain_convention": "e_ij = (du_i/dx_j + du_j/dx_i)/2 (tensor shear)",
             "lattice_inlier_fraction": [float(f.inlier.mean()) for f, _ in fits]}
    out = xr.Dataset(dv, coords=cc, attrs=attrs)
    for v in out.data_vars:
        if v in ("mask", "weight"):
            continue
        out[v].attrs.setdefault("long_name", v)
        for ax in "xyz":
            out[ax].attrs["units"] = "Å"
    return out


def local_strain(ds, *, structure: str = "auto", lattice=None, labels=None,
                 a_A: float | None = None, c_A: float | None = None, species=None,
                 cutoff_A: float | None = None, min_neighbours: int = 4) -> xr.Dataset:
    """Per-atom strain from the least-squares deformation gradient of the neighbour shell.

    Returns the model Dataset with per-atom ``strain_xx, strain_yy, strain_zz, strain_xy,
    strain_xz, strain_yz`` (tensor shear), ``rotation_xy, rotation_xz, rotation_yz`` (rad),
    ``displacement_x_A, displacement_y_A, displacement_z_A``; NaN for atoms with fewer than
    ``min_neighbours`` fitted neighbours within ``cutoff_A`` (default: between the first and
    second neighbour shells).
    """
    structure, _ = _resolve_structure(ds, structure, lattice, species)
    pos, _ = _positions_species(ds)
    fits = _fits(ds, structure, lattice, labels, a_A, c_A, species)
    n = len(pos)
    u = np.full((n, 3), np.nan)
    F = np.full((n, 3, 3), np.nan)
    for f, cell in fits:
        idx = f.atoms
        p = pos[idx]
        u[idx] = p - (f.origin_A + f.sites @ cell.T)
        geom = "fcc" if f.structure in ("L10", "L12") else f.structure
        cut = default_cutoff(geom, f.d_nn_A) if cutoff_A is None else \
            _check_pos("cutoff_A", cutoff_A)
        pairs = cKDTree(p).query_pairs(cut, output_type="ndarray")
        if not len(pairs):
            continue
        i = np.concatenate([pairs[:, 0], pairs[:, 1]])
        j = np.concatenate([pairs[:, 1], pairs[:, 0]])
        b = p[j] - p[i]
        v = (f.sites[j] - f.sites[i]) @ cell.T
        VV = np.zeros((len(p), 3, 3))
        BV = np.zeros((len(p), 3, 3))
        np.add.at(VV, i, v[:, :, None] * v[:, None, :])
        np.add.at(BV, i, b[:, :, None] * v[:, None, :])
        cnt = np.bincount(i, minlength=len(p))
        good = cnt >= min_neighbours
        good &= np.linalg.matrix_rank(VV, tol=1e-6 * f.d_nn_A ** 2) == 3
        Fi = np.full((len(p), 3, 3), np.nan)
        Fi[good] = BV[good] @ np.linalg.inv(VV[good])
        F[idx] = Fi
    out = (as_xarray(ds, xr.Dataset)).copy()
    eye = np.eye(3)
    for name, a, b_ in _COMPONENTS:
        out[f"strain_{name}"] = ("atom", 0.5 * (F[:, a, b_] + F[:, b_, a]) - eye[a, b_])
    for name, a, b_ in _COMPONENTS[3:]:
        out[f"rotation_{name}"] = ("atom", 0.5 * (F[:, a, b_] - F[:, b_, a]), {"units": "rad"})
    for k, ax in enumerate("xyz"):
        out[f"displacement_{ax}_A"] = ("atom", u[:, k], {"units": "Å"})
    return out
