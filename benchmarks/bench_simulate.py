"""Timings of aet.simulate: benchmark-case generation, forward projection, scoring.

Run: ``python benchmarks/bench_simulate.py [--large]``. Prints wall-clock seconds (best of
``--repeat``; the first, JIT-compiling call is reported separately).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import aet
from aet.simulate import fept_benchmark, fept_particle, project_atoms, score


def _best(fn, repeat):
    times = []
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--large", action="store_true", help="also time the 'large' case")
    args = ap.parse_args()

    t = time.perf_counter()
    fept_benchmark("small", seed=0)
    print(f"first call (imports + JIT/cache load), small case: {time.perf_counter() - t:.2f} s")
    for size in ["small", "standard"] + (["large"] if args.large else []):
        rep = args.repeat if size != "large" else 1
        dt, b = _best(lambda s=size: fept_benchmark(s, seed=0), rep)
        p = b.params
        print(f"fept_benchmark({size!r}): {dt:.2f} s  ({b.truth.n_atoms} atoms, "
              f"{p['n_angles']} angles x {p['n_frames']} frames of {p['shape'][0]}^2 px)")
    dt, _ = _best(lambda: fept_benchmark("standard", seed=0, nonlinear=True), args.repeat)
    print(f"fept_benchmark('standard', nonlinear=True): {dt:.2f} s")

    m = fept_particle(80.0 if args.large else 40.0, seed=0)
    ang = np.linspace(-69, 69, 68)
    n = 288 if args.large else 160
    dt, _ = _best(lambda: project_atoms(m, ang, shape=(n, n), pixel_size_A=0.35), args.repeat)
    print(f"project_atoms: {m.n_atoms} atoms x 68 projections of {n}^2 px: {dt:.2f} s")

    rng = np.random.default_rng(0)
    big = fept_particle(80.0, seed=1)
    pred = aet.AtomicModel(big.positions + rng.normal(0, 0.2, (big.n_atoms, 3)), big.species)
    dt, s = _best(lambda: score(pred, big), args.repeat)
    print(f"score: {big.n_atoms} atoms, 20 pm jitter/axis: {dt:.2f} s "
          f"(recall {s.recall:.4f}, RMSD {s.rmsd_pm:.1f} pm)")


if __name__ == "__main__":
    main()
