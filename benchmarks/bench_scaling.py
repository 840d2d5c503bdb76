"""Scaling out: single-axis reconstruction and out-of-core tracing under dask.distributed.

    python benchmarks/bench_scaling.py            # 512³ reconstruction, 1024³ tracing
    python benchmarks/bench_scaling.py --quick    # 128³ and 256³

Two stages, each run with a ``LocalCluster`` of 1 and then 2 single-threaded worker
*processes* (``processes=True``: each worker its own interpreter, as on a cluster; the data and
the kernels' results travel between processes), each in a fresh child process so that its
peak resident memory (``ru_maxrss``, the client's and every worker's) is its own:

1. **reconstruction** — projections of a random "gas" of Pt atoms (47 tilts, ±70°, analytic
   ADF forward model, pixel 0.5 Å) stored as Zarr, opened lazily, chunked along y (the tilt
   axis), reconstructed with RESIRE (fixed iterations, no early stopping) block by block and
   streamed to a Zarr volume of n³ voxels. The first y-block is checked against an in-memory
   reconstruction of the same rows. Two more children give the reference: the same job on
   dask's default threaded scheduler (2 threads, no cluster: the plain out-of-core run, whose
   peak RSS is the figure to hold under 4 GiB at 512³) and the in-memory kernel time per
   iteration (one forward + one back projection of the whole n³ volume with the parallel
   kernels, what an in-memory RESIRE iteration costs), so the out-of-core time per
   iteration is printed as a ratio to it (target ≤ 2 at 512³); so is the CPU seconds' ratio,
   which holds on a machine shared with other processes, where wall seconds do not.
2. **out-of-core tracing** — an n³ float32 Zarr volume (jittered simple-cubic lattice of
   Gaussian atoms, 4 Å apart, σ = 0.5 Å, voxel 0.5 Å, written chunk by chunk, never whole in
   memory) is traced with ``Volume.trace_atoms`` (``map_overlap``, 128³ chunks); recall and
   RMSD against the lattice are printed.

Printed per stage and worker count: wall seconds, the process's peak RSS (``ru_maxrss``, imports
included) and the RSS growth during the stage (psutil, sampled), against the size of the full
array, the CPU seconds and busy cores (CPU/wall: below ~1.8 with 2 workers the machine had
no idle second core, and the speed-up measures contention), and the speed-up from 1 to 2
workers. aet itself starts no scheduler; the cluster is created here, as a user would.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VOXEL_A = 0.5
SPACING_A = 4.0
SIGMA_A = 0.5
N_ANGLES = 47
N_ITER = 10


# ----------------------------------------------------------------------------- data
def make_projections(n: int, store: Path, *, seed: int = 0) -> None:
    """Projections (47 tilts, n × n px) of random Pt atoms inside a cylinder about y."""
    import aet

    rng = np.random.default_rng(seed)
    half = 0.4 * n * VOXEL_A
    n_atoms = max(200, int(0.004 * n ** 3 * VOXEL_A ** 3 / 8))  # sparse: ~1 atom per 2000 Å³
    pos = rng.uniform(-half, half, (n_atoms * 2, 3))
    pos = pos[np.hypot(pos[:, 0], pos[:, 2]) < half][:n_atoms]
    model = aet.AtomicModel(pos, "Pt")
    angles = np.linspace(-70.0, 70.0, N_ANGLES)
    ts = aet.simulate.project_atoms(model, angles, shape=(n, n), pixel_size_A=VOXEL_A,
                                    dtype=np.float32)
    ts.save(store)


def lattice(n: int, lo=None, hi=None) -> np.ndarray:
    """Atom positions (x, y, z) Å of the tracing volume (centred grid, jittered lattice);
    with ``lo``/``hi`` ((x, y, z) Å) only the lattice cells that can reach that box."""
    half = (n // 2) * VOXEL_A
    m = int((n * VOXEL_A) // SPACING_A)
    lo = np.full(3, -np.inf) if lo is None else np.asarray(lo, float)
    hi = np.full(3, np.inf) if hi is None else np.asarray(hi, float)
    i0 = np.clip(np.floor((lo - 0.4 + half) / SPACING_A - 0.5), 0, m).astype(int)
    i1 = np.clip(np.ceil((hi + 0.4 + half) / SPACING_A - 0.5) + 1, 0, m).astype(int)
    g = [np.arange(a, b) for a, b in zip(i0, i1)]
    idx = np.stack(np.meshgrid(*g, indexing="ij"), -1).reshape(-1, 3)
    s = np.sin(idx @ np.array([[12.9898, 39.346, 73.156], [78.233, 11.135, 52.235],
                               [37.719, 83.155, 9.151]])) * 43758.5453
    jitter = 0.8 * (s - np.floor(s)) - 0.4  # deterministic, within ±0.4 Å
    pos = -half + SPACING_A * (idx + 0.5) + jitter
    return pos[np.all((pos > -half + 2.0) & (pos < half - VOXEL_A - 2.0), axis=1)]


def _render_block(block_info=None, *, n: int):
    """One chunk of the lattice volume: each atom within 4σ of it adds its Gaussian on its
    own 9³-voxel window (flat-index bincount, no loop over atoms)."""
    loc = block_info[None]["array-location"]
    start = np.array([a for a, _ in loc])  # z, y, x voxel index of the chunk origin
    shape = tuple(b - a for a, b in loc)
    r = int(np.ceil(4 * SIGMA_A / VOXEL_A))
    lo = (start[::-1] - n // 2 - r - 1) * VOXEL_A  # (x, y, z) Å, with the Gaussian's reach
    hi = (start[::-1] + np.array(shape[::-1]) - n // 2 + r + 1) * VOXEL_A
    pos = lattice(n, lo, hi)[:, ::-1]  # (z, y, x) Å
    idx = pos / VOXEL_A + n // 2  # fractional voxel index
    keep = np.all((idx >= start - r) & (idx < start + np.array(shape) + r), axis=1)
    idx = idx[keep]
    base = np.floor(idx).astype(np.int64) - r
    off = np.arange(2 * r + 2)
    flat = np.zeros(int(np.prod(shape)), np.float64)
    ax = []
    for d in range(3):
        v = base[:, d, None] + off[None, :]  # (atoms, w) voxel indices along axis d
        g = np.exp(-0.5 * ((v - idx[:, d, None]) * VOXEL_A / SIGMA_A) ** 2)
        ok = (v >= start[d]) & (v < start[d] + shape[d])
        ax.append((np.where(ok, v - start[d], 0), np.where(ok, g, 0.0)))
    (iz, gz), (iy, gy), (ix, gx) = ax
    lin = (iz[:, :, None, None] * shape[1] + iy[:, None, :, None]) * shape[2] + \
        ix[:, None, None, :]
    val = gz[:, :, None, None] * gy[:, None, :, None] * gx[:, None, None, :]
    flat += np.bincount(lin.ravel(), weights=val.ravel(), minlength=flat.size)
    return flat.reshape(shape).astype(np.float32)


def make_volume(n: int, store: Path, chunk: int) -> None:
    import dask.array as dsa

    import aet

    arr = dsa.map_blocks(_render_block, n=n, chunks=((chunk,) * (n // chunk),) * 3,
                         dtype=np.float32, meta=np.empty((0, 0, 0), np.float32))
    aet.Volume(arr, voxel_size_A=VOXEL_A).save(store)


# ----------------------------------------------------------------------------- children
def _peak_mib() -> float:
    """Peak resident memory of this process so far (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _RssSampler:
    """Highest current RSS (psutil, every 10 ms) while the ``with`` block runs: the memory the
    stage itself needs on top of what the imports and the cluster already hold."""

    def __enter__(self):
        import threading

        import psutil

        self._proc = psutil.Process()
        self.start_mib = self._proc.memory_info().rss / 2 ** 20
        self.peak_mib = self.start_mib
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(0.01):
            self.peak_mib = max(self.peak_mib, self._proc.memory_info().rss / 2 ** 20)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mib = max(self.peak_mib, self._proc.memory_info().rss / 2 ** 20)
        return False


def _in_memory_iteration(n: int, work: Path) -> dict:
    """Seconds per in-memory RESIRE iteration's kernels at n³: forward + back projection of the
    whole volume with the parallel kernels (best of 3, after one compile/warm-up call)."""
    import aet
    from aet.reconstruct import Projector

    ts = aet.open(work / "projections.zarr")
    angles = ts.data.coords["angle"].values
    b = np.ascontiguousarray(np.asarray(ts.data.values, np.float32).transpose(0, 2, 1))
    op = Projector(angles, (n, n, n))
    x = np.full(op.internal_volume_shape, 0.01, np.float32)
    g = np.empty_like(x)
    r = np.empty(op.internal_projection_shape, np.float32)
    best = best_cpu = np.inf
    for _ in range(4):
        t = time.perf_counter()
        c = time.process_time()
        op.forward(x, out=r)
        r -= b
        op.adjoint(r, out=g)
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return {"stage": "in-memory", "workers": 0, "seconds_per_iteration": best,
            "cpu_seconds_per_iteration": best_cpu, "peak_rss_mib": _peak_mib()}


def child(stage: str, workers: int, n: int, work: Path, chunk: int) -> dict:
    import contextlib

    import psutil

    import aet

    if stage == "in-memory":
        return _in_memory_iteration(n, work)
    proc = psutil.Process()
    if workers:
        from dask.distributed import Client, LocalCluster

        ctx = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                           dashboard_address=None, memory_limit=0)
    else:  # dask's default threaded scheduler, no cluster
        ctx = contextlib.nullcontext()
    with ctx as cluster, (Client(cluster) if workers else contextlib.nullcontext()) as client:
        if client is not None:  # workers compile (or load) the kernels outside the clock
            client.run(_warm_kernels)
            w0 = client.run(_worker_usage)
            cpu_w0 = sum(v["cpu_s"] for v in w0.values())
        else:
            _warm_kernels()
        cpu0 = sum(proc.cpu_times()[:2])
        t0 = time.perf_counter()
        if stage == "reconstruct":
            ts = aet.open(work / "projections.zarr").chunk({"angle": -1, "y": chunk, "x": -1})
            vol = ts.reconstruct(method="resire", n_iter=N_ITER, holdout=0)
            out = work / f"volume_{workers}.zarr"
            with _RssSampler() as mem:
                vol.save(out)
            secs = time.perf_counter() - t0
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            extra = {"seconds_per_iteration": secs / N_ITER}
            if client is not None:
                w = client.run(_worker_usage)
                extra["worker_peak_rss_mib"] = [v["peak_rss_mib"] for v in w.values()]
                cpu += sum(v["cpu_s"] for v in w.values()) - cpu_w0
            # check: the first y-block equals an in-memory reconstruction of the same rows
            rows = ts.isel(y=slice(0, chunk)).compute()
            ref = rows.reconstruct(method="resire", n_iter=N_ITER, holdout=0).values
            got = aet.open(out).data.isel(y=slice(0, chunk)).values
            extra["block_max_rel_diff"] = float(np.abs(got - ref).max() /
                                                max(float(np.abs(ref).max()), 1e-30))
        else:
            vol = aet.open(work / "lattice.zarr").chunk({"z": chunk, "y": chunk, "x": chunk})
            with _RssSampler() as mem:
                model = vol.trace_atoms(min_distance_A=2.0, threshold=0.5)
            secs = time.perf_counter() - t0
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            if client is not None:
                w = client.run(_worker_usage)
                cpu += sum(v["cpu_s"] for v in w.values()) - cpu_w0
            truth = lattice(n)
            from scipy.spatial import cKDTree

            d, _ = cKDTree(model.positions).query(truth)
            extra = {"n_true": int(len(truth)), "n_traced": int(model.n_atoms),
                     "recall": float(np.mean(d < 1.0)),
                     "rmsd_pm": float(100 * np.sqrt(np.mean(d[d < 1.0] ** 2)))}
            if client is not None:
                extra["worker_peak_rss_mib"] = [v["peak_rss_mib"] for v in w.values()]
    return {"stage": stage, "workers": workers, "seconds": secs, "cpu_seconds": cpu,
            "cpu_per_wall": cpu / secs, "peak_rss_mib": _peak_mib(),
            "stage_extra_rss_mib": mem.peak_mib - mem.start_mib, **extra}


