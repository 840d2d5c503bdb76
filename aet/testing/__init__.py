"""Test helpers for users and developers: dask compute guards, phantoms, assertions."""

from ._dask import CountingScheduler, raise_if_dask_computes
from .assertions import assert_provenance_has, assert_same_frame
from .phantoms import gaussian_atoms_volume, point_atom_projection_reference

__all__ = ["CountingScheduler", "assert_provenance_has", "assert_same_frame",
           "gaussian_atoms_volume", "point_atom_projection_reference", "raise_if_dask_computes"]
