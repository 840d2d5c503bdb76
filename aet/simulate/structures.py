"""Nanoparticle structures with ground truth: shapes, FePt phases, grains, defects, strain.

Every builder returns an :class:`~aet.AtomicModel` whose per-atom arrays are the ground truth
of everything that was planted:

======================  ====================================================================
array                   meaning
======================  ====================================================================
``atom_id``             stable integer id of the atom (survives shuffling/selection)
``grain_id``            grain the atom belongs to (0 … n_grains − 1)
``phase``               ``"A1"``, ``"L10"``, ``"L12_FePt3"``, ``"L12_Fe3Pt"``, or the lattice
                        name (``"fcc"``, ``"bcc"``, ``"hcp"``) for single-element particles
``variant``             L1_0 c-axis variant: 0, 1, 2 = c along the grain's crystal x, y, z;
                        −1 when not L1_0
``antiphase_domain``    0 or 1: the side of a planted antiphase boundary (order swapped on 1)
``ideal_species``       species before antisite/swap defects were planted
``defect``              bit mask: 1 antisite, 2 swap, 4 next to an antiphase boundary,
                        8 next to a grain boundary, 16 dislocation core
``in_core``             True inside the Pt-rich core (when requested)
``displacement_x/y/z``  true displacement (Å) applied by displacement fields, in the final frame
======================  ====================================================================

Lengths in Å; positions (x, y, z) centred near 0 Å. Randomness takes ``seed`` (int or
``numpy.random.Generator``); the same seed gives the same particle.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from ase.build import bulk
from ase.cluster import wulff_construction
from ase.data import atomic_numbers, reference_states
from scipy.spatial import ConvexHull, cKDTree
from scipy.spatial.transform import Rotation

from ..model.atomicmodel import AtomicModel

__all__ = ["ANTIPHASE_BOUNDARY", "ANTISITE", "DISLOCATION_CORE", "FEPT_PHASES", "GRAIN_BOUNDARY",
           "LATTICES", "SHAPES", "SWAP", "CoreShellStrain", "ScrewDislocation", "UniformStrain",
           "displace", "fept_film", "fept_particle", "nanoparticle", "orientation_matrix"]

# defect bit flags
ANTISITE, SWAP, ANTIPHASE_BOUNDARY, GRAIN_BOUNDARY, DISLOCATION_CORE = 1, 2, 4, 8, 16

SHAPES = ("sphere", "cuboctahedron", "octahedron", "cube", "wulff", "slab")
LATTICES = ("fcc", "bcc", "hcp")
FEPT_PHASES = ("A1", "L10", "L12_FePt3", "L12_Fe3Pt")
# lattice parameters (Å) of the FePt phases; L1_0 c/a ≈ 0.964
FEPT_A = {"A1": 3.81, "L10": 3.86, "L12_FePt3": 3.87, "L12_Fe3Pt": 3.73}
L10_C_OVER_A = 0.964


def _atomic_volume(symmetry: str, ref: dict) -> float | None:
    a = ref.get("a")
    if a is None:
        return None
    if symmetry == "fcc":
        return a**3 / 4
    if symmetry == "bcc":
        return a**3 / 2
    if symmetry == "hcp":
        return math.sqrt(3) / 4 * a**2 * ref.get("c/a", math.sqrt(8 / 3)) * a
    return None


def _default_a(symbol: str, lattice: str) -> float:
    """Lattice parameter (Å) of ``symbol`` in ``lattice``: ASE's reference state when it has
    that structure, else the one with the same atomic volume (ideal c/a for hcp)."""
    ref = reference_states[atomic_numbers[symbol]] or {}
    sym = ref.get("symmetry")
    if sym == lattice and "a" in ref:
        return float(ref["a"])
    v = _atomic_volume(sym, ref) or 15.0  # ~ a typical metal when ASE has nothing usable
    if lattice == "fcc":
        return (4 * v) ** (1 / 3)
    if lattice == "bcc":
        return (2 * v) ** (1 / 3)
    return (math.sqrt(2) * v) ** (1 / 3)


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def orientation_matrix(orientation, rng: np.random.Generator) -> np.ndarray:
    """``None`` → identity, ``"random"`` → uniform random rotation, or a 3×3 matrix."""
    if orientation is None:
        return np.eye(3)
    if isinstance(orientation, str):
        if orientation != "random":
            raise ValueError(
                f"orientation must be None, 'random' or a 3x3 rotation matrix, got "
                f"{orientation!r}"
            )
        return Rotation.random(random_state=rng).as_matrix()
    m = np.asarray(orientation, dtype=np.float64)
    if m.shape != (3, 3) or not np.allclose(m @ m.T, np.eye(3), atol=1e-6) \
            or np.linalg.det(m) < 0:
        raise ValueError("orientation must be a proper 3x3 rotation matrix (R Rᵀ = 1, det 1)")
    return m


# ----------------------------------------------------------------------------- lattices
def _basis(lattice: str, a: float, c: float | None):
    """Conventional cell (3x3 rows) and fractional basis from ASE."""
    if lattice == "fcc":
        at = bulk("Cu", "fcc", a=a, cubic=True)
    elif lattice == "bcc":
        at = bulk("Fe", "bcc", a=a, cubic=True)
    elif lattice == "hcp":
        at = bulk("Mg", "hcp", a=a, c=c if c else a * math.sqrt(8 / 3), orthorhombic=True)
    else:
        raise ValueError(f"lattice must be one of {LATTICES}, got {lattice!r}")
    return np.array(at.cell[:]), at.get_scaled_positions(wrap=True)


def _block(cell: np.ndarray, basis: np.ndarray, radius: float):
    """All lattice points within ``radius`` of the origin: positions (n, 3), the basis index
    of each, and its fractional coordinate (cell index + basis)."""
    lengths = np.linalg.norm(cell, axis=1)
    n = [int(math.ceil(radius / l)) + 1 for l in lengths]
    ii, jj, kk = np.meshgrid(*[np.arange(-m, m + 1) for m in n], indexing="ij")
    cells = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=1).astype(np.float64)
    frac = (cells[:, None, :] + basis[None, :, :]).reshape(-1, 3)
    site = np.tile(np.arange(len(basis)), len(cells))
    pos = frac @ cell
    keep = np.einsum("ij,ij->i", pos, pos) <= radius**2
    return pos[keep], site[keep], frac[keep]


def _shape_mask(pos: np.ndarray, shape: str, radius: float, *, aux=None) -> np.ndarray:
    """Inside test in the particle frame; ``radius`` = half the vertex-to-vertex size
    (sphere: the radius); ``aux``: Wulff facet equations or the slab's half sizes."""
    x, y, z = np.abs(pos[:, 0]), np.abs(pos[:, 1]), np.abs(pos[:, 2])
    eps = 1e-6
    if shape == "sphere":
        return x**2 + y**2 + z**2 <= radius**2 + eps
    if shape == "octahedron":
        return x + y + z <= radius + eps
    if shape == "cuboctahedron":
        h = radius / math.sqrt(2)
        return (x <= h + eps) & (y <= h + eps) & (z <= h + eps) \
            & (x + y + z <= math.sqrt(2) * radius + eps)
    if shape == "cube":
        h = radius / math.sqrt(3)
        return (x <= h + eps) & (y <= h + eps) & (z <= h + eps)
    if shape == "slab":
        hx, hy, hz = aux
        return (x <= hx + eps) & (y <= hy + eps) & (z <= hz + eps)
    if shape == "wulff":
        eq = aux  # facet planes n·r + d ≤ 0 inside
        return np.all(pos @ eq[:, :3].T + eq[:, 3] <= 1e-6, axis=1)
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def _wulff_hull(diameter_A: float, a: float, surfaces, energies) -> np.ndarray:
    """Convex hull of an ASE fcc Wulff construction with about the volume of a sphere of
    ``diameter_A`` (grown by half a layer so its surface atoms are inside); returns the facet
    plane equations (n_facets, 4) of :class:`scipy.spatial.ConvexHull`."""
    n_atoms = max(13, int(round(4 / a**3 * math.pi / 6 * diameter_A**3)))
    cl = wulff_construction("Cu", surfaces, energies, n_atoms, "fcc", rounding="closest",
                            latticeconstant=a)
    p = cl.get_positions()
    p = p - p.mean(axis=0)
    r = np.linalg.norm(p, axis=1, keepdims=True)
    p = p * (1 + 0.25 * a / np.maximum(r, 1e-9))
    return ConvexHull(p).equations


