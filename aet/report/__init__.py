"""The report of a run: ``report.html`` (one self-contained page), its figures and
``summary.txt``.

:func:`write_report` takes what a run produced — the final :class:`~aet.AtomicModel`, the
:class:`~aet.Volume`, the tilt series before and after alignment, the strain and order
analyses, the time per stage and, for a simulation, scores against the ground truth — and
writes into a folder:

- ``report.html``: what was found (atoms per species, the data it came from, the scores when
  there is a ground truth), an interactive 3D view of the atomic model (drag to rotate, wheel
  to zoom, species coloured) and an interactive slice view of the volume, the figures with
  captions, the decisions aet took on its own (read from the provenance), and the time per
  stage. The page loads nothing from the network: its script and data are inline, the 3D
  views use the plain 2D canvas (no WebGL, so they work in a browser without a GPU) and the
  figures are PNG files beside it.
- ``figures/*.png``: the same figures, for papers and slides.
- ``summary.txt``: the scores and the stage table as plain text, from the same numbers as the
  page.

The folder is written atomically (:mod:`aet.io._outdir`): an existing folder with content is
refused unless ``overwrite=True``, and even then only what aet wrote there is replaced.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..core.schema import as_xarray

__all__ = ["REPORT_ENTRIES", "summary_text", "write_report"]

#: what :func:`write_report` puts into its folder
REPORT_ENTRIES = ("report.html", "figures", "summary.txt")

# the interactive slice view embeds the volume at most this many samples per axis
_MAX_VIEW_SAMPLES = 96
_SLAB_A = 1.0
# power-law stretch of the grey scale of volume views: Pt peaks are ~8× Fe peaks in the demo's
# reconstruction; with 0.4 an Fe peak shows at ~40 % of a Pt peak's grey instead of ~13 %
_GAMMA = 0.4


# ----------------------------------------------------------------------------- labels
_UNITS = (("_A2", "Å²"), ("_A", "Å"), ("_deg", "°"), ("_pm", "pm"), ("_s", "s"),
          ("_min", "min"), ("_e_per_A2", "e⁻/Å²"))
_WORDS = {"dphi": "δφ", "dtheta": "δθ", "dpsi": "δψ", "rms": "RMS", "r1": "R₁",
          "n": "number of", "b": "B", "fwhm": "FWHM", "min": "minimum", "max": "maximum"}


def human_label(name: str) -> str:
    """A readable label for a variable-style name: words for underscores, units in brackets.

    >>> human_label("tilt_axis_rotation_deg")
    'tilt axis rotation (°)'
    >>> human_label("rms_shift_A")
    'RMS shift (Å)'
    """
    s = str(name)
    unit = ""
    for suffix, u in _UNITS:
        if s.endswith(suffix) and len(s) > len(suffix):
            s, unit = s[: -len(suffix)], u
            break
    words = [_WORDS.get(w, w) for w in s.split("_") if w]
    text = " ".join(words) if words else str(name)
    return f"{text} ({unit})" if unit else text


def _fmt(v: Any) -> str:
    """A value as text: 3–4 significant digits for floats, lists joined."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if not np.isfinite(f):
            return "—"
        if f == 0:
            return "0"
        a = abs(f)
        if a >= 1000 or a < 0.01:
            return f"{f:.3g}"
        return f"{f:.3f}".rstrip("0").rstrip(".") if a < 10 else f"{f:.2f}".rstrip("0").rstrip(".")
    if isinstance(v, (list, tuple, np.ndarray)):
        vals = list(np.asarray(v).ravel()) if isinstance(v, np.ndarray) else list(v)
        if len(vals) > 6:
            return f"{len(vals)} values"
        return ", ".join(_fmt(x) for x in vals)
    if isinstance(v, Mapping):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    return str(v)


# ----------------------------------------------------------------------------- scores
def _score_get(s, key, default=np.nan):
    if isinstance(s, Mapping):
        return s.get(key, default)
    return getattr(s, key, default)


