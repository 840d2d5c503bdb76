"""aet.simulate — simulated AET experiments with ground truth.

- structures: :func:`nanoparticle`, :func:`fept_particle`, :func:`fept_film` (extended
  object), displacement fields
  (:class:`UniformStrain`, :class:`CoreShellStrain`, :class:`ScrewDislocation`, :func:`displace`)
- forward model: :func:`project_atoms` (ADF-STEM projections, analytic per atom),
  :func:`render_volume` (ground-truth volume)
- degradations: :func:`simulate_acquisition` (noise, frames, drift, scan distortion, shifts,
  angle errors, tilt axis, carbon background — all recorded)
- image engines: the Gaussian engine above (fast, the model family refinement fits) and
  :class:`AbtemEngine` (abTEM's projected potential, a response calibrated on multislice,
  abTEM's probe, point sampling: for accuracy figures; needs ``pip install "aet[abtem]"``)
- benchmark cases: :func:`fept_benchmark`, :func:`fept_film_benchmark`,
  :func:`benchmark_from_model` (any truth model) → :class:`Benchmark`, each with
  ``engine="gaussian"`` or ``"abtem"``
- scoring: :func:`score` → :class:`Score`
- 4D: :func:`nucleation_series` → :class:`NucleationSeries` (true nuclei and events)
"""

from .abtem_engine import AbtemEngine
from .benchmark import Benchmark, benchmark_from_model, fept_benchmark, fept_film_benchmark
from .degrade import (
    Acquisition,
    add_detector_noise,
    carbon_background,
    euler_from_alignment,
    frame_transform,
    simulate_acquisition,
    true_euler_deg,
)
from .forward import project_atoms, render_volume, rotation_matrices
from .nucleation import NucleationEvent, NucleationSeries, nucleation_series
from .scoring import Score, match_atoms, score
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
    fept_film,
    fept_particle,
    nanoparticle,
)

__all__ = [
    "AbtemEngine", "Acquisition", "Benchmark", "add_detector_noise", "benchmark_from_model",
    "fept_film_benchmark", "carbon_background",
    "euler_from_alignment", "fept_benchmark", "frame_transform", "simulate_acquisition",
    "true_euler_deg", "NucleationEvent", "NucleationSeries", "nucleation_series",
    "ANTIPHASE_BOUNDARY", "ANTISITE", "DISLOCATION_CORE", "GRAIN_BOUNDARY", "SWAP",
    "CoreShellStrain", "Score", "ScrewDislocation", "UniformStrain", "displace",
    "fept_film", "fept_particle", "match_atoms", "nanoparticle", "project_atoms", "render_volume",
    "rotation_matrices", "score",
]