# ----------------------------------------------------------------------------- truth model
def _finalize(pos, species, arrays: dict, rot: np.ndarray, attrs: dict) -> AtomicModel:
    n = len(pos)
    centre = pos.mean(axis=0) if n else np.zeros(3)
    pos = (pos - centre) @ rot.T
    arrays = dict(arrays)
    for k in ("displacement_x", "displacement_y", "displacement_z"):
        arrays.setdefault(k, np.zeros(n))
    d = np.stack([arrays["displacement_x"], arrays["displacement_y"],
                  arrays["displacement_z"]], axis=1) @ rot.T
    arrays["displacement_x"], arrays["displacement_y"], arrays["displacement_z"] = d.T
    arrays.setdefault("atom_id", np.arange(n))
    attrs = {**attrs, "orientation_matrix": rot.tolist()}
    return AtomicModel(pos, species, arrays=arrays, **attrs)


def nanoparticle(element: str | dict = "Pt", diameter_A: float = 20.0, *,
                 lattice: str = "fcc", a_A: float | None = None, c_A: float | None = None,
                 shape: str = "sphere", orientation=None, wulff_surfaces=((1, 0, 0), (1, 1, 1)),
                 wulff_energies=(1.0, 0.9), seed=0) -> AtomicModel:
    """A single-crystal nanoparticle of one element or a random alloy.

    Parameters
    ----------
    element : str or dict
        Element symbol, or a composition ``{"Fe": 0.5, "Pt": 0.5}`` (random solid solution).
    diameter_A : float
        Sphere diameter, or vertex-to-vertex size of the polyhedra (Å); for ``"wulff"`` the
        diameter of a sphere of equal volume.
    lattice : {"fcc", "bcc", "hcp"}
    a_A, c_A : float, optional
        Lattice parameters (Å); default: ASE's reference state of the (first) element, or
        the lattice parameter with its atomic volume when its reference structure differs.
    shape : {"sphere", "cuboctahedron", "octahedron", "cube", "wulff"}
        Facets are those of the crystal frame (cuboctahedron: {100} and {111}); ``"wulff"``
        uses :func:`ase.cluster.wulff_construction` (fcc) with ``wulff_surfaces/energies``.
    orientation : None, "random" or (3, 3) rotation matrix
        Applied to the whole particle after it is cut (crystal frame → sample frame).
    seed : int or Generator

    Examples
    --------
    >>> m = nanoparticle("Pt", 12.0, shape="cuboctahedron")
    >>> m.species_counts()
    {'Pt': 55}
    """
    rng = _rng(seed)
    comp = {element: 1.0} if isinstance(element, str) else dict(element)
    for el in comp:
        if el not in atomic_numbers:
            raise ValueError(f"element contains unknown symbol {el!r}; use e.g. 'Pt' or "
                             f"{{'Fe': 0.5, 'Pt': 0.5}}")
    if not diameter_A > 0:
        raise ValueError(f"diameter_A must be > 0 Å, got {diameter_A!r}")
    first = next(iter(comp))
    if lattice not in LATTICES:
        raise ValueError(f"lattice must be one of {LATTICES}, got {lattice!r}")
    if a_A is None:
        a_A = _default_a(first, lattice)
    if shape == "wulff" and lattice != "fcc":
        raise ValueError("shape='wulff' is available for lattice='fcc' only")
    cell, basis = _basis(lattice, float(a_A), c_A)
    radius = diameter_A / 2
    pos, site, _ = _block(cell, basis, radius * 1.2 + 2 * float(np.max(np.linalg.norm(cell, 1))))
    hull = _wulff_hull(diameter_A, a_A, wulff_surfaces, wulff_energies) \
        if shape == "wulff" else None
    keep = _shape_mask(pos, shape, radius, aux=hull)
    pos, site = pos[keep], site[keep]
    els = list(comp)
    p = np.array([comp[e] for e in els], dtype=float)
    if np.any(p < 0) or p.sum() <= 0:
        raise ValueError("element composition fractions must be ≥ 0 and not all 0")
    species = np.array(els)[rng.choice(len(els), size=len(pos), p=p / p.sum())]
    rot = orientation_matrix(orientation, rng)
    n = len(pos)
    arrays = {"grain_id": np.zeros(n, int), "phase": np.full(n, lattice),
              "variant": np.full(n, -1), "antiphase_domain": np.zeros(n, int),
              "ideal_species": species.copy(), "defect": np.zeros(n, int),
              "in_core": np.zeros(n, bool)}
    return _finalize(pos, species, arrays, rot,
                     {"shape": shape, "diameter_A": float(diameter_A), "lattice": lattice,
                      "a_A": float(a_A)})


