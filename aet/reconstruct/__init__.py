"""aet.reconstruct: projectors and tomographic reconstruction (WBP, SIRT, RESIRE, GENFIRE).

Public functions
----------------
- :func:`project` (what ``Volume.project`` calls) and :func:`reconstruct` (what
  ``TiltSeries.reconstruct`` calls) work on xarray objects in the DESIGN.md frame.
- :func:`forward_project` / :func:`back_project` are the array-level matched pair (NumPy in,
  NumPy out, voxel units) used by projection matching; :class:`Projector` keeps one geometry.
"""

from .project import project
from .projector import Projector, back_project, forward_project, rotation_matrices

__all__ = ["Projector", "back_project", "forward_project", "project", "rotation_matrices"]
