"""aet.simulate — simulated AET experiments with ground truth.

- structures: :func:`nanoparticle`, :func:`fept_particle`, displacement fields
  (:class:`UniformStrain`, :class:`CoreShellStrain`, :class:`ScrewDislocation`, :func:`displace`)
- forward model: :func:`project_atoms` (ADF-STEM projections, analytic per atom),
  :func:`render_volume` (ground-truth volume)
- scoring: :func:`score` → :class:`Score`
"""

from .forward import project_atoms, render_volume, rotation_matrices
from .score import Score, match_atoms, score
from .structures import (
    ANTIPHASE_BOUNDARY,
    ANTISITE,
    DISLOCATION_CORE,
    GRAIN_BOUNDARY,
    SWAP,
    CoreShellStrain,
    ScrewDislocation,
    UniformStrain,
    displace,
    fept_particle,
    nanoparticle,
)

__all__ = [
    "ANTIPHASE_BOUNDARY", "ANTISITE", "DISLOCATION_CORE", "GRAIN_BOUNDARY", "SWAP",
    "CoreShellStrain", "Score", "ScrewDislocation", "UniformStrain", "displace",
    "fept_particle", "match_atoms", "nanoparticle", "project_atoms", "render_volume",
    "rotation_matrices", "score",
]