def summary_text(*, title: str, scores: Mapping[str, Any] | None = None,
                 timings: Mapping[str, float] | None = None) -> str:
    """The plain-text summary that ``summary.txt`` holds: a title line, the scores per stage
    (when there is a ground truth) and the seconds per stage with their total.

    ``scores`` maps a stage name to an :class:`aet.simulate.Score` (or its ``to_dict()``);
    ``timings`` maps a stage name to seconds. The page shows the same numbers.
    """
    lines = [title, ""]
    if scores:
        lines.append(f"{'model':<18}{'atoms':>7}{'recall':>9}{'precision':>11}{'RMSD pm':>9}"
                     f"{'x/y/z pm':>18}{'species':>9}")
        for name, s in scores.items():
            xyz = "/".join(f"{v:.0f}" for v in _score_get(s, "rmsd_pm_xyz", (np.nan,) * 3))
            lines.append(f"{name:<18}{int(_score_get(s, 'n_predicted', 0)):>7d}"
                         f"{_score_get(s, 'recall'):>9.3f}{_score_get(s, 'precision'):>11.3f}"
                         f"{_score_get(s, 'rmsd_pm'):>9.1f}{xyz:>18}"
                         f"{_score_get(s, 'species_accuracy'):>9.3f}")
        lines.append("")
    if timings:
        lines.append(f"{'stage':<16}{'seconds':>9}")
        for k, v in timings.items():
            lines.append(f"{k:<16}{v:>9.2f}")
        lines.append(f"{'total':<16}{sum(timings.values()):>9.2f}")
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------- checks
def _check(name, value, cls, what):
    if value is not None and not isinstance(value, cls):
        raise TypeError(f"{name} must be {what} or None, got {type(value).__name__}")


def _check_inputs(model, volume, tilt_series, aligned, scores, timings, decisions, strain,
                  order, ground_truth):
    import xarray as xr

    from ..model.atomicmodel import AtomicModel
    from ..model.tiltseries import TiltSeries
    from ..model.volume import Volume

    if not isinstance(model, AtomicModel):
        raise TypeError(f"model must be an aet.AtomicModel (the run's final model), got "
                        f"{type(model).__name__}")
    _check("volume", volume, Volume, "an aet.Volume")
    _check("tilt_series", tilt_series, TiltSeries, "an aet.TiltSeries")
    _check("aligned", aligned, TiltSeries, "an aet.TiltSeries")
    _check("strain", strain, xr.Dataset, "an xarray.Dataset from model.analysis.strain()")
    _check("order", order, (xr.Dataset, AtomicModel),
           "the result of model.analysis.order_parameters()")
    for name, v in (("scores", scores), ("timings", timings), ("decisions", decisions),
                    ("ground_truth", ground_truth)):
        _check(name, v, Mapping, "a mapping (dict)")
    if timings:
        for k, v in timings.items():
            if not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
                raise ValueError(f"timings[{k!r}] must be a number of seconds, got {v!r}")


# ----------------------------------------------------------------------------- public
def write_report(folder, model, *, volume=None, tilt_series=None, aligned=None,
                 strain=None, order=None, scores: Mapping[str, Any] | None = None,
                 ground_truth: Mapping[str, Any] | None = None,
                 timings: Mapping[str, float] | None = None,
                 decisions: Mapping[str, Any] | None = None, title: str = "aet report",
                 description: str | None = None, overwrite: bool = False) -> Path:
    """Write ``report.html``, ``figures/`` and ``summary.txt`` of a run into ``folder``.

    Parameters
    ----------
    folder : path
        Output folder (created). An existing folder with content is refused unless
        ``overwrite``; then only what aet wrote there before is replaced.
    model : AtomicModel
        The run's final atomic model: every count on the page is this model's.
    volume : Volume, optional
        The reconstruction (slices, the interactive slice view, the intensity histogram).
    tilt_series : TiltSeries, optional
        The projections as measured (frames merged or not): the montage, and the
        tilt-axis panel of the alignment figure.
    aligned : TiltSeries, optional
        The aligned projections (shifts ``shift_x_A``/``shift_y_A`` per projection and the
        tilt-axis rotation, as :meth:`aet.TiltSeries.align` leaves them), or the series after
        the refinement's geometry update (:func:`aet.run`'s ``tilt_series``): the alignment
        figure then shows the refinement's corrections too.
    strain : xarray.Dataset, optional
        :meth:`aet.model.ModelAnalysis.strain` of the final model.
    order : xarray.Dataset or AtomicModel, optional
        :meth:`aet.model.ModelAnalysis.order_parameters` of the final model.
    scores : mapping, optional
        Stage name → :class:`aet.simulate.Score` against a ground truth, in run order (the
        last one is the final model's). A user's own data has none.
    ground_truth : mapping, optional
        Facts of the ground truth shown beside the results: ``n_atoms``, ``species_counts``
        (dict), ``tilt_axis_rotation_deg``.
    timings : mapping, optional
        Stage name → seconds, in run order. The report adds ``report`` (its own time).
    decisions : mapping, optional
        Label → value of choices the run made on its own, shown after those read from the
        provenance of the model (tilt-axis rotation, thresholds, atoms removed, ...).
    title, description : str
        Page title and a sentence on what the data are.
    overwrite : bool
        Replace an earlier report in ``folder`` (other files stay).

    Returns
    -------
    pathlib.Path
        The path of ``report.html``.
    """
    from ..io._outdir import check_output_folder, output_folder

    _check_inputs(model, volume, tilt_series, aligned, scores, timings, decisions, strain,
                  order, ground_truth)
    folder = Path(folder)
    check_output_folder(folder, overwrite=overwrite, names=REPORT_ENTRIES)
    with output_folder(folder, overwrite=overwrite) as tmp:
        _write(tmp, model, volume=volume, tilt_series=tilt_series, aligned=aligned,
               strain=strain, order=order, scores=scores, ground_truth=ground_truth,
               timings=timings, decisions=decisions, title=title, description=description)
    return folder / "report.html"


