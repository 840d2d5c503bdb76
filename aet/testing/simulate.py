"""Test helpers built on :mod:`aet.simulate`: cached benchmark cases and perturbed models.

Other areas' tests use these to get data with known answers without paying the generation
cost in every test::

    from aet.testing.simulate import benchmark_case, perturbed_model
    b = benchmark_case("small", seed=0)          # cached; arrays are read-only
    pred = perturbed_model(b.truth, sigma_A=0.1, species_error_rate=0.02, seed=1)
"""

from __future__ import annotations

import functools

import numpy as np

from ..model.atomicmodel import AtomicModel

__all__ = ["benchmark_case", "perturbed_model"]


def _freeze(v):
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(_freeze(x) for x in np.asarray(v, dtype=object).tolist()) \
            if isinstance(v, np.ndarray) else tuple(_freeze(x) for x in v)
    try:
        hash(v)
    except TypeError:
        raise TypeError(f"benchmark_case overrides must be hashable values, got "
                        f"{type(v).__name__}; call aet.simulate.fept_benchmark directly") from None
    return v


@functools.lru_cache(maxsize=8)
def _cached(size, seed, nonlinear, frozen):
    from ..simulate import fept_benchmark

    kw = {k: (list(v) if isinstance(v, tuple) else v) for k, v in frozen}
    b = fept_benchmark(size, seed=seed, nonlinear=nonlinear, **kw)
    for arr in (b.tilt_series.data.values, b.clean.data.values, b.noise_free, b.background):
        arr.flags.writeable = False
    return b


def benchmark_case(size: str = "small", *, seed: int = 0, nonlinear=False, **overrides):
    """:func:`aet.simulate.fept_benchmark`, cached per arguments (up to 8 cases).

    The same arguments return the same object; its arrays are read-only so a test cannot
    change what the next test sees.
    """
    return _cached(size, int(seed), nonlinear, _freeze(overrides))


def perturbed_model(model: AtomicModel, *, sigma_A: float = 0.0, species_error_rate: float = 0.0,
                    drop_fraction: float = 0.0, n_spurious: int = 0, shift_A=(0.0, 0.0, 0.0),
                    seed=0) -> AtomicModel:
    """A "measured" copy of ``model``: Gaussian position noise ``sigma_A`` (Å per axis),
    species flipped among the model's elements at ``species_error_rate``, a fraction
    ``drop_fraction`` of atoms removed, ``n_spurious`` atoms added at random positions inside
    the model's bounding box (at least 1.5 Å from any atom), and a rigid ``shift_A``.

    The expected :func:`aet.simulate.score` is then recall ≈ 1 − drop_fraction, RMSD ≈
    σ√3, species accuracy ≈ 1 − species_error_rate.
    """
    from scipy.spatial import cKDTree

    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    pos = model.positions
    sp = model.species.copy()
    n = len(pos)
    keep = rng.random(n) >= drop_fraction
    pos = pos[keep] + (rng.normal(0.0, sigma_A, (int(keep.sum()), 3)) if sigma_A > 0 else 0.0)
    sp = sp[keep]
    elements = sorted(set(model.species.tolist()))
    if species_error_rate > 0 and len(elements) > 1:
        flip = np.flatnonzero(rng.random(len(sp)) < species_error_rate)
        for i in flip:
            others = [e for e in elements if e != sp[i]]
            sp[i] = others[int(rng.integers(len(others)))]
    if n_spurious > 0:
        lo, hi = model.positions.min(0), model.positions.max(0)
        tree = cKDTree(model.positions)
        extra = []
        while len(extra) < n_spurious:
            c = rng.uniform(lo, hi, (4 * n_spurious, 3))
            d, _ = tree.query(c)
            extra.extend(c[d >= 1.5].tolist())
        extra = np.array(extra[:n_spurious])
        pos = np.vstack([pos, extra])
        sp = np.concatenate([sp, rng.choice(elements, n_spurious)])
    return AtomicModel(pos + np.asarray(shift_A, float), sp)
