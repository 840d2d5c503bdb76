# %% [markdown]
# # Loading published AET data: MATLAB ``.mat``, EMD, DigitalMicrograph, MRC
#
# The AET groups publish their measured tilt series, angles, reconstructions and atomic models
# as MATLAB files — e.g. the amorphous Ta film of Y. Yuan *et al.*, "Three-dimensional atomic
# packing in amorphous solids with liquid-like structure", *Nature Mater.* **21**, 95–102
# (2022) (code and data: github.com/AET-AmorphousMaterials/Supplementary-Data-Codes), which
# was reconstructed with RESIRE (Y. Pham *et al.*, *Light Sci. Appl.* **12**, 131 (2023)).
# Microscopes write DigitalMicrograph (DM3/DM4), TIA (SER/EMI), Berkeley/Velox EMD (HDF5) and
# MRC. ``aet.open`` reads all of them (the microscope formats through RosettaSciIO) into the
# same objects, in aet's frame.
#
# Two things must never be guessed, and ``aet`` asks for them explicitly:
#
# * **axis order.** MATLAB AET code indexes ``A(x, y, n)``: projections are stored
#   ``(x, y, n)``, volumes ``(x, y, z)``. The reader reverses that once, to aet's
#   ``(angle, y, x)`` and ``(z, y, x)``.
# * **Euler convention.** aet rotates the object by R_z(φ)·R_y(θ)·R_z(ψ) (active ZYZ).
#   GENFIRE's triples rotate the sampling grid (so the object by the transpose); RESIRE's
#   compose z, then y, then **x**, also on the grid. A file with ``(n, 3)`` angles therefore
#   needs ``euler_convention="genfire" | "resire" | "zyx" | "zyz"``; the triples are converted
#   through their rotation matrices, so a single-axis GENFIRE/RESIRE tilt θ is aet's −θ.
#
# The real files live in ``../shared/data`` beside the repository (set ``AET_SHARED_DATA`` to
# point elsewhere); they are *not* part of the repository. When they are absent this tutorial
# still runs: it writes small example files of each format itself (with ``scipy.io.savemat``,
# ``h5py`` and ``mrcfile``) from a simulated particle, opens those, and says so. The written
# examples are also a check: we know exactly what went in.
#
# Outputs go to ``AET_TUTORIAL_OUT`` (a fresh temporary folder when unset).

# %%
import json
import os
import tempfile
import time
from pathlib import Path

import h5py
import mrcfile
import numpy as np
import scipy.io

import aet
from aet.errors import MetadataError

OUT = Path(os.environ.get("AET_TUTORIAL_OUT") or tempfile.mkdtemp(prefix="aet-tutorial-05-"))
OUT.mkdir(parents=True, exist_ok=True)
_here = Path(globals().get("__file__", "tutorials/05_published_data.py")).resolve()
DATA = Path(os.environ.get("AET_SHARED_DATA", _here.parents[2] / "shared" / "data"))
HAVE_DATA = DATA.is_dir()
T0 = time.perf_counter()
results = {"shared_data_present": HAVE_DATA}
print("shared data:", DATA, "present" if HAVE_DATA else "ABSENT: using written examples only")

# %% [markdown]
# ## 1. A MATLAB tilt series written the AET way, then read back
#
# We project a small simulated FePt particle at 9 tilts, then store it the way the AET groups
# do: projections ``(x, y, n)`` in one ``.mat`` file and RESIRE-convention Euler triples
# ``(φ, θ, ψ)`` in another. In the RESIRE convention the grid is rotated, so an object tilted
# by +θ in aet's frame is written as θ_file = −θ.

# %%
particle = aet.simulate.fept_particle(16.0, phase="L10", variant=2, seed=2)
tilts = np.linspace(-60.0, 60.0, 9)
ts_true = aet.simulate.project_atoms(particle, tilts, shape=(48, 40), pixel_size_A=0.4)
proj_xyn = np.transpose(ts_true.values, (2, 1, 0)).astype(np.float32)  # (angle,y,x) → (x,y,n)
angles_file = np.stack([np.zeros_like(tilts), -tilts, np.zeros_like(tilts)], axis=1)
scipy.io.savemat(OUT / "projections.mat", {"Proj_sub": proj_xyn})
scipy.io.savemat(OUT / "angles.mat", {"angle": angles_file.astype(np.float32)})
print("written:", proj_xyn.shape, "(x, y, n) and", angles_file.shape, "Euler triples")

