"""TIFF stacks through :mod:`tifffile`.

Reading
-------
A stack of ``n`` pages ``(y, x)`` is read as ``(n, y, x)``: a tilt series when angles are known
(argument > file > sidecar ``.tlt``/``.rawtlt``), otherwise a volume when ``kind="volume"``.
Pixel size, in order of precedence: the ``pixel_size_A=`` argument, the aet metadata written by
:func:`write`, ImageJ calibration (``unit`` + ``XResolution``; nm, µm, Å, ...), the TIFF
resolution tags with ``ResolutionUnit`` centimetre or inch.

Writing
-------
:func:`write` stores the array exactly (every numeric dtype TIFF can hold) as a multi-page
TIFF. Its JSON image description (tifffile's "shaped" metadata) carries the aet metadata:
class, pixel/voxel size, angles (tilt angles, or Euler φ, θ, ψ in degrees), the number of frames
per angle of a 4D series, user attrs and provenance, so :func:`read` restores all of them. The
resolution tags are set too (pixels per centimetre), so Fiji/ImageJ shows the scale.
With ``imagej=True`` an ImageJ hyperstack is written instead (calibration in nm for
ImageJ); the aet metadata then sits in the ImageJ ``Info`` property and is restored the same way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..core.meta import PROVENANCE_ATTR, get_provenance, to_jsonable
from ..core.schema import facade_class
from ..errors import CorruptFileError, MetadataError
from ._common import make_object, restore_provenance

_AET_KEY = "aet"
#: Length units found in ImageJ calibrations / axes metadata, in Å.
UNIT_TO_A = {
    "a": 1.0, "å": 1.0, "\u212b": 1.0, "angstrom": 1.0, "angstroms": 1.0,
    "nm": 10.0, "nanometer": 10.0, "nanometers": 10.0, "nanometre": 10.0,
    "um": 1e4, "µm": 1e4, "\u03bcm": 1e4, "micron": 1e4, "microns": 1e4, "micrometer": 1e4,
    "mm": 1e7, "cm": 1e8, "m": 1e10, "pm": 1e-2,
}


def unit_to_angstrom(unit) -> float | None:
    """Å per ``unit`` (``"nm"`` -> 10.0), or ``None`` for an unknown/empty/pixel unit."""
    if unit is None:
        return None
    key = str(unit).strip().replace("\\u00B5", "µ").replace("\\u00c5", "Å").lower()
    return UNIT_TO_A.get(key)


def _aet_meta(obj) -> dict:
    TiltSeries = facade_class("TiltSeries")

    meta: dict = {"aet_class": type(obj).__name__}
    if isinstance(obj, TiltSeries):
        meta["pixel_size_A"] = obj.pixel_size_A
        meta["angles"] = (obj.angles if obj.is_single_axis else obj.euler_angles).tolist()
        meta["frames_per_angle"] = obj.n_frames if "frame" in obj.dims else None
    else:
        meta["voxel_size_A"] = obj.voxel_size_A
    skip = ("pixel_size_A", "voxel_size_A", "aet_class", PROVENANCE_ATTR)
    meta["attrs"] = {k: to_jsonable(v) for k, v in obj.data.attrs.items() if k not in skip}
    meta["provenance"] = get_provenance(obj.data.attrs)
    return meta


def write(obj, path: Path, *, imagej: bool = False, compression=None) -> None:
    """Write a ``TiltSeries`` or ``Volume`` as a multi-page TIFF (see the module docstring).

    A 4D series ``(angle, frame, y, x)`` is written as ``angle * frame`` pages; the frame count
    is stored so :func:`read` restores the 4D layout. Dask-backed data is written page block by
    page block (never the whole array in memory at once).
    """
    import tifffile

    da = obj.data
    arr = da.data
    shape = tuple(int(s) for s in arr.shape)
    pages_shape = (int(np.prod(shape[:-2])), shape[-2], shape[-1])
    meta = _aet_meta(obj)
    px = meta.get("pixel_size_A", meta.get("voxel_size_A"))
    # one grey-value page per image, whatever the leading dims (never guessed as RGB)
    kw: dict = {"compression": compression, "photometric": "minisblack"}
    if imagej:
        if arr.dtype not in (np.uint8, np.uint16, np.float32):
            raise TypeError(
                f"imagej=True TIFFs hold uint8, uint16 or float32 only, got {arr.dtype}; write "
                f"with imagej=False (default) or convert with .astype('float32')"
            )
        kw["imagej"] = True
        kw["metadata"] = {"axes": "ZYX", "unit": "nm", "spacing": px / 10.0,
                          "Info": json.dumps({_AET_KEY: meta})}
        kw["resolution"] = (10.0 / px, 10.0 / px)
    else:
        kw["metadata"] = {_AET_KEY: meta}
        ppcm = 1e8 / px
        if ppcm < 2**31:  # TIFF rationals are 32 bit
            kw["resolution"] = (ppcm, ppcm)
            kw["resolutionunit"] = "CENTIMETER"
    if isinstance(arr, np.ndarray):
        tifffile.imwrite(path, arr.reshape(pages_shape), **kw)
        return

    def pages():
        flat = arr.reshape(pages_shape)
        step = max(1, int(flat.chunksize[0]))
        for i in range(0, pages_shape[0], step):
            block = np.asarray(flat[i:i + step].compute())
            yield from block

    tifffile.imwrite(path, pages(), shape=pages_shape, dtype=arr.dtype, **kw)


def _calibration(tif) -> tuple[float | None, dict]:
    """Pixel size (Å) and aet metadata from a TiffFile's tags and descriptions."""
    aet = None
    px = None
    ij = tif.imagej_metadata
    if ij is not None:
        info = ij.get("Info")
        if isinstance(info, str) and info.lstrip().startswith("{"):
            try:
                aet = json.loads(info).get(_AET_KEY)
            except (json.JSONDecodeError, AttributeError):
                aet = None
    if aet is None and tif.is_shaped:
        meta = tif.shaped_metadata
        if meta and isinstance(meta[0], dict) and isinstance(meta[0].get(_AET_KEY), dict):
            aet = meta[0][_AET_KEY]
    page = tif.pages.first
    tags = page.tags
    xres = tags.get("XResolution")
    per_unit = None
    if xres is not None:
        num, den = xres.value
        if num > 0 and den > 0:
            per_unit = num / den  # pixels per unit
    if ij is not None and per_unit:
        scale = unit_to_angstrom(ij.get("unit"))
        if scale is not None:
            px = scale / per_unit
    elif per_unit:
        ru = tags.get("ResolutionUnit")
        ru = int(ru.value) if ru is not None else 2  # TIFF default is inch
        if ru == 3:
            px = 1e8 / per_unit
        elif ru == 2 and not (num == 72 and den == 1) and not (num == 1 and den == 1):
            px = 2.54e8 / per_unit  # 72 dpi / 1 dpi are software defaults, not calibrations
    return px, (aet if isinstance(aet, dict) else {})