def _write(folder: Path, model, *, volume=None, tilt_series=None, aligned=None, strain=None,
           order=None, scores=None, ground_truth=None, timings=None, decisions=None,
           title="aet report", description=None, files: Mapping[str, str] | None = None
           ) -> dict[str, float]:
    """Write the report's entries into an existing folder that the caller makes atomic (the
    run's temporary output folder). Returns the timings it shows (with ``report``)."""
    t0 = time.perf_counter()
    _check_inputs(model, volume, tilt_series, aligned, scores, timings, decisions, strain,
                  order, ground_truth)
    folder = Path(folder)
    gt = dict(ground_truth or {})
    figs = folder / "figures"
    figs.mkdir()
    figures = _figures(figs, model, volume, tilt_series, aligned, strain, order, gt)
    shown = dict(timings or {})
    # the report's own time, measured now that the expensive part (figures) is done; the
    # page and summary.txt show the same dict
    shown["report"] = time.perf_counter() - t0
    page = _page(model=model, volume=volume, tilt_series=tilt_series, aligned=aligned,
                 scores=scores, gt=gt, timings=shown, decisions=decisions, title=title,
                 description=description, figures=figures, files=files, folder=folder)
    (folder / "report.html").write_text(page, encoding="utf-8")
    (folder / "summary.txt").write_text(summary_text(title=title, scores=scores, timings=shown),
                                        encoding="utf-8")
    return shown


# ----------------------------------------------------------------------------- figures
def _figures(figs: Path, model, volume, tilt_series, aligned, strain, order, gt) -> list:
    from .. import plot

    out = []

    def add(name, heading, caption, make):
        fig = make()
        if fig is None:
            return
        plot.save_figure(fig, figs / f"{name}.png")
        out.append((name, heading, caption))

    if tilt_series is not None:
        ts = tilt_series
        n = ts.data.sizes["angle"]
        frames = ts.data.sizes.get("frame")
        merged = any(r.get("op") == "register_frames" for r in ts.provenance)
        add("projections", "Projections",
            f"{min(12, n)} of the {n} projections as measured"
            + (f" (the mean of their {frames} frames, not registered)" if frames
               else " (frames registered and merged)" if merged else "")
            + ", evenly spread over the tilt range, on one grey scale.",
            lambda: plot.projection_montage(ts))
    if aligned is not None:
        alpha = float(aligned.attrs.get("tilt_axis_rotation_deg", 0.0))
        # the refinement's geometry update, read from the series it was applied to (a model
        # carries no alignment)
        has_refined = plot._geometry_update(aligned, None) is not None
        add("alignment", "Alignment",
            f"Left: a projection before alignment with the tilt axis found by the alignment "
            f"(α = {alpha:+.2f}° from the image y axis, counter-clockwise). Middle: the shift "
            "of each projection measured by the alignment (dots; the images were moved back "
            "by it)"
            + (", and the further shift fitted by the refinement (squares, dotted). Right: the "
               "Euler-angle corrections δφ, δθ, δψ the refinement fitted per projection."
               if has_refined else "."),
            lambda: plot.alignment_figure(aligned, projections=tilt_series,
                                          true_tilt_axis_rotation_deg=gt.get(
                                              "tilt_axis_rotation_deg")))
    if volume is not None:
        add("slices", "Reconstruction",
            f"Views through the centre of the reconstruction: the maximum over a slab "
            f"±{_SLAB_A:g} Å thick around each central plane, on one grey scale stretched "
            f"with γ = {_GAMMA:g} (intensity^γ) so that light atoms stay visible beside heavy "
            f"ones; rings (0.9 Å radius): the final model's atoms in that slab, in their "
            f"species colour.",
            lambda: plot.orthoslices(volume, atoms=model, slab_A=_SLAB_A, gamma=_GAMMA))
        hist = _box_intensity(volume, model)
        if hist is not None:
            add("histogram", "Species and intensity",
                f"Intensity of the reconstruction integrated over a 5×5×5-voxel box "
                f"({5 * volume.voxel_size_A:.2f} Å edge) at each atom of the final model, "
                f"split by the species the model gives it ({_counts_text(model)}).",
                lambda: plot.intensity_histogram(
                    model, values=hist, title="Species against intensity",
                    label="integrated intensity at the atom (a.u.)"))
    if model.n_atoms >= 2:
        add("rdf", "Radial distribution",
            "Pairs of atoms at each distance, per species pair, per atom of the first species "
            "and per Å³ of shell volume (not divided by the mean density).",
            lambda: plot.radial_distribution(model))
    if strain is not None:
        item = _strain_figure(strain)
        if item is not None:
            add("strain", "Strain", item[0], item[1])
    if order is not None:
        item = _order_figure(order, model)
        if item is not None:
            add("order", "Chemical order", item[0], item[1])
    return out


