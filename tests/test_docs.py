"""The documentation builds without warnings (Sphinx -W) and its examples run as doctests."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    from sphinx.cmd.build import build_main

    rc = build_main(["-W", "--keep-going", "-q", "-b", "html", str(DOCS), str(tmp_path / "html")])
    assert rc == 0, "sphinx-build -W failed: see the warnings above"
    assert (tmp_path / "html" / "conventions.html").is_file()
    # maths as MathML in the page, read offline: no MathJax/KaTeX script, no CDN
    page = (tmp_path / "html" / "conventions.html").read_text(encoding="utf-8")
    assert page.count("<math") >= 2 and "<msub>" in page
    assert "mathjax" not in page.lower() and "katex" not in page.lower()
    assert not re.search(r"<script[^>]+src=[\"'](https?:)?//", page)


def _modules_with_examples() -> list[str]:
    """Every module of ``aet`` whose source holds a docstring example (found, not listed)."""
    import aet

    root = Path(aet.__file__).parent
    return sorted(
        "aet." + ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for p in root.rglob("*.py") if ">>> " in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("module", _modules_with_examples())
def test_docstring_examples(module):
    # the same examples CI runs with `pytest --doctest-modules aet`; here in the default run
    mod = importlib.import_module(module)
    failures, tried = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0