LAZY_THRESHOLD_BYTES = 256 * 2**20


def read(path: Path, *, kind=None, frames_per_angle: int | None = None,
         lazy: bool | None = None, lazy_threshold_bytes: int = LAZY_THRESHOLD_BYTES,
         **metadata):
    """Read a TIFF stack as a ``TiltSeries`` (angles known) or ``Volume`` (``kind="volume"``).

    Parameters
    ----------
    frames_per_angle : int, optional
        Split the ``n`` pages into ``(n // frames_per_angle, frames_per_angle, y, x)`` (a raw
        series with several frames per tilt). Files written by aet record it themselves.
    lazy : bool, optional
        Memory-map the pixel data and wrap it in dask (uncompressed, contiguous files only).
        Default: lazy when such a file holds more than ``lazy_threshold_bytes``.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes = series.axes
            if "S" in axes and series.shape[axes.index("S")] > 1:
                raise MetadataError(
                    f"{str(path)!r} holds colour images (axes {axes!r}, shape "
                    f"{tuple(series.shape)}); projections are grey values: convert to grey "
                    f"first (e.g. in Fiji: Image > Type > 32-bit)"
                )
            offset = series.dataoffset  # None unless uncompressed and contiguous
            nbytes = int(np.prod(series.shape)) * np.dtype(series.dtype).itemsize
            want_lazy = (nbytes > lazy_threshold_bytes) if lazy is None else bool(lazy)
            if want_lazy and offset is not None:
                arr = _lazy_pages(path, offset, series.shape,
                                  np.dtype(series.dtype).newbyteorder(tif.byteorder))
            else:
                arr = series.asarray()
            px, aet = _calibration(tif)
    except (MetadataError, CorruptFileError):
        raise
    except Exception as exc:  # tifffile raises many types on a broken file
        raise CorruptFileError(f"{str(path)!r} is not a readable TIFF file: "
                               f"{type(exc).__name__}: {exc}") from None
    if not hasattr(arr, "compute"):
        arr = np.asarray(arr)
    if arr.ndim < 2 or arr.dtype.kind not in "iuf":
        raise CorruptFileError(
            f"{str(path)!r} holds {arr.ndim}D data of dtype {arr.dtype}; expected a stack of "
            f"grey-value images (RGB and complex TIFFs are not projections)"
        )
    arr = arr.reshape((-1, *arr.shape[-2:])) if arr.ndim > 3 else arr
    file_attrs = dict(aet.get("attrs") or {})
    cls = aet.get("aet_class")
    aet_px = aet.get("pixel_size_A", aet.get("voxel_size_A"))
    if isinstance(aet_px, (int, float)) and aet_px > 0:
        px = float(aet_px)
    if px is not None and math.isfinite(px) and px > 0:
        file_attrs["pixel_size_A"] = px
    fpa = frames_per_angle if frames_per_angle is not None else aet.get("frames_per_angle")
    if fpa is not None:
        if isinstance(fpa, bool) or not isinstance(fpa, (int, np.integer)) or fpa < 1 \
                or arr.shape[0] % fpa:
            raise ValueError(
                f"frames_per_angle={fpa!r} does not divide the {arr.shape[0]} pages of "
                f"{str(path)!r}; pass the number of frames recorded at each tilt"
            )
        if fpa > 1 or cls == "TiltSeries":
            arr = arr.reshape(arr.shape[0] // fpa, fpa, *arr.shape[1:])
    default = {"TiltSeries": "tilt_series", "Volume": "volume"}.get(cls)
    obj = make_object(arr, path=path, fmt="tiff", kind=kind, metadata=metadata,
                      file_attrs=file_attrs, file_angles=aet.get("angles"),
                      default_kind=default)
    return restore_provenance(obj, aet.get("provenance"))


def _lazy_pages(path: Path, offset: int, shape, dtype):
    """A dask array over a memory map of contiguous pixel data (blocks of ~64 MiB)."""
    import os

    import dask.array as dsa
    from dask.base import tokenize

    mm = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))
    page = int(np.prod(shape[1:])) * dtype.itemsize if len(shape) > 2 else mm.nbytes
    per = max(1, (64 * 2**20) // max(1, page))
    arr = dsa.from_array(mm, chunks=(per, *shape[1:]) if len(shape) > 2 else shape,
                         name=f"aet-tiff-{tokenize(str(path), os.stat(path).st_mtime_ns)}",
                         asarray=True)
    return arr.astype(dtype.newbyteorder("="), copy=False) if dtype.byteorder not in "=|" \
        else arr