def _counts_text(model) -> str:
    return ", ".join(f"{sp} {n}" for sp, n in model.species_counts().items())


def _box_intensity(volume, model):
    from ..atoms.classification import local_profiles

    if model.n_atoms == 0:
        return None
    pos = model.positions
    step = 20000  # atoms per batch: 125 samples × 8 corners each stay ~160 MB at most
    return np.concatenate([local_profiles(volume.data, pos[i:i + step], box=5).sum(axis=1)
                           for i in range(0, len(pos), step)])


_STRAIN = ("e_xx", "e_yy", "e_zz", "e_xy", "e_xz", "e_yz")


def _strain_figure(strain):
    from .. import plot

    comps = [c for c in _STRAIN if c in strain]
    if not comps:
        return None
    mask = strain["mask"] if "mask" in strain else None
    titles = {}
    for c in comps:
        vals = np.asarray(strain[c].values, dtype=float)
        if mask is not None:
            vals = vals[np.asarray(mask.values, dtype=bool)]
        vals = vals[np.isfinite(vals)] * 100
        ij = c[2:]
        stats = f"mean {vals.mean():+.2f} %, sd {vals.std():.2f} %" if vals.size else "no data"
        titles[c] = f"$\\varepsilon_{{{ij}}}$   ({stats})"
    ref = strain.attrs.get("reference", strain.attrs.get("structure", "not stated"))
    conv = strain.attrs.get("strain_convention", "")
    caption = (f"The six strain components (in %) on the central xy slice (z = 0), one colour "
               f"scale for all; grey: outside the particle. Each title gives the mean and "
               f"spread over the whole particle. Reference lattice: {ref}."
               + (f" Convention: {conv}." if conv else ""))
    return caption, lambda: plot.field_slices(
        strain, comps, titles=titles, colorbar_label="strain (%)", scale=100.0, shared=True,
        symmetric=True, ncols=3, mask=mask)


def _order_figure(order, model):
    import xarray as xr
    from scipy.spatial import cKDTree

    from .. import plot
    from ..analysis import order_field

    ds = as_xarray(order, xr.Dataset)
    names = [v for v in ("order_L10_a", "order_L10_b", "order_L10_c") if v in ds]
    titles = {"order_L10_a": "variant with c ∥ crystal a", "order_L10_b":
              "variant with c ∥ crystal b", "order_L10_c": "variant with c ∥ crystal c"}
    kind = str(ds.attrs.get("order_kind", "L10"))
    if not names:
        names = [v for v in ds.data_vars if v == f"order_{kind}"]
        titles = {n: f"{kind} order" for n in names}
    if not names:
        return None
    sigma = 4.25
    fields = xr.Dataset({n: order_field(ds, n, voxel_size_A=1.0, sigma_A=sigma) for n in names})
    # blank grid points farther than ~0.8 nearest-neighbour distances from every atom
    pos = np.asarray(ds["position"].values, dtype=float)
    tree = cKDTree(pos)
    nn = float(np.median(tree.query(pos, k=2)[0][:, 1])) if len(pos) > 1 else 2.5
    f0 = fields[names[0]]
    zz, yy, xx = np.meshgrid(f0.z.values, f0.y.values, f0.x.values, indexing="ij")
    d, _ = tree.query(np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1))
    mask = xr.DataArray((d <= 0.8 * nn).reshape(f0.shape), dims=("z", "y", "x"))
    kind_txt = "L1₀" if kind == "L10" else kind
    caption = (f"{kind_txt} order parameter S of each variant (1: the neighbours sit as in the "
               f"perfect phase, 0: random, negative: anti-ordered), averaged with a Gaussian "
               f"of σ = {sigma:g} Å, on the central xy slice (z = 0); one colour scale for "
               f"all panels; grey: outside the particle.")
    return caption, lambda: plot.field_slices(
        fields, names, titles=titles, colorbar_label=f"{kind_txt} order parameter S",
        cmap="RdBu_r", shared=True, limits=(-1.0, 1.0), ncols=3, mask=mask)


