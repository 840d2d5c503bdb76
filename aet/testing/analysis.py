"""Ground-truth structures for testing :mod:`aet.analysis` (built directly with ASE).

All positions are (x, y, z) in Å, centred on the particle (the origin is a lattice site of
sublattice 0). fcc sublattices: 0 (0,0,0), 1 (0,½,½), 2 (½,0,½), 3 (½,½,0) of the cubic cell.
"""

from __future__ import annotations

import numpy as np

from ..model.atomicmodel import AtomicModel


def fcc_sites(a_A: float, radius_A: float, *, c_A: float | None = None):
    """fcc sites inside a sphere: ``(positions (n, 3) Å, fractional sites (n, 3), sublattice)``
    in the crystal frame (cubic axes along x, y, z; c along z)."""
    from ase.build import bulk

    c_A = a_A if c_A is None else c_A
    m = int(np.ceil(radius_A / min(a_A, c_A))) + 1
    cell = bulk("Cu", "fcc", a=1.0, cubic=True)
    frac = cell.get_scaled_positions()  # the four basis sites in (0..1)
    rng = np.arange(-m, m + 1)
    g = np.array(np.meshgrid(rng, rng, rng, indexing="ij")).reshape(3, -1).T
    sites = (g[:, None, :] + frac[None]).reshape(-1, 3)
    sub = np.tile(np.arange(4), len(g))
    pos = sites * np.array([a_A, a_A, c_A])
    keep = np.linalg.norm(pos, axis=1) <= radius_A
    return pos[keep], sites[keep], sub[keep]


def ordered_species(sub: np.ndarray, kind: str, *, species=("Fe", "Pt"), variant: int = 2,
                    shift: int = 0) -> np.ndarray:
    """Species of a perfect ordered alloy on fcc sublattices.

    ``kind``: ``"L10"`` (variant = c axis 0/1/2; ``shift`` 0/1 swaps the sublattice pairs, an
    antiphase domain), ``"L12"`` (``species[1]`` on sublattice ``shift``: A3B) or ``"L12_AB3"``
    (``species[0]`` on sublattice ``shift``: AB3).
    """
    A, B = species
    sub = np.asarray(sub)
    if kind == "L10":
        pairs = {2: (0, 3), 0: (0, 1), 1: (0, 2)}[variant]
        onA = np.isin(sub, pairs) ^ bool(shift)
        return np.where(onA, A, B)
    if kind == "L12":
        return np.where(sub == shift, B, A)
    if kind == "L12_AB3":
        return np.where(sub == shift, A, B)
    raise ValueError(kind)


def particle(kind: str = "L10", *, a_A: float = 3.85, c_A: float | None = None,
             radius_A: float = 14.0, species=("Fe", "Pt"), variant: int = 2, shift: int = 0,
             rotation=None, jitter_A: float = 0.0, seed=0, composition: float = 0.5
             ) -> AtomicModel:
    """A spherical fcc-based particle: ``"fcc"`` (all ``species[1]``), ``"A1"`` (random,
    fraction ``composition`` of ``species[0]``), ``"L10"``, ``"L12"``, ``"L12_AB3"``.

    Per-atom truth arrays: ``true_sublattice``, ``true_site_a/b/c``.
    """
    rng = np.random.default_rng(seed)
    pos, sites, sub = fcc_sites(a_A, radius_A, c_A=c_A)
    if kind == "fcc":
        sp = np.full(len(pos), species[1])
    elif kind == "A1":
        sp = np.where(rng.random(len(pos)) < composition, species[0], species[1])
    else:
        sp = ordered_species(sub, kind, species=species, variant=variant, shift=shift)
    if rotation is not None:
        pos = pos @ np.asarray(rotation).T
    if jitter_A:
        pos = pos + rng.normal(0, jitter_A, pos.shape)
    return AtomicModel(pos, sp, arrays={"true_sublattice": sub, "true_site_a": sites[:, 0],
                                        "true_site_b": sites[:, 1],
                                        "true_site_c": sites[:, 2]})


def planted_strain(pos: np.ndarray, *, uniform, radial_amplitude: float, radius_A: float):
    """Displace ``pos`` by ``u = E x + β x |x|² / R²`` (uniform tensor ``E``, smooth radial
    field of amplitude β at ``|x| = R``).

    Returns ``(new positions, strain_fn)``: ``strain_fn(points (m, 3)) -> (m, 3, 3)`` the exact
    small strain ``sym(∇u)`` at undeformed points (here ``∇u`` is symmetric, so it is also the
    full displacement gradient; see :func:`eulerian_strain`) (∇ of ``β x|x|²/R²`` is
    ``β (|x|² I + 2 x xᵀ) / R²``).
    """
    E = np.asarray(uniform, dtype=np.float64)
    beta, R = float(radial_amplitude), float(radius_A)

    def disp(x):
        r2 = np.sum(x * x, axis=1, keepdims=True)
        return x @ E.T + beta * x * r2 / R ** 2

    def strain_fn(x):
        x = np.asarray(x, dtype=np.float64).reshape(-1, 3)
        r2 = np.sum(x * x, axis=1)
        G = E[None] + beta / R ** 2 * (r2[:, None, None] * np.eye(3)[None]
                                       + 2 * x[:, :, None] * x[:, None, :])
        return 0.5 * (G + np.swapaxes(G, 1, 2))

    return pos + disp(pos), strain_fn


def eulerian_strain(G: np.ndarray) -> np.ndarray:
    """Small-strain tensor w.r.t. the *deformed* positions for displacement gradients ``G``
    (``(..., 3, 3)``, w.r.t. the undeformed ones): ``sym(G (I + G)⁻¹)``. This is what a strain
    map measured from the atoms' actual positions estimates; it differs from ``sym(G)`` at
    second order (``~|G|²``)."""
    G = np.asarray(G, dtype=np.float64)
    H = G @ np.linalg.inv(np.eye(3) + G)
    return 0.5 * (H + np.swapaxes(H, -1, -2))
