"""The data classes (facades over xarray) and their shared metadata helpers."""

from ..core.meta import (
    centred_coord,
    get_provenance,
    indices_to_positions,
    positions_to_indices,
    provenance_record,
    with_provenance,
)
from ._namespaces import ModelAnalysis, ModelNeighbours
from .atomicmodel import AtomicModel, Refinement, build_model_dataset
from .tiltseries import TiltSeries
from .tracker import NucleusTracker  # light (NumPy/xarray only); registers the class
from .volume import Volume

__all__ = ["AtomicModel", "ModelAnalysis", "ModelNeighbours", "NucleusTracker", "Refinement",
           "TiltSeries",
           "Volume", "build_model_dataset",
           "centred_coord", "get_provenance", "indices_to_positions", "positions_to_indices",
           "provenance_record", "with_provenance"]
