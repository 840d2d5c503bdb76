"""Calibrate the abTEM image engine's response on a real abTEM multislice ADF line scan.

The engine (:class:`aet.simulate.AbtemEngine`) images atoms as ``A (V / V_REF) ** γ``
convolved with abTEM's probe; this script measures how well that incoherent model matches a
full multislice simulation with frozen phonons, and fits γ and the scale A.

Two steps:

1. ``multislice`` (minutes; run once): abTEM multislice, frozen phonons, of a small FePt
   particle at 0° tilt (random orientation, the situation of most projections of a tilt
   series), one or more ADF line scans. Settings (the ``SETTINGS`` dict below): 300 kV,
   22 mrad probe, 40–200 mrad detector, 0.033 Å sampling (reaches 200 mrad after abTEM's
   2/3 anti-aliasing), 2 Å slices, Lobato potential, 3 frozen-phonon configurations of
   0.08 Å RMS displacement, two line scans of 64 points
   (0.3 Å steps). The result is stored in ``benchmarks/calibration/``.
2. ``fit`` (seconds): the engine renders the same atoms at the same probe positions (source
   size 0: the multislice has a point source; thermal σ 0.08 Å), and for every γ on a grid
   the least-squares scale A and the Pearson correlation with the multislice profile are
   computed. ``--write`` stores the fitted scales in ``aet/simulate/_abtem_calibration.py``.

Run::

    PYTHONPATH=$PWD python benchmarks/calibrate_abtem.py multislice   # ~30 min, 2 cores
    PYTHONPATH=$PWD python benchmarks/calibrate_abtem.py fit --write

Results and discussion: ``docs/calibration.rst``.
"""

from __future__ import annotations

import argparse
import json
import pprint
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "calibration" / "abtem_multislice_linescan.npz"
MODULE = HERE.parent / "aet" / "simulate" / "_abtem_calibration.py"

SETTINGS = {
    "energy_keV": 300.0,
    "semiangle_mrad": 22.0,
    "detector_mrad": (40.0, 200.0),
    "sampling_A": 0.033,
    "gpts": 1024,  # cell 33.8 Å, FFT-friendly
    "slice_thickness_A": 2.0,
    "parametrization": "lobato",
    "frozen_phonon_configs": 3,
    "thermal_sigma_A": 0.08,
    "particle": {"diameter_A": 20.0, "phase": "L10", "antisite_fraction": 0.03,
                 "orientation": "random", "seed": 7},
    # line scans through the particle (x0, y0, x1, y1) Å relative to its centre, points
    "lines": [((-9.5, 0.3, 9.5, 0.3), 64), ((-2.1, -9.5, -2.1, 9.5), 64)],
    "gammas": [round(g, 2) for g in np.arange(0.8, 2.21, 0.1)],
}


def _particle():
    from aet.simulate import fept_particle

    p = dict(SETTINGS["particle"])
    return fept_particle(p.pop("diameter_A"), **p)


def _line_points():
    pts = []
    for (x0, y0, x1, y1), n in SETTINGS["lines"]:
        t = np.linspace(0.0, 1.0, n)
        pts.append(np.stack([x0 + t * (x1 - x0), y0 + t * (y1 - y0)], axis=1))
    return np.concatenate(pts)


def multislice(out: Path = DATA) -> None:
    """Run the abTEM multislice line scans and store them (atoms, positions, signal)."""
    import abtem
    from ase import Atoms

    s = SETTINGS
    model = _particle()
    pos = model.positions
    L = s["gpts"] * s["sampling_A"]
    zext = np.ptp(pos[:, 2]) + 6.0
    shift = np.array([L / 2, L / 2, zext / 2])
    atoms = Atoms(list(model.species), positions=pos + shift, cell=(L, L, zext))
    pts = _line_points()
    abtem.config.set({"diagnostics.progress_bar": False,
                      "fftw.planning_effort": "FFTW_ESTIMATE"})
    frozen = abtem.FrozenPhonons(atoms, num_configs=s["frozen_phonon_configs"],
                                 sigmas=s["thermal_sigma_A"], seed=11)
    potential = abtem.Potential(frozen, gpts=s["gpts"], projection="infinite",
                                parametrization=s["parametrization"],
                                slice_thickness=s["slice_thickness_A"])
    probe = abtem.Probe(energy=s["energy_keV"] * 1e3, semiangle_cutoff=s["semiangle_mrad"])
    probe.grid.match(potential)
    det = abtem.AnnularDetector(inner=s["detector_mrad"][0], outer=s["detector_mrad"][1])
    t0 = time.perf_counter()
    scan = abtem.CustomScan(pts + shift[:2])
    meas = probe.scan(potential, scan=scan, detectors=det)
    sig = np.asarray(meas.compute(scheduler="threads", num_workers=2).array, dtype=np.float64)
    sec = time.perf_counter() - t0
    print(f"multislice: {len(pts)} probe positions × {s['frozen_phonon_configs']} "
          f"configurations in {sec:.0f} s")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, positions=pos, species=np.asarray(model.species).astype("U2"),
                        points=pts, signal=sig.reshape(-1), seconds=sec,
                        settings=json.dumps(SETTINGS, default=list),
                        abtem_version=abtem.__version__)
    tmp.replace(out)
    print(f"wrote {out}")


