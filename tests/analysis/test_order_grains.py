"""Chemical order, grains, defects, bond order and RDF against planted ground truth."""

import itertools

import numpy as np
import pytest
from scipy.spatial import cKDTree

import aet
from aet.analysis import defects, grains, order_field, order_parameters, rdf, steinhardt
from aet.testing.analysis import fcc_sites, ordered_species, particle
from aet.testing.phantoms import rotation_matrix_zyz

ROT = rotation_matrix_zyz(0.3, 0.7, -1.1)


@pytest.mark.parametrize("variant", [0, 1, 2])
def test_L10_perfect_right_variant(variant):
    m = particle("L10", radius_A=13, variant=variant, rotation=ROT, jitter_A=0.05, seed=3)
    op = m.analysis.order_parameters("L10")
    s = op["order_L10"].values
    assert abs(np.mean(s) - 1) < 0.02 and s.min() > 0.98
    # the variant's c axis is the planted one
    fit_axes = np.array(op.attrs["crystal_axes"][0])
    k = np.bincount(op["variant_L10"].values).argmax() // 2
    planted_c = ROT[:, variant]
    assert abs(abs(fit_axes[:, k] @ planted_c) - 1) < 1e-3
    assert (op["phase"].values == "L10").all()
    # the other two per-axis values are not ordered
    others = [a for i, a in enumerate("abc") if i != k]
    for a in others:
        assert np.mean(op[f"order_L10_{a}"].values) < 0.5


@pytest.mark.parametrize("kind", ["L12", "L12_AB3"])
def test_L12_both_stoichiometries(kind):
    m = particle(kind, radius_A=13, rotation=ROT, shift=2)
    op = order_parameters(m.data, "L12")
    s = op["order_L12"].values
    assert abs(np.mean(s) - 1) < 0.02 and s.min() > 0.98
    expect = "A3B" if kind == "L12" else "AB3"
    assert (op["stoichiometry_L12"].values == expect).mean() > 0.99


def test_random_A1_gives_zero_mean():
    m = particle("A1", radius_A=20, rotation=ROT, seed=11)
    for kind in ("L10", "L12"):
        op = order_parameters(m.data, kind)
        name = "L10" if kind == "L10" else "L12"
        assert abs(np.nanmean(op[f"order_{name}"].values)) < 0.05


