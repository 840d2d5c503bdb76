"""aet.preprocess — from raw frames to an aligned tilt series.

Each stage takes the TiltSeries DataArray (dims ``(angle, y, x)`` or ``(angle, frame, y, x)``,
coords in Å centred at ``n // 2``, angles in degrees) plus keyword options, never mutates it,
keeps dask-backed input lazy where the step allows, and returns ``(DataArray, result_dict)``;
the facade methods of :class:`aet.TiltSeries` store the dict in the provenance record.
"""

from ._common import AngleOrderWarning
from .align import align, apply_alignment, estimate_tilt_axis_rotation, tilt_axis_offset
from .background import estimate_support, remove_background
from .denoise import anscombe, denoise, estimate_noise_sigma, inverse_anscombe
from .distortion import (
    correct_drift_shear,
    correct_scan_distortion,
    estimate_drift_shear,
    estimate_lattice_distortion,
)
from .frames import register_frames
from .matching import projection_matching

__all__ = [
    "AngleOrderWarning",
    "align",
    "anscombe",
    "apply_alignment",
    "correct_drift_shear",
    "correct_scan_distortion",
    "denoise",
    "estimate_drift_shear",
    "estimate_lattice_distortion",
    "estimate_noise_sigma",
    "estimate_support",
    "estimate_tilt_axis_rotation",
    "inverse_anscombe",
    "projection_matching",
    "register_frames",
    "remove_background",
    "tilt_axis_offset",
]