# %% [markdown]
# Opening it with the angles file but *without* a convention is refused, with a message that
# says what to pass:

# %%
try:
    aet.open(OUT / "projections.mat", angles=OUT / "angles.mat", pixel_size_A=0.4)
except MetadataError as err:
    print("MetadataError:", err)
    results["refused_without_convention"] = True

# %%
ts = aet.open(OUT / "projections.mat", angles=OUT / "angles.mat",
              euler_convention="resire", pixel_size_A=0.4)
print(ts.data.dims, ts.shape, "angles (deg):", np.round(ts.angles, 2).tolist())
results["mat_max_abs_diff"] = float(np.abs(ts.values - ts_true.values).max())
results["mat_max_angle_error_deg"] = float(np.abs(ts.angles - tilts).max())
print(f"round trip: max |Δ projection| {results['mat_max_abs_diff']:.1e}, "
      f"max |Δ angle| {results['mat_max_angle_error_deg']:.1e}°")
print("provenance of the read:", ts.provenance[-1]["params"])

# %% [markdown]
# ## 2. The published Ta film (when the shared data are present)
#
# ``Projections_area1.mat`` holds ``Proj_sub`` (131, 61, 46) = (x, y, n): denoised, aligned
# ADF-STEM projections of a sub-area of the film, pixel 0.3216 Å; ``angles.mat`` holds 46
# RESIRE triples (θ from −63.0° to +55.9°, φ and ψ below 0.4°). ``ReconObj_sub1_RESIRE.mat``
# is the published reconstruction ``(x, y, z)``. A consistency check that needs no trust in
# either reader: the reconstruction summed along z (the beam) must look like the projection
# nearest 0° — same orientation, no flip or transposition.

# %%
if HAVE_DATA and (DATA / "aet_ta_film_sAET").is_dir():
    film = DATA / "aet_ta_film_sAET"
    ta = aet.open(film / "Projections_area1.mat", angles=film / "angles.mat",
                  euler_convention="resire", pixel_size_A=0.3216)
    rec = aet.open(film / "ReconObj_sub1_RESIRE.mat", kind="volume", voxel_size_A=0.3216)
    i0 = int(np.argmin(np.abs(ta.angles)))
    corr = float(np.corrcoef(ta.values[i0].ravel(), rec.values.sum(0).ravel())[0, 1])
    print(f"Ta film: {ta.shape} (angle, y, x), tilts {ta.angles.min():.1f}.."
          f"{ta.angles.max():.1f}°; reconstruction {rec.shape} (z, y, x)")
    print(f"correlation of the {ta.angles[i0]:.1f}° projection with Σ_z reconstruction: {corr:.3f}")
    results.update(ta_shape=list(ta.shape), ta_recon_shape=list(rec.shape),
                   ta_zero_tilt_correlation=corr)
else:
    print("shared data absent: the Ta film section is skipped (the written example above "
          "shows the same reader)")

# %% [markdown]
# ## 3. Berkeley EMD (HDF5)
#
# An EMD file holds a group with ``emd_group_type = 1``, a ``data`` array and one
# ``dim1, dim2, …`` vector per axis with ``name`` and ``units``. RosettaSciIO reads the axes in
# the NCEM convention (dim1 = the fastest axis, x), so a ``(angle, y, x)`` stack is stored
# transposed, ``(x, y, angle)`` (the layout the Materials Data Bank uses). The pixel size comes
# from the file, converted from nm to Å, and the tilt angles from the axis whose units are
# degrees (:mod:`aet.io.emd`); passing ``angles=`` overrides them.