# ----------------------------------------------------------------------------- decisions
def _prov_records(*objs) -> list[dict]:
    """The provenance records of the objects, in chain order (``objs`` from first to last
    stage), each record once: the final model's holds the whole chain from the tilt series
    on, but a model made another way still shows the alignment and reconstruction."""
    out: list[dict] = []
    seen: set = set()
    for o in objs:
        for rec in list(getattr(o, "provenance", []) or []) if o is not None else []:
            key = (rec.get("op"), rec.get("time"), json.dumps(rec.get("params"), sort_keys=True,
                                                             default=str))
            if key not in seen:
                seen.add(key)
                out.append(rec)
    return out


def _rms(v) -> float:
    a = np.asarray(v, dtype=float)
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a ** 2))) if a.size else float("nan")


def _decisions(model, volume, aligned, gt) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    seen: dict[str, int] = {}
    for rec in _prov_records(aligned, volume, model):
        op = str(rec.get("op", "?"))
        params = rec.get("params") or {}
        res = rec.get("result") or {}
        seen[op] = seen.get(op, 0) + 1
        stage = op.replace("_", " ") + (f" ({seen[op]})" if seen[op] > 1 else "")

        def row(what, value, stage=stage):
            rows.append((stage, what, value))

        if op.startswith("simulate"):
            if params.get("call"):
                row("input", f"simulated: {params['call']}")
        elif op == "register_frames":
            if "n_frames" in res:
                row("frames merged per projection", _fmt(res["n_frames"]))
            if "shift_x_A" in res and "shift_y_A" in res:
                r = _rms(np.hypot(np.asarray(res["shift_x_A"], float),
                                  np.asarray(res["shift_y_A"], float)))
                row("frame-to-frame shift corrected (RMS)", f"{r:.2f} Å")
        elif op == "remove_background":
            if "order" in res:
                row("background", f"polynomial of order {res['order']} fitted outside the "
                    f"object; support: {res.get('support', 'given')}")
        elif op == "align":
            if "tilt_axis_rotation_deg" in res:
                t = gt.get("tilt_axis_rotation_deg")
                row("tilt-axis rotation α (estimated)",
                    f"{res['tilt_axis_rotation_deg']:+.2f}°"
                    + (f" (true {t:+.2f}°)" if t is not None and np.isfinite(t) else ""))
            if "tilt_axis_offset_A" in res:
                row("tilt-axis offset across the axis", f"{res['tilt_axis_offset_A']:+.2f} Å")
            if "shift_x_A" in res:
                row("projection shifts (RMS x / y)",
                    f"{_rms(res['shift_x_A']):.2f} / {_rms(res.get('shift_y_A', [])):.2f} Å")
        elif op == "denoise":
            if res:
                row("denoising", ", ".join(f"{human_label(k)} {_fmt(v)}" for k, v in res.items()
                                           if not isinstance(v, (list, dict))))
        elif op == "reconstruct":
            conv = res.get("convergence") or {}
            method = str(res.get("method", params.get("method", "?"))).upper()
            asked = params.get("n_iter")
            done = conv.get("n_iter")
            txt = method
            if done is not None:
                txt += f", {done} iterations" + (f" of at most {asked}" if asked else "")
            if conv.get("best_iteration") is not None:
                txt += f" (kept iteration {conv['best_iteration']}, the lowest hold-out error)"
            row("reconstruction", txt)
            if "r1" in res:
                row("R₁ (misfit of the projections)", f"{res['r1']:.3f}")
        elif op == "trace_atoms":
            if "min_distance_A" in params:
                row("minimum distance between atoms", f"{params['min_distance_A']:g} Å")
            if "trace_threshold" in model.attrs:
                row("peak threshold (volume units)", _fmt(model.attrs["trace_threshold"]))
            if "n_candidates" in model.attrs:
                row("local maxima considered", _fmt(model.attrs["n_candidates"]))
        elif op == "classify":
            counts = res.get("counts") or {}
            if counts:
                txt = ", ".join(f"{k} {v}" for k, v in counts.items() if k != "X")
                if counts.get("X"):
                    txt += f"; {counts['X']} peaks too faint for an atom, dropped"
                row("species assigned" + (f" ({res['method']})" if "method" in res else ""), txt)
        elif op == "cleanup":
            if "n_removed" in res:
                crit = ""
                radius = res.get("radius_A", params.get("radius_A"))
                if "min_neighbours" in params and isinstance(radius, (int, float)):
                    crit = (f" (fewer than {params['min_neighbours']} neighbours within "
                            f"{radius:.2f} Å)")
                row("atoms removed by the clean-up", f"{res['n_removed']}{crit}")
        elif op == "refine":
            if "r_factor_start" in res and "r_factor" in res:
                row("R-factor before → after", f"{res['r_factor_start']:.3f} → "
                    f"{res['r_factor']:.3f}")
            if "n_added" in res or "n_removed" in res:
                row("atoms added / removed from the residual",
                    f"{res.get('n_added', 0)} / {res.get('n_removed', 0)}")
            if "b_factor_A2" in res and "species" in res:
                row("B-factor per species", ", ".join(
                    f"{s} {b:.2f} Å²" for s, b in zip(res["species"], res["b_factor_A2"])))
            if "rms_shift_A" in res:
                row("alignment shift refined (RMS)", f"{res['rms_shift_A']:.2f} Å")
            if "rms_dangle_deg" in res:
                a = res["rms_dangle_deg"]
                row("Euler-angle corrections (RMS δφ / δθ / δψ)",
                    " / ".join(f"{x:.2f}" for x in a) + "°")
    return rows


