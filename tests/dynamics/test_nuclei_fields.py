"""Nuclei of one model and smoothed order fields."""

import numpy as np
import pytest
from scipy.spatial import cKDTree

from aet.dynamics import (
    common_grid,
    find_nuclei,
    nearest_neighbour_distance,
    order_field,
    order_fields,
    surface_atoms,
)
from aet.testing.dynamics import fcc_particle, planted_order


def test_find_nuclei_matches_planted_truth(rng):
    pos, _ = fcc_particle(20.0)
    nuc = {"in": [((0, 0, 0), 6.0)], "edge": [((0, 0, 17.0), 5.0)], "tiny": [((12, 0, 0), 2.5)]}
    order, truth = planted_order(pos, nuc, rng=rng)
    labels, table = find_nuclei(pos, order, threshold=0.3)
    # the tiny one (< 13 atoms) is dropped; the other two are found exactly
    assert (truth == 2).sum() < 13
    assert len(table) == 2
    for k in (0, 1):
        want = np.flatnonzero(truth == k)
        lab = np.unique(labels[want])
        assert lab.size == 1 and lab[0] >= 0  # one detected nucleus holds all of them ...
        np.testing.assert_array_equal(np.flatnonzero(labels == lab[0]), want)  # ... only them
    by_loc = dict(zip(table.location, table.n_atoms))
    assert set(by_loc) == {"interior", "surface"}
    inner = table[table.location == "interior"].iloc[0]
    # core: the maximum of the planted profile sits at the centre
    assert np.linalg.norm([inner.core_x_A, inner.core_y_A, inner.core_z_A]) < 1.0
    # gradient: 0.55 over 6 Å = -0.0917 / Å (exact: no noise, the profile is linear in r)
    assert inner.order_gradient_per_A == pytest.approx(-0.55 / 6.0, rel=0.02)
    # volume: atoms x fcc atomic volume a^3 / 4 (a = 3.85 Å)
    assert inner.volume_A3 == pytest.approx(inner.n_atoms * 3.85 ** 3 / 4, rel=1e-3)
    assert inner.hull_volume_A3 < inner.volume_A3
    # numbering: by decreasing size
    assert table.n_atoms.is_monotonic_decreasing


def test_threshold_and_min_atoms(rng):
    pos, _ = fcc_particle(14.0)
    order = np.zeros(len(pos))
    r = np.linalg.norm(pos, axis=1)
    order[r < 7] = 0.45
    order[r < 4] = 0.8
    n7, n4 = (r < 7).sum(), (r < 4).sum()
    assert len(find_nuclei(pos, order, threshold=0.3)[1]) == 1
    assert find_nuclei(pos, order, threshold=0.3)[1].n_atoms[0] == n7
    assert find_nuclei(pos, order, threshold=0.5)[1].n_atoms[0] == n4
    assert len(find_nuclei(pos, order, threshold=0.5, min_atoms=n4 + 1)[1]) == 0
    assert len(find_nuclei(pos, order, threshold=0.9)[1]) == 0
    core = find_nuclei(pos, order, threshold=0.3)[1].iloc[0]
    assert core.n_core == n4 and core.max_order == pytest.approx(0.8)


def test_surface_atoms_outer_layer_even_with_jitter(rng):
    pos, _ = fcc_particle(18.0)
    coord = np.bincount(cKDTree(pos).query_pairs(3.0, output_type="ndarray").ravel(),
                        minlength=len(pos))
    outer = coord < 12
    for jitter in (0.0, 0.2):
        s = surface_atoms(pos + rng.normal(0, jitter, pos.shape))
        assert (s & outer).sum() >= 0.98 * outer.sum()
        assert (s & ~outer).sum() <= 0.01 * (~outer).sum()
    assert nearest_neighbour_distance(pos) == pytest.approx(3.85 / np.sqrt(2), rel=1e-6)


@pytest.mark.parametrize("kw, err, match", [
    ({"threshold": 1.5}, ValueError, r"threshold must be \[0.0, 1.0\]"),
    ({"min_atoms": 2.5}, ValueError, "min_atoms must be a whole number"),
    ({"threshold": "0.3"}, TypeError, "threshold must be a number"),
])
def test_find_nuclei_bad_options(kw, err, match):
    pos, _ = fcc_particle(8.0)
    with pytest.raises(err, match=match):
        find_nuclei(pos, np.zeros(len(pos)), **kw)


def test_find_nuclei_bad_shapes():
    with pytest.raises(ValueError, match="order has 3 values but there are 4 atoms"):
        find_nuclei(np.zeros((4, 3)), np.zeros(3))


def test_order_field_constant_and_masked():
    pos, _ = fcc_particle(10.0)
    grid = common_grid([pos], voxel_size_A=0.5, padding_A=4.0)
    # centred grid: 0 Å at index n // 2 on every axis
    for d in "zyx":
        assert grid[d].values[grid.sizes[d] // 2] == 0.0
    f = order_field(pos, np.full(len(pos), 0.4), grid, sigma_A=1.5)
    inside = np.isfinite(f.values)
    np.testing.assert_allclose(f.values[inside], 0.4, rtol=1e-12)
    assert np.isnan(f.sel(x=grid.x[-1], y=0, z=0, method="nearest"))  # far outside
    assert np.isfinite(f.sel(x=0, y=0, z=0, method="nearest"))


def test_order_field_follows_nucleus():
    pos, _ = fcc_particle(14.0)
    order = np.where(np.linalg.norm(pos - [5, 0, 0], axis=1) < 5, 0.9, 0.05)
    fields = order_fields([pos, pos], [order, np.full(len(pos), 0.05)], times_min=[9, 16],
                          voxel_size_A=0.5, sigma_A=1.2)
    assert fields.dims == ("time", "z", "y", "x")
    np.testing.assert_array_equal(fields.time.values, [9, 16])
    at = fields.sel(x=5, y=0, z=0, method="nearest")
    assert at.values[0] > 0.8 and at.values[1] == pytest.approx(0.05)
    away = fields.sel(x=-7, y=0, z=0, method="nearest")
    assert away.values[0] < 0.1


def test_smooth_order_is_a_weighted_mean(rng):
    pos, _ = fcc_particle(10.0)
    from aet.dynamics import smooth_order

    np.testing.assert_allclose(smooth_order(pos, np.full(len(pos), 0.3), sigma_A=2.0), 0.3)
    vals = rng.uniform(0, 1, len(pos))
    vals[::7] = np.nan
    sm = smooth_order(pos, vals, sigma_A=2.0)
    # brute force at one atom
    i = 5
    d2 = ((pos - pos[i]) ** 2).sum(1)
    w = np.where((d2 <= 36.0) & np.isfinite(vals), np.exp(-d2 / 8.0), 0.0)
    assert sm[i] == pytest.approx((w * np.nan_to_num(vals)).sum() / w.sum(), rel=1e-12)
    # smoothing shrinks the random spread, so random noise rarely crosses a threshold
    assert np.nanstd(sm) < 0.5 * np.nanstd(vals)