# %%
with h5py.File(OUT / "tilts.emd", "w") as f:
    f.attrs["version_major"], f.attrs["version_minor"] = 0, 2
    grp = f.create_group("data/tilt_series")
    grp.attrs["emd_group_type"] = 1
    grp.create_dataset("data", data=ts_true.values.T.astype(np.float32))
    nx, ny = ts_true.shape[2], ts_true.shape[1]
    for i, (name, vals, units) in enumerate([("x", np.arange(nx) * 0.04, "nm"),
                                             ("y", np.arange(ny) * 0.04, "nm"),
                                             ("angle", tilts, "deg")], start=1):
        d = grp.create_dataset(f"dim{i}", data=vals)
        d.attrs["name"], d.attrs["units"] = name, units
emd = aet.open(OUT / "tilts.emd", angles=tilts)
results["emd_pixel_size_A"] = float(emd.pixel_size_A)
results["emd_max_abs_diff"] = float(np.abs(emd.values - ts_true.values).max())
print(f"EMD: {emd.shape}, pixel {emd.pixel_size_A:.3f} Å, "
      f"max |Δ| {results['emd_max_abs_diff']:.1e}")
if HAVE_DATA and (DATA / "io_samples").is_dir():
    sig = aet.open(DATA / "io_samples" / "example_signal.emd", kind="volume", voxel_size_A=1.0)
    print("published EMD sample (RosettaSciIO test file):", sig.shape)

# %% [markdown]
# ## 4. MRC with an IMOD ``.tlt`` file
#
# MRC stacks (IMOD, SerialEM, most acquisition software) store sections as ``(n, y, x)`` with
# the pixel size in the header (Å). Tilt angles sit in a sidecar ``<stem>.tlt`` text file (one
# angle per line, degrees), which ``aet.open`` picks up.

# %%
with mrcfile.new(OUT / "tilts.mrc", overwrite=True) as m:
    m.set_data(ts_true.values.astype(np.float32))
    m.voxel_size = 0.4
np.savetxt(OUT / "tilts.tlt", tilts, fmt="%.3f")
mrc = aet.open(OUT / "tilts.mrc")
results["mrc_pixel_size_A"] = float(mrc.pixel_size_A)
results["mrc_max_angle_error_deg"] = float(np.abs(mrc.angles - tilts).max())
results["mrc_max_abs_diff"] = float(np.abs(mrc.values - ts_true.values).max())
print(f"MRC: {mrc.shape}, pixel {mrc.pixel_size_A} Å, angles from .tlt "
      f"(max error {results['mrc_max_angle_error_deg']:.1e}°)")

# %% [markdown]
# ## 5. DigitalMicrograph
#
# DM3/DM4 is a proprietary binary format that only Gatan software writes, so we cannot make
# an example here; with the shared samples present we open a small 3D DM4 stack. Its
# navigation axis carries no angles, so they are passed (and the pixel size, which this test
# file lacks).

# %%
if HAVE_DATA and (DATA / "io_samples" / "dm_3D_test-1.dm4").is_file():
    dm_path = DATA / "io_samples" / "dm_3D_test-1.dm4"
    try:
        aet.open(dm_path)
    except MetadataError as err:
        print("without angles:", err)
    dm = aet.open(dm_path, angles=[-10.0, 10.0], pixel_size_A=1.0)
    print("DM4:", dm.shape, dm.data.dims)
    results["dm_shape"] = list(dm.shape)
else:
    print("shared data absent: no DM3/DM4 sample to open (DM files cannot be written here)")

# %% [markdown]
# ## 6. From here on: the usual pipeline
#
# Whatever the source, the result is an ``aet.TiltSeries`` in aet's frame, so reconstruction
# is the same call. A quick check on the MATLAB example: reconstruct and trace, score against
# the particle we projected.

# %%
vol = ts.reconstruct(method="resire", n_iter=60)
model = vol.trace_atoms(min_distance_A=2.0)
score = aet.simulate.score(model, particle)
results.update(recall=score.recall, precision=score.precision, rmsd_pm=score.rmsd_pm)
print(f"from the .mat example: recall {score.recall:.3f}, precision {score.precision:.3f}, "
      f"RMSD {score.rmsd_pm:.1f} pm")

# %%
results["seconds"] = time.perf_counter() - T0
(OUT / "results.json").write_text(json.dumps(results, indent=2))
print(json.dumps(results, indent=2))
