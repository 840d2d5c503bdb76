"""MRC/CCP4 files (``.mrc .mrcs .rec .ali .st .map``) through :mod:`mrcfile`.

Reading
-------
- The data ``(nz, ny, nx)`` map to ``(angle, y, x)`` for a tilt series or ``(z, y, x)`` for a
  volume, without transposition (MRC sections are images ``(ny, nx)``).
- Pixel size: the header's ``voxel_size`` (``cella / mxyz``, Å); when that is zero or
  negative (software that does not calibrate the main header), the FEI1/FEI2 extended
  header's ``Pixel size X``/``Y`` (metres, as Thermo Fisher software writes them). Otherwise
  "no pixel size".
- Angles, in order of precedence: the ``angles=`` argument; the extended header (FEI1/FEI2
  ``Alpha tilt`` per section, or IMOD/SerialEM ``SERI`` tilt angles when ``nreal`` has bit 1);
  a sidecar (``<stem>.tlt``/``.rawtlt``, SerialEM ``<name>.mdoc``; see
  :mod:`aet.io.angles`). ``angles=`` may also be the path of such a file.
- Kind: ``kind=`` if given; ``.rec`` files and files whose header says "volume" (``ispg`` ≥ 1)
  open as a :class:`~aet.Volume` unless angles are passed or the extended header gives the
  sections different tilt angles; image stacks (``ispg = 0``) with
  angles open as a :class:`~aet.TiltSeries`.
- Movie stacks: ``frames_per_angle=n`` splits the sections into ``(angle, frame, y, x)``.
- Large files (over ``lazy_threshold_bytes``, default 256 MiB, or ``lazy=True``) are opened
  memory-mapped and wrapped in dask (one chunk per block of sections): nothing is read until
  used. Smaller files are read into memory and the file is closed.

Writing
-------
Data are written section by section through a memory map (dask input is never loaded whole).
The header carries the voxel size (Å) and "image stack" (``ispg = 0``) for a tilt series or
"volume" (``ispg = 1``) for a volume; tilt angles θ go into an FEI1 extended header
(``Alpha tilt``, float64, exact), which IMOD and Thermo software also read; the frame count of
a 4D series and the aet class go into a header label.
What MRC cannot carry: Euler φ/ψ (the writer refuses a series with non-zero φ or ψ rather than
drop them), user attrs and provenance (lost; the reader records an ``open`` step), and dtypes
other than int8, int16, uint16, float16, float32 (uint8 is widened to uint16 losslessly;
others need ``dtype=``).
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np

from ..core.schema import facade_class
from ..errors import CorruptFileError, MetadataError
from ._common import make_object

_LABEL = "aet "
_EXACT = (np.int8, np.int16, np.uint16, np.float16, np.float32)
LAZY_THRESHOLD_BYTES = 256 * 2**20


def _read_header(path: Path):
    import mrcfile

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with mrcfile.open(path, mode="r", permissive=True, header_only=False) as mrc:
            header = mrc.header.copy()
            ext = None if mrc.extended_header is None else np.array(mrc.extended_header)
            indexed = None
            if bytes(header.exttyp) in (b"FEI1", b"FEI2") and ext is not None and ext.nbytes:
                indexed = mrc.indexed_extended_header
                indexed = None if indexed is None else np.array(indexed)
            voxel = mrc.voxel_size.copy()
            labels = [bytes(lb).decode("ascii", "replace").strip()
                      for lb in header.label[: int(header.nlabl)]]
            data_missing = mrc.data is None
    return header, ext, indexed, voxel, labels, data_missing, [str(w.message) for w in caught]


def _angles_from_ext(header, ext, indexed, *, zeros_ok=False):
    """Tilt angles (degrees) per section from an FEI or SERI extended header, or None.

    All-zero FEI angles mean "not recorded" unless ``zeros_ok`` (a file aet wrote)."""
    nz = int(header.nz)
    if indexed is not None and "Alpha tilt" in indexed.dtype.names:
        a = np.asarray(indexed["Alpha tilt"], dtype=np.float64)
        if a.shape[0] == nz and np.all(np.isfinite(a)) and (zeros_ok or np.any(a != 0)):
            return a
    if bytes(header.exttyp) == b"SERI" and ext is not None:
        # IMOD: int16 nint (bytes per section) and nreal (flags) at bytes 128-131 of the
        # header, i.e. 16-19 of mrcfile's "extra2"; nreal bit 1 = tilt angle × 100 (int16)
        order = header.mode.dtype.byteorder
        dt = np.dtype(np.int16).newbyteorder("<" if order in ("<", "=", "|") else order)
        nint, nreal = (int(v) for v in np.frombuffer(bytes(header.extra2)[16:20], dtype=dt))
        if nreal & 1 and nint >= 2 and ext.nbytes >= nz * nint:
            raw = np.frombuffer(ext.tobytes()[: nz * nint], dtype=np.uint8).reshape(nz, nint)
            return raw[:, :2].copy().view(dt)[:, 0].astype(np.float64) / 100.0
    return None


def _pixel_size_from_ext(indexed):
    """Pixel size (Å) from FEI1/FEI2 ``Pixel size X/Y`` (metres), or None when absent/zero."""
    if indexed is None or "Pixel size X" not in (indexed.dtype.names or ()):
        return None
    px = np.asarray(indexed["Pixel size X"], dtype=np.float64) * 1e10
    py = np.asarray(indexed["Pixel size Y"], dtype=np.float64) * 1e10
    if not (px.size and np.all(np.isfinite(px)) and px[0] > 0):
        return None
    if not (np.allclose(px, px[0], rtol=1e-6) and np.allclose(py, px[0], rtol=1e-5)):
        return None  # varying or non-square: let the caller pass pixel_size_A
    return float(px[0])


def read(path: Path, *, kind=None, frames_per_angle: int | None = None, lazy: bool | None = None,
         lazy_threshold_bytes: int = LAZY_THRESHOLD_BYTES, **metadata):
    """Read an MRC-family file (see the module docstring for kind, pixel size and angles).

    Parameters
    ----------
    frames_per_angle : int, optional
        Sections per tilt angle of a movie stack; gives dims ``(angle, frame, y, x)``.
    lazy : bool, optional
        ``True``: memory-map and wrap in dask; ``False``: read into memory; default: lazy for
        files over ``lazy_threshold_bytes``.
    """
    import mrcfile.utils as mu

    try:
        header, ext, indexed, voxel, labels, data_missing, warns = _read_header(path)
        dtype = mu.data_dtype_from_header(header)
        shape = mu.data_shape_from_header(header)
    except (MetadataError, CorruptFileError):
        raise
    except Exception as exc:  # mrcfile/numpy raise many types on a broken header
        raise CorruptFileError(f"{str(path)!r} is not a readable MRC file: "
                               f"{type(exc).__name__}: {exc}") from None
    offset = 1024 + int(header.nsymbt)
    n_bytes = int(np.prod(shape)) * dtype.itemsize
    size = os.path.getsize(path)
    if data_missing or any(s <= 0 for s in shape) or size < offset + n_bytes:
        why = "; ".join(warns) or "the header does not describe any data"
        raise CorruptFileError(
            f"{str(path)!r} is a truncated or corrupt MRC file: the header promises "
            f"{shape} values of {dtype} ({offset + n_bytes} bytes) but the file has {size} "
            f"bytes ({why})"
        )
    if len(shape) == 2:
        shape = (1, *shape)
    memmap = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    if lazy is None:
        lazy = n_bytes > lazy_threshold_bytes
    if lazy:
        import dask.array as dsa

        per = max(1, (64 * 2**20) // max(1, int(np.prod(shape[1:])) * dtype.itemsize))
        arr = dsa.from_array(memmap, chunks=(per, *shape[1:]), name=f"mrc-{path.name}-"
                             f"{os.stat(path).st_mtime_ns}", asarray=True)
    else:
        arr = np.array(memmap)
    del memmap
    if arr.dtype.byteorder not in ("=", "|"):
        arr = arr.astype(arr.dtype.newbyteorder("="))

    file_attrs: dict = {}
    vs = [float(v) for v in (voxel.x, voxel.y)]
    if all(math.isfinite(v) and v > 0 for v in vs):
        if not math.isclose(vs[0], vs[1], rel_tol=1e-5):
            raise MetadataError(
                f"{str(path)!r} has non-square pixels ({vs[0]} × {vs[1]} Å); aet needs square "
                f"pixels: resample first, or pass pixel_size_A= to override"
            )
        file_attrs["pixel_size_A"] = vs[0]
    elif (fei_px := _pixel_size_from_ext(indexed)) is not None:
        file_attrs["pixel_size_A"] = fei_px
    aet_label = next((lb for lb in labels if lb.startswith(_LABEL)), "")
    exact = _label_value(aet_label, "pixel_size_A", float)
    # the header holds float32; the label keeps aet's float64 value while the two agree
    if exact is not None and "pixel_size_A" in file_attrs and math.isclose(
            exact, file_attrs["pixel_size_A"], rel_tol=1e-6):
        file_attrs["pixel_size_A"] = exact
    fpa = frames_per_angle
    if fpa is None:
        fpa = _label_value(aet_label, "frames_per_angle", int)
    file_angles = _angles_from_ext(header, ext, indexed, zeros_ok="TiltSeries" in aet_label)
    if fpa is not None:
        if isinstance(fpa, bool) or not isinstance(fpa, (int, np.integer)) or fpa < 1 \
                or arr.shape[0] % fpa:
            raise ValueError(
                f"frames_per_angle={fpa!r} does not divide the {arr.shape[0]} sections of "
                f"{str(path)!r}; pass the number of frames recorded at each tilt"
            )
        arr = arr.reshape(arr.shape[0] // fpa, fpa, *arr.shape[1:])
        if file_angles is not None:
            file_angles = file_angles[::fpa]
    default = None
    # sections that each carry their own stage tilt are a tilt series whatever ispg says
    # (writers leave mrcfile's volume default, ispg = 1, on stacks)
    varying = file_angles is not None and len(file_angles) > 1 and np.ptp(file_angles) > 0
    if "TiltSeries" not in aet_label and not varying and (
            "Volume" in aet_label or path.suffix.lower() == ".rec" or int(header.ispg) >= 1):
        default = "volume"  # a reconstruction: its sections are z slices, not tilts
        file_angles = None if kind != "tilt_series" else file_angles
    # an IMOD reconstruction (.rec) sits beside its series' .tlt: those are not its angles
    reconstruction = path.suffix.lower() == ".rec" or "Volume" in aet_label
    return make_object(arr, path=path, fmt="mrc", kind=kind, metadata=metadata,
                       file_attrs=file_attrs, file_angles=file_angles, default_kind=default,
                       use_sidecar=not reconstruction)


def _label_value(label: str, key: str, conv):
    """``conv`` of the ``key=value`` item in an aet header label, or None."""
    for item in label.split():
        k, _, v = item.partition("=")
        if k == key:
            try:
                return conv(v)
            except ValueError:
                return None
    return None


def _mrc_dtype(arr_dtype, dtype):
    if dtype is not None:
        return np.dtype(dtype)
    d = np.dtype(arr_dtype)
    if d == np.uint8:
        return np.dtype(np.uint16)  # MRC mode 0 is signed; widen losslessly
    if any(d == np.dtype(t) for t in _EXACT):
        return d
    raise TypeError(
        f"MRC files hold int8, int16, uint16, float16 or float32 data, not {d}; pass "
        f"dtype='float32' to convert explicitly (or write .zarr/.tif to keep {d})"
    )


def write(obj, path: Path, *, dtype=None) -> None:
    """Write a ``TiltSeries`` (image stack + FEI1 tilt angles) or ``Volume`` (volume).

    Parameters
    ----------
    dtype : numpy dtype, optional
        Convert to this MRC dtype (needed for float64/int32 data, which MRC cannot hold).
    """
    import mrcfile
    from mrcfile.dtypes import get_ext_header_dtype

    TiltSeries = facade_class("TiltSeries")

    da = obj.data
    arr = da.data
    out_dtype = _mrc_dtype(arr.dtype, dtype)
    shape = tuple(int(s) for s in arr.shape)
    flat_shape = (int(np.prod(shape[:-2])), shape[-2], shape[-1])
    is_ts = isinstance(obj, TiltSeries)
    if is_ts:
        if not obj.is_single_axis:
            raise MetadataError(
                "this tilt series has Euler angles φ/ψ that MRC cannot store; write .zarr, .nc "
                "or .tif to keep them, or drop them explicitly with ts.with_angles(ts.angles)"
            )
        px = obj.pixel_size_A
        fpa = obj.n_frames
        frames = f" frames_per_angle={fpa}" if "frame" in obj.dims else ""
        ext = np.zeros(flat_shape[0], dtype=get_ext_header_dtype(b"FEI1"))
        ext["Metadata size"] = ext.dtype.itemsize
        ext["Alpha tilt"] = np.repeat(obj.angles, fpa)
        ext["Pixel size X"] = px * 1e-10
        ext["Pixel size Y"] = px * 1e-10
        label = f"{_LABEL}TiltSeries pixel_size_A={px!r}{frames}"
    else:
        px = obj.voxel_size_A
        ext = None
        label = f"{_LABEL}Volume pixel_size_A={px!r}"
    mode = mrcfile.utils.mode_from_dtype(out_dtype)
    with mrcfile.new_mmap(path, shape=flat_shape, mrc_mode=int(mode), overwrite=True,
                          extended_header=ext, exttyp=b"FEI1" if ext is not None else None
                          ) as mrc:
        flat = arr.reshape(flat_shape)
        step = max(1, (64 * 2**20) // max(1, flat_shape[1] * flat_shape[2] * 8))
        for i in range(0, flat_shape[0], step):
            block = flat[i:i + step]
            block = block.compute() if hasattr(block, "compute") else block
            mrc.data[i:i + step] = np.asarray(block).astype(out_dtype, copy=False)
        if is_ts:
            mrc.set_image_stack()
        else:
            mrc.set_volume()
        mrc.voxel_size = px
        mrc.update_header_stats()
        mrc.header.label[0] = label.encode("ascii")[:80]
        mrc.header.nlabl = 1
