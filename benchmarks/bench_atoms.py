"""Benchmark: out-of-core atom tracing of a large Zarr volume (peak RSS and time), and
refinement with the per-projection alignment.

    python benchmarks/bench_atoms.py --size 512            # 512³ float32
    python benchmarks/bench_atoms.py --size 1024 --chunk 128
    python benchmarks/bench_atoms.py --quick               # 192³
    python benchmarks/bench_atoms.py --refine small        # or standard
    python benchmarks/bench_atoms.py --refine-abtem realistic --seeds 0 1 2

``--refine SIZE``: the truth of ``fept_benchmark(SIZE)`` projected (aet.simulate, Poisson
noise at the benchmark dose) at Euler angles with planted errors (0.3° RMS each of φ, θ, ψ)
and planted detector shifts (0.3 px RMS); a start model 0.1 Å RMS off the truth is refined
with ``refine_alignment`` None / ("shifts",) / ("shifts", "angles"): time, R-factor, RMSD,
and the recovered shift (px) and δθ (°) errors in the gauge of the fit.

``--refine-abtem SIZE``: refinement on physics it did not write, the abTEM engine
(``fept_benchmark(SIZE, engine="abtem")``, default the "realistic" 3 nm FePt case at
1×10⁵ e⁻/Å² in total). Per seed: (1) the noise-free projections at the true angles →
RESIRE → trace → classify → refine: RMSD traced vs refined (refinement must not make it
worse); (2) the noisy raw frames through the default pipeline :func:`aet.run`: recall,
precision, RMSD, species after clean-up and after refinement, and the uncertainty
calibration RMS(error/σ) per species, 3D (``|Δr| / uncertainty``) and per axis
(``Δr_a / uncertainty_a``), pooled over the seeds at the end; CPU seconds of aet.run.

A synthetic volume (jittered simple-cubic lattice of Gaussian atoms, 6 Å apart, σ = 0.5 Å,
voxel 0.5 Å, white noise) is written chunk by chunk to a Zarr store by a child process; the
tracing then runs in a fresh child process that opens the store lazily and calls
:func:`aet.atoms.trace` (dask ``map_overlap``; only a chunk plus its halo per task in
memory). The child reports its own peak RSS (``ru_maxrss``), so the figure is the tracing's
alone. Recall/precision and RMSD against the lattice are printed.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SPACING_A = 6.0
SIGMA_A = 0.5
VOXEL_A = 0.5
NOISE = 0.03


def _jitter(idx: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random jitter in [-0.6, 0.6] Å per lattice index and axis."""
    out = np.empty(idx.shape, dtype=np.float64)
    for a, (p, q, r) in enumerate([(12.9898, 78.233, 37.719), (39.346, 11.135, 83.155),
                                   (73.156, 52.235, 9.151)]):
        s = np.sin(idx[..., 0] * p + idx[..., 1] * q + idx[..., 2] * r) * 43758.5453
        out[..., a] = 1.2 * (s - np.floor(s)) - 0.6
    return out