def _fept_species(phase: str, variant: int, parity: np.ndarray, rng, pt_fraction: float):
    """Ideal species of fcc sites with per-axis parity (0/1 = integer/half fractional)."""
    n = len(parity)
    if phase == "A1":
        return np.where(rng.random(n) < pt_fraction, "Pt", "Fe")
    if phase == "L10":
        return np.where(parity[:, variant] == 1, "Pt", "Fe")
    corner = ~parity.any(axis=1)
    if phase == "L12_FePt3":
        return np.where(corner, "Fe", "Pt")
    if phase == "L12_Fe3Pt":
        return np.where(corner, "Pt", "Fe")
    raise ValueError(f"phase must be one of {FEPT_PHASES}, got {phase!r}")


def fept_particle(diameter_A: float = 30.0, *, phase: str | Sequence[str] = "L10",
                  variant: int | str | Sequence[int] = "random", n_grains: int = 1,
                  grain_orientations=None, shape: str = "sphere", c_over_a: float = L10_C_OVER_A,
                  pt_fraction: float = 0.5, pt_rich_core_A: float | None = None,
                  core_pt_fraction: float = 0.8, antiphase_boundary=False,
                  antisite_fraction: float = 0.0, n_swaps: int = 0,
                  displacements: Sequence[Callable] = (), orientation=None,
                  slab_A=None, seed=0) -> AtomicModel:
    """An FePt nanoparticle: A1 / L1_0 / L1_2 grains with planted defects and strain.

    Parameters
    ----------
    diameter_A : float
        Particle size (Å), as in :func:`nanoparticle`.
    phase : str or list of str
        ``"A1"`` (random, ``pt_fraction`` Pt), ``"L10"`` (c/a = ``c_over_a``), ``"L12_FePt3"``
        or ``"L12_Fe3Pt"``; one per grain (cycled).
    variant : int, "random" or list
        L1_0 c-axis along the grain's crystal x (0), y (1) or z (2).
    n_grains : int
        Number of grains: Voronoi cells around random seeds inside the particle; grain 0 keeps
        the crystal frame, the others get random orientations (``grain_orientations``, a list
        of None / "random" / 3×3 per grain, overrides both).
        Atoms closer than 2.0 Å across a boundary are removed; atoms within 3 Å of another
        grain are flagged ``GRAIN_BOUNDARY``.
    shape : see :func:`nanoparticle` (facets of grain 0), or ``"slab"`` with
        ``slab_A=(Lx, Ly, thickness)`` (Å, a box centred at 0; see :func:`fept_film`).
    pt_rich_core_A : float, optional
        Radius (Å) of a Pt-rich core: there every Fe becomes Pt with a probability that brings
        the core to ``core_pt_fraction`` Pt.
    antiphase_boundary : bool or (3,) normal
        Plant a planar antiphase boundary through the centre of each ordered grain (ordering
        swapped on one side; normal random when True).
    antisite_fraction : float
        Fraction of the atoms of ordered grains whose species is flipped (Fe ↔ Pt).
    n_swaps : int
        Number of nearest-neighbour Fe–Pt pairs exchanged (composition kept).
    displacements : sequence of callables
        Displacement fields (:class:`UniformStrain`, :class:`CoreShellStrain`,
        :class:`ScrewDislocation`) applied to the positions in the crystal frame of grain 0;
        the true displacement is recorded.
    orientation : None, "random" or (3, 3)
        Rotation of the whole particle at the end.
    seed : int or Generator

    Returns
    -------
    AtomicModel
        With the truth arrays listed in the module docstring.
    """
    rng = _rng(seed)
    if not diameter_A > 0:
        raise ValueError(f"diameter_A must be > 0 Å, got {diameter_A!r}")
    if int(n_grains) < 1:
        raise ValueError(f"n_grains must be ≥ 1, got {n_grains!r}")
    n_grains = int(n_grains)
    phases = [phase] if isinstance(phase, str) else list(phase)
    for ph in phases:
        if ph not in FEPT_PHASES:
            raise ValueError(f"phase must be one of {FEPT_PHASES}, got {ph!r}")
    phases = [phases[g % len(phases)] for g in range(n_grains)]
    if isinstance(variant, str):
        if variant != "random":
            raise ValueError(f"variant must be 0, 1, 2, 'random' or a list, got {variant!r}")
        variants = [int(v) for v in rng.integers(0, 3, n_grains)]
    elif np.ndim(variant) == 0:
        variants = [int(variant)] * n_grains
    else:
        variants = [int(variant[g % len(variant)]) for g in range(n_grains)]
    if any(v not in (0, 1, 2) for v in variants):
        raise ValueError(f"variant values must be 0, 1 or 2 (c along x, y, z), got {variant!r}")
    if not 0 <= antisite_fraction <= 1:
        raise ValueError(f"antisite_fraction must be in [0, 1], got {antisite_fraction!r}")
    radius = diameter_A / 2
    cubic_cell, basis = _basis("fcc", 1.0, None)
    parity_basis = (np.rint(2 * basis) % 2).astype(int)
    hull = _wulff_hull(diameter_A, FEPT_A[phases[0]], ((1, 0, 0), (1, 1, 1)), (1.0, 0.9)) \
        if shape == "wulff" else None
    if shape == "slab":
        if slab_A is None or np.shape(slab_A) != (3,) or min(slab_A) <= 0:
            raise ValueError("shape='slab' needs slab_A=(Lx, Ly, thickness) in Å (> 0); "
                             "use aet.simulate.fept_film")
        hull = np.asarray(slab_A, dtype=float) / 2
        radius = float(np.linalg.norm(hull))
    if n_grains == 1:
        seeds = np.zeros((1, 3))
    elif shape == "slab":
        seeds = rng.uniform(-hull, hull, (n_grains, 3))
    else:
        seeds = rng.normal(size=(n_grains, 3))
        seeds *= (0.55 * radius * rng.random(n_grains) ** (1 / 3)
                  / np.linalg.norm(seeds, axis=1))[:, None]
    rots = [np.eye(3) if grain_orientations is None
            else orientation_matrix(grain_orientations[0], rng)]
    for g in range(1, n_grains):
        if grain_orientations is not None:
            rots.append(orientation_matrix(grain_orientations[g % len(grain_orientations)],
                                           rng))
        else:
            rots.append(Rotation.random(random_state=rng).as_matrix())
    all_pos, all_sp, all_g, all_par, all_dom = [], [], [], [], []
    for g in range(n_grains):
        ph, var = phases[g], variants[g]
        a = FEPT_A[ph]
        scale = np.ones(3)
        if ph == "L10":
            scale[var] = c_over_a
        cell = cubic_cell * a * scale[None, :]
        cover = radius * 1.2 + np.linalg.norm(seeds[g]) + 2 * a
        pos, site, _ = _block(cell, basis, cover)
        origin = seeds[g] if n_grains > 1 else np.zeros(3)
        pos = pos @ rots[g].T + origin
        keep = _shape_mask(pos, shape, radius, aux=hull)
        if n_grains > 1:
            d = np.linalg.norm(pos[:, None, :] - seeds[None, :, :], axis=2)
            keep &= d.argmin(axis=1) == g
        pos, site = pos[keep], site[keep]
        par = parity_basis[site]
        all_pos.append(pos)
        all_par.append(par)
        all_g.append(np.full(len(pos), g))
        all_sp.append(_fept_species(ph, var, par, rng, pt_fraction))
        dom = np.zeros(len(pos), int)
        if antiphase_boundary is not False and antiphase_boundary is not None \
                and ph != "A1":
            nvec = rng.normal(size=3) if antiphase_boundary is True \
                else np.asarray(antiphase_boundary, float)
            nvec = nvec / np.linalg.norm(nvec)
            dom = ((pos - pos.mean(axis=0)) @ nvec > 0).astype(int)
        all_dom.append(dom)
    pos = np.concatenate(all_pos)
    species = np.concatenate(all_sp).astype("<U2")
    grain = np.concatenate(all_g)
    parity = np.concatenate(all_par)
    domain = np.concatenate(all_dom)
    n = len(pos)
    defect = np.zeros(n, int)
    # remove atoms too close across grain boundaries, flag boundary atoms
    if n_grains > 1:
        tree = cKDTree(pos)
        pairs = tree.query_pairs(2.0, output_type="ndarray")
        pairs = pairs[grain[pairs[:, 0]] != grain[pairs[:, 1]]]
        removed = np.zeros(n, bool)
        for i, j in pairs:
            if not removed[i] and not removed[j]:
                removed[j] = True
        keep = ~removed
        pos, species, grain, parity, domain, defect = (
            pos[keep], species[keep], grain[keep], parity[keep], domain[keep], defect[keep])
        n = len(pos)
        tree = cKDTree(pos)
        pairs = tree.query_pairs(3.0, output_type="ndarray")
        pairs = pairs[grain[pairs[:, 0]] != grain[pairs[:, 1]]]
        defect[np.unique(pairs)] |= GRAIN_BOUNDARY
    # antiphase boundaries: swap the order on domain 1 (a ½⟨101⟩-type shift of the ordering)
    phase_arr = np.array([phases[g] for g in grain]) if n else np.zeros(0, "<U9")
    variant_arr = np.array([variants[g] if phases[g] == "L10" else -1 for g in grain], int)
    flip = domain == 1
    species = np.where(flip & (species == "Fe"), "Pt",
                       np.where(flip & (species == "Pt"), "Fe", species)).astype("<U2")
    if np.any(flip):
        tree = cKDTree(pos)
        pairs = tree.query_pairs(3.0, output_type="ndarray")
        pairs = pairs[(domain[pairs[:, 0]] != domain[pairs[:, 1]])
                      & (grain[pairs[:, 0]] == grain[pairs[:, 1]])]
        defect[np.unique(pairs)] |= ANTIPHASE_BOUNDARY
    # Pt-rich core
    in_core = np.zeros(n, bool)
    if pt_rich_core_A is not None:
        centre = pos.mean(axis=0)
        in_core = np.linalg.norm(pos - centre, axis=1) <= float(pt_rich_core_A)
        fe = in_core & (species == "Fe")
        n_core = int(in_core.sum())
        need = max(0.0, core_pt_fraction * n_core - float(np.sum(in_core & (species == "Pt"))))
        p_flip = min(1.0, need / max(1, int(fe.sum())))
        species = np.where(fe & (rng.random(n) < p_flip), "Pt", species).astype("<U2")
    ideal = species.copy()
    # antisite defects on ordered grains
    if antisite_fraction > 0:
        ordered = phase_arr != "A1"
        pick = ordered & (rng.random(n) < antisite_fraction)
        species = np.where(pick, np.where(species == "Fe", "Pt", "Fe"), species).astype("<U2")
        defect[pick] |= ANTISITE
    # swaps of nearest-neighbour Fe-Pt pairs
    if n_swaps > 0:
        tree = cKDTree(pos)
        pairs = tree.query_pairs(3.0, output_type="ndarray")
        pairs = pairs[(species[pairs[:, 0]] != species[pairs[:, 1]])]
        pairs = pairs[rng.permutation(len(pairs))]
        used = np.zeros(n, bool)
        done = 0
        for i, j in pairs:
            if done >= n_swaps:
                break
            if used[i] or used[j]:
                continue
            species[i], species[j] = species[j], species[i]
            used[i] = used[j] = True
            defect[i] |= SWAP
            defect[j] |= SWAP
            done += 1
    # displacement fields (crystal frame of grain 0, particle centred)
    pos = pos - pos.mean(axis=0)
    disp = np.zeros((n, 3))
    for field in displacements:
        disp += field(pos)
        core = getattr(field, "core_mask", None)
        if core is not None:
            defect[core(pos)] |= DISLOCATION_CORE
    pos = pos + disp
    rot = orientation_matrix(orientation, rng)
    arrays = {"grain_id": grain, "phase": phase_arr.astype(str), "variant": variant_arr,
              "antiphase_domain": domain, "ideal_species": ideal, "defect": defect,
              "in_core": in_core, "displacement_x": disp[:, 0], "displacement_y": disp[:, 1],
              "displacement_z": disp[:, 2]}
    model = _finalize(pos + 0.0, species, arrays, rot,
                      {"shape": shape, "diameter_A": float(diameter_A), "n_grains": n_grains,
                       "grain_phases": phases, "grain_variants": variants,
                       "grain_orientations": [r.tolist() for r in rots]})
    return model


