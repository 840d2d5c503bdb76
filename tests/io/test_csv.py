"""model.csv is plain CSV (pandas.read_csv without options); attrs and provenance beside it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import aet
from aet.errors import CorruptFileError


def _model():
    rng = np.random.default_rng(0)
    m = aet.AtomicModel(rng.normal(0, 5, (7, 3)), ["Fe", "Pt"] * 3 + ["Fe"],
                        b_factor=rng.uniform(0.2, 0.6, 7), pixel_size_A=0.35)
    return m.with_arrays(label=np.arange(7))


def test_plain_csv_for_pandas_and_metadata_sidecar(tmp_path):
    m = _model()
    p = m.write(tmp_path / "model.csv")
    assert not p.read_text().startswith("#")
    df = pd.read_csv(p)
    assert list(df.columns[:4]) == ["x_A", "y_A", "z_A", "species"]
    np.testing.assert_array_equal(df[["x_A", "y_A", "z_A"]].to_numpy(), m.positions)
    assert df["species"].tolist() == m.species.tolist()
    np.testing.assert_array_equal(df["b_factor"].to_numpy(), m["b_factor"])
    side = json.loads((tmp_path / "model.csv-metadata.json").read_text())
    assert side["url"] == "model.csv"
    assert [c["name"] for c in side["tableSchema"]["columns"]][:4] == ["x_A", "y_A", "z_A",
                                                                      "species"]
    assert side["tableSchema"]["columns"][0]["aet:units"] == "Å"
    assert side["aet:attrs"]["pixel_size_A"] == 0.35
    assert [r["op"] for r in side["aet:provenance"]] == [r["op"] for r in m.provenance]
    back = aet.open(p)
    assert back.attrs["pixel_size_A"] == 0.35
    assert [r["op"] for r in back.provenance][:-1] == [r["op"] for r in m.provenance]
    np.testing.assert_array_equal(back["label"], np.arange(7))


def test_csv_without_sidecar_and_legacy_comment_lines(tmp_path):
    m = _model()
    p = m.write(tmp_path / "model.csv")
    (tmp_path / "model.csv-metadata.json").unlink()
    np.testing.assert_array_equal(aet.open(p).positions, m.positions)
    legacy = tmp_path / "old.csv"
    legacy.write_text('# pixel_size_A: 0.5\n# provenance: [{"op": "trace_atoms", "params": {}}]\n'
                      + p.read_text())
    old = aet.open(legacy)
    assert old.attrs["pixel_size_A"] == 0.5 and old.provenance[0]["op"] == "trace_atoms"
    # a sidecar naming another table is not applied; a broken one is reported
    (tmp_path / "old.csv-metadata.json").write_text(json.dumps({"url": "other.csv",
                                                                "aet:attrs": {"x": 1}}))
    assert "x" not in aet.open(legacy).attrs
    (tmp_path / "old.csv-metadata.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match=r"old\.csv-metadata\.json.*is not JSON"):
        aet.open(legacy)


def test_overwrite_false_covers_the_sidecar(tmp_path):
    m = _model()
    (tmp_path / "model.csv-metadata.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"model\.csv-metadata\.json.*exists"):
        m.write(tmp_path / "model.csv", overwrite=False)
    assert not (tmp_path / "model.csv").exists()