def test_order_field_grid():
    m = particle("L10", radius_A=10)
    op = order_parameters(m.data, "L10")
    f = order_field(op, "order_L10", sigma_A=3.0)
    assert f.dims == ("z", "y", "x") and float(f.x[f.sizes["x"] // 2]) == 0.0
    assert np.nanmax(np.abs(f.values - 1)) < 1e-9


def _best_match(labels, truth):
    ks = sorted(set(labels.tolist()))
    best = 0.0
    for perm in itertools.permutations(ks, len(set(truth.tolist()))):
        mapped = np.array(perm)[truth]
        best = max(best, float(np.mean(labels == mapped)))
    return best


def test_grains_by_variant():
    pos, _, sub = fcc_sites(3.85, 17)
    right = pos[:, 0] >= 0.5
    sp = np.where(right, ordered_species(sub, "L10", variant=0),
                  ordered_species(sub, "L10", variant=2))
    pos = pos @ ROT.T + np.random.default_rng(0).normal(0, 0.05, pos.shape)
    g = aet.AtomicModel(pos, sp).analysis.grains(kind="L10")
    assert _best_match(g["grain"], right.astype(int)) >= 0.95


def test_grains_by_orientation():
    p1, _, _ = fcc_sites(3.92, 16)
    R2 = rotation_matrix_zyz(0.0, 0.0, np.radians(30))
    p2 = p1 @ R2.T
    pos = np.concatenate([p1[p1[:, 0] < 0], p2[p2[:, 0] >= 0]])
    truth = np.r_[np.zeros((p1[:, 0] < 0).sum(), int), np.ones((p2[:, 0] >= 0).sum(), int)]
    d, _ = cKDTree(pos[truth == 0]).query(pos)
    keep = ~((truth == 1) & (d < 2.0))
    g = grains(aet.AtomicModel(pos[keep] @ ROT.T, "Pt").data)
    assert _best_match(g["grain"].values, truth[keep]) >= 0.95


def test_antisites_and_swaps_found():
    m = particle("L10", radius_A=15, rotation=ROT, jitter_A=0.05, seed=2)
    sp = m.species.copy()
    rng = np.random.default_rng(5)
    idx = rng.choice(len(sp), 25, replace=False)
    sp[idx] = np.where(sp[idx] == "Fe", "Pt", "Fe")
    d = defects(aet.AtomicModel(m.positions, sp).data, "L10")
    found = np.flatnonzero(d["antisite"].values)
    assert np.isin(idx, found).mean() >= 0.95
    assert np.setdiff1d(found, idx).size <= 1
    # a planted swap pair (bonded Fe/Pt exchanged) is reported as partners
    sp2 = m.species.copy()
    tree = cKDTree(m.positions)
    i = int(np.argmin(np.linalg.norm(m.positions, axis=1)))
    nb = [j for j in tree.query_ball_point(m.positions[i], 3.2) if sp2[j] != sp2[i]][0]
    sp2[i], sp2[nb] = sp2[nb], sp2[i]
    d2 = defects(aet.AtomicModel(m.positions, sp2).data, "L10")
    assert d2["swap_partner"].values[i] == nb and d2["swap_partner"].values[nb] == i


def test_antiphase_boundary_and_surface():
    pos, _, sub = fcc_sites(3.85, 14)
    right = pos[:, 0] > 0.1
    sp = np.where(right, ordered_species(sub, "L10", variant=2, shift=1),
                  ordered_species(sub, "L10", variant=2, shift=0))
    d = defects(aet.AtomicModel(pos, sp).data, "L10")
    apb = d["antiphase_boundary"].values
    # the APB is the x ≈ 0 plane: flagged atoms lie within one spacing of it
    assert apb.sum() > 20 and np.abs(pos[apb, 0]).max() < 3.0
    assert not d["antisite"].values.any()
    cn = d["coordination"].values
    surf = d["surface"].values
    r = np.linalg.norm(pos, axis=1)
    assert (cn[r < 10] == 12).all() and surf[r > 13.5].mean() > 0.9 and not surf[r < 10].any()


def test_steinhardt_fcc_and_rdf():
    m = particle("L10", radius_A=12)
    s = steinhardt(m.data)
    bulk = m.neighbours.coordination(3.85 / np.sqrt(2) * 1.21) == 12
    np.testing.assert_allclose(s["Q4"].values[bulk], 0.19094, atol=1e-4)
    np.testing.assert_allclose(s["Q6"].values[bulk], 0.57452, atol=1e-4)
    assert np.nanmin(s["Qbar6"].values[bulk]) > 0.5
    g = rdf(m.data, r_max_A=6.0, dr_A=0.05)
    d_nn = 3.85 / np.sqrt(2)
    assert abs(float(g.r[np.argmax(g["g_Fe_Pt"].values)]) - d_nn) < 0.05
    # first-shell partial coordination equals a direct count (bulk: Fe has 8 Pt, 4 Fe)
    pairs, _ = m.neighbours.pairs(1.2 * d_nn)
    sp = m.species
    fe_pt = np.sum(sp[pairs[:, 0]] != sp[pairs[:, 1]])
    n_fe = np.sum(sp == "Fe")
    cn = float(g["cn_Fe_Pt"].sel(r=1.2 * d_nn, method="nearest"))
    assert cn == pytest.approx(fe_pt / n_fe, rel=1e-9)


def test_order_errors():
    m = particle("fcc", radius_A=8)
    with pytest.raises(ValueError, match="kind must be one of"):
        order_parameters(m.data, "B2")
    with pytest.raises(ValueError, match="chemical order needs two species"):
        order_parameters(m.data, "L10")
    with pytest.raises(ValueError, match="defects needs one stoichiometry"):
        defects(particle("L12", radius_A=8).data, "L12")


@pytest.mark.parametrize("kind", ["fcc", "hcp", "bcc"])
def test_structure_types_from_averaged_bond_order(kind):
    from ase.build import bulk

    from aet.analysis import structure_types
    at = {"fcc": bulk("Pt", "fcc", a=3.92, cubic=True).repeat((6, 6, 6)),
          "hcp": bulk("Mg", "hcp", a=3.2, c=3.2 * np.sqrt(8 / 3)).repeat((8, 8, 6)),
          "bcc": bulk("Fe", "bcc", a=2.87, cubic=True).repeat((7, 7, 7))}[kind]
    rng = np.random.default_rng(0)
    pos = (at.positions - at.positions.mean(0)) @ ROT.T + rng.normal(0, 0.08, at.positions.shape)
    st = structure_types(aet.AtomicModel(pos, "Pt").data, types=("fcc", "hcp", "bcc"))
    r = np.abs(pos @ ROT).max(axis=1)  # inside the box, away from its faces
    inner = r < 0.5 * r.max()
    assert np.mean(st["structure_type"].values[inner] == kind) >= 0.9