def fept_film(size_A=(60.0, 60.0, 20.0), *, lattice_orientation=None, **kw) -> AtomicModel:
    """An extended FePt film: a box ``size_A = (Lx, Ly, thickness)`` Å centred at 0 with its
    faces normal to x, y, z (the beam runs along z at zero tilt).

    Make ``Lx`` larger than the field of view so material enters and leaves the view as the
    tilt changes (the "extended object" case of docs/conventions.rst). ``lattice_orientation``
    (None, "random" or 3×3) rotates the crystal inside the fixed box; further keywords go to
    :func:`fept_particle` (``phase``, ``variant``, ``n_grains``, defects, ``seed``...).

    Examples
    --------
    >>> m = fept_film((30.0, 30.0, 8.0), phase="L10", variant=2)
    >>> bool(abs(m.positions[:, 2]).max() <= 4.0)
    True
    """
    if np.shape(size_A) != (3,):
        raise ValueError(f"size_A must be (Lx, Ly, thickness) in Å, got {size_A!r}")
    if "orientation" in kw or "shape" in kw:
        raise ValueError("fept_film keeps the film in the xy plane: pass lattice_orientation= "
                         "instead of orientation=/shape=")
    n_grains = int(kw.pop("n_grains", 1))
    orients = kw.pop("grain_orientations", None)
    if orients is None:
        orients = [lattice_orientation] + ["random"] * (n_grains - 1)
    size = tuple(float(v) for v in size_A)
    return fept_particle(float(np.linalg.norm(size)), shape="slab", slab_A=size,
                         n_grains=n_grains, grain_orientations=orients, **kw)


