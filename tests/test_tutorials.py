"""The tutorials run as scripts (as a user runs them) and their key numbers are right.

Each tutorial writes ``results.json`` into ``AET_TUTORIAL_OUT``; the checks below compare those
numbers with the simulated ground truth the tutorial itself planted, so a tutorial that runs
but gets the science wrong fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

ROOT = Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / "tutorials"


def run_tutorial(name: str, out: Path, **env_extra) -> dict:
    env = dict(os.environ, AET_TUTORIAL_OUT=str(out), MPLBACKEND="Agg", **env_extra)
    proc = subprocess.run([sys.executable, str(TUTORIALS / name)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads((out / "results.json").read_text())


def test_every_tutorial_is_listed_and_tested():
    scripts = sorted(p.name for p in TUTORIALS.glob("[0-9][0-9]_*.py"))
    assert scripts == ["01_pipeline_3d.py", "02_strain_order_dft.py",
                       "03_nucleus_tracking_4d.py", "04_out_of_core_dask.py",
                       "05_published_data.py"]
    readme = (TUTORIALS / "README.md").read_text()
    for s in scripts:
        assert s in readme
        text = (TUTORIALS / s).read_text()
        # jupytext percent format with narrative, Agg backend or no plotting, output folder
        assert text.startswith("# %% [markdown]") and text.count("# %% [markdown]") >= 4
        assert "AET_TUTORIAL_OUT" in text and "plt.show" not in text


def test_01_pipeline_3d(tmp_path):
    r = run_tutorial("01_pipeline_3d.py", tmp_path)
    assert r["n_true"] == 225
    # the raw, degraded benchmark through the whole chain finds (almost) every atom ...
    assert r["refined_recall"] >= 0.95
    assert r["classified_species_accuracy"] >= 0.95
    # ... with an RMSD well below the 1 Å matching radius, and refinement does not make it worse
    assert r["refined_rmsd_pm"] <= 40.0
    assert r["refined_rmsd_pm"] <= r["classified_rmsd_pm"] + 1.0
    assert r["refined_precision"] >= 0.6
    # the simulated series records how it was made (engine, call) before the user's steps
    assert r["provenance_ops"] == ["simulate", "register_frames", "remove_background", "align",
                                   "reconstruct"]
    for f in ("volume.zarr", "model.csv", "orthoslices.png", "denoise.png"):
        assert (tmp_path / f).exists(), f


def test_02_strain_order_dft(tmp_path):
    r = run_tutorial("02_strain_order_dft.py", tmp_path)
    # planted: e_xx = +1.0 %, e_yy = 0, e_zz = -0.5 %, no shear (5 pm position noise)
    assert r["cell_strain_max_error"] < 1e-3
    assert abs(r["e_xx_median"] - 0.010) < 1e-3
    assert abs(r["e_yy_median"]) < 1e-3
    assert abs(r["e_zz_median"] + 0.005) < 1e-3
    assert abs(r["e_xy_median"]) < 1e-3
    assert r["order_median"] >= 0.9 and r["variant_z_fraction"] >= 0.95
    assert r["antisite_recall"] >= 0.95 and r["antisite_false"] <= 2
    assert r["grain_accuracy"] >= 0.95 and r["phase_accuracy"] >= 0.9
    # magnetic-anisotropy preset: VASP scf + 2 SOC, QE 2 SOC
    assert r["n_dft_calculations"] == 5 and r["dft_n_atoms"] > 20
    manifest = json.loads((tmp_path / "dft" / "manifest.json").read_text())
    assert manifest["preset"] == "magnetic_anisotropy"
    assert (tmp_path / "strain_slices.png").is_file()


def test_03_nucleus_tracking_4d(tmp_path):
    r = run_tutorial("03_nucleus_tracking_4d.py", tmp_path)
    assert r["n_times"] == 4 and r["n_true_events"] >= 10
    assert r["recovered_true_order"] >= 0.95 and r["phantoms_true_order"] == 0
    assert r["rotation_error_deg_max"] <= 0.05 and r["shift_error_pm_max"] <= 5.0
    # the full chain (order computed from measured species, 1 % wrong, small nuclei) on the
    # tutorial's seed recovers 9 of the 19 planted events with 8 phantoms (measured when this
    # bound was set): a regression guard on the realistic order estimate, not a target
    assert r["recovered_computed_order"] >= 8 / 19 and r["phantoms_computed_order"] <= 10
    assert r["extxyz_frames"] == 4
    for f in ("nucleus_sizes.png", "nucleus_lineage.png", "nucleation_series.extxyz"):
        assert (tmp_path / f).is_file(), f


def test_04_out_of_core_dask(tmp_path):
    r = run_tutorial("04_out_of_core_dask.py", tmp_path)
    # chunked-along-y reconstruction streamed to Zarr equals the in-memory one
    assert r["recon_max_abs_diff_rel"] < 1e-4
    # chunked tracing (map_overlap) finds the same atoms at the same positions
    assert r["n_atoms_chunked"] == r["n_atoms_in_memory"] > 100
    assert r["trace_max_position_diff_A"] < 1e-3
    assert r["recall"] >= 0.95 and r["rmsd_pm"] <= 30.0
    assert (tmp_path / "volume.zarr").is_dir()


@pytest.mark.parametrize("with_data", [False, True], ids=["written-examples", "shared-data"])
def test_05_published_data(tmp_path, with_data):
    if with_data and not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not present")
    data = SHARED_DATA if with_data else tmp_path / "no-such-folder"
    r = run_tutorial("05_published_data.py", tmp_path / "out", AET_SHARED_DATA=str(data))
    assert r["shared_data_present"] is with_data
    assert r["refused_without_convention"] is True
    # (x, y, n) + RESIRE triples written, read back as (angle, y, x) + aet tilts
    assert r["mat_max_abs_diff"] < 1e-5 and r["mat_max_angle_error_deg"] < 1e-6
    assert r["emd_pixel_size_A"] == pytest.approx(0.4) and r["emd_max_abs_diff"] < 1e-5
    assert r["mrc_pixel_size_A"] == pytest.approx(0.4, rel=1e-6)
    assert r["mrc_max_angle_error_deg"] < 1e-3 and r["mrc_max_abs_diff"] < 1e-5
    assert r["recall"] >= 0.95 and r["rmsd_pm"] <= 30.0
    if with_data:
        assert r["ta_shape"] == [46, 61, 131] and r["ta_recon_shape"] == [131, 61, 131]
        assert r["ta_zero_tilt_correlation"] > 0.95
        assert r["dm_shape"] == [2, 2, 2]
    else:
        assert "ta_shape" not in r and "dm_shape" not in r
