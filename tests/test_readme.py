"""The README's Python snippet runs as a user would run it: copied from README.md, executed in
a folder holding a tilt series as acquisition software leaves it (an MRC stack of frames and an
IMOD .tlt), and both of its routes — ``aet.run`` and the stage-by-stage chain — recover the
simulated particle."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

import aet
from tests.test_cli import write_mrc_and_tlt

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_snippet() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "the README should hold exactly one Python snippet"
    return blocks[0]


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    bench = aet.simulate.fept_benchmark("small", seed=0)
    write_mrc_and_tlt(bench.tilt_series, folder, stem="tilts")
    namespace: dict = {}
    with contextlib.chdir(folder):
        exec(compile(readme_snippet(), str(README), "exec"), namespace)
    return bench, namespace, folder


def test_the_snippet_is_aet_run_and_the_stage_chain():
    code = readme_snippet()
    assert "aet.run(" in code
    assert ".register_frames().align()" in code and ".reconstruct(" in code
    assert "remove_background()" not in code.split("#")[0]  # the chain does not need it
    # the chain judges its refinement on pixels its reconstruction never saw, as aet.run does
    assert "exclude_pixels=held" in code and "holdout_mask=held" in code
    # and drops the peaks at the faces of the box, as aet.run does for a particle
    assert "box_A=vol.box_A" in code


def test_both_routes_recover_the_particle(readme_run):
    """Measured (small benchmark, seed 0, 225 atoms): see the printed figures."""
    bench, ns, _ = readme_run
    run_score = bench.score(ns["result"].model)
    chain_score = bench.score(ns["model"])
    print("aet.run:", run_score.recall, run_score.precision, run_score.rmsd_pm,
          run_score.species_accuracy)
    print("chain:  ", chain_score.recall, chain_score.precision, chain_score.rmsd_pm,
          chain_score.species_accuracy)
    for s in (run_score, chain_score):
        assert s.recall >= 0.98 and s.precision >= 0.98
        assert s.species_accuracy >= 0.98
        assert s.rmsd_pm < 25.0


def test_the_snippet_writes_what_it_says(readme_run):
    _, ns, folder = readme_run
    assert aet.open(folder / "model.csv").n_atoms == ns["result"].model.n_atoms
    for name in ("report.html", "decisions.json", "volume.zarr", "model.csv"):
        assert (folder / "run-output" / name).exists(), name
    assert (folder / "dft" / "manifest.json").is_file()
