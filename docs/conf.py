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
# Maths is rendered to MathML at build time (latex2mathml, a pure-Python converter, see
# _mathml below) and drawn by the browser itself: no MathJax or KaTeX script, no CDN, so the
# built docs read offline. Chromium ≥ 109, Firefox and Safari render MathML Core natively.
html_math_renderer = "mathml"
suppress_warnings = ["autosummary.import_cycle"]


def _figures(app):
    from make_figures import conventions_figure

    conventions_figure(HERE / "_static" / "conventions.png")


def _mathml(latex: str, *, block: bool) -> str:
    from latex2mathml.converter import convert

    out = convert(latex.strip(), display="block" if block else "inline")
    # the namespace attribute is redundant in HTML5 (and it is the only URL on the page)
    return out.replace(' xmlns="http://www.w3.org/1998/Math/MathML"', "")


def _visit_math(self, node):
    from docutils import nodes

    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate"))
    self.body.append(_mathml(node.astext(), block=False) + "</span>")
    raise nodes.SkipNode


def _visit_displaymath(self, node):
    from docutils import nodes
    from sphinx.util.math import get_node_equation_number

    self.body.append(self.starttag(node, "div", CLASS="math notranslate"))
    if node.get("number"):
        self.body.append(f'<span class="eqno">({get_node_equation_number(self, node)})')
        self.add_permalink_ref(node, "Link to this equation")
        self.body.append("</span>")
    for part in (p for p in node.astext().split("\n\n") if p.strip()):
        self.body.append(_mathml(part, block=True))
    self.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app):
    app.add_html_math_renderer("mathml", inline_renderers=(_visit_math, None),
                               block_renderers=(_visit_displaymath, None))
    app.connect("builder-inited", _figures)
