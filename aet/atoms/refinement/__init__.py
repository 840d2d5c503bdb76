"""Refinement of an atomic model against the aligned projections, and per-atom uncertainty.

- :mod:`~aet.atoms.refinement.problem`: the forward model (per-species radial profiles
  learned from the data, a power-law detector response, per-projection offsets) and its
  least-squares problem with held-out pixels;
- :mod:`~aet.atoms.refinement.alignment`: projection geometry and the per-projection
  alignment (shifts, Euler corrections) with its gauge;
- :mod:`~aet.atoms.refinement.uncertainty`: per-atom position covariance;
- :func:`refine`, :func:`uncertainty`: the public functions (xarray in, xarray out).
"""

from .alignment import projection_geometry, rotation_derivatives
from .driver import refine, uncertainty
from .problem import DEFAULT_SIGMAS_A, ProjectionProblem, holdout_pixels, model_images

__all__ = ["DEFAULT_SIGMAS_A", "ProjectionProblem", "holdout_pixels", "model_images",
           "projection_geometry",
           "refine", "rotation_derivatives", "uncertainty"]
