"""NumPy ``.npy``/``.npz``: raw arrays; angles and pixel size come from arguments, the
``.npz`` keys ``angles``/``pixel_size_A``/``voxel_size_A``, or a sidecar file. ``.npz`` files
written by aet also hold ``aet_json`` (attrs and provenance as JSON text)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.schema import facade_class
from ..errors import CorruptFileError
from ._common import make_object, restore_provenance


def read(path: Path, *, kind=None, **metadata):
    file_angles, attrs, default, meta = None, {}, None, {}
    try:
        if path.suffix.lower() == ".npz":
            # open the file here: np.load leaks its handle when the zip is broken
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                keys = list(z.keys())
                names = [k for k in keys if z[k].ndim >= 2 and k != "angles"]
                if len(names) != 1:
                    raise CorruptFileError(
                        f"{str(path)!r} must hold exactly one ≥2D array (plus optional "
                        f"'angles', 'pixel_size_A'); found keys {keys}"
                    )
                arr = z[names[0]]
                if "angles" in keys:
                    file_angles = z["angles"]
                if "aet_json" in keys:  # attrs and provenance written by aet
                    meta = json.loads(str(z["aet_json"]))
                    attrs.update(meta.get("attrs") or {})
                for key in ("pixel_size_A", "voxel_size_A"):
                    if key in keys:
                        attrs["pixel_size_A"] = float(z[key])
                if "voxel_size_A" in keys and "angles" not in keys:
                    default = "volume"
        else:
            arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except CorruptFileError:
        raise
    except Exception as exc:  # numpy/zipfile/tokenize raise many types on a broken file
        raise CorruptFileError(f"{str(path)!r} is not a readable NumPy file: {exc}") from None
    arr = np.asarray(arr)
    obj = make_object(arr, path=path, fmt="numpy", kind=kind, metadata=metadata,
                      file_attrs=attrs, file_angles=file_angles, default_kind=default)
    return restore_provenance(obj, meta.get("provenance"))


def write(obj, path: Path) -> None:
    """``.npz`` keeps angles, pixel size, attrs and provenance; ``.npy`` only the array."""
    TiltSeries = facade_class("TiltSeries")
    from .tiff import _aet_meta

    arr = np.asarray(obj.data.values)
    if path.suffix.lower() == ".npy":
        with open(path, "wb") as fh:
            np.save(fh, arr)
        return
    extra = {}
    if isinstance(obj, TiltSeries):
        extra["angles"] = obj.euler_angles if not obj.is_single_axis else obj.angles
        extra["pixel_size_A"] = np.float64(obj.pixel_size_A)
    else:
        extra["voxel_size_A"] = np.float64(obj.voxel_size_A)
    meta = _aet_meta(obj)
    extra["aet_json"] = np.array(json.dumps({k: meta[k] for k in ("aet_class", "attrs",
                                                                  "provenance")}))
    with open(path, "wb") as fh:
        np.savez(fh, data=arr, **extra)
