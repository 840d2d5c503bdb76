"""The strain reference is the structure the model has (structure="auto" by default)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

import aet
from aet.analysis.reference import identify_structure
from aet.testing.analysis import particle
from aet.testing.phantoms import rotation_matrix_zyz

ROT = rotation_matrix_zyz(0.4, 1.1, -0.3)
COMPONENTS = ("e_xx", "e_yy", "e_zz", "e_xy", "e_xz", "e_yz")


def _max_strain(st):
    inside = st["mask"].values
    return max(float(np.abs(st[c].values[inside]).max()) for c in COMPONENTS)


def test_l10_benchmark_truth_is_unstrained_against_its_own_lattice():
    """The demo's ground truth (a perfect, rotated L1₀ particle) has no strain; a cubic
    reference reads its c/a = 0.964 as ±1.3 % strain."""
    truth = aet.simulate.fept_benchmark("small", seed=0).truth
    auto = truth.analysis.strain()
    assert auto.attrs["structure"] == "L10"
    assert auto.attrs["reference"].startswith("L1₀ (tetragonal) lattice fitted to the model")
    assert "ordered L1₀ alloy" in auto.attrs["reference_choice"]
    assert auto.attrs["reference_choice"].startswith("an fcc lattice fits 100% of the atoms")
    assert _max_strain(auto) < 1e-3
    cubic = truth.analysis.strain(structure="fcc")
    assert cubic.attrs["reference"].startswith("fcc (cubic)")
    assert _max_strain(cubic) > 0.01


@pytest.mark.parametrize(("kind", "want"), [("L10", "L10"), ("L12", "L12"), ("A1", "fcc"),
                                            ("fcc", "fcc")])
def test_identify_fcc_based(kind, want):
    m = particle(kind, radius_A=12, rotation=ROT, jitter_A=0.05, seed=3)
    assert identify_structure(m)["structure"] == want


def test_identify_survives_classification_errors_and_finds_bcc():
    m = particle("L10", radius_A=12, rotation=ROT, jitter_A=0.1, seed=5)
    rng = np.random.default_rng(0)
    sp = m.species.copy()
    flip = rng.random(len(sp)) < 0.08  # 8 % of the species wrong
    sp[flip] = np.where(sp[flip] == "Fe", "Pt", "Fe")
    info = identify_structure(aet.AtomicModel(m.positions, sp))
    assert info["structure"] == "L10" and 0.5 < info["mean_order"] < 0.95
    w = bulk("W", "bcc", a=3.165, cubic=True).repeat((5, 5, 5))
    pos = w.positions - w.positions.mean(0)
    pos = pos[np.linalg.norm(pos, axis=1) < 7]
    assert identify_structure(aet.AtomicModel(pos @ ROT.T, "W"))["structure"] == "bcc"


def test_identify_geometry_under_20pm_noise():
    """Bond-order types fail here (most fcc atoms read "hcp"); the lattice fit does not."""
    rng = np.random.default_rng(1)
    fcc = particle("fcc", a_A=3.92, radius_A=14, species=("Pt", "Pt"), rotation=ROT)
    noisy = fcc.positions + rng.normal(0, 0.2, fcc.positions.shape)
    info = identify_structure(aet.AtomicModel(noisy, "Pt"))
    assert info["structure"] == "fcc" and info["geometry_fractions"]["fcc"] > 0.95
    h = bulk("Co", "hcp", a=2.5, c=4.07).repeat((10, 10, 6))
    p = h.positions - h.positions.mean(0)
    p = p[np.linalg.norm(p, axis=1) < 10]
    p = p + rng.normal(0, 0.2, p.shape)
    assert identify_structure(aet.AtomicModel(p @ ROT.T, "Co"))["structure"] == "hcp"