def lattice(n: int) -> np.ndarray:
    """All atom positions (x, y, z) Å of the benchmark volume of n³ voxels (centred)."""
    half = (n // 2) * VOXEL_A
    m = int((n * VOXEL_A) // SPACING_A)
    g = np.arange(m)
    idx = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    pos = -half + SPACING_A * (idx + 0.5) + _jitter(idx)
    return pos[np.all((pos > -half + 2) & (pos < half - VOXEL_A - 2), axis=1)]


def _render_block(block_info=None, n=0):
    import numpy as np

    loc = block_info[None]["array-location"]
    shape = tuple(b - a for a, b in loc)
    half = (n // 2) * VOXEL_A
    zs, ys, xs = (-half + VOXEL_A * np.arange(a, b) for a, b in loc)
    lo = np.array([xs[0], ys[0], zs[0]]) - 4 * SIGMA_A
    hi = np.array([xs[-1], ys[-1], zs[-1]]) + 4 * SIGMA_A
    m = int((n * VOXEL_A) // SPACING_A)
    i0 = np.maximum(np.floor((lo + half) / SPACING_A - 1).astype(int), 0)
    i1 = np.minimum(np.ceil((hi + half) / SPACING_A + 1).astype(int), m)
    g = [np.arange(i0[a], i1[a]) for a in range(3)]
    idx = np.stack(np.meshgrid(*g, indexing="ij"), -1).reshape(-1, 3)
    pos = -half + SPACING_A * (idx + 0.5) + _jitter(idx)
    keep = np.all((pos > -half + 2) & (pos < half - VOXEL_A - 2), axis=1)
    keep &= np.all((pos >= lo) & (pos <= hi), axis=1)
    out = np.zeros(shape, dtype=np.float32)
    for px, py, pz in pos[keep]:
        gz = np.exp(-((zs - pz) ** 2) / (2 * SIGMA_A**2))
        gy = np.exp(-((ys - py) ** 2) / (2 * SIGMA_A**2))
        gx = np.exp(-((xs - px) ** 2) / (2 * SIGMA_A**2))
        sz, sy, sx = gz > 1e-6, gy > 1e-6, gx > 1e-6
        out[np.ix_(sz, sy, sx)] += (gz[sz][:, None, None] * gy[sy][None, :, None]
                                    * gx[sx][None, None, :]).astype(np.float32)
    seed = int(loc[0][0]) * 1_000_003 + int(loc[1][0]) * 1009 + int(loc[2][0])
    out += np.random.default_rng(seed).normal(0, NOISE, shape).astype(np.float32)
    return out


def write_volume(path: str, n: int, chunk: int) -> None:
    import dask.array as da

    chunks = da.core.normalize_chunks(chunk, (n, n, n))
    arr = da.map_blocks(_render_block, n=n, chunks=chunks, dtype=np.float32,
                        meta=np.empty((0, 0, 0), np.float32))
    da.to_zarr(arr, path, overwrite=True)


def trace_volume(path: str, n: int, chunk: int) -> dict:
    import dask.array as da

    import aet
    from aet.atoms import trace

    arr = da.from_zarr(path)
    vol = aet.Volume(arr, voxel_size_A=VOXEL_A).data
    t0 = time.perf_counter()
    ds = trace(vol, threshold=0.5, min_distance_A=2.0)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB → GiB
    from scipy.spatial import cKDTree

    truth = lattice(n)
    found = ds["position"].values
    d, i = cKDTree(truth).query(found)
    ok = d < 1.0
    return {"size": n, "chunk": chunk, "n_truth": int(len(truth)), "n_found": int(len(found)),
            "recall": float(len(np.unique(i[ok])) / len(truth)),
            "precision": float(ok.mean()) if len(found) else 0.0,
            "rmsd_pm": float(100 * math.sqrt(np.mean(d[ok] ** 2))) if ok.any() else None,
            "n_candidates": int(ds.attrs["n_candidates"]), "trace_s": dt,
            "peak_rss_GiB": rss, "volume_GiB": n**3 * 4 / 1024**3}


def refine_alignment_bench(size: str, seed: int = 0) -> None:
    import aet
    from aet.model._meta import rotation_matrices
    from aet.simulate import fept_benchmark, project_atoms, score

    rng = np.random.default_rng(seed)
    bench = fept_benchmark(size, seed=seed)
    truth, p = bench.truth, bench.params
    px, angles = p["pixel_size_A"], bench.clean.angles
    n = len(angles)
    shifts = rng.normal(0, 0.3 * px, (n, 2))
    d_euler = rng.normal(0, 0.3, (n, 3))
    euler = np.stack([np.zeros(n), angles, np.zeros(n)], 1) + d_euler
    R = rotation_matrices(euler)
    imgs = np.stack([
        project_atoms(aet.AtomicModel(truth.positions + R[k].T @ [*shifts[k], 0.0],
                                      truth.species), euler[k:k + 1], shape=p["shape"],
                      pixel_size_A=px, b_factor_A2=p["b_factor_A2"],
                      probe_fwhm_A=p["probe_fwhm_A"]).values[0] for k in range(n)])
    dose = p["dose_e_per_A2"]
    noisy = rng.poisson(np.maximum(imgs, 0) * dose) / dose
    ts = aet.TiltSeries(noisy, angles=angles, pixel_size_A=px)
    start = aet.AtomicModel(truth.positions + rng.normal(0, 0.1, truth.positions.shape),
                            truth.species)
    print(f"{size}: {truth.n_atoms} atoms, {n} projections {p['shape']}, planted shifts "
          f"{np.sqrt(np.mean(shifts**2)) / px:.3f} px RMS, δθ {np.std(d_euler[:, 1]):.3f}° "
          f"RMS; start RMSD {score(start, truth).rmsd_pm:.1f} pm")
    for ra in (None, ("shifts",), ("shifts", "angles")):
        t0 = time.perf_counter()
        ref = start.refine(ts, refine_alignment=ra)
        dt = time.perf_counter() - t0
        res = ref.provenance[-1]["result"]
        line = (f"  refine_alignment={ra!s:22} {dt:6.1f} s  R {res['r_factor']:.4f}  RMSD "
                f"{score(ref, truth).rmsd_pm:5.2f} pm")
        if ra:
            de = np.c_[res["dphi_deg"], res["dtheta_deg"], res["dpsi_deg"]]
            R2 = rotation_matrices(np.stack([np.zeros(n), angles, np.zeros(n)], 1) + de)[:, :2]
            A = np.concatenate([R2[:, 0], R2[:, 1]])
            b = np.concatenate([shifts[:, 0], shifts[:, 1]])
            b = b - A @ np.linalg.lstsq(A, b, rcond=None)[0]
            err = np.c_[res["shift_x_A"], res["shift_y_A"]] - np.c_[b[:n], b[n:]]
            th = de[:, 1] - (d_euler[:, 1] - d_euler[:, 1].mean())
            line += (f"  shift error {np.sqrt(np.mean(err**2)) / px:.4f} px RMS  δθ error "
                     f"{np.sqrt(np.mean(th**2)):.3f}° RMS")
        print(line, flush=True)


def _calibration(model, sc) -> dict:
    """Per species (``sc``: the model's score): matched atoms, RMSD (pm), the ratios |Δr|/σ
    (3D) and Δr_a/σ_a (axes)."""
    pred = sc.matches[:, 0]
    sp = np.asarray(model.species)[pred]
    sig = np.stack([np.asarray(model[f"uncertainty_{a}"]) for a in "xyz"], 1)[pred]
    u = np.asarray(model["uncertainty"])[pred]
    err = sc.displacement_A
    out = {}
    for name in sorted(set(sp.tolist())):
        sel = (sp == name) & np.isfinite(u)
        out[name] = {"n": int(sel.sum()),
                     "rmsd_pm": float(100 * np.sqrt(np.mean(np.sum(err[sel] ** 2, 1)))),
                     "r3": np.linalg.norm(err[sel], axis=1) / u[sel],
                     "ra": (err[sel] / sig[sel]).ravel(),
                     "median_sigma_pm": float(100 * np.median(u[sel]))}
    return out


def refine_abtem_bench(size: str, seeds) -> None:
    import aet
    from aet.simulate import fept_benchmark, score

    def line(tag, s):
        return (f"  {tag:<28} recall {s.recall:.4f}  precision {s.precision:.4f}  RMSD "
                f"{s.rmsd_pm:6.2f} pm (Fe {s.rmsd_pm_by_species.get('Fe', np.nan):.1f}, Pt "
                f"{s.rmsd_pm_by_species.get('Pt', np.nan):.1f})  species "
                f"{s.species_accuracy:.4f}")

    pooled: dict = {}
    for seed in seeds:
        t0 = time.perf_counter()
        bench = fept_benchmark(size, seed=seed, engine="abtem")
        print(f"{bench!r}: simulated in {time.perf_counter() - t0:.0f} s", flush=True)
        truth = bench.truth
        # (1) noise-free projections at the true angles
        vol = bench.clean.reconstruct(method="resire", n_iter=100)
        traced = vol.trace_atoms(min_distance_A=2.0).classify(["Fe", "Pt"], volume=vol)
        c0 = time.process_time()
        refined = traced.refine(bench.clean)
        cpu = time.process_time() - c0
        res = refined.provenance[-1]["result"]
        print(f" seed {seed}, noise-free projections at the true angles:")
        print(line("trace + classify", score(traced, truth)))
        print(line("refine", score(refined, truth)) + f"  ({cpu:.0f} CPU s, γ "
              f"{res['profile']['response_gamma']:.3f})", flush=True)
        # (2) the noisy raw frames through the default pipeline, aet.run
        c0 = time.process_time()
        run = aet.run(bench.tilt_series, ["Fe", "Pt"])
        cpu = time.process_time() - c0
        cleaned, refined = run.stages["cleaned"], run.model
        res = run.stages["refined"].provenance[-1]["result"]
        print(f" seed {seed}, noisy frames through aet.run (tilt axis "
              f"{run.tilt_series.data.attrs.get('tilt_axis_rotation_deg', 0.0):+.2f}°):")
        # as bench_accuracy: a small rotation about the beam (align turns the frame by the
        # tilt-axis rotation it estimates) and the traced model's translation for the others
        t = score(run.stages["traced"], truth, allow_rotation=True)

        kw = {"allow_rotation": True, "start_translation_A": t.translation_A}
        s_ref = score(refined, truth, **kw)
        print(line("cleaned", score(cleaned, truth, **kw)))
        print(line("refine", s_ref) + f"  ({cpu:.0f} CPU s for aet.run, γ "
              f"{res['profile']['response_gamma']:.3f}, +{res['n_added']} −"
              f"{res['n_removed']} atoms, held-out loss {res['held_out_loss_start']:.5f} → "
              f"{res['held_out_loss']:.5f})", flush=True)
        for name, c in _calibration(refined, s_ref).items():
            p = pooled.setdefault(name, {"r3": [], "ra": []})
            p["r3"].append(c["r3"])
            p["ra"].append(c["ra"])
            print(f"   {name}: RMS(|Δr|/σ) {np.sqrt(np.mean(c['r3'] ** 2)):.3f}, "
                  f"RMS(Δr_a/σ_a) {np.sqrt(np.mean(c['ra'] ** 2)):.3f}; median σ "
                  f"{c['median_sigma_pm']:.1f} pm, RMSD {c['rmsd_pm']:.1f} pm "
                  f"({c['n']} atoms)", flush=True)
    print(f"uncertainty calibration over seeds {list(seeds)} (target 0.8–1.25):")
    for name, p in pooled.items():
        r3, ra = np.concatenate(p["r3"]), np.concatenate(p["ra"])
        print(f"  {name}: RMS(|Δr|/σ) {np.sqrt(np.mean(r3 ** 2)):.3f}, RMS(Δr_a/σ_a) "
              f"{np.sqrt(np.mean(ra ** 2)):.3f} ({len(r3)} atoms)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=512, help="edge of the cubic volume (voxels)")
    p.add_argument("--chunk", type=int, default=128, help="Zarr/dask chunk edge (voxels)")
    p.add_argument("--quick", action="store_true", help="192³ volume")
    p.add_argument("--workdir", default=None, help="where to write the Zarr store")
    p.add_argument("--refine", choices=("small", "standard"), default=None,
                   help="benchmark refinement with the per-projection alignment instead")
    p.add_argument("--refine-abtem", default=None, metavar="SIZE",
                   help="refinement accuracy and uncertainty calibration on the abTEM engine "
                        "(e.g. realistic)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="seeds of --refine-abtem")
    p.add_argument("--_child", nargs=3, metavar=("MODE", "PATH", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        mode, path, n = args._child[0], args._child[1], int(args._child[2])
        if mode == "write":
            write_volume(path, n, args.chunk)
        else:
            print("RESULT " + json.dumps(trace_volume(path, n, args.chunk)), flush=True)
        return 0
    if args.refine:
        refine_alignment_bench(args.refine)
        return 0
    if args.refine_abtem:
        refine_abtem_bench(args.refine_abtem, args.seeds)
        return 0
    n = 192 if args.quick else args.size
    tmp = Path(tempfile.mkdtemp(prefix="aet_bench_atoms_", dir=args.workdir))
    store = str(tmp / "volume.zarr")
    try:
        t0 = time.perf_counter()
        subprocess.check_call([sys.executable, __file__, "--chunk", str(args.chunk),
                               "--_child", "write", store, str(n)])
        print(f"wrote {n}³ float32 ({n**3 * 4 / 1024**3:.2f} GiB) Zarr in "
              f"{time.perf_counter() - t0:.1f} s (chunks {args.chunk}³)", flush=True)
        out = subprocess.run([sys.executable, __file__, "--chunk", str(args.chunk),
                              "--_child", "trace", store, str(n)], check=True,
                             capture_output=True, text=True)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")][-1]
        r = json.loads(line[len("RESULT "):])
        print(json.dumps(r))
        print(f"trace {n}³: {r['trace_s']:.1f} s, peak RSS {r['peak_rss_GiB']:.2f} GiB "
              f"(volume {r['volume_GiB']:.2f} GiB), atoms {r['n_found']} / {r['n_truth']}, "
              f"recall {r['recall']:.4f}, precision {r['precision']:.4f}, "
              f"RMSD {r['rmsd_pm']:.1f} pm, candidates {r['n_candidates']}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
