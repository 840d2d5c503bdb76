"""Run every benchmark in this folder as one command and print their reports.

    python benchmarks/run_all.py            # quick sizes
    python benchmarks/run_all.py --full     # the sizes the issues quote (slow)

Each ``bench_<area>.py`` is run in its own process (so peak-memory figures are per benchmark)
with ``--quick`` unless ``--full`` is given. Peer codes (svmbir, ASTRA, GENFIRE) are compared
when they are installed in the same run; ratios are printed by each benchmark.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="run the full-size benchmarks")
    p.add_argument("--only", nargs="*", help="areas to run (e.g. reconstruct atoms)")
    args = p.parse_args(argv)
    scripts = sorted(HERE.glob("bench_*.py"))
    if args.only:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in args.only]
    failed = []
    for s in scripts:
        print(f"\n=== {s.stem} " + "=" * (60 - len(s.stem)), flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, str(s)] + ([] if args.full else ["--quick"])
        rc = subprocess.call(cmd)
        print(f"--- {s.stem}: exit {rc}, {time.perf_counter() - t0:.1f} s", flush=True)
        if rc:
            failed.append(s.stem)
    if failed:
        print("failed:", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
