"""The layering holds (``.importlinter``, docs/conventions.rst "Layers"), in the default run too.

CI runs ``lint-imports`` as its own step; this test runs the same contracts so that a local
``pytest`` catches a core module importing a facade, a kernel importing the package or a new
import cycle before CI does.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    pytest.importorskip("importlinter")  # the `test` extra installs it
    from importlinter.cli import lint_imports

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = lint_imports(config_filename=str(ROOT / ".importlinter"), no_cache=True,
                          no_logo=True)
    assert rc == 0, out.getvalue()[-4000:]
    assert out.getvalue().count(" KEPT") == 5
