"""Calibrate the abTEM image engine's response on a real abTEM multislice ADF line scan.

The engine (:class:`aet.simulate.AbtemEngine`) images atoms as
``A (Σ_j (V_j / V_REF) ** p) ** γ`` convolved with abTEM's probe; this script measures how
well that incoherent model matches a full multislice simulation with frozen phonons, and fits
the atom exponent p, the response exponent γ and the scale A.

Two steps:

1. ``multislice`` (minutes; run once): abTEM multislice, frozen phonons, of a small FePt
   particle at 0° tilt (random orientation, the situation of most projections of a tilt
   series), one or more ADF line scans. Settings (the ``SETTINGS`` dict below): 300 kV,
   22 mrad probe, 40–200 mrad detector, 0.033 Å sampling (reaches 200 mrad after abTEM's
   2/3 anti-aliasing), 2 Å slices, Lobato potential, 3 frozen-phonon configurations of
   0.08 Å RMS displacement, two line scans of 64 points
   (0.3 Å steps). The result is stored in ``benchmarks/calibration/``.
2. ``fit`` (seconds): the engine renders the same atoms at the same probe positions (source
   size 0: the multislice has a point source; thermal σ 0.08 Å), and for every (p, γ) on a
   grid the least-squares scale A and the Pearson correlation with the multislice profile
   are computed. ``--write`` stores the fitted scales in ``aet/simulate/_abtem_calibration.py``.

Run::

    PYTHONPATH=$PWD python benchmarks/calibrate_abtem.py multislice   # ~40 min, 2 busy cores
    PYTHONPATH=$PWD python benchmarks/calibrate_abtem.py single       # ~1 min
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
SINGLE = HERE / "calibration" / "abtem_multislice_single_atoms.npz"
MODULE = HERE.parent / "aet" / "simulate" / "_abtem_calibration.py"

DEFAULT_GAMMA = 1.4

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
    # single isolated atoms (same microscope): line scans through each, for the Z contrast
    "single_atoms": ["Fe", "Pt"],
    "single_line": ((-1.0, 0.0, 1.0, 0.0), 21),
    "single_gpts": 512,
    "gammas": [round(g, 2) for g in np.arange(0.8, 2.21, 0.1)],
    "atom_exponents": [1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0],
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


def single_atoms(out: Path = SINGLE) -> None:
    """Multislice line scans through single isolated atoms (the Z contrast the particle scan
    alone constrains weakly)."""
    import abtem
    from ase import Atoms

    s = SETTINGS
    L = s["single_gpts"] * s["sampling_A"]
    (x0, y0, x1, y1), n = s["single_line"]
    t = np.linspace(0.0, 1.0, n)
    pts = np.stack([x0 + t * (x1 - x0), y0 + t * (y1 - y0)], axis=1)
    abtem.config.set({"diagnostics.progress_bar": False,
                      "fftw.planning_effort": "FFTW_ESTIMATE"})
    sig = {}
    t0 = time.perf_counter()
    for el in s["single_atoms"]:
        atoms = Atoms(el, positions=[(L / 2, L / 2, 1.0)], cell=(L, L, 2.0))
        frozen = abtem.FrozenPhonons(atoms, num_configs=s["frozen_phonon_configs"],
                                     sigmas=s["thermal_sigma_A"], seed=11)
        pot = abtem.Potential(frozen, gpts=s["single_gpts"], projection="infinite",
                              parametrization=s["parametrization"],
                              slice_thickness=s["slice_thickness_A"])
        probe = abtem.Probe(energy=s["energy_keV"] * 1e3,
                            semiangle_cutoff=s["semiangle_mrad"])
        probe.grid.match(pot)
        det = abtem.AnnularDetector(inner=s["detector_mrad"][0], outer=s["detector_mrad"][1])
        m = probe.scan(pot, scan=abtem.CustomScan(pts + L / 2), detectors=det)
        sig[el] = np.asarray(m.compute(scheduler="threads", num_workers=2).array,
                             dtype=np.float64).reshape(-1)
    sec = time.perf_counter() - t0
    print(f"single atoms {s['single_atoms']}: {n} positions each in {sec:.0f} s")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, species=np.asarray(s["single_atoms"]).astype("U2"), points=pts,
                        signal=np.stack([sig[el] for el in s["single_atoms"]]), seconds=sec)
    tmp.replace(out)
    print(f"wrote {out}")


def engine_profile(positions, species, points, *, gamma: float, parametrization: str,
                   thermal_sigma_A: float, atom_exponent: float = 2.0,
                   source_sigma_A: float = 0.0) -> np.ndarray:
    """The engine's detected fraction at ``points`` for scale A = 1."""
    from aet.simulate import AbtemEngine

    s = SETTINGS
    eng = AbtemEngine(energy_keV=s["energy_keV"], semiangle_mrad=s["semiangle_mrad"],
                      source_sigma_A=source_sigma_A, thermal_sigma_A=thermal_sigma_A,
                      response_exponent=gamma, atom_exponent=atom_exponent,
                      response_scale=1.0,
                      parametrization=parametrization, oversampling=5)
    px = 0.35
    img = eng.render(np.asarray(positions)[None, :, :2], species, np.asarray(points)[None],
                     pixel_size_A=px)[0]
    return img / px**2


