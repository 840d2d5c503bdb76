"""The docstring examples of aet.preprocess run (doctest)."""

from __future__ import annotations

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module", ["aet.preprocess.frames", "aet.preprocess.denoise"])
def test_docstring_examples(module):
    mod = importlib.import_module(module)
    failures, tried = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried > 0 and failures == 0
