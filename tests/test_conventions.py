"""Pins the frame convention of docs/conventions.rst: an off-centre atom projected at +30°
lands where R_y(θ) maps it: x' = x cos θ + z sin θ, y' = y."""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.testing import gaussian_atoms_volume, point_atom_projection_reference
from tests.reference.projector import project_volume_reference


def _centroid_A(img: np.ndarray, spacing: float) -> tuple[float, float]:
    ny, nx = img.shape
    y = (np.arange(ny) - ny // 2) * spacing
    x = (np.arange(nx) - nx // 2) * spacing
    w = img / img.sum()
    return float((w.sum(0) * x).sum()), float((w.sum(1) * y).sum())


def test_point_formula_at_plus_30_degrees():
    p = np.array([3.0, 1.0, 2.0])
    th = np.radians(30.0)
    expect = (p[0] * np.cos(th) + p[2] * np.sin(th), p[1])
    got = point_atom_projection_reference(p, (0.0, 30.0, 0.0))
    np.testing.assert_allclose(got, expect, atol=1e-12)
    assert got[0] == pytest.approx(3.598076, abs=1e-6)


@pytest.mark.parametrize("euler", [(0, 30, 0), (0, -45, 0), (20, 30, -10)])
def test_off_centre_atom_lands_where_the_formula_says(euler):
    vs = 0.5
    p = np.array([3.0, 1.0, 2.0])
    vol = gaussian_atoms_volume([p], (33, 33, 33), vs, sigma_A=0.6)
    # the volume's own coordinates: 0 Å at index n // 2
    assert float(vol.data.x[16]) == 0.0
    img = project_volume_reference(vol.values, euler)
    x, y = _centroid_A(img, vs)
    ex, ey = point_atom_projection_reference(p, euler)
    assert x == pytest.approx(ex, abs=0.03)
    assert y == pytest.approx(ey, abs=0.03)


def test_volume_and_tiltseries_coordinates_are_centred():
    ts = aet.TiltSeries(np.zeros((1, 6, 7)), angles=[0.0], pixel_size_A=0.5)
    assert float(ts.data.y[3]) == 0.0 and float(ts.data.x[3]) == 0.0
    vol = aet.Volume(np.zeros((4, 6, 8)), voxel_size_A=0.25)
    idx = vol.positions_to_indices([[0.0, 0.0, 0.0], [0.25, -0.5, 0.75]])
    np.testing.assert_allclose(idx, [[2, 3, 4], [5, 1, 5]])
    np.testing.assert_allclose(vol.indices_to_positions(idx), [[0, 0, 0], [0.25, -0.5, 0.75]])
