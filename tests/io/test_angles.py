"""Tilt angles from where microscopists keep them: IMOD .tlt/.rawtlt, SerialEM .mdoc, MRC
FEI1/FEI2 extended headers, tomviz and Materials Data Bank EMD files.

The files are written here the way the acquisition/processing software writes them (MRC through
mrcfile, EMD through h5py following tomviz/EmdFormat.cxx and materialsdatabank's _emd_proj,
text in IMOD's "%.2f" lines and SerialEM's mdoc layout), never through aet's own writers.
"""

from __future__ import annotations

import warnings

import h5py
import mrcfile
import numpy as np
import pytest

import aet
from aet.errors import AngleUnitWarning, MetadataError
from aet.io.angles import find_sidecar, read_angles

THETA = np.array([-60.0, -45.5, -30.0, -15.25, 0.0, 15.0, 30.5, 45.0, 60.0, 70.0, -70.0])
N, NY, NX = len(THETA), 6, 5


def _stack(seed=0):
    return np.random.default_rng(seed).random((N, NY, NX)).astype(np.float32)


def _write_mrc(path, data, voxel=0.35, ispg=0):
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(data)
        m.voxel_size = voxel
        m.header.ispg = ispg
    return path


def _write_tlt(path, theta):
    # IMOD (tiltalign, newstack -tilt) writes one "%7.2f"-style line per section
    path.write_text("".join(f"{t:8.2f}\n" for t in theta) + "\n")
    return path


def test_open_mrc_with_tlt_path_as_in_the_user_guide(tmp_path):
    data = _stack()
    mrc = _write_mrc(tmp_path / "tilts.mrc", data)
    tlt = _write_tlt(tmp_path / "angles_refined.tlt", THETA)
    ts = aet.open(mrc, angles=str(tlt))
    np.testing.assert_allclose(ts.angles, np.round(THETA, 2))
    assert ts.pixel_size_A == pytest.approx(0.35, rel=1e-6)
    np.testing.assert_array_equal(ts.values, data)
    assert ts.provenance[-1]["params"]["angles"] == str(tlt)
    # a Path works the same
    assert aet.open(mrc, angles=tlt).angles.tolist() == ts.angles.tolist()


def test_sidecar_tlt_rawtlt_and_rec(tmp_path):
    data = _stack(1)
    st = _write_mrc(tmp_path / "ts.st", data)
    _write_tlt(tmp_path / "ts.rawtlt", THETA)
    _write_tlt(tmp_path / "ts.tlt", THETA + 0.5)  # tiltalign's refined angles for ts.ali
    # the raw stack takes its nominal angles (.rawtlt), the aligned stack the refined ones
    assert find_sidecar(st).name == "ts.rawtlt"
    np.testing.assert_allclose(aet.open(st).angles, THETA)
    ali = _write_mrc(tmp_path / "ts.ali", data)
    np.testing.assert_allclose(aet.open(ali).angles, THETA + 0.5)
    assert aet.open(ali).provenance[-1]["params"]["angles"] == str(tmp_path / "ts.tlt")
    # the reconstruction next to them stays a volume
    rec = _write_mrc(tmp_path / "ts.rec", data[:5, :5, :5], ispg=1)
    assert isinstance(aet.open(rec), aet.Volume)


MDOC = """PixelSpacing = 2.27
Voltage = 300
ImageFile = tilts.mrc
ImageSize = 5 6
DataMode = 1

[T = SerialEM: Digitized on EMBL Krios                       30-Nov-15  15:14:20    ]

[T =     Tilt axis angle = 85.3, binning = 4  spot = 8  camera = 2]

{sections}"""


def _mdoc_text(theta, order=None):
    order = range(len(theta)) if order is None else order
    secs = []
    for z in order:
        secs.append(f"[ZValue = {z}]\nTiltAngle = {theta[z]:.2f}\nStagePosition = 12.5 -3.1\n"
                    f"Magnification = 33000\nPixelSpacing = 2.27\nExposureDose = 1.02\n"
                    f"DateTime = 12-Mar-24  09:14:{z:02d}\n")
    return MDOC.format(sections="\n".join(secs))


