"""The main job: simulate an FePt nanoparticle experiment and run the whole pipeline on it.

:func:`run_demo` is what ``aet demo`` runs: :func:`aet.run` (raw frames → register →
background → align → denoise → reconstruct → trace → classify → clean up → refine →
uncertainty) on the simulated raw frames, then strain and order → DFT export, and a table of
what it found against the ground truth and an output folder with the volume,
the model, figures, a report and the provenance. The output folder is assembled under a
temporary name and renamed into place, so an interrupted run never leaves a half-written result.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .workflow import _readable

SPECIES = ["Fe", "Pt"]
#: what run_demo writes into its output folder
DEMO_ENTRIES = ("volume.zarr", "model.csv", "model.csv-metadata.json", "model.xyz", "model.cif",
                "dft", "figures", "provenance.json", "report.html", "summary.txt")

# Reconstruction settings per method for the demo (iterations chosen so the small case
# finishes in about a minute on 2 cores).
_RECON = {"resire": {"n_iter": 100}, "genfire": {"n_iter": 100}, "sirt": {"n_iter": 100},
          "wbp": {}}


@dataclass
class DemoResult:
    """What :func:`run_demo` found, how long each stage took, and where it wrote."""

    out: Path
    size: str
    n_true: int
    scores: dict[str, Any]
    timings: dict[str, float]
    facts: dict[str, Any] = field(default_factory=dict)

    def table(self) -> str:
        """A plain-text table: recall, precision, RMSD, species accuracy; time per stage (the
        text of summary.txt, see :func:`aet.report.summary_text`)."""
        from .report import summary_text

        return summary_text(title=_title(self.size, self.n_true), scores=self.scores,
                            timings=self.timings).rstrip("\n")


def _title(size: str, n_true: int) -> str:
    return f"aet demo — simulated FePt nanoparticle ({size}), {n_true} true atoms"


def run_demo(*, size: str = "small", out="aet-demo-output", seed: int = 0,
             method: str = "resire", progress: bool = True,
             overwrite: bool = False) -> DemoResult:
    """Simulate ``fept_benchmark(size, seed)`` and run the full pipeline on its raw frames.

    Parameters
    ----------
    size : {"small", "standard", "large"}
        Benchmark size; ``small`` finishes in a few minutes on 2 cores.
    out : path
        Output folder. An existing folder with content is refused unless ``overwrite``; even
        then only what aet wrote there is replaced (see :mod:`aet.io._outdir`).
    seed : int
        Seed of the simulated experiment.
    method : {"resire", "genfire", "sirt", "wbp"}
        Reconstruction algorithm.
    progress : bool
        Show a progress bar per stage.
    overwrite : bool
        Replace the results of an earlier run in ``out`` (the user's own files stay).

    Returns
    -------
    DemoResult
    """
    from . import simulate
    from .io._outdir import check_output_folder, output_folder
    from .workflow import run

    if method not in _RECON:
        raise ValueError(f"method must be one of {sorted(_RECON)}, got {method!r}")
    out = Path(out)
    check_output_folder(out, overwrite=overwrite, names=DEMO_ENTRIES)  # before any work
    timings: dict[str, float] = {}

    def timed(name, func):
        t0 = time.perf_counter()
        value = func()
        timings[name] = time.perf_counter() - t0
        return value

    bench = timed("simulate", lambda: simulate.fept_benchmark(size, seed=seed))
    # the whole default pipeline, exactly as a user runs it on their own data (aet.run); the
    # ground truth is used only below, to score what it found
    result = run(bench.tilt_series, SPECIES, method=method, progress=progress,
                 **_RECON[method])
    timings.update(result.timings)
    refined = result.model
    analysis = timed("analysis", lambda: _analysis(refined))
    scores = {
        "traced": bench.score(result.stages["classified"]),
        "cleaned": bench.score(result.stages["cleaned"]),
        "refined": bench.score(refined),
    }
    aligned, vol = result.tilt_series, result.volume
    merged = result.series["registered"]
    with output_folder(out, overwrite=overwrite) as tmp:
        timed("export", lambda: _export(tmp, vol, refined))
        facts = {
            "alignment": _alignment_facts(aligned, bench),
            "species_counts": refined.species_counts(),
            "analysis": analysis["summary"],
            "decisions": result.decisions,
        }
        demo = DemoResult(out=out, size=size, n_true=bench.truth.n_atoms, scores=scores,
                          timings=timings, facts=facts)
        # the report times itself and writes report.html and summary.txt from the same
        # numbers; the result's table takes its time too, so all three agree
        shown = _report(tmp, demo, bench, merged, aligned, vol, refined, analysis,
                        decisions=result.decisions)
        timings["report"] = shown["report"]
    return demo


def _analysis(model) -> dict:
    order = model.analysis.order_parameters("L10")
    strain = model.analysis.strain()
    summary = {"order_vars": sorted(order.data_vars), "strain_vars": sorted(strain.data_vars)}
    return {"order": order, "strain": strain, "summary": summary}


def _export(folder: Path, vol, model) -> None:
    from .export import dft

    vol.save(folder / "volume.zarr")
    for ext in ("csv", "xyz", "cif"):
        model.write(folder / f"model.{ext}")
    # a cluster carved around the particle centre: the magnetic-anisotropy preset (collinear
    # SCF, then spin-orbit runs with the magnetisation along z and x) for VASP and QE
    dft.cluster_inputs(model.data, folder / "dft", radius_A=6.0,
                       preset="magnetic_anisotropy", codes=("vasp", "qe"))


def _alignment_facts(aligned, bench) -> dict:
    prov = aligned.provenance
    res = next((r.get("result") for r in reversed(prov) if r["op"] == "align"), None) or {}
    out = {}
    if "tilt_axis_rotation_deg" in res:
        out["tilt_axis_rotation_deg"] = res["tilt_axis_rotation_deg"]
    out["true_tilt_axis_rotation_deg"] = float(bench.alignment.attrs.get(
        "tilt_axis_rotation_deg", np.nan))
    return out


def _report(folder: Path, result: DemoResult, bench, merged, aligned, vol, model,
            analysis, *, decisions=None) -> dict:
    """The demo's report (:mod:`aet.report`) and provenance.json; returns the timings shown."""
    from .report import _write

    prov = {"volume": vol.provenance, "model": model.provenance, "benchmark": bench.params}
    (folder / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    p = bench.params
    counts = bench.truth.species_counts()
    description = (
        f"A simulated experiment on an FePt nanoparticle (benchmark “{result.size}”, seed "
        f"{p.get('seed')}): {bench.truth.n_atoms} atoms ("
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + f"), {p.get('n_angles')} projections × {p.get('n_frames')} frames of "
        f"{p['shape'][1]} × {p['shape'][0]} pixels at {p.get('pixel_size_A')} Å, "
        f"{p.get('dose_e_per_A2'):g} e⁻/Å² per projection, images from the "
        f"{p.get('engine')} engine. The whole pipeline ran on the raw frames; the ground "
        f"truth was used only to score the result.")
    gt = {"n_atoms": bench.truth.n_atoms, "species_counts": counts,
          "tilt_axis_rotation_deg": float(bench.alignment.attrs.get(
              "tilt_axis_rotation_deg", np.nan))}
    return _write(folder, model, volume=vol, tilt_series=merged, aligned=aligned,
                  strain=analysis["strain"], order=analysis["order"], scores=result.scores,
                  ground_truth=gt, timings=dict(result.timings),
                  title=_title(result.size, result.n_true),
                  description=description, decisions=_readable(decisions or {}))
