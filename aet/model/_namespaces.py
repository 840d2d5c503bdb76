"""Method namespaces of :class:`~aet.AtomicModel`: ``model.analysis`` (structure analysis, one
:mod:`aet.analysis` call each) and ``model.neighbours`` (KD-tree queries), so that the class
itself keeps to the model's data, its derived models, I/O and the pipeline stages."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..core.meta import with_provenance


class _Namespace:
    __slots__ = ("_model",)

    def __init__(self, model):
        object.__setattr__(self, "_model", model)

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is read-only")

    def __repr__(self) -> str:
        names = [k for k in dir(type(self)) if not k.startswith("_")]
        return f"<{type(self).__name__} of {self._model.n_atoms} atoms: {', '.join(names)}>"


class ModelAnalysis(_Namespace):
    """Structure analysis of a model (``model.analysis``); each method is one
    :mod:`aet.analysis` call on the model's Dataset, its result recorded in the provenance.

    Examples
    --------
    >>> import aet
    >>> m = aet.AtomicModel([[0, 0, 0], [2.7, 0, 0], [0, 2.7, 0], [0, 0, 2.7]], "Pt")
    >>> aet.model.get_provenance(m.analysis.rdf(r_max_A=5.0).attrs)[-1]["op"]
    'rdf'
    """

    __slots__ = ()

    def strain(self, **kw) -> xr.Dataset:
        """Strain tensor fields e_ij (:func:`aet.analysis.strain`) as an ``xarray.Dataset``."""
        from .. import analysis

        m = self._model
        return with_provenance(analysis.strain(m._ds, **kw), "strain", kw,
                               parent_attrs=m._ds.attrs)

    def order_parameters(self, kind: str = "L10", **kw) -> xr.Dataset:
        """Per-atom chemical order parameters and phase labels
        (:func:`aet.analysis.order_parameters`)."""
        from .. import analysis

        m = self._model
        return with_provenance(analysis.order_parameters(m._ds, kind, **kw), "order_parameters",
                               {"kind": kind, **kw}, parent_attrs=m._ds.attrs)

    def fit_lattice(self, structure: str = "fcc", **kw):
        """Fit an ideal lattice (:func:`aet.analysis.fit_lattice`); returns a ``LatticeFit``
        (or a dict of them per label when ``labels=`` is given)."""
        from .. import analysis

        return analysis.fit_lattice(self._model._ds, structure, **kw)

    def local_strain(self, **kw):
        """Per-atom strain/rotation/displacement arrays (:func:`aet.analysis.local_strain`)."""
        from .. import analysis

        m = self._model
        return m._replace(analysis.local_strain(m._ds, **kw), "local_strain", kw)

    def grains(self, **kw):
        """Grain labels by orientation (+ phase/variant) (:func:`aet.analysis.grains`)."""
        from .. import analysis

        m = self._model
        return m._replace(analysis.grains(m._ds, **kw), "grains", kw)

    def defects(self, kind: str = "L10", **kw):
        """Antisites, swaps, antiphase boundaries, coordination, surface
        (:func:`aet.analysis.defects`)."""
        from .. import analysis

        m = self._model
        return m._replace(analysis.defects(m._ds, kind, **kw), "defects", {"kind": kind, **kw})

    def bond_order(self, **kw):
        """Steinhardt Q_l and averaged Q̄_l per atom (:func:`aet.analysis.steinhardt`)."""
        from .. import analysis

        m = self._model
        return m._replace(analysis.steinhardt(m._ds, **kw), "bond_order", kw)

    def rdf(self, **kw) -> xr.Dataset:
        """Partial radial distribution functions (:func:`aet.analysis.rdf`)."""
        from .. import analysis

        m = self._model
        return with_provenance(analysis.rdf(m._ds, **kw), "rdf", kw, parent_attrs=m._ds.attrs)


class ModelNeighbours(_Namespace):
    """Neighbour queries on a model's positions (``model.neighbours``), by KD-tree.

    Examples
    --------
    >>> import aet
    >>> m = aet.AtomicModel([[0, 0, 0], [2.5, 0, 0], [9, 0, 0]], "Pt")
    >>> m.neighbours.coordination(3.0).tolist()
    [1, 1, 0]
    """

    __slots__ = ()

    def kdtree(self):
        """A :class:`scipy.spatial.cKDTree` over the positions (Å)."""
        from scipy.spatial import cKDTree

        return cKDTree(self._model.positions)

    def pairs(self, radius_A: float) -> tuple[np.ndarray, np.ndarray]:
        """All pairs ``i < j`` closer than ``radius_A`` Å: ``(pairs (P, 2), distances (P,))``."""
        if not radius_A > 0:
            raise ValueError(f"radius_A must be > 0 Å, got {radius_A!r}")
        pos = self._model.positions
        pairs = self.kdtree().query_pairs(float(radius_A), output_type="ndarray")
        pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))] if len(pairs) else \
            np.zeros((0, 2), dtype=np.int64)
        d = np.linalg.norm(pos[pairs[:, 0]] - pos[pairs[:, 1]], axis=1)
        return pairs.astype(np.int64), d

    def coordination(self, radius_A: float) -> np.ndarray:
        """Number of neighbours of each atom within ``radius_A`` Å."""
        pairs, _ = self.pairs(radius_A)
        return np.bincount(pairs.ravel(), minlength=self._model.n_atoms)

    def nearest(self, points_xyz_A, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Distances (Å) and indices of the ``k`` atoms nearest to each point."""
        pts = np.asarray(points_xyz_A, dtype=float).reshape(-1, 3)
        return self.kdtree().query(pts, k=k)