def fit(data: Path = DATA, single: Path = SINGLE, *, write: bool = False) -> dict:
    """Fit A for each (p, γ) and parametrisation; print and return the table.

    Two figures per (p, γ): the Pearson correlation of the particle line scans (the
    acceptance figure, ≥ 0.93), and the joint correlation of the particle and single-atom
    scans with one scale A (which also weighs the Z contrast of isolated atoms); the joint
    one picks the default exponents. ``scale`` is the least-squares A of the joint fit.
    """
    d = np.load(data)
    pos, sp, pts, sig = d["positions"], d["species"].astype(str), d["points"], d["signal"]
    sd = np.load(single)
    s_sp, s_pts, s_sig = sd["species"].astype(str), sd["points"], sd["signal"]
    res = {"multislice_seconds": float(d["seconds"]) + float(sd["seconds"]),
           "abtem_version": str(d["abtem_version"]),
           "n_points": int(len(sig)) + int(s_sig.size), "n_atoms": int(len(pos)), "fits": {}}
    ratio_ms = float(s_sig[list(s_sp).index("Pt")].max() / s_sig[list(s_sp).index("Fe")].max())
    print(f"{len(pos)} atoms, {len(sig)} probe positions; multislice signal "
          f"{sig.min():.4f}–{sig.max():.4f}; single atoms {list(s_sp)}, peak Pt/Fe "
          f"{ratio_ms:.2f}")
    target = np.concatenate([sig, s_sig.ravel()])
    for par in ("lobato", "kirkland"):
        rows = {}
        for p in SETTINGS["atom_exponents"]:
            for g in SETTINGS["gammas"]:
                kw = dict(gamma=g, parametrization=par, atom_exponent=p,
                          thermal_sigma_A=SETTINGS["thermal_sigma_A"])
                e = engine_profile(pos, sp, pts, **kw)
                es = np.stack([engine_profile(np.zeros((1, 3)), [el], s_pts, **kw)
                               for el in s_sp])
                joint = np.concatenate([e, es.ravel()])
                A = float(joint @ target / (joint @ joint))
                r = float(np.corrcoef(e, sig)[0, 1])
                rj = float(np.corrcoef(joint, target)[0, 1])
                rel = float(np.sqrt(np.mean((A * joint - target) ** 2))
                            / np.sqrt(np.mean(target**2)))
                ratio = float(es[list(s_sp).index("Pt")].max() / es[list(s_sp).index("Fe")].max())
                rows[(f"{p:.2f}", f"{g:.1f}")] = {
                    "scale": A, "correlation": r, "joint_correlation": rj,
                    "relative_rms": rel, "pt_fe_peak_ratio": ratio}
        gs = [f"{g:.1f}" for g in SETTINGS["gammas"]]
        for key, title in (("correlation", "particle line scans"),
                           ("joint_correlation", "particle + single atoms, one scale"),
                           ("pt_fe_peak_ratio", f"single-atom peak Pt/Fe (multislice "
                                                f"{ratio_ms:.2f})")):
            print(f"\n{par}: {title} (rows p, columns γ)")
            print("  p \\ γ " + "".join(f"{g:>7}" for g in gs))
            for p in SETTINGS["atom_exponents"]:
                pk = f"{p:.2f}"
                print(f"  {pk:>6} " + "".join(f"{rows[(pk, g)][key]:>7.3f}" for g in gs))
        best = max(rows, key=lambda k: rows[k]["joint_correlation"])
        # the default keeps γ = DEFAULT_GAMMA (the column response of the case); p
        # is the one within 0.005 of the best joint correlation at that γ whose isolated-atom
        # Pt/Fe contrast is closest to the multislice one (the scans constrain p·γ better
        # than p and γ apart)
        g0 = f"{DEFAULT_GAMMA:.1f}"
        at_g = {k: v for k, v in rows.items() if k[1] == g0}
        top = max(v["joint_correlation"] for v in at_g.values())
        dflt = min((k for k, v in at_g.items() if v["joint_correlation"] >= top - 0.005),
                   key=lambda k: abs(rows[k]["pt_fe_peak_ratio"] - ratio_ms))
        for label, k in (("best", best), ("default", dflt)):
            b = rows[k]
            print(f"{par}: {label} p = {k[0]}, γ = {k[1]}: joint correlation "
                  f"{b['joint_correlation']:.4f}, particle {b['correlation']:.4f}, relative "
                  f"RMS {b['relative_rms']:.3f}, Pt/Fe {b['pt_fe_peak_ratio']:.2f} "
                  f"(multislice {ratio_ms:.2f}), A {b['scale']:.5f}")
        res["fits"][par] = {"rows": rows, "best": [float(best[0]), float(best[1])],
                            "default": [float(dflt[0]), float(dflt[1])],
                            "pt_fe_peak_ratio_multislice": ratio_ms}
    if write:
        _write_module(res)
    return res


