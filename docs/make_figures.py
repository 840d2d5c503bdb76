"""Figures of the documentation, generated at build time (no binaries in the repository)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def conventions_figure(path: Path) -> None:
    """The frame convention: an off-centre atom at (x, z) rotated by R_y(θ) and projected
    along z lands at x' = x cos θ + z sin θ (docs/conventions.rst)."""
    from matplotlib.figure import Figure

    from aet.testing.phantoms import rotation_matrix_zyz

    fig = Figure(figsize=(9, 4), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    p = np.array([3.0, 0.0, 2.0])
    for th, c in ((0, "0.4"), (30, "C3"), (-30, "C0")):
        q = rotation_matrix_zyz(0.0, np.radians(th), 0.0) @ p
        ax.plot([q[0]], [q[2]], "o", color=c, ms=9, label=f"θ = {th:+d}°: x' = {q[0]:.2f} Å")
        ax.axvline(q[0], color=c, lw=0.8, ls="--")
    ax.annotate("beam: projection\nsums along z", xy=(-3.8, -3.2), xytext=(-3.8, 3.0),
                arrowprops={"arrowstyle": "->"}, fontsize=8, ha="center")
    ax.set_xlim(-5, 5)
    ax.set_ylim(-4, 4)
    ax.set_aspect("equal")
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("z (Å)")
    ax.set_title("R_y(θ): (x, z) → (x cos θ + z sin θ, −x sin θ + z cos θ)", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax2 = fig.add_subplot(1, 2, 2)
    n = 8
    idx = np.arange(n)
    ax2.plot(idx, (idx - n // 2) * 0.5, "o-")
    ax2.axhline(0, color="0.5", lw=0.8)
    ax2.axvline(n // 2, color="C3", lw=0.8, ls="--", label="index n // 2 ↔ 0 Å")
    ax2.set_xlabel("array index along an axis (n = 8)")
    ax2.set_ylabel("coordinate (Å), spacing 0.5 Å")
    ax2.set_title("Centred coordinates", fontsize=9)
    ax2.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
