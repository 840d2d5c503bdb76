"""The command line, as a shell user meets it.

Every subcommand runs end to end as a subprocess on real files: a simulated ADF-STEM movie
stack written as MRC by mrcfile with an IMOD-style ``.tlt`` beside it (not by aet's writers),
and the files each step writes; results are scored against the simulation's ground truth.
Error handling (one-line messages in the CLI's words, bugs with tracebacks, outputs checked
before any work) is tested in-process.

``test_fresh_install_readme_and_every_subcommand`` (slow) installs aet into a fresh virtual
environment with the README's two commands and runs the demo's chain through the CLI.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest

import aet
from aet.cli import build_parser, cli_words, main

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = ["run", "demo", "info", "preprocess", "reconstruct", "trace", "classify", "cleanup",
               "refine", "analyze", "track", "export"]


def aet_cli(*args, cwd=None, check=True, env=None, exe=None):
    """Run ``python -m aet.cli ARGS`` (this checkout) as a subprocess."""
    e = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    cmd = [exe or sys.executable, "-m", "aet.cli", *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=e, check=False,
                         timeout=1800)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[2:])} exited {out.returncode}\n{out.stdout}\n"
                             f"{out.stderr}")
    return out


def write_mrc_and_tlt(ts, folder: Path, stem="raw") -> tuple[Path, Path]:
    """A movie tilt series as acquisition software leaves it: MRC image stack (one section per
    frame, mrcfile) and IMOD's one-angle-per-section .tlt ("%8.2f")."""
    raw = np.asarray(ts.values, dtype=np.float32)
    n, f = raw.shape[:2]
    mrc = folder / f"{stem}.mrc"
    with mrcfile.new(mrc, overwrite=True) as m:
        m.set_data(raw.reshape(n * f, *raw.shape[2:]))
        m.set_image_stack()
        m.voxel_size = ts.pixel_size_A
    tlt = folder / f"{stem}.tlt"
    tlt.write_text("".join(f"{a:8.2f}\n" for a in np.repeat(ts.angles, f)))
    return mrc, tlt


