"""Old home of :mod:`aet.core.meta` (coords, units, provenance), kept so existing imports work.

The code lives on the ground floor, :mod:`aet.core.meta`; import it from there.
"""

from ..core.meta import (  # noqa: F401
    AXES_XYZ,
    CLASS_ATTR,
    PROVENANCE_ATTR,
    centred_coord,
    check_positive_length,
    euler_angles_of,
    get_provenance,
    indices_to_positions,
    positions_to_indices,
    provenance_record,
    rotation_matrices,
    set_provenance,
    spacing_from_coord,
    to_jsonable,
    user_attrs,
    with_provenance,
)
