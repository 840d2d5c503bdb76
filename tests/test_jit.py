"""aet/_jit.py: compiled kernels are cached in the per-user cache folder, never in the package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aet

PKG = Path(aet.__file__).resolve().parent
ROOT = PKG.parent

_CHILD = """
import json, numpy as np
from aet.reconstruct import _kernels as K, forward_project
from aet._jit import kernel_cache_dir
p = forward_project(np.ones((7, 7, 7), np.float32), [0.0, 30.0], parallel=False)
st = K._sa_block.stats  # the kernel fp_single_axis calls
print(json.dumps({"dir": kernel_cache_dir(), "sum": float(p.sum()),
                  "hits": sum(st.cache_hits.values()), "misses": sum(st.cache_misses.values())}))
"""


def _run_child(cache_home):
    env = dict(os.environ, XDG_CACHE_HOME=str(cache_home),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True,
                       timeout=300, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _numba_files_since(folder, t0):
    return [p for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc")
            and p.stat().st_mtime >= t0]


def test_kernel_cache_goes_to_the_user_cache_folder_and_is_reused(tmp_path):
    t0 = time.time() - 1.0
    first = _run_child(tmp_path)
    cache = Path(first["dir"])
    assert cache.is_relative_to(tmp_path / "aet"), cache
    assert cache.name.startswith("kernels-aet")
    saved = [p.name for p in cache.rglob("*.nbi")]
    assert any("_sa_block" in n for n in saved), saved
    assert first["misses"] == 1 and first["hits"] == 0
    # nothing written beside the sources (what broke pip install . followed by pip install -e)
    assert _numba_files_since(PKG, t0) == []
    second = _run_child(tmp_path)
    assert second["hits"] == 1 and second["misses"] == 0
    assert second["sum"] == first["sum"]
    assert _numba_files_since(PKG, t0) == []


def test_importing_aet_creates_no_cache_folder(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    code = ("import aet, aet.reconstruct, aet.atoms, aet.simulate, aet.analysis, aet.dynamics")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300, cwd=str(ROOT))
    assert r.returncode == 0, r.stderr[-3000:]
    assert list(tmp_path.iterdir()) == []
