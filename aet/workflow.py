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
STAGES = ("register", "background", "align", "denoise", "reconstruct", "trace", "classify",
          "cleanup", "refine", "uncertainty")

#: what :meth:`RunResult.save` writes into its folder (the report adds its own entries)
RUN_ENTRIES = ("volume.zarr", "model.csv", "model.csv-metadata.json", "model.xyz", "model.cif",
               "model.zarr", "tilt_series.zarr", "decisions.json", "provenance.json")


@dataclass
class RunResult:
    """What :func:`aet.run` made.

    Attributes
    ----------
    model : AtomicModel
        The final model: refined positions, species, heights/B-factors and per-atom 1σ
        ``uncertainty`` (Å).
    volume : Volume
        The reconstruction the atoms were traced in.
    tilt_series : TiltSeries
        The aligned projections (frames merged, background removed, shifts and angle
        corrections applied or recorded) that the model was refined against.
    timings : dict
        Stage name → wall-clock seconds, in run order.
    decisions : dict
        Every choice the run made on its own (see :func:`run`).
    stages : dict
        The intermediate models by stage (``"traced"``, ``"classified"``, ``"cleaned"``,
        ``"refined"``): for diagnostics and for scoring against a simulation.
    raw : TiltSeries
        The input as given (frames not merged).
    """

    model: Any
    volume: Any
    tilt_series: Any
    timings: dict[str, float]
    decisions: dict[str, Any]
    stages: dict[str, Any] = field(default_factory=dict, repr=False)
    raw: Any = field(default=None, repr=False)

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
        method: str | None = None, n_iter: int | None = None, denoise: bool = True,
        tilt_axis: str | float | None = "estimate", min_distance_A: float = 2.0,
        refine: bool = True, refine_alignment=("shifts", "angles"),
        add_remove: bool = True, uncertainty: bool = True, progress: bool = False,
        reconstruct_options: Mapping[str, Any] | None = None) -> RunResult:
    """Run the whole default pipeline: raw projections → refined atomic model.

    Stages (each skipped when the series' provenance shows it was already done):
    frames registered and averaged (when the series has a ``frame`` dim) → background and
    detector offset removed → alignment (tilt-axis rotation, shifts) → denoising (BM3D) →
    reconstruction (the default method of :func:`aet.reconstruct.reconstruct`, which detects
    films and pads for them) → tracing → species classification (skipped for one element) →
    clean-up of isolated peaks → refinement of positions, species heights/B-factors and the
    per-projection alignment against the aligned, *not* denoised, projections, with atoms
    added or removed where the residual shows them → per-atom 1σ uncertainty.

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
    denoise : bool
        BM3D-denoise the aligned projections before reconstruction (the refinement always
        fits the projections before denoising).
    tilt_axis : "estimate", float or None
        Tilt-axis rotation in the image: estimated, given in degrees, or None (the axis
        already lies along y).
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
    from .errors import AngleUnitWarning  # noqa: F401  (the warning class check_degrees uses)
    from .io.angles import check_degrees

    sp, reordered = _check_species(species)
    ts = _as_tilt_series(tilt_series, angles=angles, pixel_size_A=pixel_size_A)
    if not isinstance(denoise, bool):
        raise TypeError(f"denoise must be True or False, got {denoise!r}")
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

    st = _Stages(progress)
    stages: dict[str, Any] = {}
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
        if _done(ts, "remove_background"):
            st.skip("background")
            decisions["background"] = "already removed (provenance)"
        else:
            cur = ts
            ts = st.run("background", lambda: cur.remove_background())
            decisions["background"] = "removed (polynomial outside the object, with the offset)"
        if _done(ts, "align") or _done(ts, "match_projections"):
            st.skip("align")
            decisions["alignment"] = "already aligned (provenance)"
        else:
            cur = ts
            ts = st.run("align", lambda: cur.align(tilt_axis=tilt_axis))
            res = _last_result(ts, "align")
            if "tilt_axis_rotation_deg" in res:
                decisions["tilt_axis_rotation_deg"] = res["tilt_axis_rotation_deg"]
        aligned = ts
        if denoise and not _done(aligned, "denoise"):
            recon_input = st.run("denoise", lambda: aligned.denoise())
            decisions["denoised"] = True
        else:
            st.skip("denoise")
            recon_input = aligned
            decisions["denoised"] = bool(_done(aligned, "denoise"))
        vol = st.run("reconstruct", lambda: recon_input.reconstruct(**recon_kw))
        rec = _last_result(vol, "reconstruct")
        decisions["reconstruction"] = {k: rec[k] for k in ("method", "n_iter", "film",
                                                          "extended", "pad_x") if k in rec}
        for k in ("method", "n_iter"):
            if k not in decisions["reconstruction"]:
                p = next((r.get("params", {}) for r in reversed(vol.provenance)
                          if r.get("op") == "reconstruct"), {})
                if k in p:
                    decisions["reconstruction"][k] = p[k]
        traced = st.run("trace", lambda: vol.trace_atoms(min_distance_A=min_distance_A))
        stages["traced"] = traced
        decisions["n_peaks_traced"] = traced.n_atoms
        if len(sp) > 1:
            classified = st.run("classify", lambda: traced.classify(sp, volume=vol))
        else:
            classified = st.run("classify", lambda: traced.set_species(
                np.arange(traced.n_atoms), sp[0]) if traced.n_atoms else traced)
            decisions["classification"] = f"one element: every atom is {sp[0]}"
        stages["classified"] = classified
        if classified.n_atoms >= 2:
            cleaned = st.run("cleanup", lambda: classified.cleanup(min_neighbours=3,
                                                                   radius_A="auto"))
            decisions["cleanup_removed"] = classified.n_atoms - cleaned.n_atoms
        else:
            st.skip("cleanup")
            cleaned = classified
        stages["cleaned"] = cleaned
        if cleaned.n_atoms < 4:
            raise ValueError(
                f"aet.run found {cleaned.n_atoms} atom(s) in the reconstruction: the tilt "
                f"series holds no resolvable particle or film. Check that pixel_size_A is in Å "
                f"(got {ts.pixel_size_A:g}), that the angles are in degrees, and that the "
                f"images show atoms (aet.open(...).data.plot() one projection)")
        model = cleaned
        if refine:
            kw = {"add_remove": add_remove}
            if refine_alignment:
                kw["refine_alignment"] = tuple(refine_alignment)
            model = st.run("refine", lambda: cleaned.refine(aligned, **kw))
            stages["refined"] = model
            if add_remove:
                decisions["refine_added_removed"] = model.n_atoms - cleaned.n_atoms
        else:
            st.skip("refine")
        if uncertainty:
            cur = model
            model = st.run("uncertainty", lambda: cur.uncertainty(aligned))
        else:
            st.skip("uncertainty")
    finally:
        st.close()
    decisions["n_atoms"] = model.n_atoms
    decisions["species_counts"] = model.species_counts()
    return RunResult(model=model, volume=vol, tilt_series=aligned, timings=st.timings,
                     decisions=decisions, stages=stages, raw=raw)


# ----------------------------------------------------------------------------- helpers
def _analysis(model) -> dict:
    """Order parameters and strain of the final model for the report; a model these cannot
    describe (too few atoms, not a crystal) gets a report without those panels."""
    out: dict[str, Any] = {}
    try:
        out["order"] = model.order_parameters("L10")
    except ValueError:
        pass
    try:
        out["strain"] = model.strain()
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
    from .model._meta import to_jsonable

    return to_jsonable(obj)
