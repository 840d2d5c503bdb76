"""The whole default pipeline on the user's own data, in one call: :func:`aet.run`.

``result = aet.run(tilt_series, species=["Fe", "Pt"])`` takes raw or preprocessed projections to
a refined atomic model with per-atom uncertainty. Each stage runs only when the data need it
(frames merged when there is a ``frame`` dim, a step the series' provenance already records is
not repeated), and every choice the run makes on its own — species order, tilt-axis rotation,
denoising, film or particle, thresholds, atoms dropped or added — is in ``result.decisions``
and in the provenance of the objects it returns. Nothing here reads a ground truth:
``aet demo`` scores the result of this same function against its simulation afterwards.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RunResult", "run"]

#: the stages of :func:`run`, in order (``RunResult.timings`` keys)
STAGES = ("register", "film", "background", "align", "match", "denoise", "reconstruct",
          "trace", "classify", "cleanup", "refine", "uncertainty")

#: what :meth:`RunResult.save` writes into its folder (the report adds its own entries)
RUN_ENTRIES = ("volume.zarr", "model.csv", "model.csv-metadata.json", "model.xyz", "model.cif",
               "model.zarr", "tilt_series.zarr", "decisions.json", "provenance.json")


@dataclass
class RunResult:
    """What :func:`aet.run` made.

    Attributes
    ----------
    model : AtomicModel
        The final model: refined positions, species and per-atom 1σ ``uncertainty`` (Å);
        the learned per-species profiles and detector response are in its provenance.
    volume : Volume
        The reconstruction the atoms were traced in.
    tilt_series : TiltSeries
        The aligned projections (frames merged, background removed) with the refinement's
        geometry update applied: the per-projection shifts and Euler-angle corrections it
        fitted (images moved back by the shifts, angles corrected, an ``apply_geometry``
        provenance record). The geometry the final model and its uncertainty belong to; the
        series before refinement is ``series["aligned"]``.
    timings : dict
        Stage name → wall-clock seconds, in run order.
    decisions : dict
        Every choice the run made on its own (see :func:`run`).
    stages : dict
        The intermediate models by stage (``"traced"``, ``"classified"``, ``"cleaned"``,
        ``"refined"``): for diagnostics and for scoring against a simulation.
    raw : TiltSeries
        The input as given (frames not merged).
    series : dict
        The tilt series by stage (``"registered"``: frames merged, ``"aligned"``,
        ``"denoised"`` when it ran, ``"refined"`` when the refinement updated the geometry).
    """

    model: Any
    volume: Any
    tilt_series: Any
    timings: dict[str, float]
    decisions: dict[str, Any]
    stages: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: Any = field(default=None, repr=False)
    series: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.model.species_counts().items())
        return (f"<aet.RunResult: {self.model.n_atoms} atoms ({counts}); volume "
                f"{'×'.join(map(str, self.volume.data.shape))} at "
                f"{self.volume.voxel_size_A:g} Å; {sum(self.timings.values()):.1f} s>")

    def summary(self) -> str:
        """A short plain-text account: atoms found, the decisions and the time per stage."""
        lines = [repr(self), "", "decisions:"]
        lines += [f"  {k}: {v}" for k, v in self.decisions.items()]
        lines += ["", f"{'stage':<14}{'seconds':>9}"]
        lines += [f"{k:<14}{v:>9.2f}" for k, v in self.timings.items()]
        lines.append(f"{'total':<14}{sum(self.timings.values()):>9.2f}")
        return "\n".join(lines)

    def report(self, folder, *, overwrite: bool = False, scores=None, ground_truth=None,
               title: str = "aet run", description: str | None = None) -> Path:
        """Write ``report.html`` with figures and interactive views into ``folder``
        (:func:`aet.report.write_report`); returns the page's path. ``scores`` and
        ``ground_truth`` are for simulated data only."""
        from .report import write_report

        analysis = _analysis(self.model)
        return write_report(folder, self.model, volume=self.volume,
                            tilt_series=self.raw if self.raw is not None else None,
                            aligned=self.tilt_series, strain=analysis.get("strain"),
                            order=analysis.get("order"), scores=scores,
                            ground_truth=ground_truth, timings=self.timings,
                            decisions=_readable(self.decisions), title=title,
                            description=description, overwrite=overwrite)

    def save(self, folder, *, overwrite: bool = False, report: bool = True) -> Path:
        """Write the results into ``folder``: ``volume.zarr``, ``model.csv`` (plain CSV with a
        metadata sidecar), ``model.xyz``, ``model.cif``, ``model.zarr`` (everything, reopen
        with :func:`aet.open`), ``tilt_series.zarr`` (the aligned projections),
        ``decisions.json``, ``provenance.json`` and, with ``report``, ``report.html``.

        An existing folder with content is refused unless ``overwrite``; even then only what
        aet wrote there is replaced (the user's own files stay).
        """
        import json

        from .io._outdir import check_output_folder, output_folder
        from .report import REPORT_ENTRIES, _write

        folder = Path(folder)
        names = RUN_ENTRIES + (tuple(REPORT_ENTRIES) if report else ())
        check_output_folder(folder, overwrite=overwrite, names=names)
        with output_folder(folder, overwrite=overwrite) as tmp:
            self.volume.save(tmp / "volume.zarr")
            self.tilt_series.save(tmp / "tilt_series.zarr")
            self.model.save(tmp / "model.zarr")
            for ext in ("csv", "xyz", "cif"):
                self.model.write(tmp / f"model.{ext}")
            (tmp / "decisions.json").write_text(
                json.dumps(_jsonable(self.decisions), indent=2) + "\n", encoding="utf-8")
            prov = {"tilt_series": self.tilt_series.provenance,
                    "volume": self.volume.provenance, "model": self.model.provenance}
            (tmp / "provenance.json").write_text(json.dumps(prov, indent=2, default=str),
                                                 encoding="utf-8")
            if report:
                analysis = _analysis(self.model)
                _write(tmp, self.model, volume=self.volume, tilt_series=self.raw,
                       aligned=self.tilt_series, strain=analysis.get("strain"),
                       order=analysis.get("order"), timings=self.timings,
                       decisions=_readable(self.decisions), title="aet run")
        return folder


# ----------------------------------------------------------------------------- checks
def _check_species(species) -> tuple[list[str], bool]:
    """Element symbols ordered light → heavy (by atomic number) and whether the order the
    user gave differed."""
    from ase.data import atomic_numbers

    if isinstance(species, str):
        species = [s.strip() for s in species.split(",") if s.strip()]
    try:
        sp = [str(s) for s in species]
    except TypeError:
        raise TypeError(f"species must be a list of element symbols such as ['Fe', 'Pt'], got "
                        f"{species!r}") from None
    if not sp:
        raise ValueError("species is empty; pass the elements in the sample, e.g. "
                         "species=['Fe', 'Pt']")
    bad = [s for s in sp if s not in atomic_numbers or s == "X"]
    if bad:
        raise ValueError(f"species: unknown element symbol(s) {bad}; use symbols such as 'Fe', "
                         f"'Pt' (case matters: 'Pt', not 'PT')")
    if len(set(sp)) != len(sp):
        raise ValueError(f"species lists an element twice: {sp}; give each element once")
    ordered = sorted(sp, key=lambda s: atomic_numbers[s])
    return ordered, ordered != sp


def _geometry_update_facts(before, after) -> dict:
    """RMS of the shifts (Å) and Euler corrections (deg) a refinement's geometry update made."""
    g0, g1 = before.geometry, after.geometry
    zero = np.zeros((g0.n, 2))
    d = (zero if g1.shifts_A is None else g1.shifts_A) - (
        zero if g0.shifts_A is None else g0.shifts_A)
    de = g1.euler_deg - g0.euler_deg
    return {"rms_shift_A": round(float(np.sqrt(np.mean(np.sum(d ** 2, axis=1)))), 4),
            "rms_dangle_deg": [round(float(np.sqrt(np.mean(de[:, i] ** 2))), 4)
                               for i in range(3)]}


def _as_tilt_series(data, *, angles, pixel_size_A):
    from . import io
    from .model.tiltseries import TiltSeries

    if isinstance(data, TiltSeries):
        if angles is not None or pixel_size_A is not None:
            md = {}
            if pixel_size_A is not None:
                md["pixel_size_A"] = pixel_size_A
            da = data.data
            if md:
                da = da.assign_attrs(**md)
            out = TiltSeries(da) if md else data
            return out.with_angles(angles) if angles is not None else out
        return data
    if isinstance(data, (str, Path)):
        md = {}
        if angles is not None:
            md["angles"] = angles
        if pixel_size_A is not None:
            md["pixel_size_A"] = pixel_size_A
        obj = io.open(data, **md)
        if not isinstance(obj, TiltSeries):
            raise TypeError(f"{str(data)!r} holds a {type(obj).__name__}, not a tilt series; "
                            f"aet.run takes projections (angle, y, x)")
        return obj
    import xarray as xr

    if isinstance(data, xr.DataArray):
        kw = {}
        if angles is not None:
            kw["angles"] = angles
        if pixel_size_A is not None:
            kw["pixel_size_A"] = pixel_size_A
        return TiltSeries(data, **kw)
    if angles is None or pixel_size_A is None:
        raise TypeError("tilt_series is a plain array: pass angles= (degrees, one per "
                        "projection) and pixel_size_A= (Å), or an aet.TiltSeries / a file path")
    return TiltSeries(data, angles=angles, pixel_size_A=pixel_size_A)


#: a dask-backed series up to this size is loaded into memory first (read once)
IN_MEMORY_BYTES = 2 * 2**30

#: :func:`_structure_ratio` below this: the projections hold nothing but noise (pure noise
#: gives 1.0-1.3; the small FePt benchmark at 500 e/Å² per projection 2.8, real Ta film data
#: 250-660)
MIN_STRUCTURE_RATIO = 1.6


def _structure_ratio(ts, *, sigma_px: float = 3.0, max_images: int = 15) -> float:
    """Median over (up to ``max_images`` evenly spaced) projections of std(smoothed image) /
    the std white noise of the image's own level would keep after the same smoothing: ≈ 1 for
    noise alone, ≫ 1 where a particle or film shows (its envelope survives the smoothing)."""
    from scipy import ndimage
    from skimage.restoration import estimate_sigma

    da = ts.data
    n = da.sizes["angle"]
    idx = np.unique(np.linspace(0, n - 1, min(n, max_images)).round().astype(int))
    out = []
    for i in idx:
        img = np.asarray(da.isel(angle=int(i)).values, dtype=np.float64)
        if img.ndim == 3:  # frames: their mean
            img = img.mean(axis=0)
        noise = float(estimate_sigma(img))
        if not np.isfinite(noise) or noise <= 0:
            continue
        kept = noise / np.sqrt(4 * np.pi * sigma_px**2)
        out.append(float(ndimage.gaussian_filter(img, sigma_px).std()) / kept)
    return float(np.median(out)) if out else float("inf")


def _done(ts, op: str) -> bool:
    return any(r.get("op") == op for r in ts.provenance)


def _last_result(obj, op: str) -> dict:
    return next((r.get("result") or {} for r in reversed(obj.provenance) if r.get("op") == op),
                {})


class _Stages:
    """Run named stages with an optional progress bar and wall-clock timing."""

    def __init__(self, progress: bool, desc: str = "aet run"):
        from tqdm.auto import tqdm

        self.timings: dict[str, float] = {}
        self.bar = tqdm(total=len(STAGES), desc=desc, unit="stage", disable=not progress,
                        leave=True)

    def run(self, name: str, func: Callable[[], Any]) -> Any:
        self.bar.set_postfix_str(name)
        t0 = time.perf_counter()
        out = func()
        self.timings[name] = time.perf_counter() - t0
        self.bar.update(1)
        return out

    def skip(self, name: str) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


# ----------------------------------------------------------------------------- run
def run(tilt_series, species: Sequence[str] | str, *, angles=None, pixel_size_A=None,
        method: str | None = None, n_iter: int | None = None, denoise: bool | str = "auto",
        tilt_axis: str | float | None = "estimate", film: bool | str = "auto",
        match_projections: bool | str = "auto", min_distance_A: float = 2.0,
        refine: bool = True, refine_alignment=("shifts", "angles"),
        add_remove: bool = True, uncertainty: bool = True, progress: bool = False,
        reconstruct_options: Mapping[str, Any] | None = None) -> RunResult:
    """Run the whole default pipeline: raw projections → refined atomic model.

    Stages (each skipped when the series' provenance shows it was already done):
    frames registered and averaged (when the series has a ``frame`` dim) → film or particle
    (the options of the later stages follow) → background and detector offset removed →
    alignment (tilt-axis rotation, shifts; projection matching where it pays) → denoising
    (BM3D, where it pays) → reconstruction → tracing → species classification with its
    self-checks (for one element only the non-atom peaks are dropped) → clean-up of isolated
    peaks → refinement of positions, per-species radial profiles, the detector response and
    the per-projection alignment against the aligned, *not* denoised, projections, with atoms
    added or removed where the residual shows them → per-atom 1σ uncertainty. Every choice
    made on the way is in ``result.decisions`` and in an ``"aet.run"`` record of the model's
    and the volume's provenance.

    Parameters
    ----------
    tilt_series : TiltSeries, xarray.DataArray, array or path
        The projections, dims ``(angle, y, x)`` or ``(angle, frame, y, x)``, in detector
        counts or any linear unit (a constant detector offset is fine). A path is opened
        with :func:`aet.open` (``angles``/``pixel_size_A`` as there).
    species : list of str
        The elements in the sample, e.g. ``["Fe", "Pt"]``. Any order: they are sorted light
        to heavy (by atomic number, the order of ADF brightness), and a warning says so
        when the order given differed.
    angles : array_like or path, optional
        Tilt angles (degrees) or Euler angles (n, 3), or an angle file, when the series does
        not carry them.
    pixel_size_A : float, optional
        Pixel size (Å) when the series does not carry it.
    method : str, optional
        Reconstruction method (default: that of :func:`aet.reconstruct.reconstruct`).
    n_iter : int, optional
        Reconstruction iterations (default: the method's).
    denoise : bool or "auto"
        BM3D-denoise the aligned projections before reconstruction (the refinement always
        fits the projections before denoising). ``"auto"``: not denoised — measured through
        ``aet.run`` on abTEM-simulated 3 nm FePt at 1×10⁵ e/Å², BM3D before reconstruction
        lowered recall 0.92 → 0.75 and species accuracy 0.985 → 0.71, and on the small
        cases it changed recall and precision by < 0.01 at twice the run time
        (``decisions["denoise"]`` says so).
    tilt_axis : "estimate", float or None
        Tilt-axis rotation in the image: estimated (noise-unbiased common-line estimate,
        :func:`aet.preprocess.estimate_tilt_axis_rotation`), given in degrees, or None (the
        axis already lies along y).
    film : bool or "auto"
        Extended object (film) or isolated particle. ``"auto"``: decided from the data by
        :func:`aet.reconstruct.film.detect_extended` where this aet has it (else the particle
        path, said in ``decisions["object_reason"]``); the background removal, reconstruction
        box, tracing, clean-up and refinement options follow the decision.
    match_projections : bool or "auto"
        Refine shifts and in-plane rotations by projection matching before reconstruction
        (:meth:`aet.TiltSeries.match_projections`). ``"auto"``: on for a particle with at
        least :data:`MATCHING_MIN_ANGLES` projections (abTEM 3 nm FePt, 47 tilts: traced
        recall 0.71 → 0.99), off for a film (no isolated field of view).
    min_distance_A : float
        Minimum distance between traced atoms (Å).
    refine : bool
        Refine the model against the projections.
    refine_alignment : tuple of str
        Per-projection quantities fitted with the model (``"shifts"``, ``"angles"``).
    add_remove : bool
        Let refinement add atoms the residual shows and remove unsupported ones.
    uncertainty : bool
        Compute the per-atom 1σ position uncertainty (Å).
    progress : bool
        Show a progress bar.
    reconstruct_options : mapping, optional
        Further keywords for :func:`aet.reconstruct.reconstruct`.

    Returns
    -------
    RunResult
        ``.model``, ``.volume``, ``.tilt_series`` (aligned), ``.timings``, ``.decisions``,
        ``.report(folder)``, ``.save(folder)``.

    Examples
    --------
    >>> import aet
    >>> bench = aet.simulate.fept_benchmark("small", seed=0)      # doctest: +SKIP
    >>> result = aet.run(bench.tilt_series, species=["Fe", "Pt"])  # doctest: +SKIP
    >>> result.model.species_counts()                              # doctest: +SKIP
    {'Fe': 113, 'Pt': 112}
    """
    from .io.angles import check_degrees
    from .preprocess.background import has_background_removed

    sp, reordered = _check_species(species)
    ts = _as_tilt_series(tilt_series, angles=angles, pixel_size_A=pixel_size_A)
    for name, value in (("denoise", denoise), ("film", film),
                        ("match_projections", match_projections)):
        if value not in (True, False, "auto"):
            raise ValueError(f"{name} must be True, False or 'auto', got {value!r}")
    check_degrees(ts.euler_angles, "aet.run: the tilt series' angles", stacklevel=3)
    decisions: dict[str, Any] = {"species": sp}
    if reordered:
        warnings.warn(f"aet.run: species were given as {list(species)}; aet orders them light "
                      f"to heavy by atomic number, {sp} (ADF brightness grows with Z)",
                      UserWarning, stacklevel=2)
        decisions["species_reordered"] = True
    recon_kw = dict(reconstruct_options or {})
    if method is not None:
        recon_kw["method"] = method
    if n_iter is not None:
        recon_kw["n_iter"] = n_iter

    if ts.is_lazy and ts.data.nbytes <= IN_MEMORY_BYTES:
        # every stage reads the series several times: a small one is read from disk once
        ts = ts.compute()
        decisions["in_memory"] = f"loaded ({ts.data.nbytes / 2**20:.0f} MiB)"
    ang = np.asarray(ts.data.coords["angle"].values, dtype=float)
    if ang.size > 1 and np.any(np.diff(ang) < 0):
        # the stages that compare neighbouring tilts sort by angle (with a warning each); the
        # run sorts once (every projection keeps its own Euler angles and shifts)
        ts = ts._replace(ts.data.sortby("angle"), "sort_by_angle",
                         {"first_out_of_order": int(np.argmax(np.diff(ang) < 0)) + 1})
        decisions["angle_order"] = "projections sorted by increasing tilt angle"
    st = _Stages(progress)
    stages: dict[str, Any] = {}
    series: dict[str, Any] = {}
    ratio = _structure_ratio(ts)
    decisions["structure_to_noise"] = round(ratio, 2)
    if ratio < MIN_STRUCTURE_RATIO:
        raise ValueError(
            f"aet.run: the projections show no structure above their noise (smoothed contrast "
            f"{ratio:.2f}× what noise alone leaves; a particle or film gives ≥ 3×): the tilt "
            f"series holds no particle, or its dose is far too low to see one. Check that the "
            f"file is the tilt series (aet.open(...).data.isel(angle=0).plot()) and that "
            f"frames of one angle are in a 'frame' dim, not separate projections")
    try:
        raw = ts
        n_frames = ts.n_frames
        if "frame" in ts.data.dims:
            ts = st.run("register", lambda: raw.register_frames())
            decisions["frames_registered"] = n_frames
        else:
            st.skip("register")
        series["registered"] = ts
        # -- film or particle: the options of every later stage that depend on it ----------
        cur = ts
        fd = st.run("film", lambda: _film_decision(cur, film))
        opts = fd["options"]
        decisions["object"] = fd["object"]
        decisions["object_reason"] = fd["reason"]
        decisions["film"] = {"extended": fd["object"] == "film", "reason": fd["reason"],
                             **opts["reasons"]}
        # -- background and detector offset -----------------------------------------------
        if _done(ts, "remove_background") or has_background_removed(ts.data):
            st.skip("background")
            decisions["background"] = "already removed (provenance)"
        elif not opts["remove_background"]:
            st.skip("background")
            decisions["background"] = "not removed: " + opts["reasons"].get(
                "remove_background", "the object decision")
        else:
            cur = ts
            ts = st.run("background", lambda: cur.remove_background())
            decisions["background"] = "removed (polynomial outside the object, with the offset)"
        # -- alignment ------------------------------------------------------------------------
        if _done(ts, "align") or _done(ts, "match_projections"):
            st.skip("align")
            decisions["alignment"] = "already aligned (provenance)"
        elif not opts["align"]:
            st.skip("align")
            decisions["alignment"] = "not aligned: " + opts["reasons"].get(
                "align", "the object decision")
        elif not ts.is_single_axis:
            st.skip("align")
            decisions["alignment"] = ("per-projection Euler angles given (refined): taken as "
                                      "aligned; align() handles single-axis series")
        else:
            cur = ts
            ts = st.run("align", lambda: cur.align(
                tilt_axis=tilt_axis, background="auto" if opts["remove_background"] else "keep"))
            res = _last_result(ts, "align")
            if "tilt_axis_rotation_deg" in res:
                decisions["tilt_axis_rotation_deg"] = round(res["tilt_axis_rotation_deg"], 3)
            if np.isfinite(res.get("tilt_axis_uncertainty_deg", np.nan)):
                decisions["tilt_axis_uncertainty_deg"] = round(
                    res["tilt_axis_uncertainty_deg"], 3)
        mp, mp_reason = _matching_decision(match_projections, ts, opts)
        decisions["projection_matching"] = mp_reason
        if mp:
            cur = ts
            ts = st.run("match", lambda: cur.match_projections(**MATCHING_OPTIONS))
        else:
            st.skip("match")
        aligned = ts
        series["aligned"] = aligned
        # -- denoising --------------------------------------------------------------------------
        dn, dn_reason = _denoise_decision(denoise, aligned)
        decisions["denoise"] = dn_reason
        if dn and not _done(aligned, "denoise"):
            recon_input = st.run("denoise", lambda: aligned.denoise())
            series["denoised"] = recon_input
        else:
            st.skip("denoise")
            recon_input = aligned
        # -- reconstruction, tracing, classification, clean-up ---------------------------------
        recon_kw = {**opts.get("reconstruct", {}), **recon_kw}
        # the refinement's held-out pixels, drawn now and left out of the reconstruction:
        # they judge the refinement fairly only when nothing it starts from has seen them
        # (atoms traced in a reconstruction of every pixel carry the held-out pixels' noise,
        # and the held-out loss then favours the trace over better positions)
        held = None
        if refine and opts["refine_positions"] and not recon_input.is_lazy and \
                recon_kw.get("method", "resire") == "resire":
            from .atoms.refinement import holdout_pixels

            held = holdout_pixels(recon_input.data.shape, REFINE_HOLDOUT, seed=0)
            recon_kw["exclude_pixels"] = held
            decisions["held_out_pixels"] = (
                f"{REFINE_HOLDOUT:.0%} of the pixels (seed 0) held out of the reconstruction "
                f"to judge the refinement")
        elif refine and opts["refine_positions"]:
            # the out-of-core (chunked) reconstruction has no pixel weights yet: a large
            # series keeps its lazy reconstruction rather than be loaded whole for them
            why = ("the series is reconstructed out of core" if recon_input.is_lazy else
                   f"method={recon_kw['method']!r} has no pixel weights")
            decisions["held_out_pixels"] = (
                f"the refinement's held-out pixels were used by the reconstruction ({why}): "
                f"its held-out checks favour the traced positions")
        vol = st.run("reconstruct", lambda: recon_input.reconstruct(**recon_kw))
        rec = _last_result(vol, "reconstruct")
        decisions["reconstruction"] = {k: rec[k] for k in ("method", "n_iter", "pad_x",
                                                          "stopped_at", "film",
                                                          "extended") if k in rec}
        p_rec = next((r.get("params", {}) for r in reversed(vol.provenance)
                      if r.get("op") == "reconstruct"), {})
        for k in ("method", "n_iter", "pad_x"):
            if k not in decisions["reconstruction"] and k in p_rec:
                decisions["reconstruction"][k] = p_rec[k]
        trace_kw = {"min_distance_A": min_distance_A, **opts.get("trace", {})}
        if fd["object"] == "film" and "non_atoms" in trace_kw:
            trace_kw["n_species"] = len(sp)   # the atom/non-atom decision knows the species
        traced = st.run("trace", lambda: vol.trace_atoms(**trace_kw))
        stages["traced"] = traced
        decisions["n_peaks_traced"] = traced.n_atoms
        classified = st.run("classify", lambda: traced.classify(sp, volume=vol))
        cres = _last_result(classified, "classify")
        stages["classified"] = classified
        decisions["classification"] = _classification_facts(sp, cres)
        if opts["cleanup_min_neighbours"] and classified.n_atoms >= 2:
            clean_kw = {"min_neighbours": opts["cleanup_min_neighbours"], "radius_A": "auto"}
            if fd["object"] == "particle":
                # peaks at the faces of the box, apart from the particle, are edge artefacts
                clean_kw["box_A"] = vol.box_A
            cleaned = st.run("cleanup", lambda: classified.cleanup(**clean_kw))
            decisions["cleanup_removed"] = classified.n_atoms - cleaned.n_atoms
            reasons = _last_result(cleaned, "cleanup").get("reason", {})
            decisions["cleanup_removed_at_volume_faces"] = sum(v == "edge"
                                                               for v in reasons.values())
        else:
            st.skip("cleanup")
            cleaned = classified
            if not opts["cleanup_min_neighbours"]:
                decisions["cleanup"] = "skipped: " + opts["reasons"].get(
                    "cleanup_min_neighbours", "the object decision")
        stages["cleaned"] = cleaned
        if cleaned.n_atoms < 4:
            raise ValueError(
                f"aet.run found {cleaned.n_atoms} atom(s) in the reconstruction: the tilt "
                f"series holds no resolvable particle or film. Check that pixel_size_A is in Å "
                f"(got {ts.pixel_size_A:g}), that the angles are in degrees, and that the "
                f"images show atoms (aet.open(...).data.plot() one projection)")
        # -- refinement with the per-projection alignment, uncertainty ---------------------------
        model = cleaned
        refined_ts = aligned
        if refine and not opts["refine_positions"]:
            st.skip("refine")
            decisions["refine"] = "skipped: " + opts["reasons"].get(
                "refine_positions", "the object decision")
        elif refine:
            # the uncertainty stage below computes σ (once, not twice)
            # one cycle before the add/remove passes, each of which fits the positions and
            # the profile again (a second cycle moved the held-out loss by < 1e-4 and cost
            # a third of the refinement's time, abTEM 3 nm FePt)
            kw: dict[str, Any] = {"add_remove": add_remove, "uncertainty": False,
                                  "n_cycles": 1 if add_remove else 2}
            if held is not None:
                kw["holdout_mask"] = held
            if refine_alignment:
                kw["refine_alignment"] = tuple(refine_alignment)
            # the alignment the refinement fits is a geometry update of the series: the
            # updated series is the run's tilt series and what the uncertainty is judged on
            model, refined_ts = st.run("refine", lambda: cleaned.refine(
                aligned, return_series=True, **kw))
            stages["refined"] = model
            if refined_ts is not aligned:
                series["refined"] = refined_ts
                decisions["refine_geometry"] = _geometry_update_facts(aligned, refined_ts)
            if add_remove:
                decisions["refine_added_removed"] = model.n_atoms - cleaned.n_atoms
        else:
            st.skip("refine")
        if uncertainty:
            cur = model
            model = st.run("uncertainty", lambda: cur.uncertainty(refined_ts))
        else:
            st.skip("uncertainty")
    finally:
        st.close()
    decisions["n_atoms"] = model.n_atoms
    decisions["species_counts"] = model.species_counts()
    options = {"species": sp, "method": method, "n_iter": n_iter, "denoise": denoise,
               "tilt_axis": tilt_axis, "film": film, "match_projections": match_projections,
               "min_distance_A": min_distance_A, "refine": refine,
               "refine_alignment": list(refine_alignment or ()), "add_remove": add_remove,
               "uncertainty": uncertainty}
    # every automatic decision in the provenance too (the model's and the volume's)
    record = {"decisions": _jsonable(decisions),
              "timings_s": {k: round(v, 3) for k, v in st.timings.items()}}
    model = model._replace(model.data, "aet.run", options, result=record)
    vol = vol._replace(vol.data, "aet.run", options, result=record)
    return RunResult(model=model, volume=vol, tilt_series=refined_ts, timings=st.timings,
                     decisions=decisions, stages=stages, raw=raw, series=series)


# ----------------------------------------------------------------------------- helpers
#: the stage options that do not depend on the object (particle defaults)
_PARTICLE_OPTIONS = {"remove_background": True, "align": True, "cleanup_min_neighbours": 3,
                     "refine_positions": True, "trace": {}, "reconstruct": {}, "reasons": {}}


def _film_decision(ts, film) -> dict:
    """Film (extended object) or particle, and the stage options that follow from it.

    The decision is :func:`aet.reconstruct.film.detect_extended`'s (data-driven: atomic
    contrast at the x edges of the projections), whose ``pipeline_options()`` give the
    options of the later stages; with ``film=False`` nothing is measured. A version of aet
    without that detector runs the particle path and says so."""
    opts = {k: (dict(v) if isinstance(v, dict) else v) for k, v in _PARTICLE_OPTIONS.items()}
    if film is False:
        return {"object": "particle", "reason": "film=False", "options": opts}
    try:
        from .reconstruct.film import detect_extended
    except ImportError:
        if film is True:
            raise ValueError("film=True: this version of aet has no film reconstruction "
                             "(aet.reconstruct.film); pass film='auto' or False") from None
        return {"object": "particle",
                "reason": "particle path (this aet has no film detector, "
                          "aet.reconstruct.film.detect_extended)", "options": opts}
    dec = detect_extended(ts) if film == "auto" else detect_extended(ts, threshold=1e-9)
    extended = bool(getattr(dec, "extended", False)) or film is True
    if hasattr(dec, "pipeline_options"):
        got = dec.pipeline_options()
        opts.update({k: v for k, v in got.items() if k in opts})
        if not extended:
            # the atom/non-atom tracing options were measured on films; a particle keeps the
            # classification's own non-atom cut
            opts["trace"] = {}
    if extended and getattr(dec, "pad_x", 0):
        opts["reconstruct"] = {**opts.get("reconstruct", {}), "pad_x": int(dec.pad_x)}
    # keep only trace keywords this version's trace takes
    import inspect

    from .atoms import trace as _trace

    known = set(inspect.signature(_trace).parameters)
    opts["trace"] = {k: v for k, v in opts.get("trace", {}).items() if k in known}
    return {"object": "film" if extended else "particle",
            "reason": str(getattr(dec, "reason", "")) or ("film=True" if film is True else ""),
            "options": opts}


#: projection matching as aet.run runs it when it pays (shifts and the in-plane rotation;
#: θ refinement needs dense sampling and is left to the model refinement)
MATCHING_OPTIONS = {"refine": ("shifts", "phi"), "n_iter": 3, "recon_iter": 40,
                    "recon_iter_warm": 15, "n_groups": 4}


#: fraction of the pixels the refinement holds out (its default), left out of the
#: reconstruction by aet.run
REFINE_HOLDOUT = 0.1


#: fewest projections for which aet.run matches projections by default (measured on 47-tilt
#: series; on few-tilt series it is not measured and stays off, the model refinement fitting
#: the per-projection alignment as before)
MATCHING_MIN_ANGLES = 30


def _matching_decision(match_projections, ts, opts) -> tuple[bool, str]:
    """Whether to refine the alignment by projection matching before reconstruction."""
    if match_projections is True:
        return True, "on (match_projections=True)"
    if match_projections is False:
        return False, "off (match_projections=False)"
    if opts.get("remove_background") is False:
        return False, "off: an extended object has no isolated field of view to match"
    n_ang = int(ts.data.sizes["angle"])
    if n_ang < MATCHING_MIN_ANGLES:
        return False, (f"off: {n_ang} projections (< {MATCHING_MIN_ANGLES}); the model "
                       f"refinement fits every projection's shifts and angles against the atoms")
    return True, ("on: the centre-of-mass/common-line alignment left 0.7 px of shift error on "
                  "abTEM-simulated 3 nm FePt (1e5 e/A^2); matching raised the traced recall "
                  "0.71 -> 0.99 before the model refinement")


#: why ``denoise="auto"`` does not denoise before reconstruction (aet.run, seed 0 of each case)
DENOISE_AUTO_REASON = (
    "off: BM3D before reconstruction lost atoms and species on independently simulated "
    "(abTEM) data — 3 nm FePt, 1e5 e/A^2: recall 0.92 -> 0.75, species 0.985 -> 0.71 — and "
    "gained nothing on the small cases (recall/precision within 0.01), at twice the run "
    "time; pass denoise=True to denoise")


def _denoise_decision(denoise, ts) -> tuple[bool, str]:
    """Whether BM3D denoising before reconstruction pays (the refinement always fits the
    projections as measured)."""
    if denoise is True:
        return True, "on (denoise=True)"
    if denoise is False:
        return False, "off (denoise=False)"
    return False, DENOISE_AUTO_REASON


def _classification_facts(sp, res: Mapping[str, Any]) -> dict:
    """The classification's own account, for the decisions."""
    out: dict[str, Any] = {}
    if len(sp) == 1:
        out["species"] = f"one element: every atom is {sp[0]} (non-atom peaks dropped)"
    for k in ("n_dropped", "non_atom_cut", "local_radius_A", "order_fixed",
              "n_kept_at_atom_sites"):
        if k in res and res[k] is not None:
            v = res[k]
            out[k] = round(v, 4) if isinstance(v, float) else v
    if res.get("class_means"):
        out["class_means"] = {k: round(float(v), 4) for k, v in res["class_means"].items()}
    fb = res.get("non_atom_fallback")
    if fb:  # no intensity cut separated the noise: what was dropped instead, and why
        out["non_atoms"] = (f"{fb['n_dropped']} peaks outside the object's body dropped as "
                            f"non-atoms: {fb['reason']}")
    if res.get("warnings"):
        out["warnings"] = list(res["warnings"])
    return out


def _analysis(model) -> dict:
    """Order parameters and strain of the final model for the report; a model these cannot
    describe (too few atoms, not a crystal) gets a report without those panels."""
    out: dict[str, Any] = {}
    try:
        out["order"] = model.analysis.order_parameters("L10")
    except ValueError:
        pass
    try:
        out["strain"] = model.analysis.strain()
    except ValueError:
        pass
    return out


def _readable(decisions: Mapping[str, Any]) -> dict[str, str]:
    """The decisions as label → text for the report."""
    labels = {"species": "species (light to heavy)", "species_reordered": "species reordered",
              "frames_registered": "frames registered per projection",
              "background": "background", "alignment": "alignment",
              "tilt_axis_rotation_deg": "tilt-axis rotation (°)", "denoised": "denoised (BM3D)",
              "reconstruction": "reconstruction", "n_peaks_traced": "peaks traced",
              "classification": "classification", "cleanup_removed": "isolated peaks removed",
              "refine_added_removed": "atoms added − removed by refinement",
              "refine_geometry": "alignment refined with the model (applied to the series)",
              "n_atoms": "atoms in the final model", "species_counts": "species counts"}
    out = {}
    for k, v in decisions.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a} {b}" for a, b in v.items())
        elif isinstance(v, (list, tuple)):
            v = ", ".join(map(str, v))
        elif isinstance(v, float):
            v = f"{v:.3g}"
        out[labels.get(k, k.replace("_", " "))] = str(v)
    return out


def _jsonable(obj):
    from .core.meta import to_jsonable

    return to_jsonable(obj)
