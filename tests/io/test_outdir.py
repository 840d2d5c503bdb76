"""Output folders keep the user's files: refuse without overwrite, replace only what aet wrote."""

from __future__ import annotations

import json

import pytest

from aet.io._outdir import MANIFEST, OutputExistsError, check_output_folder, output_folder


def _run(out, files, **kw):
    with output_folder(out, **kw) as tmp:
        for name, text in files.items():
            p = tmp / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)


def test_new_folder_then_refuse_then_replace_only_own_entries(tmp_path):
    out = tmp_path / "a" / "results"  # missing parents are created
    _run(out, {"model.csv": "1", "figures/f.png": "png", "old.txt": "x"})
    assert json.loads((out / MANIFEST).read_text())["entries"] == ["figures", "model.csv",
                                                                   "old.txt"]
    (out / "my_notes.txt").write_text("mine")
    (out / "figures" / "my_plot.png").write_text("mine too")  # inside an aet entry
    with pytest.raises(OutputExistsError, match=r"exists and is not empty .*pass "
                                                r"overwrite=True"):
        _run(out, {"model.csv": "2"})
    assert (out / "model.csv").read_text() == "1"
    _run(out, {"model.csv": "2", "figures/g.png": "png2"}, overwrite=True)
    assert (out / "model.csv").read_text() == "2"
    assert (out / "my_notes.txt").read_text() == "mine"  # the user's file stays
    assert not (out / "old.txt").exists()  # aet's stale output goes
    assert sorted(p.name for p in (out / "figures").iterdir()) == ["g.png"]  # aet's folder
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_user_file_with_an_output_name_is_never_replaced(tmp_path):
    out = tmp_path / "res"
    out.mkdir()
    (out / "model.csv").write_text("the user's model")
    with pytest.raises(OutputExistsError, match=r"holds model\.csv, which aet did not write"):
        check_output_folder(out, overwrite=True, names=["model.csv"])
    with pytest.raises(OutputExistsError, match="which aet did not write"):
        _run(out, {"model.csv": "aet"}, overwrite=True)
    assert (out / "model.csv").read_text() == "the user's model"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_empty_folder_is_used_and_a_file_is_refused(tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    _run(out, {"a.txt": "1"})
    assert (out / "a.txt").read_text() == "1"
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputExistsError, match="is not a folder"):
        _run(f, {"a.txt": "1"}, overwrite=True)


def test_error_inside_leaves_the_folder_as_it_was(tmp_path):
    out = tmp_path / "res"
    _run(out, {"model.csv": "1"})
    with pytest.raises(RuntimeError), output_folder(out, overwrite=True) as tmp:
        (tmp / "model.csv").write_text("half")
        raise RuntimeError("crash")
    assert (out / "model.csv").read_text() == "1"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
