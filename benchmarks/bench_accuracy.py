"""Accuracy matrix: the default pipeline on independent (abTEM-engine) tilt series.

Every case is simulated with :class:`aet.simulate.AbtemEngine` (abTEM's projected potential,
a response calibrated on multislice, abTEM's probe, point sampling; ``docs/calibration.rst``)
and run through the default pipeline, :func:`aet.run` with its defaults: register frames →
remove background → align → denoise → reconstruct → trace → classify → clean-up → refine
(positions, heights, B-factors and the per-projection alignment, atoms added and removed
from the residual) → uncertainty. Beside it, the same run's atom stages from the noise-free
projections at the true angles ("clean": reconstruct → trace → classify → clean-up →
refine), which shows where atoms are lost: in preprocessing or in the atom stages.

Scoring (:func:`aet.simulate.score`): one-to-one Hungarian matching within 1 Å after a fitted
translation and a small rotation about the beam (``align`` turns the reconstruction frame by
the tilt-axis rotation it estimates; the fitted angle is in the JSON output); recall,
precision, RMSD of matched pairs, species accuracy, and the uncertainty calibration
RMS(error / σ) over matched atoms and axes (σ: the refined model's ``uncertainty_x/_y/_z``,
:mod:`aet.atoms.refinement.uncertainty`; 1 means calibrated), also per species and per axis
(the error turned back into the model's axes). Nothing in the chain reads the truth.
``--save`` also writes aet.run's tilt series, the one the uncertainty stage used
(``chain_refined_series.zarr``): σ can be recomputed from it and the refined model
(``AtomicModel.uncertainty``) without the chain.

The matrix varies one factor at a time around the base case ("realistic": 3 nm FePt, ~1170
atoms, L1_0 domains, antisites, 47 projections over ±70°, 3 frames, 1×10⁵ e⁻/Å² in total, γ
1.4, tilt axis along y): tilt axis 3° (+0.5 Å offset); total dose 2×10⁴, 5×10⁴, 3×10⁵;
γ 1.0, 1.8; 2 nm and 5 nm FePt; a 3-species Co–Pd–Pt particle; and the base case with the
Gaussian engine (the same chain: where the two engines' figures differ). Doses are totals
over the whole series (``total_dose_e_per_A2``).

    python benchmarks/bench_accuracy.py                  # the whole matrix (hours on 2 cores)
    python benchmarks/bench_accuracy.py --quick          # small case, both engines (~5 min)
    python benchmarks/bench_accuracy.py --case base --case base-gaussian
    python benchmarks/bench_accuracy.py --list
    python benchmarks/bench_accuracy.py --case base --json out.json --save models/
    python benchmarks/bench_accuracy.py --rescore out.json --save models/   # re-score only

Run from the repository root with ``PYTHONPATH=$PWD`` for a checkout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

SPECIES_FEPT = ["Fe", "Pt"]


def _shape_for(diameter_A: float, pixel_A: float = 0.35, margin_A: float = 9.0) -> tuple:
    n = 2 * int(math.ceil((diameter_A / 2 + margin_A) / pixel_A))
    return (n, n)


# ----------------------------------------------------------------------------- cases
@dataclass
class Case:
    name: str
    what: str
    build: Callable
    species: list = field(default_factory=lambda: list(SPECIES_FEPT))


def _fept(engine="abtem", **kw):
    from aet.simulate import fept_benchmark

    def build(seed):
        return fept_benchmark("realistic", seed=seed, engine=engine, **kw)
    return build


def _three_species(engine="abtem", **kw):
    from aet.simulate import benchmark_from_model, nanoparticle

    def build(seed):
        truth = nanoparticle({"Co": 1 / 3, "Pd": 1 / 3, "Pt": 1 / 3}, 30.0, a_A=3.80,
                             orientation="random", seed=seed)
        return benchmark_from_model(truth, engine=engine, seed=seed,
                                    shape=_shape_for(30.0), **kw)
    return build


_IDEAL_GEOMETRY = {"shift_sigma_A": 0.0, "drift_A_per_frame": 0.0, "scan_distortion": 0.0,
                   "angle_error_deg": 0.0, "background_thickness_A": 0.0, "offset": 0.0}

CASES = {c.name: c for c in [
    Case("base", "3 nm FePt, 1e5 e/Å² total, γ 1.4, tilt axis 0°", _fept()),
    Case("axis-3deg", "base with the tilt axis turned 3° (offset 0.5 Å)",
         _fept(tilt_axis_rotation_deg=3.0, tilt_axis_offset_A=0.5)),
    Case("dose-2e4", "base at 2e4 e/Å² total", _fept(total_dose_e_per_A2=2e4)),
    Case("dose-5e4", "base at 5e4 e/Å² total", _fept(total_dose_e_per_A2=5e4)),
    Case("dose-3e5", "base at 3e5 e/Å² total", _fept(total_dose_e_per_A2=3e5)),
    Case("gamma-1.0", "base with response exponent 1.0", _fept(response_exponent=1.0)),
    Case("gamma-1.8", "base with response exponent 1.8", _fept(response_exponent=1.8)),
    Case("size-2nm", "2 nm FePt (one L1_0 domain)",
         _fept(particle_diameter_A=20.0, particle_n_grains=1, particle_variant=2,
               particle_antiphase_boundary=False, particle_core_shell=(4.0, -0.005, 0.005),
               shape=_shape_for(20.0))),
    Case("size-5nm", "5 nm FePt (three L1_0 domains)",
         _fept(particle_diameter_A=50.0, particle_n_grains=3, particle_variant=[2, 0, 1],
               particle_core_shell=(12.0, -0.01, 0.005), shape=_shape_for(50.0))),
    Case("CoPdPt", "3 nm random Co–Pd–Pt alloy (three intensity classes)", _three_species(),
         species=["Co", "Pd", "Pt"]),
    Case("base-gaussian", "base case imaged by the Gaussian engine", _fept(engine="gaussian")),
    Case("noise-only", "base with every geometric degradation, background and offset off "
         "(Poisson and read noise only)", _fept(**_IDEAL_GEOMETRY)),
    Case("noise-only-gaussian", "noise-only on the Gaussian engine",
         _fept(engine="gaussian", **_IDEAL_GEOMETRY)),
    # the quick pair: the test suite's small case on both engines
    Case("small", "fept_benchmark('small', engine='abtem') (the test suite's case)",
         lambda seed: _small(seed, "abtem")),
    Case("small-gaussian", "fept_benchmark('small') with the Gaussian engine",
         lambda seed: _small(seed, "gaussian")),
]}
MATRIX = ["base", "base-gaussian", "noise-only", "noise-only-gaussian", "axis-3deg",
          "dose-2e4", "dose-5e4", "dose-3e5", "gamma-1.0", "gamma-1.8", "size-2nm", "CoPdPt",
          "size-5nm"]
QUICK = ["small", "small-gaussian"]


def _small(seed, engine):
    from aet.simulate import fept_benchmark

    return fept_benchmark("small", seed=seed, engine=engine)


# ----------------------------------------------------------------------------- chains
def _mark_done(ts, *ops):
    """The series with provenance records saying ``ops`` were done, so :func:`aet.run`
    skips them (for the reference chain and the ablations; the data are unchanged)."""
    for op in ops:
        ts = ts._replace(ts.data, op, {"note": "marked done by bench_accuracy (not run)"})
    return ts


def _result_models(r) -> dict:
    return {"traced": r.stages["classified"], "cleaned": r.stages["cleaned"], "refined": r.model}


def default_chain(raw, species, *, skip=()) -> tuple[dict, dict, dict]:
    """The default pipeline, :func:`aet.run`, on a raw (angle, frame, y, x) series: models
    by stage, seconds by stage, and the aligned series. ``skip``: stages left out
    ("align", "denoise": ablations on data without those degradations)."""
    import aet

    ts = raw
    pre = 0.0
    if "align" in skip:
        t0 = time.perf_counter()
        ts = _mark_done(raw.register_frames().remove_background(), "align")
        pre = time.perf_counter() - t0
    r = aet.run(ts, species=species, denoise=False if "denoise" in skip else "auto")
    times = dict(r.timings)
    if pre:
        times["register+background"] = pre
    # the series before the refinement and aet.run's tilt_series, which carries the
    # refinement's geometry update (its fitted shifts and Euler corrections)
    return _result_models(r), times, {"aligned": r.series.get("aligned", r.tilt_series),
                                      "refined": r.tilt_series}


def clean_chain(clean, species) -> tuple[dict, dict]:
    """Noise-free projections at the true angles through :func:`aet.run`'s atom stages:
    reconstruct → trace → classify → clean-up → refine (no background removal, alignment,
    denoising or alignment refinement)."""
    import aet

    ts = _mark_done(clean, "remove_background", "align")
    r = aet.run(ts, species=species, denoise=False, refine_alignment=(), uncertainty=False)
    return _result_models(r), dict(r.timings)


def _calibration_z(model, s):
    """(error / σ) per matched atom and axis in the model's frame, and the matched atoms'
    predicted species (``None`` without σ)."""
    names = [f"uncertainty_{a}" for a in "xyz"]
    if not all(n in model for n in names) or s.n_matched == 0:
        return None, None
    sig = np.stack([np.asarray(model[n], dtype=float) for n in names], axis=1)[s.matches[:, 0]]
    # the displacement is in the truth frame (after the fitted rotation): σ is per axis of the
    # model's frame, so turn the displacement back
    err = s.displacement_A @ np.asarray(s.rotation)
    sp = np.asarray(model.data["species"].values)[s.matches[:, 0]]
    return err / sig, sp


def _rms(z) -> float:
    z = z[np.isfinite(z)]
    return float(np.sqrt(np.mean(z**2))) if z.size else float("nan")


def calibration_rms(model, s) -> float:
    """RMS of (error / σ) over matched atoms and the three axes (NaN without σ)."""
    z, _ = _calibration_z(model, s)
    return float("nan") if z is None else _rms(z)


def calibration_by(model, s) -> dict:
    """RMS of (error / σ) per predicted species and per axis: ``{species or "all": {"xyz":
    ..., "x": ..., "y": ..., "z": ...}}`` (empty without σ)."""
    z, sp = _calibration_z(model, s)
    if z is None:
        return {}
    out = {}
    for name in ["all", *sorted(set(sp.tolist()))]:
        zz = z if name == "all" else z[sp == name]
        out[name] = {"xyz": _rms(zz), **{a: _rms(zz[:, i]) for i, a in enumerate("xyz")},
                     "n": int(len(zz))}
    return out


def preprocessing_errors(bench, series) -> dict:
    """Errors of the preprocessing stages against the recorded degradations (pixels, RMS):
    frame registration (offsets of frames within a projection) and alignment (per-projection
    shifts after removing the rigid 3D translation alignment cannot fix; ``alignment_px``
    before the refinement, ``refined_alignment_px`` of aet.run's tilt series, which carries
    the refinement's geometry update), and the tilt-axis rotation found (degrees). Scoring
    only: the chain never sees these."""
    from aet.testing.phantoms import rotation_matrix_zyz

    px = bench.params["pixel_size_A"]
    al = bench.alignment
    out = {}
    res = next((r.get("result") for r in reversed(series["aligned"].provenance)
                if r["op"] == "register_frames"), None) or {}
    if "shift_x_A" in res and al.sizes.get("frame", 1) > 1:
        e = []
        for n in ("x", "y"):
            tru = al[f"frame_offset_{n}_A"].values
            e.append(np.asarray(res[f"shift_{n}_A"]) - (tru - tru[:, :1]))
        out["frame_registration_px"] = float(np.sqrt(np.mean(np.square(e)))) / px
    aligned = series["aligned"]
    prov = next((r.get("result") for r in reversed(aligned.provenance)
                 if r["op"] == "align"), None) or {}
    alpha = float(prov.get("tilt_axis_rotation_deg", 0.0))
    out["tilt_axis_found_deg"] = alpha
    out["tilt_axis_true_deg"] = float(al.attrs.get("tilt_axis_rotation_deg", 0.0))
    t = np.stack([al.total_shift_x_A.values + al.frame_offset_x_A.values[:, 0],
                  al.total_shift_y_A.values + al.frame_offset_y_A.values[:, 0]], axis=1)
    a = np.radians(alpha)
    t = t @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]).T
    for key, name in (("aligned", "alignment_px"), ("refined", "refined_alignment_px")):
        if key not in series or (key == "refined" and series[key] is aligned):
            continue
        d = series[key].data
        if "shift_x_A" not in d.coords:
            continue
        diff = np.stack([d.shift_x_A.values, d.shift_y_A.values], axis=1) - t
        A = np.concatenate([rotation_matrix_zyz(0, np.radians(th), 0)[:2]
                            for th in d.angle.values])
        tr, *_ = np.linalg.lstsq(A, diff.ravel(), rcond=None)
        r = (diff.ravel() - A @ tr) / px
        out[name] = float(np.sqrt(np.mean(r**2)))
    return out


class _Truth:
    """The scoring interface of a Benchmark, from a saved truth model (``--rescore``)."""

    def __init__(self, truth):
        self.truth = truth

    def score(self, predicted, **kw):
        from aet.simulate import score

        return score(predicted, self.truth, **kw)


def rescore(results: list[dict], folder) -> list[dict]:
    """Recompute every case's figures from the models saved by ``--save`` (the current
    :func:`aet.simulate.score`); timings and preprocessing errors are kept."""
    from pathlib import Path

    import aet

    out = []
    for r in results:
        d = Path(folder) / f"{r['case']}_seed{r['seed']}"
        if not (d / "truth.csv").is_file():
            out.append(r)
            continue
        t = _Truth(aet.open(d / "truth.csv"))
        r = dict(r)
        for prefix, key in (("chain", "chain"), ("clean", "clean")):
            files = {k: d / f"{prefix}_{k}.csv" for k in ("traced", "cleaned", "refined")}
            if all(f.is_file() for f in files.values()):
                r[key] = _figures(t, {k: aet.open(f) for k, f in files.items()})
        out.append(r)
    return out


def _figures(bench, models) -> dict:
    # a small rotation about the beam: align() turns the frame by the tilt-axis rotation it
    # estimates (kept only when it matches at least as many atoms as translation alone)
    # the models of one chain share the reconstruction frame: the traced one (the most
    # complete) is registered, the others refined locally from its translation (a sparse
    # cleaned model can otherwise register one lattice vector off, every species wrong)
    out = {}
    start = None
    for k, m in models.items():
        s = bench.score(m, allow_rotation=True, start_translation_A=start)
        if start is None:
            start = s.translation_A
        out[k] = {"n": s.n_predicted, "recall": s.recall, "precision": s.precision,
                  "translation_A": s.translation_A.tolist(),
                  "rmsd_pm": s.rmsd_pm, "rmsd_pm_xyz": list(s.rmsd_pm_xyz),
                  "species": s.species_accuracy, "rotation_deg": s.rotation_deg,
                  "err_over_sigma": calibration_rms(m, s) if k == "refined" else float("nan")}
        if k == "refined":
            out[k]["err_over_sigma_by"] = calibration_by(m, s)
    return out


def warm_up() -> float:
    """Compile the JIT kernels of every stage on a tiny case (kept out of the timings)."""
    from aet.simulate import fept_benchmark

    t0 = time.perf_counter()
    b = fept_benchmark("small", seed=99, engine="abtem", n_angles=5, n_frames=2,
                       shape=(48, 48), particle_diameter_A=10.0)
    try:
        default_chain(b.tilt_series, SPECIES_FEPT)
        clean_chain(b.clean, SPECIES_FEPT)
    except ValueError as exc:  # a tiny case aet.run may refuse; the kernels compiled anyway
        print(f"warm-up: {exc}")
    return time.perf_counter() - t0


def run_case(case: Case, seed: int = 0, *, reference: bool = True, save=None,
             ablate: bool = False) -> dict:
    t0 = time.perf_counter()
    bench = case.build(seed)
    t_sim = time.perf_counter() - t0
    models, times, series = default_chain(bench.tilt_series, case.species)
    res = {"case": case.name, "what": case.what, "seed": seed, "engine": bench.engine,
           "n_atoms": bench.truth.n_atoms, "simulate_s": t_sim, "chain_s": times,
           "chain": _figures(bench, models), "benchmark": repr(bench),
           "preprocessing": preprocessing_errors(bench, series)}
    if ablate:
        # which stage loses the atoms: the chain without alignment (meaningful on data
        # without geometric degradations) and without denoising
        for skip in (("align",), ("denoise",), ("align", "denoise")):
            m2, t2, _ = default_chain(bench.tilt_series, case.species, skip=skip)
            res.setdefault("ablations", {})["-".join(skip)] = {
                "figures": _figures(bench, m2), "seconds": t2}
    if reference:
        rmodels, rtimes = clean_chain(bench.clean, case.species)
        res["clean"] = _figures(bench, rmodels)
        res["clean_s"] = rtimes
    if save:
        from pathlib import Path

        d = Path(save) / f"{case.name}_seed{seed}"
        d.mkdir(parents=True, exist_ok=True)
        bench.truth.write(d / "truth.csv")
        for k, m in models.items():
            m.write(d / f"chain_{k}.csv")
        # aet.run's tilt series (the refinement's geometry update applied), the one the
        # uncertainty stage used: σ can be recomputed from it and the refined model
        series["refined"].save(d / "chain_refined_series.zarr")
        if reference:
            for k, m in rmodels.items():
                m.write(d / f"clean_{k}.csv")
    return res


# ----------------------------------------------------------------------------- printing
def _row(label, f):
    return (f"  {label:<34}{f['n']:>6d}{f['recall']:>8.3f}{f['precision']:>10.3f}"
            f"{f['rmsd_pm']:>8.1f}{f['species']:>9.3f}"
            + (f"{f['err_over_sigma']:>9.2f}" if np.isfinite(f["err_over_sigma"]) else
               f"{'–':>9}"))


def print_case(r: dict) -> None:
    print(f"\n[{r['case']}] {r['what']} — seed {r['seed']}, engine {r['engine']}, "
          f"{r['n_atoms']} true atoms")
    print(f"  {r['benchmark']}")
    print(f"  {'model':<34}{'atoms':>6}{'recall':>8}{'precision':>10}{'RMSD pm':>8}"
          f"{'species':>9}{'err/σ':>9}")
    for k in ("traced", "cleaned", "refined"):
        print(_row(f"chain {k}", r["chain"][k]))
    for name, ab in r.get("ablations", {}).items():
        for k in ("traced", "refined"):
            print(_row(f"chain w/o {name} {k}", ab["figures"][k]))
    if "clean" in r:
        for k in ("traced", "refined"):
            print(_row(f"clean+true angles {k}", r["clean"][k]))
    by = r["chain"]["refined"].get("err_over_sigma_by", {})
    if by:
        print("  refined err/σ (x, y, z; all axes) by species: " + "; ".join(
            f"{k} {v['x']:.2f} {v['y']:.2f} {v['z']:.2f}; {v['xyz']:.2f} (n {v['n']})"
            for k, v in by.items()))
    pre = r.get("preprocessing", {})
    if pre:
        print("  preprocessing vs truth: " + ", ".join(
            f"{k} {v:.2f}" for k, v in pre.items()))
    st = " ".join(f"{k} {v:.1f}" for k, v in r["chain_s"].items())
    print(f"  seconds: simulate {r['simulate_s']:.1f}; chain {st}"
          + (f"; clean chain {sum(r['clean_s'].values()):.1f}" if "clean_s" in r else ""))


def summary(results: list[dict]) -> str:
    lines = [f"{'case':<15}{'engine':<9}{'atoms':>6}{'recall':>8}{'prec.':>7}{'RMSD':>7}"
             f"{'species':>8}{'err/σ':>7} | {'clean: rec.':>11}{'RMSD':>7}{'species':>8}"
             f"{'refined RMSD':>13}{'s':>7}"]
    for r in results:
        f = r["chain"]["refined"]
        c = r.get("clean", {})
        ct, cr = c.get("traced"), c.get("refined")
        tot = r["simulate_s"] + sum(r["chain_s"].values())
        lines.append(
            f"{r['case']:<15}{r['engine']:<9}{r['n_atoms']:>6d}{f['recall']:>8.3f}"
            f"{f['precision']:>7.3f}{f['rmsd_pm']:>7.1f}{f['species']:>8.3f}"
            f"{f['err_over_sigma']:>7.2f} | "
            + (f"{ct['recall']:>11.3f}{ct['rmsd_pm']:>7.1f}{ct['species']:>8.3f}"
               f"{cr['rmsd_pm']:>13.1f}" if ct else f"{'':>39}")
            + f"{tot:>7.0f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Accuracy matrix on abTEM-engine tilt series")
    ap.add_argument("--case", action="append", help="case name (repeatable); see --list")
    ap.add_argument("--quick", action="store_true",
                    help="only the small case on both engines (~5 min on 2 cores)")
    ap.add_argument("--seed", type=int, action="append", help="seed(s), default 0")
    ap.add_argument("--ablate", action="store_true",
                    help="also run the chain without align, without denoise and without both "
                         "(use on the noise-only cases: where are atoms lost)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the noise-free true-angle chain")
    ap.add_argument("--json", help="write all figures to this JSON file")
    ap.add_argument("--save", help="write the truth and every model (CSV) under this folder")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--rescore", metavar="JSON",
                    help="recompute the figures of a previous --json run from the models it "
                         "saved with --save (give the same --save folder) and print them")
    a = ap.parse_args(argv)
    if a.rescore:
        if not a.save:
            ap.error("--rescore needs the --save folder of that run")
        with open(a.rescore) as fh:
            results = rescore(json.load(fh), a.save)
        for r in results:
            print_case(r)
        print("\n" + summary(results))
        if a.json:
            with open(a.json + ".tmp", "w") as fh:
                json.dump(results, fh, indent=1, default=float)
            os.replace(a.json + ".tmp", a.json)
        return
    if a.list:
        for c in CASES.values():
            print(f"{c.name:<16}{c.what}")
        return
    names = a.case or (QUICK if a.quick else MATRIX)
    bad = [n for n in names if n not in CASES]
    if bad:
        ap.error(f"unknown case(s) {bad}; --list shows them")
    seeds = a.seed or [0]
    print(f"bench_accuracy: cases {names}, seeds {seeds}; load {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    print(f"warm-up (JIT compilation, not timed below): {warm_up():.0f} s")
    results = []
    for seed in seeds:
        for n in names:
            r = run_case(CASES[n], seed, reference=not a.no_reference, save=a.save,
                         ablate=a.ablate)
            print_case(r)
            results.append(r)
            if a.json:
                tmp = a.json + ".tmp"
                with open(tmp, "w") as fh:
                    json.dump(results, fh, indent=1, default=float)
                os.replace(tmp, a.json)
    print("\nrefined model of the default chain | noise-free projections at the true angles "
          "(traced, then refined)\n" + summary(results))


if __name__ == "__main__":
    main()
