"""Reader details (foreign TIFF calibrations, MRC extended headers, sidecar angles, lazy MRC)
and bad input with pinned messages."""

from __future__ import annotations

import re

import mrcfile
import numpy as np
import pytest
import tifffile

import aet
from aet.errors import CorruptFileError, MetadataError, UnknownFormatError
from aet.testing import raise_if_dask_computes


# --------------------------------------------------------------------------- TIFF
def test_imagej_calibration_in_microns(tmp_path):
    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    tifffile.imwrite(tmp_path / "fiji.tif", data, imagej=True,
                     resolution=(1 / 0.0025, 1 / 0.0025),  # 0.0025 µm per pixel = 25 Å
                     metadata={"axes": "ZYX", "unit": "micron"})
    ts = aet.open(tmp_path / "fiji.tif", angles=[-20, 0, 20])
    assert ts.pixel_size_A == pytest.approx(25.0, rel=1e-6)
    np.testing.assert_array_equal(ts.values, data)


def test_plain_tiff_resolution_in_centimetres(tmp_path):
    data = np.ones((2, 4, 5), np.uint16)
    tifffile.imwrite(tmp_path / "cm.tif", data, photometric="minisblack",
                     resolution=(2.5e7, 2.5e7), resolutionunit="CENTIMETER")  # 4 Å pixels
    assert aet.open(tmp_path / "cm.tif", angles=[0, 1]).pixel_size_A == pytest.approx(4.0)


def test_tiff_without_calibration_needs_pixel_size(tmp_path):
    tifffile.imwrite(tmp_path / "raw.tif", np.ones((2, 4, 5), np.uint16),
                     photometric="minisblack")
    with pytest.raises(MetadataError, match=r"pixel_size_A is missing: .*raw\.tif' carries "
                                            r"no pixel size; pass pixel_size_A=<Å per pixel>"):
        aet.open(tmp_path / "raw.tif", angles=[0, 1])
    with pytest.raises(MetadataError, match=r"voxel_size_A is missing: .*raw\.tif' carries "
                                            r"no voxel size; pass voxel_size_A=<Å per voxel>"):
        aet.open(tmp_path / "raw.tif", kind="volume")
    assert aet.open(tmp_path / "raw.tif", angles=[0, 1], pixel_size_A=0.7).pixel_size_A == 0.7


def test_rgb_tiff_is_refused(tmp_path):
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((8, 9, 3), np.uint8), photometric="rgb")
    with pytest.raises(MetadataError, match=r"rgb\.tif' holds colour images \(axes 'YXS', "
                                            r"shape \(8, 9, 3\)\); projections are grey"):
        aet.open(tmp_path / "rgb.tif", angles=[0.0], pixel_size_A=1.0)


def test_arguments_override_the_file(tmp_path):
    ts = aet.TiltSeries(np.ones((2, 3, 4), np.float32), angles=[-5, 5], pixel_size_A=0.5)
    aet.io.write(ts, tmp_path / "t.tif")
    back = aet.open(tmp_path / "t.tif", angles=[-7, 7], pixel_size_A=0.25)
    np.testing.assert_array_equal(back.angles, [-7, 7])
    assert back.pixel_size_A == 0.25


def test_large_tiff_opens_lazily_memory_mapped(tmp_path, rng):
    data = rng.random((6, 16, 16)).astype(np.float32)
    aet.io.write(aet.Volume(data, voxel_size_A=1.5), tmp_path / "v.tif")
    with raise_if_dask_computes():
        vol = aet.open(tmp_path / "v.tif", lazy_threshold_bytes=1024)
        sl = vol.isel(z=slice(4, 6))
    assert vol.is_lazy and vol.voxel_size_A == 1.5
    np.testing.assert_array_equal(sl.values, data[4:6])
    assert not aet.open(tmp_path / "v.tif").is_lazy  # small files are read into memory


# --------------------------------------------------------------------------- MRC
def test_mrc_seri_extended_header_angles(tmp_path):
    """IMOD/SerialEM stacks: ``SERI`` extended header, nreal bit 1 = tilt angle × 100."""
    angles = np.array([-60.0, -12.34, 0.0, 45.67])
    ext = np.zeros((4, 4), np.int16)  # nint = 8 bytes per section
    ext[:, 0] = np.round(angles * 100)
    path = tmp_path / "serialem.st"
    with mrcfile.new(path) as m:
        m.set_data(np.ones((4, 6, 8), np.int16))
        m.set_image_stack()
        m.set_extended_header(np.frombuffer(ext.tobytes(), dtype="V1"))
        m.header.exttyp = b"SERI"
        extra2 = bytearray(bytes(m.header.extra2))
        extra2[16:20] = np.array([8, 1], "<i2").tobytes()  # IMOD nint, nreal
        m.header.extra2 = bytes(extra2)
        m.voxel_size = 2.5
    ts = aet.open(path)
    np.testing.assert_allclose(ts.angles, angles)
    assert ts.pixel_size_A == 2.5