# ----------------------------------------------------------------------------- page parts
def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _data_facts(model, volume, tilt_series, aligned) -> list[str]:
    facts = []
    ts = tilt_series if tilt_series is not None else aligned
    if ts is not None:
        da = ts.data
        ang = np.asarray(ts.angles, dtype=float)
        ny, nx = da.sizes["y"], da.sizes["x"]
        px = ts.pixel_size_A
        frames = da.sizes.get("frame")
        facts.append(
            f"<b>Input</b>: {da.sizes['angle']} projections from {ang.min():+.1f}° to "
            f"{ang.max():+.1f}°, {nx} × {ny} pixels of {px:g} Å ({nx * px:.1f} × {ny * px:.1f} Å)"
            + (f", {frames} frames each" if frames else "") + ".")
    if volume is not None:
        nz, ny, nx = (volume.data.sizes[d] for d in ("z", "y", "x"))
        vx = volume.voxel_size_A
        rec = next((r for r in reversed(volume.provenance) if r.get("op") == "reconstruct"),
                   None)
        meth = ""
        if rec:
            m = (rec.get("result") or {}).get("method") or (rec.get("params") or {}).get("method")
            meth = f" ({str(m).upper()})" if m else ""
        facts.append(f"<b>Reconstruction</b>{_e(meth)}: {nx} × {ny} × {nz} voxels of {vx:g} Å "
                     f"({nx * vx:.1f} × {ny * vx:.1f} × {nz * vx:.1f} Å).")
    counts = model.species_counts()
    facts.append(f"<b>Atomic model</b>: {model.n_atoms} atoms — "
                 + ", ".join(f"{_e(k)} {v}" for k, v in counts.items()) + ".")
    return facts


def _score_facts(scores, gt) -> list[str]:
    if not scores:
        return []
    name, s = list(scores.items())[-1]
    truth = f"{gt.get('n_atoms', _score_get(s, 'n_truth', '?'))} atoms"
    counts = gt.get("species_counts")
    if counts:
        truth += ": " + ", ".join(f"{k} {v}" for k, v in counts.items())
    acc = _score_get(s, "species_accuracy")
    return [f"<b>Against the ground truth</b> ({_e(truth)}), the final model (after "
            f"“{_e(name)}”): recall {_score_get(s, 'recall'):.3f}, precision "
            f"{_score_get(s, 'precision'):.3f}, position error (RMSD) "
            f"{_score_get(s, 'rmsd_pm'):.1f} pm, species right for {100 * acc:.1f} % of the "
            f"matched atoms."]


def _scores_table(scores) -> str:
    if not scores:
        return ""
    head = ("<tr><th>model after</th><th class=num>atoms</th><th class=num>recall</th>"
            "<th class=num>precision</th><th class=num>RMSD (pm)</th>"
            "<th class=num>RMSD x / y / z (pm)</th><th class=num>species accuracy</th></tr>")
    rows = []
    items = list(scores.items())
    for k, (name, s) in enumerate(items):
        xyz = " / ".join(f"{v:.0f}" for v in _score_get(s, "rmsd_pm_xyz", (np.nan,) * 3))
        cls = ' class="final"' if k == len(items) - 1 else ""
        rows.append(
            f'<tr{cls} data-stage="{_e(name)}"><td>{_e(name)}</td>'
            f"<td class=num>{int(_score_get(s, 'n_predicted', 0))}</td>"
            f"<td class=num>{_score_get(s, 'recall'):.3f}</td>"
            f"<td class=num>{_score_get(s, 'precision'):.3f}</td>"
            f"<td class=num>{_score_get(s, 'rmsd_pm'):.1f}</td><td class=num>{xyz}</td>"
            f"<td class=num>{_score_get(s, 'species_accuracy'):.3f}</td></tr>")
    return f'<table id="scores">{head}{"".join(rows)}</table>'


