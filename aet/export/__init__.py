"""Hand-off to other codes: ASE, pymatgen, DFT input sets (:mod:`aet.export.dft`)."""

from . import dft
from .ase_pymatgen import from_ase, from_pymatgen, to_ase, to_pymatgen

__all__ = ["dft", "from_ase", "from_pymatgen", "to_ase", "to_pymatgen"]
