"""NumPy ``.npy``/``.npz``: raw arrays; angles and pixel size come from arguments, the
``.npz`` keys ``angles``/``pixel_size_A``, or a sidecar file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import CorruptFileError
from ._common import make_object


def read(path: Path, *, kind=None, **metadata):
    file_angles, attrs, default = None, {}, None
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
    return make_object(arr, path=path, fmt="numpy", kind=kind, metadata=metadata,
                       file_attrs=attrs, file_angles=file_angles, default_kind=default)


def write(obj, path: Path) -> None:
    """``.npz`` keeps angles and pixel size; ``.npy`` keeps only the array."""
    from ..model.tiltseries import TiltSeries

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
    with open(path, "wb") as fh:
        np.savez(fh, data=arr, **extra)