def _write_module(res: dict) -> None:
    def table(par, key, nd):
        out = {}
        for (p, g), v in res["fits"][par]["rows"].items():
            out.setdefault(p, {})[g] = round(v[key], nd)
        return out

    cal = {
        "scale": {par: table(par, "scale", 6) for par in res["fits"]},
        "correlation": {par: table(par, "correlation", 4) for par in res["fits"]},
        "joint_correlation": {par: table(par, "joint_correlation", 4) for par in res["fits"]},
        "pt_fe_peak_ratio": {par: table(par, "pt_fe_peak_ratio", 3) for par in res["fits"]},
        "pt_fe_peak_ratio_multislice": round(
            next(iter(res["fits"].values()))["pt_fe_peak_ratio_multislice"], 3),
        "best_atom_exponent_gamma": {par: f["best"] for par, f in res["fits"].items()},
        "default_atom_exponent_gamma": {par: f["default"] for par, f in res["fits"].items()},
        "settings": {k: v for k, v in SETTINGS.items()
                     if k not in ("gammas", "atom_exponents")},
        "n_atoms": res["n_atoms"], "n_points": res["n_points"],
        "abtem_version": res["abtem_version"],
        "multislice_seconds": round(res["multislice_seconds"]),
    }
    text = ('"""Calibration of the abTEM engine\'s response against a real abTEM multislice ADF '
            'line scan.\n\nWritten by ``benchmarks/calibrate_abtem.py fit --write``\n(see '
            '``docs/calibration.rst``); do not edit by hand.\n``scale[parametrization][p][γ]``'
            ' is the least-squares A, ``correlation`` the Pearson correlation\nwith the '
            'multislice profile.\n"""\n\nCALIBRATION = '
            + pprint.pformat(json.loads(json.dumps(cal, default=list)), width=96,
                             sort_dicts=True) + "\n")
    tmp = MODULE.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(MODULE)
    print(f"wrote {MODULE}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["multislice", "single", "fit", "all"])
    ap.add_argument("--write", action="store_true",
                    help="store the fitted scales in aet/simulate/_abtem_calibration.py")
    a = ap.parse_args(argv)
    if a.step in ("multislice", "all"):
        multislice()
    if a.step in ("single", "all"):
        single_atoms()
    if a.step in ("fit", "all"):
        fit(write=a.write)


if __name__ == "__main__":
    main()
