"""Surface flags (coordination, alpha shape) and clean-up, with exact answers on lattices."""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.atoms import cleanup, flag_surface


def fcc_cube(n, a=3.9):
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    cells = np.stack(np.meshgrid(*(np.arange(n),) * 3, indexing="ij"), -1).reshape(-1, 3)
    pts = (cells[:, None, :] + base[None]).reshape(-1, 3)
    pts = pts[np.all(pts <= n - 1 + 1e-9, axis=1)]  # a closed cube of side n - 1 cells
    return pts * a


@pytest.mark.parametrize("method", ["coordination", "alpha", "both"])
def test_surface_of_an_fcc_cube_is_its_faces(method):
    a = 3.9
    pos = fcc_cube(5, a)
    model = aet.AtomicModel(pos, "Pt")
    out = model.flag_surface(method=method)
    on_face = np.any((np.abs(pos) < 1e-6) | (np.abs(pos - 4 * a) < 1e-6), axis=1)
    np.testing.assert_array_equal(out["surface"], on_face)
    assert out.provenance[-1]["result"]["n_surface"] == int(on_face.sum())
    interior = ~on_face
    assert np.all(out["coordination"][interior] == 12)


def test_cleanup_drops_isolated_peaks_and_close_duplicates():
    pos = fcc_cube(3)
    n = len(pos)
    extra = np.array([[30.0, 0, 0], [0.5, 0.0, 0.0]])  # an isolated peak, a near-duplicate
    inten = np.r_[np.ones(n), 0.5, 0.2]
    model = aet.AtomicModel(np.vstack([pos, extra]), "Pt", intensity=inten)
    ds, res = cleanup(model.data, min_neighbours=1, radius_A=3.5, min_distance_A=1.5)
    assert res["n_removed"] == 2
    assert res["reason"] == {str(n): "isolated", str(n + 1): "too_close"}
    np.testing.assert_array_equal(ds["position"].values, pos)
    cleaned = model.cleanup(min_neighbours=1)
    assert cleaned.n_atoms == n + 1 and cleaned.provenance[-1]["op"] == "cleanup"


def test_cleanup_drops_groups_at_the_volume_faces_but_never_the_object():
    """A particle in a box with two bonded sheets of peaks on its faces (what a reconstruction
    makes where rays leave the box at high tilt): with ``box_A`` the sheets go as "edge",
    the particle stays whole even where it touches a face itself, and an atom group off the
    faces is not touched."""
    a = 3.9
    part = fcc_cube(4, a) - 1.5 * a                      # the particle, centred
    sheet = np.stack(np.meshgrid(np.arange(4) * 2.8, np.arange(3) * 2.8, indexing="ij"),
                     -1).reshape(-1, 2)
    face_x = np.c_[np.full(len(sheet), -19.8), sheet - 3.0]   # on the x face at -20
    face_z = np.c_[sheet - 3.0, np.full(len(sheet), 19.9)]    # on the z face at +20
    inner = np.array([[13.0, 0, 0], [13.0, 2.8, 0], [13.0, 0, 2.8], [13.0, 2.8, 2.8]])
    pos = np.vstack([part, face_x, face_z, inner])
    box = [[-20.0, -20.0, -20.0], [20.0, 20.0, 20.0]]
    n0 = len(part)
    ds, res = cleanup(aet.AtomicModel(pos, "Pt").data, min_neighbours=1, radius_A=3.2,
                      box_A=box)
    edge = sorted(int(i) for i, why in res["reason"].items() if why == "edge")
    assert edge == list(range(n0, n0 + 2 * len(sheet)))
    np.testing.assert_allclose(ds["position"].values, np.vstack([part, inner]))
    # the object itself touching a face is kept: it is the largest group
    tight = [[-5.9, -5.9, -5.9], [20.0, 20.0, 20.0]]
    ds2, res2 = cleanup(aet.AtomicModel(np.vstack([part, face_z]), "Pt").data,
                        min_neighbours=1, radius_A=3.2, box_A=tight)
    assert ds2.sizes["atom"] == n0 and res2["n_removed"] == len(sheet)
    with pytest.raises(ValueError, match="box_A must be"):
        cleanup(aet.AtomicModel(part, "Pt").data, box_A=[[0, 0, 0], [0, 1, 1]])


