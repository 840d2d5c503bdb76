"""The ground floor of ``aet``: what the functional core and the facades share.

- :mod:`aet.core.meta` — coordinates, units, Euler angles, provenance records;
- :mod:`aet.core.schema` — the AtomicModel dataset schema (:func:`build_model_dataset`), the
  one unwrap of a facade to its xarray object (:func:`as_xarray`) and :func:`is_dask`;
- :mod:`aet.core.geometry` — rigid superposition (Kabsch), nearest-neighbour distance and
  atom matching.

Modules here import only NumPy/SciPy/xarray/dask, :mod:`aet.errors` and each other; never the
facades (:mod:`aet.model`) or the functional core. ``.importlinter`` checks it (``lint-imports``).
The conventions they implement are written down in ``docs/conventions.rst``.
"""
