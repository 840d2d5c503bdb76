"""Benchmark of aet.analysis: accuracy against planted truth and run time.

    python benchmarks/bench_analysis.py            # full: particles of radius 20 and 30 Å
    python benchmarks/bench_analysis.py --quick    # radius 20 Å only

Prints, per particle size: lattice-fit time and errors, the strain error (RMS / max / mean per
component, worst component, inside the particle) for no jitter and 20 pm jitter (per axis and
3D RMS) at several kernel widths σ, order-parameter means, grain and antisite recovery.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import aet
from aet.analysis import defects, fit_lattice, grains, order_parameters, strain
from aet.analysis._kernels import splat_values
from aet.testing.analysis import (
    eulerian_strain,
    fcc_sites,
    ordered_species,
    particle,
    planted_strain,
)
from aet.testing.phantoms import rotation_matrix_zyz

ROT = rotation_matrix_zyz(0.3, 0.7, -1.1)
E = np.array([[0.010, 0.002, 0.0], [0.002, -0.004, 0.001], [0.0, 0.001, 0.006]])
COMP = (("xx", 0, 0), ("yy", 1, 1), ("zz", 2, 2), ("xy", 0, 1), ("xz", 0, 2), ("yz", 1, 2))


def strain_errors(radius, jitter, sigma, voxel):
    m = particle("fcc", a_A=3.92, radius_A=radius, species=("Pt", "Pt"))
    pos0 = m.positions
    pos, fn = planted_strain(pos0, uniform=E, radial_amplitude=0.005, radius_A=radius)
    pos = pos + np.random.default_rng(1).normal(0, jitter, pos.shape)
    t = time.perf_counter()
    st = strain(aet.AtomicModel(pos @ ROT.T, "Pt").data, a_A=3.92, sigma_A=sigma,
                voxel_size_A=voxel)
    dt = time.perf_counter() - t
    ea = ROT[None] @ eulerian_strain(fn(pos0)) @ ROT.T[None]
    pa = np.ascontiguousarray(pos @ ROT.T)
    origin = np.array([st.z.values[0], st.y.values[0], st.x.values[0]])
    inside = st.weight.values >= 0.8
    worst = [0.0, 0.0, 0.0]
    for name, i, j in COMP:
        num, den = splat_values(pa, np.ascontiguousarray(ea[:, i, j]), origin, voxel,
                                np.array(st.e_xx.shape, dtype=np.int64), sigma, 3 * sigma)
        d = st[f"e_{name}"].values[inside] - (num / np.maximum(den, 1e-300))[inside]
        worst = [max(worst[0], np.sqrt(np.mean(d ** 2))), max(worst[1], np.abs(d).max()),
                 max(worst[2], abs(np.mean(d)))]
    return m.n_atoms, dt, worst, int(inside.sum())


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    radii = [20.0] if args.quick else [20.0, 30.0]
    # warm up numba
    strain(particle("fcc", radius_A=8).data, voxel_size_A=2.0)
    for R in radii:
        print(f"\n## particle radius {R} Å")
        m = particle("fcc", a_A=3.92, radius_A=R, species=("Pt", "Pt"), rotation=ROT,
                     jitter_A=0.2, seed=1)
        t = time.perf_counter()
        fit = fit_lattice(m.data, "fcc")
        ang = aet.analysis.misorientation_deg(fit.rotation[None], ROT[None])[0]
        print(f"fit_lattice fcc, {m.n_atoms} atoms, 20 pm jitter: {time.perf_counter() - t:.2f} s,"
              f" |Δa| = {abs(fit.a_A - 3.92):.2e} Å, misorientation {ang:.3f}°, "
              f"inliers {fit.inlier.mean():.3f}")
        print("strain (worst component; inside = kernel weight ≥ 0.8 of bulk; truth = analytic "
              "(Eulerian) strain averaged with the same kernel)")
        for jit, label in ((0.0, "no jitter"), (0.2, "20 pm per axis"),
                           (0.2 / np.sqrt(3), "20 pm 3D rms")):
            for sigma in (4.25, 6.0, 8.0):
                n, dt, w, n_in = strain_errors(R, jit, sigma, 1.0 if sigma < 5 else 2.0)
                print(f"  {label:15s} σ={sigma:4.2f} Å: rms {w[0]:.2e}  max {w[1]:.2e}  "
                      f"|mean| {w[2]:.2e}  ({n_in} grid pts, {dt:.2f} s)")
        for kind in ("L10", "L12", "L12_AB3", "A1"):
            mm = particle(kind, radius_A=R, rotation=ROT, jitter_A=0.05, seed=3)
            k = "L12" if kind.startswith("L12") else "L10"
            t = time.perf_counter()
            op = order_parameters(mm.data, k)
            dt = time.perf_counter() - t
            s = op[f"order_{k}"].values
            if kind == "A1":
                s2 = order_parameters(mm.data, "L12")["order_L12"].values
                print(f"order on A1 ({mm.n_atoms} atoms): mean L10 {np.nanmean(s):+.4f}, "
                      f"mean L12 {np.nanmean(s2):+.4f} ({dt:.2f} s)")
            else:
                print(f"order {kind:8s}: mean {np.mean(s):.4f}, min {np.min(s):.4f} ({dt:.2f} s)")
        pos, _, sub = fcc_sites(3.85, R)
        right = pos[:, 0] >= 0.5
        sp = np.where(right, ordered_species(sub, "L10", variant=0),
                      ordered_species(sub, "L10", variant=2))
        pj = pos @ ROT.T + np.random.default_rng(0).normal(0, 0.05, pos.shape)
        t = time.perf_counter()
        g = grains(aet.AtomicModel(pj, sp).data, kind="L10")["grain"].values
        acc = max(np.mean(g == np.where(right, b, a)) for a in range(3) for b in range(3)
                  if a != b)
        print(f"grains (two L1_0 variants, {len(pos)} atoms): {acc:.4f} right "
              f"({time.perf_counter() - t:.2f} s)")
        mm = particle("L10", radius_A=R, rotation=ROT, jitter_A=0.05, seed=2)
        sp = mm.species.copy()
        idx = np.random.default_rng(5).choice(len(sp), 40, replace=False)
        sp[idx] = np.where(sp[idx] == "Fe", "Pt", "Fe")
        t = time.perf_counter()
        d = defects(aet.AtomicModel(mm.positions, sp).data, "L10")
        found = np.flatnonzero(d["antisite"].values)
        print(f"antisites: recall {np.isin(idx, found).mean():.3f}, false positives "
              f"{np.setdiff1d(found, idx).size} ({time.perf_counter() - t:.2f} s)")


if __name__ == "__main__":
    main()