# --------------------------------------------------------------------------- parser
@pytest.mark.parametrize("cmd", SUBCOMMANDS)
def test_every_subcommand_has_help(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([cmd, "--help"])
    assert exc.value.code == 0
    assert "usage: aet " + cmd in capsys.readouterr().out


def test_parser_lists_all_subcommands():
    text = build_parser().format_help()
    for cmd in SUBCOMMANDS:
        assert cmd in text


def test_console_script_entry_point_runs():
    out = aet_cli("--version")
    assert out.stdout.startswith("aet ")


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A small simulated experiment through preprocess → reconstruct → trace → classify →
    cleanup → refine, every step a subprocess on the previous step's files."""
    d = tmp_path_factory.mktemp("cli")
    bench = aet.simulate.fept_benchmark("small", seed=3, n_angles=11, shape=(56, 56),
                                        particle_diameter_A=12.0)
    mrc, tlt = write_mrc_and_tlt(bench.tilt_series, d)
    bench.truth.write(d / "truth.csv")
    runs = {}
    runs["info"] = aet_cli("info", mrc, "--angles", tlt, "--frames-per-angle", 2, cwd=d)
    runs["preprocess"] = aet_cli("preprocess", mrc, "aligned.zarr", "--angles", tlt,
                                 "--frames-per-angle", 2,
                                 "--steps", "register,background,align", cwd=d)
    aet_cli("preprocess", "aligned.zarr", "denoised.zarr", "--steps", "denoise", cwd=d)
    runs["reconstruct"] = aet_cli("reconstruct", "denoised.zarr", "volume.zarr", "--method",
                                  "resire", "--iterations", 60, cwd=d)
    runs["trace"] = aet_cli("trace", "volume.zarr", "traced.csv", cwd=d)
    runs["classify"] = aet_cli("classify", "traced.csv", "volume.zarr", "classified.csv",
                               "--species", "Fe,Pt", cwd=d)
    runs["cleanup"] = aet_cli("cleanup", "classified.csv", "cleaned.csv", "--volume",
                              "volume.zarr", cwd=d)
    runs["refine"] = aet_cli("refine", "cleaned.csv", "aligned.zarr", "refined.csv",
                             "--refine-alignment", "shifts", "--add-remove",
                             "--tilts-output", "refined_tilts.zarr", cwd=d)
    return d, bench, runs


def test_info_on_mrc_prints_a_summary_not_values(chain):
    d, bench, runs = chain
    out = runs["info"].stdout
    assert "raw.mrc: MRC/CCP4 (mrcfile)" in out
    assert "<aet.TiltSeries {'angle': 11, 'frame': 2, 'y': 56, 'x': 56} float32>" in out
    assert f"angles from: {d / 'raw.tlt'}" in out and "pixel_size_A: 0.35" in out
    assert "values min" in out and "array(" not in out and len(out.splitlines()) < 12


def test_info_into_a_closed_pipe_exits_quietly(chain):
    """``aet info x | head``: the reader may go before aet has written everything."""
    d, _, _ = chain
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write
    try:
        proc = subprocess.run([sys.executable, "-m", "aet.cli", "info", "traced.csv"],
                              stdout=w, stderr=subprocess.PIPE, text=True, cwd=d,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    finally:
        os.close(w)
    assert proc.returncode == 0, proc.stderr
    assert "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr


def test_preprocess_and_reconstruct_outputs(chain):
    d, bench, runs = chain
    al = aet.open(d / "aligned.zarr")
    assert al.dims == ("angle", "y", "x") and al.pixel_size_A == pytest.approx(0.35)
    np.testing.assert_allclose(al.angles, np.round(bench.tilt_series.angles, 2))
    ops = [r["op"] for r in al.provenance]
    assert ops[-3:] == ["register_frames", "remove_background", "align"]
    assert [r["op"] for r in aet.open(d / "denoised.zarr").provenance][-1] == "denoise"
    vol = aet.open(d / "volume.zarr")
    assert vol.dims == ("z", "y", "x") and vol.voxel_size_A == pytest.approx(0.35)
    rec = vol.provenance[-1]
    assert rec["op"] == "reconstruct" and rec["params"]["n_iter"] == 60  # --iterations


def test_chain_finds_the_atoms(chain):
    """Measured (seed 3, 63 atoms): classified recall 0.984 / precision 0.912 / 29.5 pm;
    cleaned 0.937 / 0.967; refined (atoms added back from the residual) 1.000 / 1.000 /
    15.3 pm, species 1.000."""
    d, bench, runs = chain
    from aet.simulate import score

    s = {n: score(aet.open(d / f"{n}.csv"), bench.truth) for n in ("classified", "cleaned",
                                                                   "refined")}
    assert s["cleaned"].precision > s["classified"].precision
    assert s["refined"].recall >= 0.95 and s["refined"].precision >= 0.95
    assert s["refined"].species_accuracy >= 0.95
    assert s["refined"].rmsd_pm < s["classified"].rmsd_pm - 5
    assert re.search(r"removed \d+ of \d+ atoms \(fewer than 3 neighbours within [\d.]+ Å; "
                     r"\d+ in peak groups at the volume faces\)", runs["cleanup"].stdout)
    refined = aet.open(d / "refined.csv")
    rec = next(r for r in reversed(refined.provenance) if r["op"] == "refine")
    assert rec["params"]["refine_alignment"] == ["shifts"] and rec["params"]["add_remove"]
    # the fitted alignment went into the written series, by the recorded update
    before, after = aet.open(d / "aligned.zarr"), aet.open(d / "refined_tilts.zarr")
    assert after.provenance[-1]["op"] == "apply_geometry"
    g0, g1 = before.geometry, after.geometry
    d_shift = g1.shifts_A - (0.0 if g0.shifts_A is None else g0.shifts_A)
    np.testing.assert_allclose(d_shift, np.c_[rec["result"]["shift_x_A"],
                                              rec["result"]["shift_y_A"]], atol=1e-9)
    # plain CSV, provenance beside it
    df = pd.read_csv(d / "refined.csv")
    assert df.shape[0] == refined.n_atoms and list(df.columns[:4]) == ["x_A", "y_A", "z_A",
                                                                      "species"]


def test_run_takes_the_users_files_to_a_model_and_a_report(chain):
    """``aet run`` (aet.run) on the MRC + .tlt pair as acquisition software leaves it: every
    stage on its own, species given heavy first. Measured (seed 3, 63 atoms): recall 1.000,
    precision 1.000, 13.6 pm, species 1.000."""
    d, bench, _ = chain
    (d / "runout").mkdir()
    (d / "runout" / "my_notes.txt").write_text("mine")
    args = ("run", "raw.mrc", "--angles", "raw.tlt", "--frames-per-angle", 2, "--species",
            "Pt,Fe", "--out", "runout", "--no-progress")
    r = aet_cli(*args, cwd=d, check=False)
    assert r.returncode == 1 and "pass --overwrite" in r.stderr  # a folder with the user's file
    r = aet_cli(*args, "--overwrite", cwd=d)
    assert "aet: warning: aet.run: species were given as ['Pt', 'Fe']" in r.stderr
    assert (d / "runout" / "my_notes.txt").read_text() == "mine"
    for name in ("model.csv", "model.csv-metadata.json", "model.xyz", "model.cif",
                 "model.zarr", "volume.zarr", "tilt_series.zarr", "decisions.json",
                 "provenance.json", "report.html", "summary.txt"):
        assert (d / "runout" / name).exists(), name
    from aet.simulate import score

    model = aet.open(d / "runout" / "model.zarr")
    s = score(model, bench.truth)
    assert s.recall >= 0.95 and s.precision >= 0.95 and s.species_accuracy >= 0.95
    assert s.rmsd_pm < 25.0
    assert "uncertainty" in model  # per-atom 1σ (Å)
    dec = json.loads((d / "runout" / "decisions.json").read_text())
    assert dec["species"] == ["Fe", "Pt"] and dec["frames_registered"] == 2
    assert abs(dec["tilt_axis_rotation_deg"] - bench.alignment.attrs[
        "tilt_axis_rotation_deg"]) < 1.0
    assert pd.read_csv(d / "runout" / "model.csv").shape[0] == model.n_atoms
    r = aet_cli("run", "raw.mrc", "--angles", "raw.tlt", "--species", "Fe,Unobtainium",
                "--out", "other", cwd=d, check=False)
    assert r.returncode == 1 and "unknown element symbol(s) ['Unobtainium']" in r.stderr


def test_analyze_writes_order_and_strain(chain, tmp_path):
    d, bench, _ = chain
    out = tmp_path / "analysis"
    aet_cli("analyze", d / "refined.csv", out, "--order", "L10", "--strain")
    from aet.io.netcdf import read_dataset

    order = read_dataset(out / "order_L10.nc")
    assert np.asarray(order.attrs["crystal_axes"]).shape == (1, 3, 3)
    strain = read_dataset(out / "strain.nc")
    summary = json.loads((out / "summary.json").read_text())
    # an L1₀ particle is measured against the L1₀ lattice (not cubic fcc)
    assert strain.attrs["structure"] == summary["strain"]["structure"] == "L10"
    assert summary["order"]["ordered_fraction"] > 0.5
    assert summary["n_atoms"] == aet.open(d / "refined.csv").n_atoms


def test_export_dft_and_atom_formats(chain, tmp_path):
    d, _, _ = chain
    aet_cli("export", d / "refined.csv", tmp_path / "qe", "--format", "qe", "--preset", "scf",
            "--radius", 5)
    man = json.loads((tmp_path / "qe" / "manifest.json").read_text())
    assert [c["name"] for c in man["calculations"]] == ["qe/00_scf_collinear"]
    start = man["calculations"][0]["settings"]["starting_magnetization"]
    assert start["Fe"] == pytest.approx(3.0 / 16) and all(-1 <= v <= 1 for v in start.values())
    aet_cli("export", d / "refined.csv", tmp_path / "m.xyz", "--format", "xyz")
    assert aet.open(tmp_path / "m.xyz").n_atoms == aet.open(d / "refined.csv").n_atoms


def test_track_writes_nuclei_and_events(tmp_path):
    from aet.testing.dynamics import synthetic_series

    nuc = [{"A": [((0, 0, 0), 4.5)], "B": [((11, 0, 7), 4.0)]},
           {"A": [((0, 0, 0), 6.0)]},
           {"A": [((0, 0, 0), 6.0)], "C": [((-9, -7, 9), 4.0)]}]
    models, _ = synthetic_series(nuc, radius_A=18.0, seed=2, rotations_deg=[0, 6, 3])
    paths = [m.write(tmp_path / f"t{k}.csv") for k, m in enumerate(models)]
    out = tmp_path / "tracked"
    r = aet_cli("track", *paths, "--times", 9, 16, 26, "--output", out)
    events = pd.read_csv(out / "events.csv")
    assert sorted(events["event"]) == ["birth", "dissolution", "growth"]  # as planted
    nuclei = pd.read_csv(out / "nuclei.csv")
    assert nuclei.groupby("time_index").size().tolist() == [2, 1, 2]
    assert json.loads((out / "summary.json").read_text())["events"]["birth"] == 1
    import ase.io

    frames = ase.io.read(out / "tracked.xyz", index=":")
    assert len(frames) == 3 and "growth: 1" in r.stdout


def test_demo_refuses_a_folder_with_user_files_before_running(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "my_notes.txt").write_text("keep me")
    r = aet_cli("demo", "--out", out, check=False)
    assert r.returncode == 1
    assert r.stderr.startswith("aet demo: error: output folder")
    assert "pass --overwrite" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["my_notes.txt"]
    (out / "model.csv").write_text("the user's own model")
    r = aet_cli("demo", "--out", out, "--overwrite", check=False)
    assert r.returncode == 1 and "holds model.csv, which aet did not write" in r.stderr
    assert (out / "model.csv").read_text() == "the user's own model"


# --------------------------------------------------------------------------- errors
def _volume(tmp_path):
    vol = aet.Volume(np.random.default_rng(0).random((24, 24, 24)).astype(np.float32),
                     voxel_size_A=0.4)
    return vol.save(tmp_path / "v.zarr")


def test_info_prints_metadata(tmp_path, capsys):
    assert main(["info", str(_volume(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "aet.Volume" in out and "voxel_size_A: 0.4" in out and "values min" in out


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.mrc")]) == 1
    assert capsys.readouterr().err.startswith("aet info: error: No such file or folder")


def test_unknown_format_lists_supported(tmp_path, capsys):
    f = tmp_path / "x.foo"
    f.write_text("hello")
    assert main(["info", str(f)]) == 1
    assert "supported formats" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-0.3", "nan", "abc"])
def test_nonpositive_pixel_size_is_rejected(tmp_path, capsys, value):
    with pytest.raises(SystemExit) as exc:
        main(["info", str(_volume(tmp_path)), "--pixel-size", value])
    assert exc.value.code == 2
    assert "--pixel-size must be" in capsys.readouterr().err


def test_errors_speak_the_command_line(tmp_path, capsys):
    with mrcfile.new(tmp_path / "s.mrc") as m:  # no calibration, no angles
        m.set_data(np.zeros((11, 8, 8), np.float32))
        m.set_image_stack()
        m.voxel_size = 0
    (tmp_path / "s.tlt").write_text("".join(f"{a}\n" for a in range(-50, 60, 10)))
    assert main(["info", str(tmp_path / "s.mrc")]) == 1
    err = capsys.readouterr().err
    assert "pass --pixel-size <Å per pixel>" in err and "pixel_size_A=" not in err
    (tmp_path / "s.tlt").unlink()
    assert main(["info", str(tmp_path / "s.mrc")]) == 1
    err = capsys.readouterr().err
    assert "--angles (a file or a comma-separated list, degrees)" in err
    assert "--kind volume" in err and "kind='volume'" not in err
    assert cli_words("create it first (e.g. os.makedirs)") == "create it first (mkdir -p)"
    assert cli_words("pass n_iter=5 or overwrite=True") == "pass --iterations=5 or --overwrite"


def test_existing_output_is_refused_without_overwrite(tmp_path, capsys):
    vol = _volume(tmp_path)
    out = tmp_path / "traced.csv"
    out.write_text("the user's file")
    assert main(["trace", str(vol), str(out)]) == 1
    assert "exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert out.read_text() == "the user's file"
    assert main(["trace", str(vol), str(out), "--overwrite"]) == 0
    assert out.read_text().startswith("x_A,y_A,z_A,species")


def test_outputs_are_checked_before_any_work(tmp_path, capsys, monkeypatch):
    ts = aet.TiltSeries(np.ones((3, 8, 8), np.float32), angles=[-30, 0, 30], pixel_size_A=0.5)
    src = ts.save(tmp_path / "ts.zarr")

    def must_not_run(*a, **k):
        raise AssertionError("computed before checking the output")

    monkeypatch.setattr(aet.TiltSeries, "reconstruct", must_not_run)
    assert main(["reconstruct", str(src), str(tmp_path / "v.csv")]) == 1
    err = capsys.readouterr().err
    assert "cannot write a volume to" in err and "unsupported extension '.csv'" in err
    (tmp_path / "v.mrc").write_text("x")
    assert main(["reconstruct", str(src), str(tmp_path / "v.mrc")]) == 1
    assert "pass --overwrite" in capsys.readouterr().err
    assert main(["reconstruct", str(src), str(tmp_path / "no" / "v.mrc")]) == 1
    assert "mkdir -p" in capsys.readouterr().err
    assert main(["preprocess", str(src), str(tmp_path / "p.zarr"), "--steps", "align,blur"]) == 1
    assert "--steps: unknown step(s) ['blur']" in capsys.readouterr().err
    assert main(["reconstruct", str(src), str(tmp_path / "w.zarr"), "--method", "wbp",
                 "--iterations", "5"]) == 1
    assert "--iterations does not apply to --method wbp" in capsys.readouterr().err


def test_bugs_show_tracebacks_input_errors_do_not(tmp_path, capsys, monkeypatch):
    vol = _volume(tmp_path)

    def bug(self, **kw):  # a TypeError from a wrong call inside aet: a bug, not input
        return {}["missing"]

    monkeypatch.setattr(aet.Volume, "trace_atoms", bug)
    with pytest.raises(KeyError):
        main(["trace", str(vol), str(tmp_path / "t.csv")])

    def lib_value_error(self, **kw):  # a library's ValueError: how aet called it is the bug
        return np.reshape(np.arange(3), (2, 2))

    monkeypatch.setattr(aet.Volume, "trace_atoms", lib_value_error)
    with pytest.raises(ValueError, match="cannot reshape"):
        main(["trace", str(vol), str(tmp_path / "t.csv")])

    def input_error(self, **kw):  # aet's own check of the user's input: one line
        from aet.atoms._common import check_positive

        return check_positive("min_distance_A", -1.0)

    monkeypatch.setattr(aet.Volume, "trace_atoms", input_error)
    assert main(["trace", str(vol), str(tmp_path / "t.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("aet trace: error: --min-distance") and "Traceback" not in err
    with pytest.raises(ValueError):
        main(["--traceback", "trace", str(vol), str(tmp_path / "t.csv")])


def test_radians_warning_reaches_the_shell(tmp_path, capsys):
    ts = aet.TiltSeries(np.ones((12, 8, 8), np.float32), angles=np.linspace(-60, 60, 12),
                        pixel_size_A=0.5)
    src = ts.save(tmp_path / "ts.zarr")
    rad = ",".join(f"{v:.4f}" for v in np.radians(np.linspace(-60, 60, 12)))
    assert main(["info", str(src), "--angles", rad]) == 0
    err = capsys.readouterr().err
    assert err.startswith("aet: warning: the comma-separated angles: all 12 tilt angles lie "
                          "within ±1.05")


# --------------------------------------------------------------------------- fresh install
README_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def readme_commands() -> list[str]:
    """The set-up commands of the README's quick start, comments stripped."""
    block = README_BLOCK.search((ROOT / "README.md").read_text()).group(1)
    return [ln.split("#", 1)[0].strip() for ln in block.splitlines() if ln.strip()]


def test_readme_quick_start_is_two_commands_in_a_venv():
    cmds = readme_commands()
    assert cmds == ['pip install . && aet demo', 'pip install -e ".[test]" && pytest']
    text = (ROOT / "README.md").read_text()
    assert "python -m venv" in text  # the quick start says to make a virtual environment


def test_packaging_takes_only_aet_and_declares_what_aet_imports(tmp_path):
    """``aet demo`` writes aet-demo-output/ into the checkout; ``pip install .`` must not
    package it (``include = ["aet*"]`` did). Dependencies aet imports are declared; the
    licence file matches pyproject."""
    import tomllib

    from setuptools import find_namespace_packages

    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = cfg["tool"]["setuptools"]["packages"]["find"]["include"]
    (tmp_path / "aet" / "io").mkdir(parents=True)
    (tmp_path / "aet-demo-output" / "figures").mkdir(parents=True)
    (tmp_path / "aet_notes").mkdir()
    assert sorted(find_namespace_packages(str(tmp_path), include=include)) == ["aet", "aet.io"]
    deps = " ".join(cfg["project"]["dependencies"])
    for name in ("networkx", "netCDF4", "numba", "xarray"):
        assert name in deps, name
    assert "distributed" not in deps  # an extra: aet never imports it
    assert cfg["project"]["optional-dependencies"]["distributed"] == ["distributed>=2025.1"]
    assert cfg["project"]["license"] == {"text": "BSD-3-Clause"}
    assert (ROOT / "LICENSE").read_text().startswith("BSD 3-Clause License")


@pytest.mark.slow
def test_fresh_install_readme_and_every_subcommand(tmp_path):
    """A fresh virtual environment, the README's two commands in sequence, then ``aet demo``,
    ``python -c "import aet; aet.TiltSeries"`` and every subcommand on the demo's outputs and
    on an MRC + .tlt pair; all exit 0 and the results are checked against the ground truth.

    The venv sees the already-installed third-party packages (``--system-site-packages``) so
    that no download is needed; aet itself is installed into it, which is what the README
    does. ``AET_README_PYTEST_ARGS`` (e.g. ``tests/test_cli.py -x``) narrows the test suite
    that the README's second command runs (default: the whole default suite, as written).
    """
    src = tmp_path / "aet-src"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in files:
        p = ROOT / rel
        if p.is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(p.read_bytes())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
                   check=True)
    bindir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update({"PATH": f"{bindir}{os.pathsep}{env['PATH']}", "VIRTUAL_ENV": str(venv),
                "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    shared = Path(os.environ.get("AET_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if shared.is_dir():
        env["AET_SHARED_DATA"] = str(shared)

    def sh(cmd, cwd=src, timeout=3600):
        r = subprocess.run(cmd, shell=True, cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=timeout)
        assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout[-4000:]}\n" \
                                  f"{r.stderr[-4000:]}"
        return r

    first, second = readme_commands()
    sh(first.replace("aet demo", "aet demo --no-progress"))
    pytest_args = os.environ.get("AET_README_PYTEST_ARGS")
    if pytest_args:
        second = second.replace("&& pytest", f"&& pytest {pytest_args}")
    sh(second)
    # what the issue saw break after the two commands: importing aet, and the demo again
    sh('python -c "import aet; aet.TiltSeries; print(aet.__file__)"', cwd=tmp_path)
    demo_out = src / "aet-demo-output"
    r = subprocess.run("aet demo --no-progress", shell=True, cwd=src, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 1 and "pass --overwrite" in r.stderr  # the folder from command 1
    (demo_out / "my_notes.txt").write_text("mine")
    r = sh("aet demo --no-progress --overwrite")
    assert "refined" in r.stdout and (demo_out / "my_notes.txt").read_text() == "mine"
    table = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.strip()}
    assert float(table["refined"][3]) >= 0.98  # precision, as tests/test_pipeline.py

    # every subcommand on the demo's outputs
    w = tmp_path / "work"
    w.mkdir()
    sh(f"aet info {demo_out / 'volume.zarr'}", cwd=w)
    sh(f"aet info {demo_out / 'model.csv'}", cwd=w)
    sh(f"aet trace {demo_out / 'volume.zarr'} traced_demo.csv", cwd=w)
    sh(f"aet classify traced_demo.csv {demo_out / 'volume.zarr'} classified_demo.csv "
       f"--species Fe Pt", cwd=w)
    sh("aet cleanup classified_demo.csv cleaned_demo.csv", cwd=w)
    sh(f"aet analyze {demo_out / 'model.csv'} analysis --strain", cwd=w)
    assert json.loads((w / "analysis" / "summary.json").read_text())["strain"][
        "structure"] == "L10"
    sh(f"aet export {demo_out / 'model.csv'} dft --format vasp --preset scf", cwd=w)
    assert (w / "dft" / "manifest.json").is_file()

    # the demo's experiment as a user's files: MRC + .tlt, then the demo's chain by hand
    bench = aet.simulate.fept_benchmark("small", seed=0)
    write_mrc_and_tlt(bench.tilt_series, w)
    bench.truth.write(w / "truth.csv")
    sh("aet info raw.mrc --frames-per-angle 2 | head -n 3", cwd=w)
    sh("aet preprocess raw.mrc aligned.zarr --frames-per-angle 2 "
       "--steps register,background,align", cwd=w)
    sh("aet preprocess aligned.zarr denoised.zarr --steps denoise", cwd=w)
    sh("aet reconstruct denoised.zarr volume.zarr --method resire --iterations 100", cwd=w)
    sh("aet trace volume.zarr traced.csv", cwd=w)
    sh("aet classify traced.csv volume.zarr classified.csv --species Fe Pt", cwd=w)
    sh("aet cleanup classified.csv cleaned.csv --volume volume.zarr", cwd=w)
    sh("aet refine cleaned.csv aligned.zarr refined.csv --refine-alignment shifts,angles "
       "--add-remove", cwd=w)
    from aet.simulate import score

    s = score(aet.open(w / "refined.csv"), bench.truth)
    # measured: 225 of 225, precision 1.000, 20.6 pm, species 1.000 (the demo's numbers)
    assert s.recall >= 0.98 and s.precision >= 0.98 and s.species_accuracy >= 0.98
    assert s.rmsd_pm < 25.0
    from aet.testing.dynamics import synthetic_series

    nuc = [{"A": [((0, 0, 0), 4.5)]}, {"A": [((0, 0, 0), 6.0)]}]
    for k, m in enumerate(synthetic_series(nuc, radius_A=14.0, seed=1)[0]):
        m.write(w / f"t{k}.csv")
    sh("aet track t0.csv t1.csv --times 9 16 --output tracked", cwd=w)
    assert pd.read_csv(w / "tracked" / "events.csv")["event"].tolist() == ["growth"]