def test_surface_errors():
    m = aet.AtomicModel(fcc_cube(2), "Pt")
    with pytest.raises(ValueError, match="method must be 'coordination', 'alpha' or 'both'"):
        flag_surface(m.data, method="convex")
    with pytest.raises(ValueError, match="radius_A must be finite and > 0"):
        cleanup(m.data, radius_A=0)


def test_auto_radius_follows_the_bond_length_not_noise_between_atoms():
    """A third of the peaks noise between the atoms of an fcc cube (as in a low-dose
    reconstruction): the median nearest-neighbour distance drops well below the 2.76 Å bond,
    the bond length (first pair-distance peak) stays on it, and the auto clean-up keeps every
    atom of the cube."""
    from aet.core.geometry import bond_length_A, nearest_neighbour_distance

    atoms = fcc_cube(5)
    rng = np.random.default_rng(0)
    lo, hi = atoms.min(0), atoms.max(0)
    noise = rng.uniform(lo, hi, (len(atoms) // 2, 3))
    noise = noise[np.min(np.linalg.norm(noise[:, None] - atoms[None], axis=2), axis=1) > 1.2]
    pts = np.vstack([atoms, noise])
    bond = 3.9 / np.sqrt(2)
    assert nearest_neighbour_distance(pts) < 0.85 * bond
    assert abs(bond_length_A(pts) - bond) < 0.06
    model = aet.AtomicModel(pts, species="Pt")
    kept = model.cleanup(min_neighbours=3, radius_A="auto")
    d = np.min(np.linalg.norm(atoms[:, None] - kept.positions[None], axis=2), axis=1)
    assert np.all(d < 1e-6)


def test_auto_radius_widens_with_the_position_noise():
    """A low-dose trace: a fifth of an fcc cube's atoms missing and a per-axis position error
    of 0.18 Å, which stretches one bond in ten past 1.15 bond lengths. The auto radius
    measures the first-shell spread and widens (at most half-way to the second shell): the
    clean-up removes no more atoms than it would from the same model without the error,
    where 1.15 bond lengths removes three more; far noise peaks still go. A precise model
    keeps 1.15 bond lengths."""
    from aet.atoms.surface import (
        AUTO_RADIUS_FACTOR,
        AUTO_RADIUS_MAX_FACTOR,
        coordination_numbers,
        first_shell_spread_A,
        neighbour_radius_A,
    )
    from aet.core.geometry import bond_length_A

    cube = fcc_cube(5)
    assert neighbour_radius_A(cube) == pytest.approx(AUTO_RADIUS_FACTOR * bond_length_A(cube))
    assert first_shell_spread_A(cube) < 0.01
    rng = np.random.default_rng(0)
    atoms = cube[rng.random(len(cube)) > 0.2]
    noisy = atoms + rng.normal(0, 0.18, atoms.shape)
    # the first-shell spread is √2 × the per-axis error along a bond
    assert first_shell_spread_A(noisy) == pytest.approx(np.sqrt(2) * 0.18, rel=0.15)
    r = neighbour_radius_A(noisy)
    b = bond_length_A(noisy)
    assert AUTO_RADIUS_FACTOR * b + 0.1 < r <= AUTO_RADIUS_MAX_FACTOR * b + 1e-9
    far = cube.max(0) + np.array([[8.0, 0, 0], [8.0, 8.0, 0], [0, 8.0, 8.0]])
    model = aet.AtomicModel(np.vstack([noisy, far]), species="Pt")
    kept = model.cleanup(min_neighbours=3, radius_A="auto").positions
    assert np.min(np.linalg.norm(far[:, None] - kept[None], axis=2)) > 5.0  # noise gone
    lost = len(atoms) - np.sum(np.min(np.linalg.norm(noisy[:, None] - kept[None], axis=2),
                                      axis=1) < 1e-9)
    bond = 3.9 / np.sqrt(2)
    without_error = np.sum(coordination_numbers(atoms, AUTO_RADIUS_FACTOR * bond) < 3)
    fixed = np.sum(coordination_numbers(noisy, AUTO_RADIUS_FACTOR * b) < 3)
    assert lost <= without_error and fixed >= without_error + 3, (lost, without_error, fixed)
