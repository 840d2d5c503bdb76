# %% [markdown]
# # Volumes larger than memory: Zarr, dask and a `dask.distributed` cluster
#
# A full AET data set is small, but the same stages applied to sub-area tomography of films
# (sAET), to upsampled volumes or to many particles quickly exceed one machine's memory.
# ``aet`` handles this with [dask](https://docs.dask.org): every stage accepts a dask-backed
# object and stays lazy, and
#
# * single-axis reconstruction is independent for each y-slice (the tilt axis is y), so a
#   tilt series chunked along y is reconstructed block by block (``dask.array.map_blocks``);
# * atom tracing is local, so it runs chunk by chunk with ``dask.array.map_overlap`` and a halo
#   wide enough for its fit windows; peaks in the halo are assigned to exactly one chunk;
# * the native storage is Zarr, chunked, read chunk by chunk
#   (A. Miles *et al.*, zarr-developers/zarr-python, doi:10.5281/zenodo.3773450).
#
# **aet never starts a scheduler itself.** It uses whichever one is active. Here we create a
# local ``dask.distributed`` cluster with two single-threaded workers
# (M. Rocklin, "Dask: parallel computation with blocked algorithms and task scheduling",
# *Proc. SciPy* 2015); the same code runs unchanged on a cluster — see the end.
#
# Sizes are kept tiny so the tutorial runs in seconds; the structure is what matters, and
# ``benchmarks/bench_scaling.py`` runs the same thing at 512³ / 1024³.
#
# Outputs go to ``AET_TUTORIAL_OUT`` (a fresh temporary folder when unset).

# %%
import json
import os
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
from dask.distributed import Client, LocalCluster
from scipy.spatial import cKDTree

import aet

