"""4D AET: register atomic models of one particle across annealing times, find nuclei of the
ordered phase and track them (birth, growth, shrinkage, merge, division, dissolution).

Pure functions on arrays / model Datasets; the facade is :class:`aet.NucleusTracker`.
"""

from .detect import SCAN_COLUMNS, detect_series, track_scan
from .export import write_extxyz_series
from .local_order import (
    gaussian_weights,
    local_order,
    min_nucleus_size,
    null_cluster_sizes,
    variant_order,
    variant_tables,
)
from .nuclei import (
    NUCLEUS_COLUMNS,
    find_nuclei,
    nearest_neighbour_distance,
    smooth_order,
    surface_atoms,
)
from .order_field import common_grid, order_field, order_fields
from .plot import plot_lineage, plot_order_slices, plot_sizes
from .registration import (
    RigidTransform,
    apply_transform,
    kabsch,
    match_atoms,
    principal_axes,
    register_rigid,
    rotation_angle_deg,
)
from .scan import NullTail, change_llr, ordered_llr, region_scan, species_error_probability
from .series import order_values, register_series, resolve_method, track
from .tracking import EVENT_TYPES, TrackResult, link_nuclei, track_nuclei

__all__ = [
    "SCAN_COLUMNS", "NullTail", "change_llr", "detect_series", "ordered_llr", "region_scan",
    "resolve_method", "species_error_probability", "track_scan",
    "EVENT_TYPES", "NUCLEUS_COLUMNS", "RigidTransform", "TrackResult", "apply_transform",
    "common_grid", "find_nuclei", "gaussian_weights", "kabsch", "link_nuclei", "local_order",
    "match_atoms", "min_nucleus_size", "nearest_neighbour_distance", "null_cluster_sizes",
    "order_field", "order_fields", "order_values", "plot_lineage", "plot_order_slices",
    "plot_sizes", "principal_axes", "register_rigid", "register_series", "rotation_angle_deg",
    "smooth_order", "surface_atoms", "track", "track_nuclei", "variant_order", "variant_tables",
    "write_extxyz_series"
]