def test_mrc_sidecar_tlt_and_volume_header(tmp_path):
    with mrcfile.new(tmp_path / "tilts.mrc") as m:
        m.set_data(np.zeros((3, 4, 5), np.float32))
        m.set_image_stack()
        m.voxel_size = 1.25
    with pytest.raises(MetadataError, match=r"no tilt angles were given; pass angles=\[\.\.\.\] "
                                            r"\(degrees\) or an angle file \(\.tlt, \.rawtlt, "
                                            r"\.mdoc\) for a tilt series, or kind='volume'"):
        aet.open(tmp_path / "tilts.mrc")
    (tmp_path / "tilts.tlt").write_text("-30\n0\n30.5\n")
    np.testing.assert_array_equal(aet.open(tmp_path / "tilts.mrc").angles, [-30, 0, 30.5])
    with mrcfile.new(tmp_path / "recon.mrc") as m:  # ispg 1: a volume
        m.set_data(np.zeros((3, 4, 5), np.float32))
        m.set_volume()
        m.voxel_size = 1.25
    vol = aet.open(tmp_path / "recon.mrc")
    assert isinstance(vol, aet.Volume) and vol.voxel_size_A == 1.25


def test_large_mrc_opens_lazily_memory_mapped(tmp_path, rng):
    data = rng.random((6, 16, 16)).astype(np.float32)
    aet.io.write(aet.Volume(data, voxel_size_A=1.0), tmp_path / "v.mrc")
    with raise_if_dask_computes():
        vol = aet.open(tmp_path / "v.mrc", lazy_threshold_bytes=1024)
        sl = vol.isel(z=slice(2, 3))
    assert vol.is_lazy
    np.testing.assert_array_equal(sl.values, data[2:3])
    assert not aet.open(tmp_path / "v.mrc").is_lazy  # small files are read into memory


def test_truncated_mrc(tmp_path):
    aet.io.write(aet.Volume(np.ones((4, 8, 8), np.float32), voxel_size_A=1.0),
                 tmp_path / "v.mrc")
    raw = (tmp_path / "v.mrc").read_bytes()
    (tmp_path / "cut.mrc").write_bytes(raw[: len(raw) - 100])
    with pytest.raises(CorruptFileError, match=r"cut\.mrc' is a truncated or corrupt MRC file: "
                                               r"the header promises \(4, 8, 8\) values of "
                                               r"float32 \(\d+ bytes\) but the file has \d+"):
        aet.open(tmp_path / "cut.mrc")


# --------------------------------------------------------------------------- bad input
def test_missing_file_comes_first(tmp_path):
    for name in ("nope.mrc", "nope.unknown", "nope.zarr"):
        with pytest.raises(FileNotFoundError, match=r"No such file or folder: .*nope"):
            aet.open(tmp_path / name)


def test_unknown_extension_lists_formats(tmp_path):
    (tmp_path / "data.xyzw").write_bytes(b"1234")
    with pytest.raises(UnknownFormatError,
                       match=r"cannot tell the format of .*data\.xyzw' from its extension "
                             r"'\.xyzw'; supported formats: zarr \(\.zarr\); .*mrc \(\.mrc, "
                             r"\.mrcs, \.rec, \.ali, \.st, \.map\); matlab \(\.mat\); "
                             r"dm \(\.dm3, \.dm4\); tia \(\.emi, \.ser\); emd \(\.emd\); .*"
                             r"Pass format=\.\.\. to choose one"):
        aet.open(tmp_path / "data.xyzw")
    assert issubclass(UnknownFormatError, ValueError)


def test_corrupt_files_name_the_file(tmp_path):
    for name, what in (("bad.tif", "TIFF"), ("bad.mat", "MATLAB .mat"),
                       ("bad.dm4", "RosettaSciIO"), ("bad.npy", "NumPy")):
        (tmp_path / name).write_bytes(b"\x00garbage" * 20)
        with pytest.raises(CorruptFileError, match=re.escape(name) + ".*" + re.escape(what)):
            aet.open(tmp_path / name, angles=[0.0], pixel_size_A=1.0)
    assert issubclass(CorruptFileError, OSError)


def test_writing_a_model_to_an_array_format(tmp_path):
    m = aet.AtomicModel([[0.0, 0.0, 0.0]], ["Fe"])
    with pytest.raises(UnknownFormatError, match=r"format 'tiff' cannot hold a AtomicModel; "
                                                 r"formats that can: zarr, netcdf, csv, xyz"):
        aet.io.write(m, tmp_path / "m.tif")
    with pytest.raises(UnknownFormatError, match=r"format 'matlab' cannot be written; "
                                                 r"writable formats: zarr, netcdf, numpy, tiff"):
        aet.io.write(aet.Volume(np.ones((2, 2, 2)), voxel_size_A=1.0), tmp_path / "v.mat")


def test_angle_count_must_match(tmp_path):
    aet.io.write(aet.Volume(np.ones((3, 4, 5), np.float32), voxel_size_A=1.0),
                 tmp_path / "v.tif")
    with pytest.raises(ValueError, match=r"angles has 2 entries but the tilt series has 3 "
                                         r"projections \(dim 'angle'\); pass one angle per "
                                         r"projection"):
        aet.open(tmp_path / "v.tif", kind="tilt_series", angles=[0, 1])
