"""aet.atoms: tracing, species classification, refinement against the projections,
per-atom uncertainty, surface flags and clean-up."""

from .tracing import trace

__all__ = ["trace"]
