"""Figures for reports and notebooks (matplotlib; safe without a display).

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show``. Axes
are labelled with physical units (Å, degrees) and every image has a colour bar.
"""

from __future__ import annotations

import numpy as np


def _figure(*, figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def projection_montage(tilt_series, *, max_panels: int = 12, title: str | None = None):
    """A montage of up to ``max_panels`` projections, evenly spread over the angles."""
    da = tilt_series.data if hasattr(tilt_series, "data") else tilt_series
    if "frame" in da.dims:
        da = da.mean("frame")
    n = da.sizes["angle"]
    idx = np.unique(np.linspace(0, n - 1, min(max_panels, n)).round().astype(int))
    cols = min(4, idx.size)
    rows = int(np.ceil(idx.size / cols))
    fig = _figure(figsize=(3.0 * cols, 3.0 * rows))
    x, y = da.x.values, da.y.values
    ext = [x[0], x[-1], y[-1], y[0]]
    vmin, vmax = np.percentile(np.asarray(da.isel(angle=list(idx)).values), [0.5, 99.5])
    im = None
    for k, i in enumerate(idx):
        ax = fig.add_subplot(rows, cols, k + 1)
        im = ax.imshow(np.asarray(da.isel(angle=int(i)).values), cmap="gray", extent=ext,
                       vmin=vmin, vmax=vmax)
        ax.set_title(f"θ = {float(da.angle[i]):+.1f}°", fontsize=9)
        ax.set_xlabel("x (Å)", fontsize=8)
        ax.set_ylabel("y (Å)", fontsize=8)
        ax.tick_params(labelsize=7)
    if im is not None:
        fig.colorbar(im, ax=fig.axes, shrink=0.6, label=da.attrs.get("units", "intensity"))
    if title:
        fig.suptitle(title)
    return fig


def orthoslices(volume, *, atoms=None, slab_A: float = 1.0, title: str | None = None):
    """Central xy, xz and yz slices of a volume with atoms within ``slab_A`` Å of each slice
    overlaid (coloured by species)."""
    da = volume.data if hasattr(volume, "data") else volume
    v = np.asarray(da.values)
    z, y, x = da.z.values, da.y.values, da.x.values
    nz, ny, nx = v.shape
    fig = _figure(figsize=(13, 4.2))
    views = [
        ("xy (z = 0 Å)", v[nz // 2], (x, y), (0, 1), 2, ("x (Å)", "y (Å)")),
        ("xz (y = 0 Å)", v[:, ny // 2, :], (x, z), (0, 2), 1, ("x (Å)", "z (Å)")),
        ("yz (x = 0 Å)", v[:, :, nx // 2], (y, z), (1, 2), 0, ("y (Å)", "z (Å)")),
    ]
    vmin, vmax = np.percentile(v, [1, 99.9])
    for k, (name, img, (h, w), (ih, iw), inorm, labels) in enumerate(views):
        ax = fig.add_subplot(1, 3, k + 1)
        im = ax.imshow(img, cmap="magma", origin="lower", extent=[h[0], h[-1], w[0], w[-1]],
                       vmin=vmin, vmax=vmax)
        if atoms is not None and atoms.n_atoms:
            p = atoms.positions
            near = np.abs(p[:, inorm]) <= slab_A
            for j, sp in enumerate(atoms.elements):
                sel = near & (atoms.species == sp)
                ax.scatter(p[sel, ih], p[sel, iw], s=14, facecolors="none", linewidths=0.8,
                           edgecolors=("cyan", "lime", "white", "red")[j % 4], label=sp)
            if k == 0:
                ax.legend(loc="upper right", fontsize=7)
        ax.set_title(name)
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
        fig.colorbar(im, ax=ax, shrink=0.8, label="reconstructed intensity (a.u.)")
    if title:
        fig.suptitle(title)
    return fig


def intensity_histogram(model, *, values: str = "intensity", bins: int = 60):
    """Histogram of a per-atom value split by species (the classification result)."""
    fig = _figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    if values not in model:
        raise ValueError(f"the model has no per-atom {values!r}; available: "
                         f"{sorted(model.data.data_vars)}")
    vals = np.asarray(model[values], dtype=float)
    edges = np.histogram_bin_edges(vals[np.isfinite(vals)], bins=bins)
    for sp in model.elements:
        ax.hist(vals[model.species == sp], bins=edges, alpha=0.6, label=f"{sp} "
                f"({int(np.sum(model.species == sp))})")
    ax.set_xlabel(f"integrated {values} (a.u.)")
    ax.set_ylabel("number of atoms")
    ax.legend()
    ax.set_title("Species classification")
    return fig


def radial_distribution(model, *, r_max_A: float = 8.0, dr_A: float = 0.05):
    """Pair distribution g(r) per species pair (unnormalised by density: counts per shell
    volume per atom), from the model's neighbour pairs."""
    fig = _figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    pairs, d = model.neighbour_pairs(r_max_A)
    sp = model.species
    edges = np.arange(0.0, r_max_A + dr_A, dr_A)
    shell = 4.0 / 3.0 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    centres = 0.5 * (edges[1:] + edges[:-1])
    els = model.elements
    for a_i, a in enumerate(els):
        for b in els[a_i:]:
            m = ((sp[pairs[:, 0]] == a) & (sp[pairs[:, 1]] == b)) | \
                ((sp[pairs[:, 0]] == b) & (sp[pairs[:, 1]] == a))
            h, _ = np.histogram(d[m], bins=edges)
            n_a = max(1, int(np.sum(sp == a)))
            ax.plot(centres, h / shell / n_a, label=f"{a}–{b}")
    ax.set_xlabel("r (Å)")
    ax.set_ylabel("pairs per atom per Å³")
    ax.legend()
    ax.set_title("Radial distribution")
    return fig


def field_slices(ds, names, *, title: str | None = None, cmap: str = "RdBu_r",
                 symmetric: bool = True):
    """Central xy slices of the gridded fields ``names`` of a Dataset with dims (z, y, x)."""
    names = list(names)
    fig = _figure(figsize=(3.4 * len(names), 3.4))
    for k, name in enumerate(names):
        f = ds[name]
        img = np.asarray(f.isel(z=f.sizes["z"] // 2).values, dtype=float)
        ax = fig.add_subplot(1, len(names), k + 1)
        finite = img[np.isfinite(img)]
        lim = float(np.max(np.abs(finite))) if finite.size else 1.0
        kw = {"vmin": -lim, "vmax": lim} if symmetric else {}
        x, y = f.x.values, f.y.values
        im = ax.imshow(img, origin="lower", cmap=cmap, extent=[x[0], x[-1], y[0], y[-1]], **kw)
        ax.set_title(name)
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
        fig.colorbar(im, ax=ax, shrink=0.8, label=f.attrs.get("units", ""))
    if title:
        fig.suptitle(title)
    return fig


def series_plot(x, ys: dict, *, xlabel: str, ylabel: str, title: str):
    """A line plot of several named series against ``x``."""
    fig = _figure(figsize=(6, 4))
    ax = fig.add_subplot(1, 1, 1)
    for name, y in ys.items():
        ax.plot(x, y, marker="o", ms=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if len(ys) > 1:
        ax.legend()
    return fig


def save_figure(fig, path, *, dpi: int = 110) -> None:
    """Save a figure atomically (temp file + rename)."""
    from .io._atomic import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=str(path).rsplit(".", 1)[-1])
