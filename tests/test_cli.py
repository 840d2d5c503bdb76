"""The command line: --help everywhere, clear errors with non-zero exit, atomic outputs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import aet
from aet.cli import build_parser, main

SUBCOMMANDS = ["demo", "info", "preprocess", "reconstruct", "trace", "classify", "refine",
               "analyze", "track", "export"]


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


def test_info_prints_metadata(tmp_path, capsys):
    vol = aet.Volume(np.zeros((4, 4, 4), np.float32), voxel_size_A=0.4)
    path = vol.save(tmp_path / "v.zarr")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "aet.Volume" in out and "voxel_size_A: 0.4" in out


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    rc = main(["info", str(tmp_path / "nope.mrc")])
    assert rc == 1
    err = capsys.readouterr().err
    assert err.startswith("aet info: error: No such file or folder")


def test_unknown_format_lists_supported(tmp_path, capsys):
    f = tmp_path / "x.foo"
    f.write_text("hello")
    assert main(["info", str(f)]) == 1
    assert "supported formats" in capsys.readouterr().err


def test_console_script_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "aet.cli", "--version"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0 and out.stdout.startswith("aet ")
