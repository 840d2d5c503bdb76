"""Structure analysis: lattice fit, displacement and strain, chemical order, bond-orientational
order, radial distribution functions, grains and defects.

All functions take an atomic model (:class:`aet.AtomicModel` or its ``xarray.Dataset``) with
positions (x, y, z) in Å; grid results are ``xarray`` objects with dims ``(z, y, x)`` and
centred Å coords (0 at index ``n // 2``).
"""

from .bond_order import rdf, steinhardt, structure_types
from .grains import (
    coordination,
    cubic_symmetry,
    defects,
    grains,
    local_orientation,
    misorientation_deg,
    surface_atoms,
)
from .lattice import STRUCTURES, LatticeFit, fit_lattice, lattice_arrays
from .order import order_field, order_parameters, variant_table
from .strain import (
    DEFAULT_SIGMA_A,
    displacements,
    local_strain,
    sigma_for_precision,
    strain,
    strain_noise,
)

__all__ = [
    "DEFAULT_SIGMA_A", "STRUCTURES", "LatticeFit", "coordination", "cubic_symmetry", "defects",
    "displacements", "fit_lattice", "grains", "lattice_arrays", "local_orientation",
    "local_strain", "misorientation_deg", "order_field", "order_parameters", "rdf",
    "sigma_for_precision", "steinhardt", "strain", "strain_noise", "structure_types",
    "surface_atoms", "variant_table",
]
