"""Figures for reports and notebooks (matplotlib; safe without a display).

Every function returns a :class:`matplotlib.figure.Figure` and never calls ``plt.show``. Axes
are labelled with physical units (Å, degrees), every image has a labelled colour bar, and
every image is drawn with y pointing up (the frame of docs/conventions.rst: ``y`` and ``x`` in
Å, 0 at index ``n // 2``). Species have one colour throughout (:func:`species_colours`), the same as
in the interactive views of :mod:`aet.report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from .core.schema import as_xarray

__all__ = ["alignment_figure", "field_slices", "intensity_histogram", "orthoslices",
           "projection_montage", "radial_distribution", "save_figure", "series_plot",
           "species_colours"]

# colour-blind-safe, distinct on white and on a grey image (Okabe–Ito order, lightest species
# orange, the next blue, ...)
_PALETTE = ("#e69f00", "#0072b2", "#009e73", "#cc79a7", "#d55e00", "#56b4e9", "#f0e442",
            "#000000")


def species_colours(elements: Sequence[str]) -> dict[str, str]:
    """One colour per species (hex), in the order given (light → heavy in an AtomicModel).

    >>> species_colours(["Fe", "Pt"])
    {'Fe': '#e69f00', 'Pt': '#0072b2'}
    """
    return {str(e): _PALETTE[i % len(_PALETTE)] for i, e in enumerate(elements)}


def _figure(*, figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained")


def _extent(h, w):
    """imshow extent for an image whose columns are ``h`` and rows ``w`` (origin lower)."""
    dh = (h[1] - h[0]) / 2 if len(h) > 1 else 0.5
    dw = (w[1] - w[0]) / 2 if len(w) > 1 else 0.5
    return [h[0] - dh, h[-1] + dh, w[0] - dw, w[-1] + dw]


def _merged(tilt_series):
    da = as_xarray(tilt_series)
    if "frame" in da.dims:
        da = da.mean("frame")
    return da


def projection_montage(tilt_series, *, max_panels: int = 12, title: str | None = None,
                       cols: int = 4):
    """A montage of up to ``max_panels`` projections, evenly spread over the angles, on one
    grey scale (0.5–99.5 percentile of the panels shown)."""
    da = _merged(tilt_series)
    n = da.sizes["angle"]
    idx = np.unique(np.linspace(0, n - 1, min(max_panels, n)).round().astype(int))
    cols = min(cols, idx.size)
    rows = int(np.ceil(idx.size / cols))
    fig = _figure(figsize=(2.6 * cols + 1.2, 2.6 * rows + 0.4))
    x, y = da.x.values, da.y.values
    vmin, vmax = np.percentile(np.asarray(da.isel(angle=list(idx)).values), [0.5, 99.5])
    im = None
    for k, i in enumerate(idx):
        ax = fig.add_subplot(rows, cols, k + 1)
        im = ax.imshow(np.asarray(da.isel(angle=int(i)).values), cmap="gray", origin="lower",
                       extent=_extent(x, y), vmin=vmin, vmax=vmax)
        ax.set_title(f"θ = {float(da.angle[i]):+.1f}°", fontsize=10)
        if k % cols == 0:
            ax.set_ylabel("y (Å)", fontsize=9)
        if k >= idx.size - cols:
            ax.set_xlabel("x (Å)", fontsize=9)
        ax.tick_params(labelsize=8)
    if im is not None:
        fig.colorbar(im, ax=fig.axes, shrink=0.6,
                     label=f"projected intensity ({da.attrs.get('units', 'detector counts')})")
    if title:
        fig.suptitle(title)
    return fig


def _slab(da, dim: str, slab_A: float) -> np.ndarray:
    """Maximum of ``da`` over the planes within ``slab_A`` of coordinate 0 along ``dim``
    (only those planes are read from a lazy volume)."""
    coord = np.asarray(da[dim].values, dtype=float)
    sel = np.flatnonzero(np.abs(coord) <= slab_A + 1e-9)
    if sel.size == 0:
        sel = np.array([int(np.argmin(np.abs(coord)))])
    return np.asarray(da.isel({dim: sel}).max(dim).values, dtype=np.float64)


def orthoslices(volume, *, atoms=None, slab_A: float = 1.0, gamma: float = 0.4,
                ring_A: float = 0.9, title: str | None = None):
    """Orthogonal xy, xz and yz views of the volume through its centre, with the atoms within
    ``slab_A`` Å of each plane overlaid as rings in their species colour.

    Each view is the maximum over the slab ``|coordinate| ≤ slab_A`` (so every atom of the
    slab shows at its peak, not only those cut through their centre), on one grey scale with
    a power-law stretch ``gamma`` (0.4 keeps light atoms such as Fe visible next to Pt, whose
    peaks are ~8× higher; 1 is linear). The colour bar is labelled in the volume's units.
    """
    from matplotlib.colors import PowerNorm

    da = as_xarray(volume)
    da = da.transpose("z", "y", "x")
    z, y, x = (np.asarray(da[c].values, dtype=float) for c in ("z", "y", "x"))
    # images are (rows = vertical axis, columns = horizontal axis)
    views = [
        ("xy view (|z| ≤ {s:g} Å)", _slab(da, "z", slab_A), (x, y), (0, 1), 2, ("x (Å)", "y (Å)")),
        ("xz view (|y| ≤ {s:g} Å)", _slab(da, "y", slab_A), (x, z), (0, 2), 1, ("x (Å)", "z (Å)")),
        ("yz view (|x| ≤ {s:g} Å)", _slab(da, "x", slab_A), (y, z), (1, 2), 0, ("y (Å)", "z (Å)")),
    ]
    lo = 0.0
    hi = float(np.percentile(np.concatenate([img.ravel() for _, img, *_ in views]), 99.9))
    if not hi > lo:
        hi = lo + 1.0
    fig = _figure(figsize=(13.5, 4.6))
    colours = species_colours(atoms.elements) if atoms is not None else {}
    im = None
    for k, (name, img, (h, w), (ih, iw), inorm, labels) in enumerate(views):
        ax = fig.add_subplot(1, 3, k + 1)
        im = ax.imshow(np.clip(img, lo, None), cmap="gray", origin="lower", extent=_extent(h, w),
                       norm=PowerNorm(gamma, vmin=lo, vmax=hi))
        if atoms is not None and atoms.n_atoms:
            p = atoms.positions
            near = np.abs(p[:, inorm]) <= slab_A
            from matplotlib.collections import PatchCollection
            from matplotlib.lines import Line2D
            from matplotlib.patches import Circle

            handles = []
            for sp, c in colours.items():
                sel = near & (atoms.species == sp)
                # rings of ring_A Å around each atom: the blob inside stays visible
                ax.add_collection(PatchCollection(
                    [Circle((a, b), ring_A) for a, b in zip(p[sel, ih], p[sel, iw])],
                    facecolors="none", edgecolors=c, linewidths=1.0))
                handles.append(Line2D([], [], ls="none", marker="o", mfc="none", mec=c,
                                      label=f"{sp}: {int(sel.sum())} in slab"))
            ax.legend(handles=handles, loc="upper right", fontsize=8, framealpha=0.85)
        ax.set_title(name.format(s=slab_A))
        ax.set_xlabel(labels[0])
        ax.set_ylabel(labels[1])
    units = da.attrs.get("units", "a.u.")
    fig.colorbar(im, ax=fig.axes, shrink=0.85,
                 label=f"reconstructed intensity ({units}; γ = {gamma:g} stretch)")
    if title:
        fig.suptitle(title)
    return fig


def intensity_histogram(model, *, values="intensity", bins: int = 40,
                        label: str | None = None, title: str = "Species classification"):
    """Histogram of a per-atom value, one colour per species, counts in the legend.

    ``values`` is the name of a per-atom variable of the model or an array with one number
    per atom; ``label`` is the x-axis label (default: the variable's name).
    """
    if isinstance(values, str):
        if values not in model:
            raise ValueError(f"the model has no per-atom {values!r}; available: "
                             f"{sorted(model.data.data_vars)}")
        label = label or f"{values} (a.u.)"
        vals = np.asarray(model[values], dtype=float)
    else:
        vals = np.asarray(values, dtype=float)
        if vals.shape != (model.n_atoms,):
            raise ValueError(f"values has shape {vals.shape}; pass one number per atom "
                             f"({model.n_atoms})")
        label = label or "value"
    fig = _figure(figsize=(6.5, 4))
    ax = fig.add_subplot(1, 1, 1)
    finite = vals[np.isfinite(vals)]
    edges = np.histogram_bin_edges(finite if finite.size else [0.0, 1.0], bins=bins)
    for sp, c in species_colours(model.elements).items():
        sel = model.species == sp
        ax.hist(vals[sel], bins=edges, alpha=0.75, color=c, label=f"{sp}: {int(sel.sum())} atoms")
    ax.set_xlabel(label)
    ax.set_ylabel("number of atoms")
    ax.legend()
    ax.set_title(title)
    return fig


def radial_distribution(model, *, r_max_A: float = 8.0, dr_A: float = 0.05):
    """Pair distribution per species pair (unnormalised by density: pairs per shell volume
    per atom of the first species), from the model's neighbour pairs."""
    fig = _figure(figsize=(6.5, 4))
    ax = fig.add_subplot(1, 1, 1)
    pairs, d = model.neighbours.pairs(r_max_A)
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
    ax.set_xlabel("pair distance r (Å)")
    ax.set_ylabel("pairs per atom per Å³")
    ax.legend()
    ax.set_title("Radial distribution")
    return fig


def field_slices(ds, names, *, title: str | None = None, cmap: str = "RdBu_r",
                 symmetric: bool = True, shared: bool = True, titles=None,
                 colorbar_label: str | None = None, scale: float = 1.0, ncols: int = 3,
                 limits: tuple[float, float] | None = None, mask=None):
    """Central xy slices (z = 0) of the gridded fields ``names`` of a Dataset with dims
    (z, y, x), in a grid of ``ncols`` columns.

    ``shared`` puts every panel on one colour scale with one labelled colour bar (the panels
    can then be compared by colour); ``symmetric`` centres that scale on 0; ``limits`` fixes
    it. Values are multiplied by ``scale`` (e.g. 100 for strain in %). ``titles`` maps a
    name to its panel title; ``mask`` (bool, dims of the fields) blanks points outside it.
    """
    names = list(names)
    if not names:
        raise ValueError("names is empty; pass the fields to draw, e.g. ['e_xx', 'e_yy']")
    titles = dict(titles or {})
    ncols = max(1, min(ncols, len(names)))
    nrows = int(np.ceil(len(names) / ncols))
    imgs = {}
    for name in names:
        f = ds[name]
        img = np.asarray(f.isel(z=f.sizes["z"] // 2).values, dtype=float) * scale
        if mask is not None:
            m = mask.isel(z=mask.sizes["z"] // 2) if hasattr(mask, "isel") else mask
            img = np.where(np.asarray(m, dtype=bool), img, np.nan)
        imgs[name] = img

    def lims(arrs):
        finite = np.concatenate([a[np.isfinite(a)] for a in arrs])
        if limits is not None:
            return limits
        if not finite.size:
            return (-1.0, 1.0)
        if symmetric:
            lim = float(np.max(np.abs(finite))) or 1.0
            return (-lim, lim)
        lo, hi = float(finite.min()), float(finite.max())
        return (lo, hi if hi > lo else lo + 1.0)

    common = lims(list(imgs.values())) if shared else None
    fig = _figure(figsize=(3.9 * ncols + (1.0 if shared else 0.6 * ncols), 3.5 * nrows + 0.5))
    im = None
    axes = []
    for k, name in enumerate(names):
        f = ds[name]
        ax = fig.add_subplot(nrows, ncols, k + 1)
        axes.append(ax)
        vmin, vmax = common if shared else lims([imgs[name]])
        x, y = f.x.values, f.y.values
        im = ax.imshow(imgs[name], origin="lower", cmap=cmap, extent=_extent(x, y),
                       vmin=vmin, vmax=vmax)
        ax.set_title(titles.get(name, name))
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
        ax.set_facecolor("0.92")
        if not shared:
            fig.colorbar(im, ax=ax, shrink=0.8, label=colorbar_label or f.attrs.get("units", ""))
    if shared and im is not None:
        fig.colorbar(im, ax=axes, shrink=0.8, label=colorbar_label or "")
    if title:
        fig.suptitle(title)
    return fig


def alignment_figure(tilt_series, *, projections=None, refined=None,
                     true_tilt_axis_rotation_deg: float | None = None):
    """What the alignment did, per projection, and where the tilt axis lies.

    Parameters
    ----------
    tilt_series : TiltSeries
        The aligned series: per-angle coords ``shift_x_A``/``shift_y_A`` (Å) and attrs
        ``tilt_axis_rotation_deg`` as :meth:`aet.TiltSeries.align` leaves them.
    projections : TiltSeries, optional
        The series before alignment; its projection nearest 0° is drawn with the estimated
        tilt axis (the y axis turned by the in-plane rotation α, counter-clockwise).
    refined : TiltSeries, optional
        ``tilt_series`` after a refinement's geometry update (``model.refine(ts,
        refine_alignment=..., return_series=True).tilt_series``): the per-projection shift and
        Euler-angle corrections (the difference of the two geometries) are drawn too. When
        None and ``tilt_series`` itself is such a series (its last provenance record is
        ``apply_geometry``, as :func:`aet.run`'s ``tilt_series``), the corrections come from
        that record and the alignment's shifts are its recorded ones less them.
    true_tilt_axis_rotation_deg : float, optional
        The true rotation (a simulation's ground truth), drawn for comparison.
    """
    da = as_xarray(tilt_series)
    ang = np.asarray(da.angle.values, dtype=float)
    alpha = float(da.attrs.get("tilt_axis_rotation_deg", 0.0))
    base = {c: np.asarray(da.coords[c].values, dtype=float)
            for c in ("shift_x_A", "shift_y_A") if c in da.coords}
    upd = _geometry_update(tilt_series, refined)
    ref_shift = [None, None]
    ref_ang = {}
    if upd is not None:
        d_shift, d_euler = upd
        ref_shift = [d_shift[:, 0], d_shift[:, 1]]
        ref_ang = {a: d_euler[:, i] for i, a in enumerate(("phi", "theta", "psi"))
                   if np.any(d_euler[:, i] != 0)}
        if refined is None:  # tilt_series is the updated one: its shifts hold the update
            base = {c: v - d_shift[:, i] for i, c in enumerate(("shift_x_A", "shift_y_A"))
                    if (v := base.get(c)) is not None}
    has_angles = bool(ref_ang)
    ncols = 1 + (projections is not None) + has_angles
    fig = _figure(figsize=(4.9 * ncols, 4.3))
    col = 1
    if projections is not None:
        pd_ = _merged(projections)
        i0 = int(np.argmin(np.abs(np.asarray(pd_.angle.values, dtype=float))))
        img = np.asarray(pd_.isel(angle=i0).values, dtype=float)
        x, y = pd_.x.values, pd_.y.values
        ax = fig.add_subplot(1, ncols, col)
        col += 1
        lo, hi = np.percentile(img, [0.5, 99.5])
        ax.imshow(img, cmap="gray", origin="lower", extent=_extent(x, y), vmin=lo, vmax=hi)
        r = 0.48 * min(x[-1] - x[0], y[-1] - y[0])
        a = np.radians(alpha)
        ax.plot([r * np.sin(a), -r * np.sin(a)], [-r * np.cos(a), r * np.cos(a)], color="#d55e00",
                lw=2, ls="--", label=f"tilt axis, α = {alpha:+.2f}°")
        if true_tilt_axis_rotation_deg is not None and np.isfinite(true_tilt_axis_rotation_deg):
            t = np.radians(true_tilt_axis_rotation_deg)
            ax.plot([r * np.sin(t), -r * np.sin(t)], [-r * np.cos(t), r * np.cos(t)],
                    color="#56b4e9", lw=1.2,
                    label=f"true axis, {true_tilt_axis_rotation_deg:+.2f}°")
        ax.legend(loc="lower right", fontsize=8, framealpha=0.85)
        ax.set_title(f"projection at θ = {float(pd_.angle[i0]):+.1f}° before alignment",
                     fontsize=10)
        ax.set_xlabel("x (Å)")
        ax.set_ylabel("y (Å)")
    ax = fig.add_subplot(1, ncols, col)
    col += 1
    for c, lab, colour in (("shift_x_A", "x (across the axis)", "#0072b2"),
                           ("shift_y_A", "y (along the axis)", "#e69f00")):
        if c in base:
            ax.plot(ang, base[c], marker="o", ms=3.5, color=colour, label=f"alignment, {lab}")
    for s, lab, colour in zip(ref_shift, ("x", "y"), ("#0072b2", "#e69f00")):
        if s is not None:
            ax.plot(ang, s, marker="s", ms=3, ls=":", color=colour,
                    label=f"refinement correction, {lab}")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel("tilt angle θ (°)")
    ax.set_ylabel("shift of the projection (Å)")
    ax.set_title(f"shifts; tilt-axis rotation α = {alpha:+.2f}°"
                 + (f" (true {true_tilt_axis_rotation_deg:+.2f}°)"
                    if true_tilt_axis_rotation_deg is not None
                    and np.isfinite(true_tilt_axis_rotation_deg) else ""), fontsize=10)
    ax.legend(fontsize=8)
    if has_angles:
        ax = fig.add_subplot(1, ncols, col)
        for v, sym, colour in zip(ref_ang.values(), ("φ", "θ", "ψ"),
                                       ("#009e73", "#cc79a7", "#d55e00")):
            if v is not None:
                rms = float(np.sqrt(np.mean(v ** 2)))
                ax.plot(ang, v, marker="o", ms=3.5, color=colour,
                        label=f"δ{sym} (RMS {rms:.2f}°)")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel("tilt angle θ (°)")
        ax.set_ylabel("angle correction (°)")
        ax.set_title("Euler-angle corrections fitted by the refinement", fontsize=10)
        ax.legend(fontsize=8)
    return fig


def _geometry_update(tilt_series, refined):
    """``(shifts (n, 2) Å, Euler corrections (n, 3) deg)`` of a refinement's geometry update:
    ``refined``'s geometry less ``tilt_series``'s, or, without ``refined``, the last
    ``apply_geometry`` record of ``tilt_series`` (None when it has none)."""
    from .core.geometry import TiltGeometry
    from .core.meta import get_provenance

    if refined is not None:
        if not isinstance(as_xarray(refined), xr.DataArray) or "angle" not in as_xarray(
                refined).dims:
            raise TypeError(
                f"refined must be the TiltSeries after the refinement's geometry update "
                f"(model.refine(ts, refine_alignment=..., return_series=True).tilt_series), "
                f"got {type(refined).__name__}: a model carries no alignment")
        g0 = TiltGeometry.from_dataarray(as_xarray(tilt_series), "tilt_series")
        g1 = TiltGeometry.from_dataarray(as_xarray(refined), "refined")
        if g1.n != g0.n:
            raise ValueError(f"refined has {g1.n} projections, tilt_series {g0.n}; pass the "
                             f"same series after the refinement's geometry update")
        zero = np.zeros((g0.n, 2))
        d = (zero if g1.shifts_A is None else g1.shifts_A) - (
            zero if g0.shifts_A is None else g0.shifts_A)
        return d, g1.euler_deg - g0.euler_deg
    da = as_xarray(tilt_series)
    for rec in reversed(get_provenance(da.attrs)):
        if rec.get("op") in ("align", "match_projections"):
            return None
        if rec.get("op") == "apply_geometry":
            p = rec.get("params") or {}
            n = da.sizes["angle"]
            try:
                d = np.stack([np.asarray(p["shift_x_A"], float),
                              np.asarray(p["shift_y_A"], float)], axis=1).reshape(n, 2)
                de = np.asarray(p["d_euler_deg"], float).reshape(n, 3)
            except (KeyError, ValueError):
                return None
            return d, de
    return None


def series_plot(x, ys: Mapping, *, xlabel: str, ylabel: str, title: str):
    """A line plot of several named series against ``x`` (the names label the legend)."""
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