OUT = Path(os.environ.get("AET_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="aet-tutorial-04-"))
OUT.mkdir(parents=True, exist_ok=True)
T0 = time.perf_counter()
results = {}

# %% [markdown]
# ## 1. Start a local cluster
#
# Two workers with one thread each. ``processes=False`` keeps the workers as threads of this
# process: aet's Numba kernels release the GIL (``nogil=True``), so threads run in parallel
# and nothing has to be pickled or re-imported. ``processes=True`` gives each worker its own
# process (needed for GIL-bound Python code); in a script that requires the usual
# ``if __name__ == "__main__":`` guard, because worker processes are spawned by re-importing
# the main module. ``dashboard_address=None`` skips the web dashboard.

# %%
cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                       dashboard_address=None)
client = Client(cluster)
print(client)

# %% [markdown]
# ## 2. A tilt series chunked along y
#
# A 22 Å FePt particle, projected analytically (15 angles, ±70°, 0.4 Å pixels, 96 × 64 px).
# We chunk it along y into blocks of 16 rows: each block holds every angle and every x, which
# is exactly what one independent slab of the reconstruction needs.

# %%
particle = aet.simulate.fept_particle(22.0, phase="L10", variant=2, seed=4)
angles = np.linspace(-70.0, 70.0, 15)
ts = aet.simulate.project_atoms(particle, angles, shape=(96, 64), pixel_size_A=0.4)
ts_lazy = ts.chunk({"angle": -1, "y": 16, "x": -1})
print(ts_lazy.data.data)   # the dask array: 6 chunks along y

# %% [markdown]
# ## 3. Lazy reconstruction, streamed to Zarr
#
# ``reconstruct`` on a dask-backed single-axis series returns a *lazy* volume, chunked like the
# projections along y. Nothing is computed until ``save`` streams it to Zarr: each worker
# reconstructs one y-block and writes it. Early stopping on held-out pixels is switched off
# (``holdout=0``): with it, each block would draw its own random held-out pixels and stop at its
# own iteration. Without it every block runs the same fixed number of iterations, and the
# block result is the same computation as the in-memory one. (``patience=0``, documented as
# the other way to switch early stopping off, currently stops after the first iteration.)

# %%
opts = dict(method="resire", n_iter=40, holdout=0)
vol_lazy = ts_lazy.reconstruct(**opts)
print("lazy:", vol_lazy.is_lazy, vol_lazy.data.chunks)
t = time.perf_counter()
vol_lazy.save(OUT / "volume.zarr")
results["reconstruct_to_zarr_s"] = time.perf_counter() - t

# the same reconstruction in memory, for comparison
vol_mem = ts.reconstruct(**opts)
vol_disk = aet.open(OUT / "volume.zarr")
diff = float(np.abs(vol_disk.values - vol_mem.values).max())
results["recon_max_abs_diff_rel"] = diff / float(np.abs(vol_mem.values).max())
print(f"max |zarr − in-memory| / max = {results['recon_max_abs_diff_rel']:.2e}")

# %% [markdown]
# ## 4. Out-of-core atom tracing with ``map_overlap``
#
# Re-open the Zarr store and chunk it in 32³ blocks: the tracer then works block by block with
# a halo, so only one block plus its halo is in a worker's memory at a time. The absolute
# threshold is computed first (one reduction over the volume), then each block's local maxima
# are refined; an atom whose peak lies in a halo belongs to the neighbouring block only.
# The atoms must be the same as when tracing the whole volume in memory.

# %%
vol_chunked = aet.open(OUT / "volume.zarr").chunk({"z": 32, "y": 32, "x": 32})
print("traced from", vol_chunked.data.data.npartitions, "chunks")
t = time.perf_counter()
model_ooc = vol_chunked.trace_atoms(min_distance_A=2.0)
results["trace_chunked_s"] = time.perf_counter() - t
model_mem = vol_mem.trace_atoms(min_distance_A=2.0)


# pair every chunked atom with its nearest in-memory atom
dist, _ = cKDTree(model_mem.positions).query(model_ooc.positions)
pos_diff = float(dist.max())
results.update(n_atoms_chunked=int(model_ooc.n_atoms), n_atoms_in_memory=int(model_mem.n_atoms),
               trace_max_position_diff_A=pos_diff)
print(f"chunked: {model_ooc.n_atoms} atoms, in memory: {model_mem.n_atoms} atoms, "
      f"largest position difference {pos_diff:.2e} Å")

# and against the truth (noise-free projections: the atoms should all be found)
s = aet.simulate.score(model_ooc, particle)
results.update(recall=s.recall, precision=s.precision, rmsd_pm=s.rmsd_pm)
print(f"vs truth: recall {s.recall:.3f}, precision {s.precision:.3f}, RMSD {s.rmsd_pm:.1f} pm")

# %% [markdown]
# ## 5. Close the cluster
#
# Always close the client and the cluster when done (or use them as context managers).

# %%
client.close()
cluster.close()

# %% [markdown]
# ## Running on a real cluster
#
# Nothing above depends on the cluster being local — ``aet`` only builds dask graphs, and the
# active ``Client`` decides where they run. To use an HPC batch system, replace
# ``LocalCluster`` with `dask-jobqueue <https://jobqueue.dask.org>`_ (not run here):
#
# ```python
# from dask_jobqueue import SLURMCluster
# cluster = SLURMCluster(cores=16, processes=4, memory="64GB", walltime="02:00:00",
#                        queue="normal", account="my_project")
# cluster.scale(jobs=8)            # 8 SLURM jobs × 4 workers
# client = Client(cluster)
# vol = aet.open("tilts.zarr").chunk({"y": 32}).reconstruct(method="resire")
# vol.save("/scratch/me/volume.zarr")    # a path every worker can reach
# ```
#
# On a Kubernetes/cloud deployment use `dask-gateway <https://gateway.dask.org>`_:
# ``gateway = Gateway(); cluster = gateway.new_cluster(); cluster.scale(16);
# client = cluster.get_client()``; to join a scheduler that is already running, just
# ``Client("tcp://scheduler-host:8786")``. The input and output Zarr stores must then live on
# storage all workers can read (a shared file system, or object storage such as S3 through
# ``fsspec``). Choose chunks of a few hundred MB: single-axis reconstruction along y only;
# tracing in 3D blocks at least a few times the halo (``aet.atoms.tracing.halo_voxels``).

# %%
results["dask_version"] = dask.__version__
results["seconds"] = time.perf_counter() - T0
(OUT / "results.json").write_text(json.dumps(results, indent=2))
print(json.dumps(results, indent=2))
