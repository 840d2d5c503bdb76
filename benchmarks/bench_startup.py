"""First-run latency of ``aet demo``: how much of a cold run is Numba compiling kernels.

Run: ``python benchmarks/bench_startup.py`` (from a checkout: ``PYTHONPATH=$PWD``).

Runs ``aet demo --size small`` twice in child processes that share one fresh, empty
kernel-cache folder (``XDG_CACHE_HOME`` points at a temporary folder, so the user's own cache
is neither used nor touched): first *cold* (every kernel the demo needs is compiled), then
*warm* (every kernel is loaded from that cache). Each child records, through Numba's event API
(:mod:`numba.core.event`, event ``"numba:compile"``), the CPU time of the compiling thread
for every compilation (``time.thread_time``: CPU seconds, so the figure does not grow with the
load of a shared machine the way wall time does) and the time spent loading kernels from
the cache. Printed: wall time, process CPU time, compile CPU seconds in total and per kernel
(top kernels first; *inclusive* counts a kernel together with the jitted helpers it compiled,
*own* without them), and the ratio cold/warm. The issue's target (#18): compile ≤ 15 s of a
cold demo.

Options: ``--size`` (demo size), ``--top`` (kernels listed), ``--keep`` (keep the temporary
folder), ``--json FILE`` (write the raw records).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

TARGET_COMPILE_S = 15.0


# ----------------------------------------------------------------------------- child process
def _child(record_path: str, demo_args: list[str]) -> int:
    """Run ``aet demo`` with compile listeners installed; write the records as JSON."""
    import threading

    from numba.core import event as ev

    records = []        # one per compilation: name, signature, inclusive/own CPU s, depth
    stack = threading.local()
    loads = {"n": 0, "cpu_s": 0.0}

    class _Listener(ev.Listener):
        def on_start(self, event):
            st = getattr(stack, "s", None)
            if st is None:
                st = stack.s = []
            st.append([time.thread_time(), 0.0])

        def on_end(self, event):
            t0, child_s = stack.s.pop()
            dt = time.thread_time() - t0
            if stack.s:
                stack.s[-1][1] += dt
            d = event.data["dispatcher"]
            py = d.py_func
            records.append({
                "name": f"{py.__module__}.{py.__qualname__}",
                "sig": str(event.data["args"]),
                "cpu_s": dt,
                "own_s": dt - child_s,
                "depth": len(stack.s),
                "parallel": bool(d.targetoptions.get("parallel", False)),
            })

    ev.register("numba:compile", _Listener())

    # cache loads: time spent in the kernel cache's load_overload (warm runs)
    from aet import _jit

    orig_load = _jit._KernelCache.load_overload

    def _timed_load(self, sig, target_context):
        t0 = time.thread_time()
        try:
            return orig_load(self, sig, target_context)
        finally:
            loads["n"] += 1
            loads["cpu_s"] += time.thread_time() - t0

    _jit._KernelCache.load_overload = _timed_load

    from aet import cli

    t0 = time.perf_counter()
    c0 = time.process_time()
    rc = cli.main(["demo", *demo_args])
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    with open(record_path, "w") as f:
        json.dump({"rc": rc, "wall_s": wall, "cpu_s": cpu, "compiles": records,
                   "cache_loads": loads}, f)
    return rc


# ----------------------------------------------------------------------------- parent
def _run_child(cache_home: str, out_dir: str, record: str, size: str) -> dict:
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = cache_home
    cmd = [sys.executable, os.path.abspath(__file__), "--child", record, "--",
           "--size", size, "--out", out_dir, "--no-progress", "--overwrite"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
    total_wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout)
        raise SystemExit(f"aet demo failed (exit {proc.returncode})")
    with open(record) as f:
        rec = json.load(f)
    rec["process_wall_s"] = total_wall  # with interpreter start-up and imports
    return rec


def _summary(label: str, rec: dict) -> float:
    top_level = [r for r in rec["compiles"] if r["depth"] == 0]
    compile_s = sum(r["cpu_s"] for r in top_level)
    print(f"{label}: wall {rec['process_wall_s']:.1f} s (process, with imports; demo "
          f"{rec['wall_s']:.1f} s), demo CPU {rec['cpu_s']:.1f} s, compile CPU "
          f"{compile_s:.2f} s in {len(rec['compiles'])} compilations "
          f"({len(top_level)} top-level), cache loads {rec['cache_loads']['n']} "
          f"({rec['cache_loads']['cpu_s']:.2f} s CPU)")
    return compile_s


def _table(rec: dict, top: int) -> None:
    by = {}
    for r in rec["compiles"]:
        key = r["name"] + (" [parallel]" if r["parallel"] else "")
        e = by.setdefault(key, {"incl": 0.0, "own": 0.0, "n": 0, "top": 0.0})
        e["own"] += r["own_s"]
        e["n"] += 1
        if r["depth"] == 0:
            e["top"] += r["cpu_s"]
    rows = sorted(by.items(), key=lambda kv: -max(kv[1]["top"], kv[1]["own"]))
    print(f"  {'kernel':<58} {'sigs':>4} {'top-level incl. s':>17} {'own s':>7}")
    for name, e in rows[:top]:
        print(f"  {name:<58} {e['n']:>4} {e['top']:>17.2f} {e['own']:>7.2f}")
    if len(rows) > top:
        rest = sum(e["own"] for _, e in rows[top:])
        print(f"  ... {len(rows) - top} more kernels, own {rest:.2f} s")


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        rest = sys.argv[3:]
        if rest and rest[0] == "--":
            rest = rest[1:]
        return _child(sys.argv[2], rest)
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small", choices=["small", "standard", "large"])
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--json", default=None, help="write the raw records to this file")
    ap.add_argument("--cold-only", action="store_true", help="skip the warm run")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="aet-bench-startup-")
    try:
        cache_home = os.path.join(tmp, "cache")
        os.makedirs(cache_home)
        try:
            load = os.getloadavg()
            print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
                  f"{os.cpu_count()} CPUs; empty cache in {cache_home}")
        except OSError:
            pass
        cold = _run_child(cache_home, os.path.join(tmp, "out-cold"),
                          os.path.join(tmp, "cold.json"), args.size)
        c_cold = _summary("cold", cold)
        _table(cold, args.top)
        result = {"cold": cold}
        if not args.cold_only:
            warm = _run_child(cache_home, os.path.join(tmp, "out-warm"),
                              os.path.join(tmp, "warm.json"), args.size)
            c_warm = _summary("warm", warm)
            if warm["compiles"]:
                _table(warm, args.top)
            result["warm"] = warm
            print(f"cold/warm: wall {cold['process_wall_s'] / warm['process_wall_s']:.2f}x, "
                  f"CPU {cold['cpu_s'] / max(warm['cpu_s'], 1e-9):.2f}x; compile CPU in the "
                  f"warm run {c_warm:.2f} s")
        ok = c_cold <= TARGET_COMPILE_S
        print(f"target (#18): cold compile CPU {c_cold:.1f} s <= {TARGET_COMPILE_S:.0f} s: "
              f"{'met' if ok else 'NOT met'}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