# ----------------------------------------------------------------------------- displacements
@dataclass(frozen=True)
class UniformStrain:
    """Homogeneous strain: u = ε · r, with ε a scalar (isotropic) or a symmetric 3×3 tensor
    (dimensionless), r measured from the particle centre (Å)."""

    strain: float | Sequence[Sequence[float]]

    def tensor(self) -> np.ndarray:
        e = np.asarray(self.strain, dtype=float)
        if e.ndim == 0:
            return float(e) * np.eye(3)
        if e.shape != (3, 3) or not np.allclose(e, e.T):
            raise ValueError("strain must be a number or a symmetric 3x3 tensor")
        return e

    def __call__(self, pos: np.ndarray) -> np.ndarray:
        return pos @ self.tensor().T


@dataclass(frozen=True)
class CoreShellStrain:
    """Radial displacement: u_r = ε_core · r inside ``core_radius_A``, then continuing with
    ε_shell beyond it (u_r = ε_core R + ε_shell (r − R)); continuous at R."""

    core_radius_A: float
    core_strain: float = -0.01
    shell_strain: float = 0.01

    def __call__(self, pos: np.ndarray) -> np.ndarray:
        r = np.linalg.norm(pos, axis=1)
        R = float(self.core_radius_A)
        ur = np.where(r <= R, self.core_strain * r,
                      self.core_strain * R + self.shell_strain * (r - R))
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.where(r[:, None] > 0, pos / r[:, None], 0.0)
        return ur[:, None] * unit