def _timings_table(timings) -> str:
    if not timings:
        return ""
    rows = "".join(f'<tr data-stage="{_e(k)}"><td>{_e(k)}</td><td class=num>{v:.2f}</td></tr>'
                   for k, v in timings.items())
    total = sum(timings.values())
    return (f'<table id="timings"><tr><th>stage</th><th class=num>seconds</th></tr>{rows}'
            f'<tr data-stage="total" class="final"><td>total</td><td class=num>{total:.2f}'
            f"</td></tr></table>")


def _decisions_table(rows, extra) -> str:
    rows = list(rows)
    for k, v in (extra or {}).items():
        rows.append(("run", human_label(k) if "_" in str(k) else str(k), _fmt(v)))
    if not rows:
        return "<p class=note>No automatic decisions were recorded.</p>"
    body = "".join(f"<tr><td>{_e(s)}</td><td>{_e(w)}</td><td>{_e(v)}</td></tr>"
                   for s, w, v in rows)
    return (f'<table id="decisions"><tr><th>step</th><th>what aet chose or found</th>'
            f"<th>value</th></tr>{body}</table>")


def _json_block(id_, obj) -> str:
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return f'<script type="application/json" id="{id_}">{text}</script>'


def _atoms_data(model) -> dict:
    from ase.data import atomic_numbers, covalent_radii
    from scipy.spatial import cKDTree

    from ..plot import species_colours

    pos = np.asarray(model.positions, dtype=float)
    els = list(model.elements)
    colours = species_colours(els)
    if len(pos) > 1:
        nn = float(np.median(cKDTree(pos).query(pos, k=2)[0][:, 1]))
    else:
        nn = 2.5
    cov = np.array([covalent_radii[atomic_numbers.get(e, 0)] for e in els], dtype=float)
    cov = np.where(cov > 0, cov, 1.0)
    radii = 0.36 * nn * cov / cov.mean() if len(els) else cov
    index = {e: i for i, e in enumerate(els)}
    kind = [index[s] for s in model.species.tolist()]
    return {"elements": els, "colours": [colours[e] for e in els],
            "radii_A": [round(float(r), 3) for r in radii],
            "counts": [int(np.sum(model.species == e)) for e in els],
            "kind": kind, "xyz": [round(float(v), 3) for v in pos.ravel()]}


