"""aet.atoms: tracing, species classification, refinement against the projections,
per-atom uncertainty, surface flags and clean-up.

Public functions (core level: xarray in, xarray out; the facades ``Volume.trace_atoms``,
``AtomicModel.classify/.refine/...`` call them):

- :func:`trace` — refined 3D local maxima with greedy minimum-distance acceptance;
- :func:`classify` — species from local volume profiles (+ non-atom class, confidence);
- :func:`refine` — positions, per-species radial profiles and the detector response against
  the projections;
- :func:`uncertainty` — per-atom position uncertainty (Cramér–Rao or bootstrap);
- :func:`flag_surface`, :func:`cleanup` — surface atoms, isolated/duplicate peaks.
"""

from .classification import classify, local_profiles
from .refinement import model_images, refine, uncertainty
from .surface import cleanup, flag_surface
from .tracing import trace

__all__ = ["classify", "cleanup", "flag_surface", "local_profiles", "model_images", "refine",
           "trace", "uncertainty"]
