"""aet — atomic electron tomography in Python.

From ADF-STEM tilt series to the 3D position and species of every atom, and on to strain,
chemical order, DFT inputs and 4D nucleation dynamics. Conventions: lengths in Å, angles in
degrees, volumes ``(z, y, x)`` centred at index ``n // 2``, the tilt axis along y, Euler angles
ZYZ active (see the conventions page of the docs).
"""

from __future__ import annotations

import importlib

from ._version import __version__
from .io import open, save
from .model.atomicmodel import AtomicModel
from .model.tiltseries import TiltSeries
from .model.volume import Volume

__all__ = ["AtomicModel", "NucleusTracker", "RunResult", "TiltSeries", "Volume", "__version__",
           "open", "run", "save"]

_SUBMODULES = {"analysis", "atoms", "dynamics", "export", "io", "plot", "preprocess", "report",
               "reconstruct", "simulate", "testing", "cli", "errors"}


def __getattr__(name: str):
    # submodules and heavier classes are imported on first use (nothing heavy at import time)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in ("run", "RunResult"):
        from . import workflow

        return getattr(workflow, name)
    if name == "NucleusTracker":
        from .model.tracker import NucleusTracker

        return NucleusTracker
    raise AttributeError(f"module 'aet' has no attribute {name!r}")
