"""Figures of a tracked series (matplotlib, no pyplot state: each function returns a Figure).

Save with ``fig.savefig(path)``; nothing here opens a window or changes the backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

__all__ = ["plot_lineage", "plot_order_slices", "plot_sizes"]

_EVENT_COLOURS = {"birth": "tab:green", "growth": "tab:blue", "shrinkage": "tab:orange",
                  "merge": "tab:purple", "division": "tab:brown", "dissolution": "tab:red"}


def _figure(ax, figsize):
    from matplotlib.figure import Figure

    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def plot_sizes(result, *, quantity: str = "n_atoms", ax=None):
    """Nucleus size against time, one line per track.

    ``quantity``: ``"n_atoms"`` or ``"volume_A3"`` (Å³) or any column of ``result.nuclei``.
    """
    if quantity not in result.nuclei.columns:
        raise ValueError(f"quantity {quantity!r} is not a nucleus column; choose one of "
                         f"{list(result.nuclei.columns)}")
    fig, ax = _figure(ax, (6, 4))
    for tid, g in result.nuclei.groupby("track"):
        g = g.sort_values("time_min")
        ax.plot(g["time_min"], g[quantity], marker="o", label=f"track {tid}")
    ax.set_xlabel("annealing time (min)")
    ax.set_ylabel({"n_atoms": "nucleus size (atoms)",
                   "volume_A3": "nucleus volume (Å³)"}.get(quantity, quantity))
    if result.nuclei["track"].nunique() <= 12:
        ax.legend(fontsize="small")
    return fig


def plot_lineage(result, *, ax=None):
    """Lineage diagram: time on x, one row per track; marker area ∝ size, link width ∝
    shared atoms; events coloured (birth, growth, shrinkage, merge, division, dissolution)."""
    fig, ax = _figure(ax, (7, 4))
    nuc = result.nuclei
    row = {int(t): i for i, t in enumerate(sorted(nuc["track"].unique().tolist()))}
    where = {(int(r.time_index), int(r.nucleus)): (float(r.time_min), row[int(r.track)])
             for r in nuc.itertuples(index=False)}
    for r in result.links.itertuples(index=False):
        x0, y0 = where[(int(r.step) - 1, int(r.nucleus_from))]
        x1, y1 = where[(int(r.step), int(r.nucleus_to))]
        ax.plot([x0, x1], [y0, y1], color="0.5", lw=0.5 + 3.0 * r.overlap / max(r.n_from, 1),
                zorder=1)
    sizes = nuc["n_atoms"].to_numpy(dtype=float)
    xy = np.array([where[(int(a), int(b))] for a, b in zip(nuc["time_index"], nuc["nucleus"])])
    if len(xy):
        ax.scatter(xy[:, 0], xy[:, 1], s=20 + 200 * sizes / max(sizes.max(), 1), c="0.2",
                   zorder=2)
    for e in result.events.itertuples(index=False):
        nodes = ([(int(e.step), int(k)) for k in e.nuclei_to.split()] if e.nuclei_to else
                 [(int(e.step) - 1, int(k)) for k in e.nuclei_from.split()])
        for n in nodes:
            x, y = where[n]
            ax.scatter([x], [y], s=90, facecolors="none", edgecolors=_EVENT_COLOURS[e.event],
                       linewidths=2, zorder=3)
    for name, colour in _EVENT_COLOURS.items():
        ax.scatter([], [], s=60, facecolors="none", edgecolors=colour, label=name)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_xlabel("annealing time (min)")
    ax.set_ylabel("track")
    ax.set_yticks(range(len(row)), [str(t) for t in row])
    return fig


def plot_order_slices(fields: xr.DataArray, *, axis: str = "z", position_A: float = 0.0,
                      levels: Sequence[float] = (0.3, 0.5, 0.7), vmax: float = 1.0):
    """One panel per time: a slice through the order field with contour levels.

    ``fields``: dims ``(time, z, y, x)`` (from :func:`aet.dynamics.order_fields`); the slice is
    the plane ``axis = position_A`` (nearest voxel).
    """
    from matplotlib.figure import Figure

    if axis not in ("x", "y", "z"):
        raise ValueError(f"axis must be 'x', 'y' or 'z', got {axis!r}")
    if "time" not in fields.dims:
        fields = fields.expand_dims(time=[0.0])
    nt = fields.sizes["time"]
    fig = Figure(figsize=(3.2 * nt + 1.0, 3.4), layout="constrained")
    axes = fig.subplots(1, nt, squeeze=False)[0]
    im = None
    for k in range(nt):
        sl = fields.isel(time=k).sel({axis: position_A}, method="nearest")
        h, v = [d for d in ("x", "y", "z") if d != axis][:2]
        img = sl.transpose(v, h)
        ext = [float(img[h][0]), float(img[h][-1]), float(img[v][0]), float(img[v][-1])]
        im = axes[k].imshow(img.values, origin="lower", extent=ext, vmin=0, vmax=vmax,
                            cmap="viridis")
        data = np.nan_to_num(img.values, nan=0.0)
        if np.nanmax(data) >= min(levels):
            axes[k].contour(data, levels=list(levels), extent=ext, origin="lower",
                            colors=["w", "orange", "r"][:len(levels)], linewidths=0.8)
        axes[k].set_title(f"t = {float(fields['time'][k]):g} min")
        axes[k].set_xlabel(f"{h} (Å)")
        axes[k].set_ylabel(f"{v} (Å)")
    fig.colorbar(im, ax=list(axes), label="order parameter", shrink=0.8)
    return fig