def test_serialem_mdoc_sidecar_angles_axis_and_pixel_size(tmp_path):
    data = _stack(2)
    mrc = _write_mrc(tmp_path / "tilts.mrc", data, voxel=0.0)  # no calibration in the header
    # dose-symmetric acquisition: sections listed in acquisition order, not ZValue order
    order = [4, 5, 3, 6, 2, 7, 1, 8, 0, 9, 10]
    (tmp_path / "tilts.mrc.mdoc").write_text(_mdoc_text(THETA, order))
    ts = aet.open(mrc)
    np.testing.assert_allclose(ts.angles, np.round(THETA, 2))
    assert ts.pixel_size_A == pytest.approx(2.27)
    assert ts.attrs["tilt_axis_angle_deg"] == pytest.approx(85.3)
    # the header's calibration wins over the mdoc's, the caller's over both
    mrc2 = _write_mrc(tmp_path / "b.mrc", data, voxel=0.5)
    (tmp_path / "b.mdoc").write_text(_mdoc_text(THETA))
    assert aet.open(mrc2).pixel_size_A == pytest.approx(0.5)
    assert aet.open(mrc2, pixel_size_A=0.7).pixel_size_A == pytest.approx(0.7)


def test_mdoc_tilt_axis_key_and_errors(tmp_path):
    p = tmp_path / "a.mdoc"
    p.write_text("TiltAxisAngle = -94.5\n\n[ZValue = 0]\nTiltAngle = -3\n\n[ZValue = 1]\n"
                 "TiltAngle = 3\n")
    got = read_angles(p)
    np.testing.assert_array_equal(got.values, [-3.0, 3.0])
    assert got.attrs == {"tilt_axis_angle_deg": -94.5}
    p.write_text("PixelSpacing = 1\n\n[ZValue = 0]\nTiltAngle = -3\n\n[ZValue = 1]\n"
                 "Magnification = 5000\n")
    with pytest.raises(MetadataError, match=r"a\.mdoc', line 6: section \[ZValue = 1\] has no "
                                            r"TiltAngle"):
        read_angles(p)
    p.write_text("[ZValue = 0]\nTiltAngle = minus three\n")
    with pytest.raises(MetadataError, match=r"line 2: TiltAngle 'minus three' is not a number"):
        read_angles(p)
    p.write_text("PixelSpacing = 1\n")
    with pytest.raises(MetadataError, match=r"has no \[ZValue = \.\.\.\] image sections"):
        read_angles(p)


def test_text_file_errors_name_file_and_line(tmp_path):
    p = tmp_path / "bad.tlt"
    p.write_text("  -60.00\n  -57.00\n  -5x.00\n")
    with pytest.raises(MetadataError, match=r"bad\.tlt', line 3: '-5x\.00' in '-5x\.00' is not a "
                                            r"number"):
        aet.open(_write_mrc(tmp_path / "bad.mrc", _stack()[:3]))  # the sidecar is read
    p.write_text("1 2 3\n4\n")
    with pytest.raises(MetadataError, match=r"line 2: '4' has 1 values but the lines before "
                                            r"have 3"):
        read_angles(p)
    p.write_text("1 2\n")
    with pytest.raises(MetadataError, match=r"line 1: '1 2' has 2 values; expected 1"):
        read_angles(p)
    p.write_text("# only a comment\n\n")
    with pytest.raises(MetadataError, match="holds no angles"):
        read_angles(p)
    p.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(MetadataError, match="is not a text file"):
        read_angles(p)


def test_euler_columns_comments_and_commas(tmp_path):
    p = tmp_path / "euler.txt"
    p.write_text("# phi theta psi\n0.1, -30, 0.2\n0.0, 0, 0.0  # zero tilt\n-0.1, 30, 0\n")
    got = read_angles(p)
    np.testing.assert_array_equal(got.values, [[0.1, -30, 0.2], [0, 0, 0], [-0.1, 30, 0]])
    ts = aet.open(_write_mrc(tmp_path / "e.mrc", _stack()[:3]), angles=p)
    np.testing.assert_array_equal(ts.euler_angles[:, 1], [-30, 0, 30])


