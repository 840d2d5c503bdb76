"""The examples in the aet.simulate docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["aet.simulate.forward", "aet.simulate.structures",
                                    "aet.simulate.scoring", "aet.simulate.benchmark",
                                    "aet.simulate.nucleation"])
def test_docstring_examples(module):
    mod = importlib.import_module(module)
    failures, tried = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0