@dataclass(frozen=True)
class ScrewDislocation:
    """Straight screw dislocation: u = b/(2π) · atan2(η, ξ) along the line direction t,
    where (ξ, η) are coordinates in the plane ⊥ t about the line through ``point_A``.
    Atoms within ``core_radius_A`` of the line are flagged ``DISLOCATION_CORE``."""

    burgers_A: float = 3.85 / math.sqrt(2)
    direction: Sequence[float] = (1.0, 1.0, 0.0)
    point_A: Sequence[float] = (0.0, 0.0, 0.0)
    core_radius_A: float = 3.0

    def _frame(self):
        t = np.asarray(self.direction, float)
        t = t / np.linalg.norm(t)
        helper = np.array([0.0, 0.0, 1.0]) if abs(t[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        e1 = np.cross(t, helper)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(t, e1)
        return t, e1, e2

    def __call__(self, pos: np.ndarray) -> np.ndarray:
        t, e1, e2 = self._frame()
        rel = pos - np.asarray(self.point_A, float)
        theta = np.arctan2(rel @ e2, rel @ e1)
        return (self.burgers_A / (2 * math.pi) * theta)[:, None] * t[None, :]

    def core_mask(self, pos: np.ndarray) -> np.ndarray:
        t, _, _ = self._frame()
        rel = pos - np.asarray(self.point_A, float)
        perp = rel - (rel @ t)[:, None] * t[None, :]
        return np.linalg.norm(perp, axis=1) <= self.core_radius_A


def displace(model: AtomicModel, *fields: Callable) -> AtomicModel:
    """Apply displacement fields (callables ``u(positions) -> (n, 3)`` Å) to a model,
    evaluated at the current positions relative to the centroid; the applied displacement
    is added to the ``displacement_x/y/z`` truth arrays."""
    pos = model.positions
    rel = pos - pos.mean(axis=0)
    u = np.zeros_like(pos)
    defect = model["defect"].copy() if "defect" in model else np.zeros(len(pos), int)
    for f in fields:
        u += f(rel)
        core = getattr(f, "core_mask", None)
        if core is not None:
            defect[core(rel)] |= DISLOCATION_CORE
    prev = {k: (model[k] if k in model else np.zeros(len(pos)))
            for k in ("displacement_x", "displacement_y", "displacement_z")}
    out = model.with_positions(pos + u)
    return out.with_arrays(displacement_x=prev["displacement_x"] + u[:, 0],
                           displacement_y=prev["displacement_y"] + u[:, 1],
                           displacement_z=prev["displacement_z"] + u[:, 2], defect=defect)