def _warm_kernels():
    """Compile or load from the kernel cache the serial single-axis pair (what a y-block
    runs), so that no process times a compile."""
    from aet.reconstruct import Projector

    op = Projector(np.linspace(-60, 60, 5), (8, 4, 8), parallel=False)
    op.adjoint(op.forward(np.ones(op.internal_volume_shape, np.float32)))
    return True


def _worker_usage() -> dict:
    import psutil

    p = psutil.Process()
    return {"peak_rss_mib": _peak_mib(), "cpu_s": sum(p.cpu_times()[:2])}


def run_child(stage, workers, n, work, chunk) -> dict:
    cmd = [sys.executable, __file__, "--child", stage, "--workers", str(workers), "--n", str(n),
           "--work", str(work), "--chunk", str(chunk), "--iterations", str(N_ITER)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"child {stage}/{workers} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _loadavg() -> str:
    import os

    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    global N_ITER
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="128³ reconstruction, 256³ tracing")
    p.add_argument("--recon-n", type=int, default=None)
    p.add_argument("--trace-n", type=int, default=None)
    p.add_argument("--only", choices=["reconstruct", "trace"], default=None,
                   help="run one stage only")
    p.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: temp)")
    p.add_argument("--chunk-y", type=int, default=None,
                   help="y-slices per reconstruction block (default n // 8, at least 16)")
    p.add_argument("--iterations", type=int, default=N_ITER,
                   help="RESIRE iterations of the reconstruction stage")
    p.add_argument("--child", choices=["reconstruct", "trace", "in-memory"],
                   help=argparse.SUPPRESS)
    p.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    N_ITER = int(a.iterations)
    if a.child:
        print(json.dumps(child(a.child, a.workers, a.n, a.work, a.chunk)))
        return 0
    rn = a.recon_n or (128 if a.quick else 512)
    tn = a.trace_n or (256 if a.quick else 1024)
    ychunk = a.chunk_y or max(16, rn // 8)
    tchunk = 128
    work = a.keep or Path(tempfile.mkdtemp(prefix="aet-bench-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        stages = [("reconstruct", rn, ychunk), ("trace", tn, tchunk)]
        stages = [st for st in stages if a.only in (None, st[0])]
        if any(st[0] == "reconstruct" for st in stages):
            t = time.perf_counter()
            make_projections(rn, work / "projections.zarr")
            print(f"projections {N_ANGLES}×{rn}×{rn} simulated in "
                  f"{time.perf_counter() - t:.1f} s")
        if any(st[0] == "trace" for st in stages):
            t = time.perf_counter()
            make_volume(tn, work / "lattice.zarr", tchunk)
            print(f"lattice volume {tn}³ float32 ({tn ** 3 * 4 / 2 ** 20:.0f} MiB) written in "
                  f"{time.perf_counter() - t:.1f} s")
        rows = []
        for stage, n, chunk in stages:
            if stage == "reconstruct":
                mem_it = run_child("in-memory", 0, n, work, chunk)
                print(f"in-memory kernels {n}³ × {N_ANGLES}: {mem_it['seconds_per_iteration']:.2f}"
                      f" s per iteration (forward + back, parallel; peak RSS "
                      f"{mem_it['peak_rss_mib']:.0f} MiB; load {_loadavg()})", flush=True)
                thr = run_child(stage, 0, n, work, chunk)
                ratio = thr["seconds_per_iteration"] / mem_it["seconds_per_iteration"]
                print(f"out of core, threaded scheduler (2 threads), Zarr in → Zarr out: "
                      f"{thr['seconds']:.1f} s for {N_ITER} iterations = "
                      f"{thr['seconds_per_iteration']:.2f} s per iteration → {ratio:.2f}× the "
                      f"in-memory kernels' (target ≤ 2); peak RSS {thr['peak_rss_mib']:.0f} MiB"
                      f" (target ≤ 4096 at 512³; the volume alone is {n ** 3 * 4 / 2 ** 20:.0f}"
                      f" MiB); {thr['cpu_per_wall']:.2f} cores busy; first block vs in-memory "
                      f"max rel. diff {thr['block_max_rel_diff']:.1e}; load {_loadavg()}",
                      flush=True)
                # CPU seconds (all threads) do not grow when other processes take the cores,
                # wall seconds do: on a shared machine this ratio is the one to compare
                cpu_it = thr["cpu_seconds"] / N_ITER
                print(f"CPU seconds per iteration: out of core {cpu_it:.2f}, in-memory kernels "
                      f"{mem_it['cpu_seconds_per_iteration']:.2f} → "
                      f"{cpu_it / mem_it['cpu_seconds_per_iteration']:.2f}×", flush=True)
            res = {w: run_child(stage, w, n, work, chunk) for w in (1, 2)}
            full_mib = n ** 3 * 4 / 2 ** 20
            for w, r in res.items():
                extra = {k: v for k, v in r.items() if k not in
                         ("stage", "workers", "seconds", "cpu_seconds", "cpu_per_wall",
                          "peak_rss_mib", "stage_extra_rss_mib")}
                print(f"{stage:<12} {n}³ workers={w}: {r['seconds']:7.1f} s wall, "
                      f"{r['cpu_seconds']:.1f} s CPU ({r['cpu_per_wall']:.2f} cores busy), "
                      f"peak RSS "
                      f"{r['peak_rss_mib']:6.0f} MiB (process, imports included), "
                      f"+{r['stage_extra_rss_mib']:.0f} MiB during the stage; full volume "
                      f"{full_mib:.0f} MiB; {extra}")
            sp = res[1]["seconds"] / res[2]["seconds"]
            print(f"{stage:<12} speed-up 1 → 2 worker processes: {sp:.2f}× (load {_loadavg()}; "
                  f"CPU time ratio "
                  f"{res[2]['cpu_seconds'] / res[1]['cpu_seconds']:.2f}; a speed-up needs an idle "
                  f"second core: check 'cores busy')")
            rows.append({"stage": stage, "n": n, "chunk": chunk, "volume_mib": full_mib,
                         "speedup_1_to_2": sp, "runs": list(res.values())})
        print(json.dumps(rows))
    finally:
        if a.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
