"""Plot helpers draw what the stages recorded (Agg; Figures with the recorded numbers)."""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.preprocess import plots

from .synthetic import make_series, project_blobs, to_series


def test_plots_show_recorded_values():
    s = make_series(n_angles=5, shape=(40, 40), pixel_size_A=0.5, shift_sigma_A=1.0,
                    rotation_deg=0.5, n_atoms=20, radius_A=4.0)
    frames = np.stack([project_blobs(s["pos"], s["euler"], shape=(40, 40), pixel_size_A=0.5,
                                     shifts_xy_A=np.full((5, 2), 0.5 * f)) for f in range(3)],
                      axis=1)
    merged = aet.TiltSeries(frames, angles=s["angles"], pixel_size_A=0.5).register_frames()
    fig = plots.plot_frame_drift(merged)
    line = fig.axes[0].lines[0]
    np.testing.assert_allclose(line.get_ydata(), [0.0, 0.5, 1.0], atol=0.02)
    al = to_series(s["raw"], s["angles"], 0.5).align(max_rotation_deg=2.0)
    fig = plots.plot_alignment(al, s["shifts_xy_A"][:, 0], s["shifts_xy_A"][:, 1])
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), al.data.shift_x_A.values)
    fig = plots.plot_tilt_axis_search(al)
    assert fig.axes[0].lines[1].get_xdata()[0] == pytest.approx(
        al.provenance[-1]["result"]["tilt_axis_rotation_deg"])
    with pytest.raises(ValueError, match="no 'match_projections' record"):
        plots.plot_projection_matching(al)