def engine_profile(positions, species, points, *, gamma: float, parametrization: str,
                   thermal_sigma_A: float, source_sigma_A: float = 0.0) -> np.ndarray:
    """The engine's detected fraction at ``points`` for scale A = 1."""
    from aet.simulate import AbtemEngine

    s = SETTINGS
    eng = AbtemEngine(energy_keV=s["energy_keV"], semiangle_mrad=s["semiangle_mrad"],
                      source_sigma_A=source_sigma_A, thermal_sigma_A=thermal_sigma_A,
                      response_exponent=gamma, response_scale=1.0,
                      parametrization=parametrization, oversampling=5)
    px = 0.35
    img = eng.render(np.asarray(positions)[None, :, :2], species, np.asarray(points)[None],
                     pixel_size_A=px)[0]
    return img / px**2


def fit(data: Path = DATA, *, write: bool = False) -> dict:
    """Fit A for each γ and parametrisation; print and return the table."""
    d = np.load(data)
    pos, sp, pts, sig = d["positions"], d["species"].astype(str), d["points"], d["signal"]
    res = {"multislice_seconds": float(d["seconds"]), "abtem_version": str(d["abtem_version"]),
           "n_points": int(len(sig)), "n_atoms": int(len(pos)), "fits": {}}
    print(f"{len(pos)} atoms, {len(sig)} probe positions; multislice signal "
          f"{sig.min():.4f}–{sig.max():.4f}")
    for par in ("lobato", "kirkland"):
        rows = {}
        for g in SETTINGS["gammas"]:
            e = engine_profile(pos, sp, pts, gamma=g, parametrization=par,
                               thermal_sigma_A=SETTINGS["thermal_sigma_A"])
            A = float(e @ sig / (e @ e))
            r = float(np.corrcoef(e, sig)[0, 1])
            rel = float(np.sqrt(np.mean((A * e - sig) ** 2)) / np.sqrt(np.mean(sig**2)))
            rows[f"{g:.1f}"] = {"scale": A, "correlation": r, "relative_rms": rel}
            print(f"{par:9s} γ={g:.1f}  A={A:.5f}  correlation={r:.4f}  rel. RMS={rel:.3f}")
        best = max(rows, key=lambda k: rows[k]["correlation"])
        print(f"{par}: best γ = {best} (correlation {rows[best]['correlation']:.4f})")
        res["fits"][par] = {"rows": rows, "best_gamma": float(best)}
    if write:
        _write_module(res)
    return res


def _write_module(res: dict) -> None:
    cal = {
        "scale": {par: {g: round(v["scale"], 6) for g, v in f["rows"].items()}
                  for par, f in res["fits"].items()},
        "correlation": {par: {g: round(v["correlation"], 4) for g, v in f["rows"].items()}
                        for par, f in res["fits"].items()},
        "best_gamma": {par: f["best_gamma"] for par, f in res["fits"].items()},
        "settings": {k: v for k, v in SETTINGS.items() if k != "gammas"},
        "n_atoms": res["n_atoms"], "n_points": res["n_points"],
        "abtem_version": res["abtem_version"],
    }
    text = ('"""Calibration of the abTEM engine\'s response against a real abTEM multislice ADF '
            'line scan.\n\nWritten by ``benchmarks/calibrate_abtem.py fit --write`` (see '
            '``docs/calibration.rst``); do not edit by hand.\n"""\n\nCALIBRATION = '
            + pprint.pformat(json.loads(json.dumps(cal, default=list)), width=96,
                             sort_dicts=True) + "\n")
    tmp = MODULE.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(MODULE)
    print(f"wrote {MODULE}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["multislice", "fit", "all"])
    ap.add_argument("--write", action="store_true",
                    help="store the fitted scales in aet/simulate/_abtem_calibration.py")
    a = ap.parse_args(argv)
    if a.step in ("multislice", "all"):
        multislice()
    if a.step in ("fit", "all"):
        fit(write=a.write)


if __name__ == "__main__":
    main()
