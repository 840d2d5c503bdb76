"""Sphinx configuration for the aet documentation (built with -W in the test suite)."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# _static holds only build-time figures (not committed): make sure it exists in a clean clone
(HERE / "_static").mkdir(exist_ok=True)
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import aet  # noqa: E402

project = "aet"
author = "aet developers"
copyright = "2026, aet developers"
release = aet.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
]
autosummary_generate = True
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()
numpydoc_xref_param_type = False
templates_path: list[str] = []
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
nitpicky = False
suppress_warnings = ["autosummary.import_cycle"]


def _figures(app):
    from make_figures import conventions_figure

    conventions_figure(HERE / "_static" / "conventions.png")


def setup(app):
    app.connect("builder-inited", _figures)
