"""The main job (``aet demo``) end to end on the small simulated experiment: the numbers it
reaches against the ground truth and the folder it writes."""

import json

import numpy as np
import pytest

import aet
from aet.pipeline import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    return run_demo(size="small", out=out, seed=0, progress=False)


def test_demo_recovers_the_particle(demo):
    """Measured (seed 0, aet.run's defaults: RESIRE, no denoising): traced (non-atoms cut)
    recall 0.982 / precision 0.857 / 32.3 pm; after the neighbour clean-up 0.982 / 0.991;
    refined with the alignment and atoms added from the residual 0.996 / 1.000 / 20.4 pm,
    species 1.000."""
    traced, cleaned, refined = (demo.scores[k] for k in ("traced", "cleaned", "refined"))
    assert demo.n_true == 225
    assert refined.recall >= 0.98
    assert refined.precision >= 0.98
    assert cleaned.precision >= 0.95 > traced.precision
    assert refined.species_accuracy >= 0.98
    assert refined.rmsd_pm < traced.rmsd_pm - 8.0
    assert refined.rmsd_pm < 25.0


def test_demo_writes_a_complete_folder(demo):
    out = demo.out
    assert not any(p.name.startswith(".") for p in out.parent.iterdir())  # no temp left
    for name in ("model.csv", "model.xyz", "model.cif", "report.html", "summary.txt",
                 "provenance.json", "dft/manifest.json"):
        assert (out / name).is_file(), name
    figs = {p.stem for p in (out / "figures").glob("*.png")}
    assert {"projections", "alignment", "slices", "histogram", "rdf", "strain",
            "order"} <= figs
    vol = aet.open(out / "volume.zarr")
    assert vol.data.dims == ("z", "y", "x") and vol.voxel_size_A > 0
    model = aet.open(out / "model.csv")
    assert model.n_atoms == demo.scores["refined"].n_predicted
    assert set(np.unique(model.species)) <= {"Fe", "Pt"}
    prov = json.loads((out / "provenance.json").read_text())
    ops = [r["op"] for r in prov["model"]]
    assert ops.index("classify") < ops.index("cleanup") < ops.index("refine")
    assert "cleaned" in (out / "summary.txt").read_text()
