"""Microscope formats through RosettaSciIO: Gatan DigitalMicrograph ``.dm3/.dm4``, FEI/Thermo
TIA ``.ser/.emi`` and Berkeley/Velox ``.emd``.

RosettaSciIO (``rsciio``, the reader library of the HyperSpy ecosystem) returns each signal as
a dict of ``data``, ``axes`` (in array order, each with ``scale``, ``offset``, ``units``,
``navigate``) and ``metadata``. aet takes the one image or image stack of the file (``signal=``
picks one when there are several):

- data ``(n, y, x)`` (navigation axis first) -> ``(angle, y, x)`` or a ``(z, y, x)`` volume;
  a single image ``(y, x)`` -> one projection;
- pixel size from the two signal axes: ``|scale|`` converted from their units (pm, Å, nm, µm,
  mm, m) to Å; axes without a length unit (``""``, ``"<undefined>"``, pixels) carry none;
- tilt angles from a navigation axis whose units are degrees (``offset + scale · i``);
- ``title``, the signal quantity (``units``) and ``source_format`` become attrs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, MetadataError
from ._common import make_object
from .tiff import unit_to_angstrom

_MODULES = {".dm3": "digitalmicrograph", ".dm4": "digitalmicrograph", ".ser": "tia",
            ".emi": "tia", ".emd": "emd"}
_DEGREES = ("°", "deg", "degree", "degrees", "º")


def _reader(path: Path):
    import importlib

    mod = _MODULES.get(path.suffix.lower())
    if mod is None:
        raise MetadataError(f"{str(path)!r}: no RosettaSciIO reader for {path.suffix!r}")
    return importlib.import_module(f"rsciio.{mod}").file_reader


def _is_image(sig) -> bool:
    data = sig.get("data")
    axes = sig.get("axes") or []
    sig_axes = [a for a in axes if not a.get("navigate", False)]
    return (hasattr(data, "ndim") and data.ndim in (2, 3) and len(sig_axes) >= 2
            and getattr(data, "dtype", np.dtype(object)).kind in "iuf")


def _describe(signals) -> str:
    out = []
    for i, s in enumerate(signals):
        d = s.get("data")
        title = (s.get("metadata") or {}).get("General", {}).get("title", "")
        out.append(f"[{i}] {title!r} shape {getattr(d, 'shape', '?')} "
                   f"dtype {getattr(d, 'dtype', '?')}")
    return "; ".join(out) or "no signals"


def pixel_size_from_axes(axes) -> float | None:
    """Pixel size in Å from the two signal axes of a RosettaSciIO signal (None if unknown)."""
    sig = [a for a in axes if not a.get("navigate", False)][-2:]
    if len(sig) != 2:
        return None
    sizes = []
    for a in sig:
        per = unit_to_angstrom(a.get("units"))
        scale = a.get("scale")
        if per is None or scale is None:
            return None
        v = abs(float(scale)) * per
        if not math.isfinite(v) or v <= 0:
            return None
        sizes.append(v)
    if not math.isclose(sizes[0], sizes[1], rel_tol=1e-5):
        return None  # non-square pixels: let the caller pass pixel_size_A
    return sizes[1]


def _angles_from_axes(axes, n):
    nav = [a for a in axes if a.get("navigate", False)]
    if len(nav) != 1:
        return None
    a = nav[0]
    units = str(a.get("units") or "").strip().lower()
    if units not in _DEGREES:
        return None
    return float(a.get("offset", 0.0)) + float(a.get("scale", 1.0)) * np.arange(n)


def read(path: Path, *, kind=None, signal: int | None = None, lazy: bool = False, **metadata):
    """Read the image (stack) of a DM3/DM4, SER/EMI or EMD file (see the module docstring).

    Parameters
    ----------
    signal : int, optional
        Index of the signal to take when the file holds several images.
    lazy : bool
        Ask RosettaSciIO for a dask-backed array (files stay open while it is used).
    """
    reader = _reader(path)
    try:
        signals = reader(str(path), lazy=lazy)
    except Exception as exc:  # each rsciio reader raises its own set of types
        raise CorruptFileError(f"{str(path)!r} could not be read by RosettaSciIO "
                               f"({reader.__module__}): {type(exc).__name__}: {exc}") from None
    if isinstance(signals, dict):
        signals = [signals]
    if signal is not None:
        if not isinstance(signal, int) or not 0 <= signal < len(signals):
            raise ValueError(f"signal={signal!r} is not an index of the {len(signals)} signals "
                             f"of {str(path)!r}: {_describe(signals)}")
        chosen = signals[signal]
        if not _is_image(chosen):
            raise MetadataError(f"signal {signal} of {str(path)!r} is not a grey-value image "
                                f"or image stack: {_describe([chosen])}")
    else:
        images = [s for s in signals if _is_image(s)]
        if len(images) != 1:
            what = "no grey-value image or image stack" if not images else \
                f"{len(images)} images"
            raise MetadataError(f"{str(path)!r} holds {what}: {_describe(signals)}; pass "
                                f"signal=<index> to choose one")
        chosen = images[0]
    data = chosen["data"]
    axes = chosen.get("axes") or []
    md = chosen.get("metadata") or {}
    attrs: dict = {"source_format": reader.__module__.split(".")[1]}
    title = md.get("General", {}).get("title")
    if isinstance(title, str) and title and title != "__unnamed__":
        attrs["title"] = title
    quantity = md.get("Signal", {}).get("quantity")
    if isinstance(quantity, str) and quantity:
        attrs["units"] = quantity
    px = pixel_size_from_axes(axes)
    if px is not None:
        attrs["pixel_size_A"] = px
    if not hasattr(data, "compute"):
        data = np.asarray(data)
    file_angles = _angles_from_axes(axes, data.shape[0]) if data.ndim == 3 else None
    return make_object(data, path=path, fmt=attrs["source_format"], kind=kind,
                       metadata=metadata, file_attrs=attrs, file_angles=file_angles)