def _volume_data(volume) -> dict:
    da = volume.data
    f = int(np.ceil(max(da.sizes[d] for d in ("z", "y", "x")) / _MAX_VIEW_SAMPLES))
    if f > 1:
        da = da.coarsen(z=f, y=f, x=f, boundary="trim").mean()
    v = np.asarray(da.values, dtype=np.float64)
    v = np.where(np.isfinite(v), v, 0.0)
    # black at 0: negative values (reconstruction artefacts) show as vacuum
    hi = float(np.percentile(v, 99.95))
    lo = 0.0 if hi > 0 else float(np.percentile(v, 1.0))
    if not hi > lo:
        hi = lo + 1.0
    q = np.clip(np.round((v - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    coords = [np.asarray(da[d].values, dtype=float) for d in ("z", "y", "x")]
    vx = float(coords[2][1] - coords[2][0]) if len(coords[2]) > 1 else volume.voxel_size_A
    return {"shape": list(q.shape), "voxel_A": vx, "origin_A": [float(c[0]) for c in coords],
            "binned": f, "gamma": _GAMMA, "slab_A": _SLAB_A, "lo": lo, "hi": hi,
            "data_b64": base64.b64encode(q.tobytes()).decode("ascii")}


_FILES = {
    "volume.zarr": "the reconstruction (open with aet.open)",
    "model.csv": "the final atomic model as plain CSV (x_A, y_A, z_A, species, ...); its "
                 "provenance is in model.csv-metadata.json",
    "model.xyz": "the final atomic model, extended XYZ",
    "model.cif": "the final atomic model, CIF",
    "dft": "VASP and Quantum ESPRESSO inputs of a cluster cut from the model, with a manifest",
    "provenance.json": "every operation with its parameters and results",
    "figures": "the figures of this page as PNG files",
    "summary.txt": "the scores and the time per stage as plain text",
}


def _page(*, model, volume, tilt_series, aligned, scores, gt, timings, decisions, title,
          description, figures, files, folder) -> str:
    from .._version import __version__
    from ._viewer import CSS, JS

    facts = _data_facts(model, volume, tilt_series, aligned) + _score_facts(scores, gt)
    atoms = _atoms_data(model)
    species_controls = "".join(
        f'<label><input type="checkbox" data-species="{i}" checked>'
        f'<span class="swatch" style="background:{c}"></span>{_e(e)} ({n})</label>'
        for i, (e, c, n) in enumerate(zip(atoms["elements"], atoms["colours"],
                                          atoms["counts"])))
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]
    if description:
        parts.append(f'<p class="lead">{_e(description)}</p>')
    parts.append('<ul class="facts" id="facts">' + "".join(f"<li>{f}</li>" for f in facts)
                 + "</ul>")
    # the 3D view of the model
    parts.append(
        '<section id="model-3d"><h2>The atomic model in 3D</h2>'
        '<div class="viewer"><canvas id="atoms3d" aria-label="3D view of the atomic model">'
        "</canvas>"
        '<div class="controls"><span>view along</span>'
        '<button data-view="z">z (beam)</button><button data-view="y">y (tilt axis)</button>'
        '<button data-view="x">x</button><button data-view="reset">reset</button>'
        f"{species_controls}"
        '<label>atom size <input type="range" id="atoms3d-size" min="0.3" max="1.6" '
        'step="0.05" value="1"></label></div>'
        '<div class="status" id="atoms3d-status"></div></div>'
        '<p class="note">Drag to rotate, wheel to zoom, double-click to reset; point at an atom '
        "for its species and position. Orthographic view; paler atoms are farther away.</p>"
        "</section>")
    if volume is not None:
        vd = _volume_data(volume)
        binned = (f" The volume is shown averaged over {vd['binned']}³-voxel blocks "
                  f"({vd['voxel_A']:.2f} Å samples)." if vd["binned"] > 1 else "")
        slice_panels = "".join(
            f'<div class="slice"><canvas id="slice-{p}" aria-label="{p} slice"></canvas>'
            f'<div class="controls"><span>{p} plane</span>'
            f'<input type="range" id="slice-{p}-range" min="0" step="1">'
            f'<span id="slice-{p}-pos"></span></div></div>' for p in ("xy", "xz", "yz"))
        parts.append(
            '<section id="volume-3d"><h2>The reconstruction, slice by slice</h2>'
            f'<div class="viewer"><div class="slices">{slice_panels}</div>'
            '<div class="controls"><label>contrast γ <input type="range" id="slice-gamma" '
            'min="0.2" max="1.5" step="0.05"></label><span id="slice-gamma-value"></span>'
            '<label>slab <input type="range" id="slice-slab" min="0" max="3" step="0.1">'
            '</label><span id="slice-slab-value"></span>'
            '<label><input type="checkbox" id="slice-atoms" checked> atoms in the slab'
            "</label></div></div>"
            '<p class="note">Move a slider to go through the volume; dashed lines: where the '
            "other two planes cut. Each view is the maximum over a slab around the plane "
            "(so an atom near the plane shows at its peak; set the slab to 0 for the plane "
            "alone), on a grey scale from 0 (black, negative values too) to the 99.95th "
            f"percentile (white) with a power-law stretch γ ({_GAMMA:g}: light atoms stay "
            f"visible; 1: linear); rings: the model's atoms in the slab.{binned}</p>"
            "</section>")
    else:
        vd = None
    if scores:
        parts.append('<section id="scores-section"><h2>Against the ground truth</h2>'
                     + _scores_table(scores)
                     + '<p class="note">Recall: true atoms found; precision: atoms found that '
                     "are real; RMSD: position error of the matched atoms after a rigid fit; "
                     "species accuracy: matched atoms with the right species.</p></section>")
    if figures:
        parts.append('<section id="figures"><h2>Figures</h2>')
        for name, heading, caption in figures:
            parts.append(f'<figure id="fig-{_e(name)}"><h3>{_e(heading)}</h3>'
                         f'<img src="figures/{_e(name)}.png" alt="{_e(caption)}">'
                         f"<figcaption>{_e(caption)}</figcaption></figure>")
        parts.append("</section>")
    parts.append('<section id="decisions-section"><h2>What aet decided on its own</h2>'
                 + _decisions_table(_decisions(model, volume, aligned, gt), decisions)
                 + "</section>")
    if timings:
        parts.append('<section id="timings-section"><h2>Time per stage</h2>'
                     + _timings_table(timings) + "</section>")
    present = {**_FILES, **(files or {})}
    listed = [(k, v) for k, v in present.items()
              if (folder / k).exists() or k in ("figures", "summary.txt")]
    parts.append('<section id="files"><h2>Files in this folder</h2><ul>'
                 + "".join(f"<li><code>{_e(k)}</code> — {_e(v)}</li>" for k, v in listed)
                 + "</ul></section>")
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    parts.append(f'<p class="note">Written by aet {_e(__version__)} on {_e(stamp)}. This page '
                 "needs no network: its views are drawn by the script below.</p>")
    parts.append(_json_block("aet-atoms", atoms))
    if vd is not None:
        parts.append(_json_block("aet-volume", vd))
    parts.append(f"<script>{JS}</script></body></html>")
    return "\n".join(parts)