def test_count_mismatch_and_frames(tmp_path):
    mrc = _write_mrc(tmp_path / "m.mrc", np.zeros((6, 4, 4), np.float32))
    tlt = _write_tlt(tmp_path / "x.tlt", [-30, 0, 30, 45])
    with pytest.raises(ValueError, match=r"x\.tlt has 4 angles but the tilt series has 6 "
                                         r"projections"):
        aet.open(mrc, angles=tlt)
    # a movie stack: 3 tilts × 2 frames, the angle file lists every image
    _write_tlt(tmp_path / "x.tlt", [-30, -30, 0, 0, 30, 30])
    ts = aet.open(mrc, angles=tlt, frames_per_angle=2)
    assert ts.dims == ("angle", "frame", "y", "x")
    np.testing.assert_array_equal(ts.angles, [-30, 0, 30])
    _write_tlt(tmp_path / "x.tlt", [-30, -29, 0, 0, 30, 30])
    with pytest.raises(MetadataError, match="frames of a tilt differ by up to 1°"):
        aet.open(mrc, angles=tlt, frames_per_angle=2)


def test_radians_warn(tmp_path):
    rad = np.radians(np.linspace(-60, 60, 15))
    mrc = _write_mrc(tmp_path / "r.mrc", np.zeros((15, 4, 4), np.float32))
    with pytest.warns(AngleUnitWarning, match=r"all 15 tilt angles lie within ±1\.05, below "
                                              r"π/2: they look like radians"):
        aet.open(mrc, angles=rad)
    _write_tlt(tmp_path / "r.tlt", rad)
    with pytest.warns(AngleUnitWarning, match=r"r\.tlt: all 15"):
        aet.open(mrc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        aet.open(mrc, angles=np.linspace(-60, 60, 15))  # degrees: silent
        small = _write_mrc(tmp_path / "s.mrc", np.zeros((9, 4, 4), np.float32))
        aet.open(small, angles=np.radians(np.linspace(-60, 60, 9)))  # < 10 projections


@pytest.mark.parametrize("exttyp", [b"FEI1", b"FEI2"])
def test_mrc_fei_extended_header_angles_and_pixel_size(tmp_path, exttyp):
    from mrcfile.dtypes import get_ext_header_dtype

    data = _stack(3)
    ext = np.zeros(N, dtype=get_ext_header_dtype(exttyp))
    ext["Metadata size"] = ext.dtype.itemsize
    ext["Alpha tilt"] = THETA
    ext["Pixel size X"] = ext["Pixel size Y"] = 0.412e-10  # metres, as Thermo software writes
    p = tmp_path / "fei.mrc"
    with mrcfile.new(p) as m:
        m.set_extended_header(ext)
        m.header.exttyp = exttyp
        m.set_data(data)
        m.voxel_size = 0.0  # the main header left uncalibrated
    ts = aet.open(p)
    np.testing.assert_array_equal(ts.angles, THETA)
    assert ts.pixel_size_A == pytest.approx(0.412)
    assert ts.provenance[-1]["params"]["angles"] == "file"


def _tomviz_emd(path, data, theta, units="[deg]", spacing_nm=0.035):
    """As tomviz/EmdFormat.cxx writes a tilt series: data (angle, y, x), dim1 the angles."""
    with h5py.File(path, "w") as f:
        f.attrs["version_major"] = np.uint32(0)
        f.attrs["version_minor"] = np.uint32(2)
        g = f.create_group("data/tomography")
        g.attrs["emd_group_type"] = np.uint32(1)
        g.create_dataset("data", data=data)
        g["data"].attrs["name"] = "ImageScalars"
        for k, (vals, name, u) in enumerate([
                (theta, "angles", units), (np.arange(data.shape[1]) * spacing_nm, "y", "[n_m]"),
                (np.arange(data.shape[2]) * spacing_nm, "x", "[n_m]")], start=1):
            d = g.create_dataset(f"dim{k}", data=np.asarray(vals, dtype=np.float32))
            d.attrs["name"] = name
            d.attrs["units"] = u
    return path


def _mdb_emd(path, proj_xyn, angles):
    """As materialsdatabank/__init__.py _emd_proj writes projections (MATLAB (x, y, n))."""
    with h5py.File(path, "w") as f:
        f.attrs.create("version_major", 0, dtype=np.int32)
        f.attrs.create("version_minor", 2, dtype=np.int32)
        tomo = f.create_group("data").create_group("tomography")
        tomo.attrs.create("emd_group_type", 1, dtype=np.int32)
        tomo.create_dataset("data", data=proj_xyn.astype(np.float64))
        for k, name in ((0, "x"), (1, "y")):
            d = tomo.create_dataset(f"dim{k + 1}", (proj_xyn.shape[k], 1), dtype=np.int64)
            d[:, 0] = np.arange(proj_xyn.shape[k])
            d.attrs["name"] = np.bytes_(name)
            d.attrs["units"] = np.bytes_("[px]")
        d = tomo.create_dataset("dim3", angles.shape, dtype=np.float64)
        d[:] = angles
        d.attrs["name"] = np.bytes_("angle")
        d.attrs["units"] = np.bytes_("[deg]")
    return path


def test_tomviz_and_materials_data_bank_emd_give_the_same_series(tmp_path):
    data = _stack(4)
    tv = aet.open(_tomviz_emd(tmp_path / "tomviz.emd", data, THETA))
    np.testing.assert_allclose(tv.angles, THETA, atol=1e-5)  # float32 in the file
    assert tv.pixel_size_A == pytest.approx(0.35, rel=1e-5)  # 0.035 nm steps
    np.testing.assert_array_equal(tv.values, data)
    # MDB keeps the MATLAB array (x, y, n) of the AET codes and the angles in dim3 (1 × n)
    mdb = aet.open(_mdb_emd(tmp_path / "mdb.emd", data.transpose(2, 1, 0), THETA[None]),
                   pixel_size_A=0.35)
    np.testing.assert_array_equal(mdb.angles, THETA)
    np.testing.assert_array_equal(mdb.values, data)
    assert "Materials Data Bank" in mdb.provenance[-1]["params"]["layout"]
    with pytest.raises(MetadataError, match="pixel_size_A is missing"):
        aet.open(tmp_path / "mdb.emd")  # [px] axes carry no calibration


def test_emd_radians_and_euler(tmp_path):
    data = _stack(5)
    tv = aet.open(_tomviz_emd(tmp_path / "rad.emd", data, np.radians(THETA), units="[rad]"))
    np.testing.assert_allclose(tv.angles, THETA, atol=1e-4)
    euler = np.stack([np.full(N, 0.2), THETA, np.full(N, -0.1)], axis=1)
    p = _mdb_emd(tmp_path / "euler.emd", data.transpose(2, 1, 0), euler)
    with pytest.raises(MetadataError, match="need their convention: pass euler_convention="):
        aet.open(p, pixel_size_A=0.35)
    ts = aet.open(p, pixel_size_A=0.35, euler_convention="zyz")
    np.testing.assert_allclose(ts.euler_angles, euler, atol=1e-9)


def test_plain_berkeley_emd_still_goes_to_rosettasciio(shared_data):
    p = shared_data / "io_samples" / "example_signal.emd"
    if not p.exists():
        pytest.skip("io_samples absent")
    vol = aet.open(p, kind="volume", voxel_size_A=1.0)
    assert vol.shape == (3, 3, 3)


def test_pixel_size_zero_is_an_error_not_the_header_value(tmp_path):
    """pixel_size_A=0 used to fall through to the header's value silently."""
    mrc = _write_mrc(tmp_path / "z.mrc", _stack(), voxel=0.35)
    with pytest.raises(ValueError, match="pixel_size_A"):
        aet.open(mrc, angles=THETA, pixel_size_A=0)
    assert aet.open(mrc, angles=THETA).pixel_size_A == pytest.approx(0.35)


def test_comma_lists_and_missing_files(tmp_path):
    assert read_angles("-30,0,30.5").values.tolist() == [-30.0, 0.0, 30.5]
    assert read_angles("12").values.tolist() == [12.0]
    with pytest.raises(ValueError, match="neither a file nor a comma-separated list"):
        read_angles("-30,zero,30")
    with pytest.raises(FileNotFoundError, match="no such angle file 'tilts.tlt'"):
        read_angles("tilts.tlt")
