"""DM3/DM4, TIA SER/EMI and EMD through RosettaSciIO, and the MRC movie: every file in
../shared/data/io_samples opens, with the shapes, values and pixel sizes RosettaSciIO's own
tests state for them (rsciio/tests/test_digitalmicrograph.py, test_tia.py, test_emd_ncem.py,
test_mrc.py)."""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.errors import MetadataError


@pytest.fixture
def samples(shared_data):
    d = shared_data / "io_samples"
    if not d.is_dir():
        pytest.skip("io_samples absent")
    return d


@pytest.mark.parametrize("ext", ["dm3", "dm4"])
def test_dm_2d_and_3d(samples, ext):
    # rsciio test_data_and_axes: 2D data arange(1, 5).reshape(2, 2), 3D arange(1, 9) (2, 2, 2),
    # int16 for "test-1"; the axes have scale 1 and no unit: no pixel size in these files
    with pytest.raises(MetadataError, match=rf"pixel_size_A is missing: .*dm_2D_test-1\.{ext}' "
                                            r"carries no pixel size"):
        aet.open(samples / f"dm_2D_test-1.{ext}", angles=[0.0])
    ts = aet.open(samples / f"dm_2D_test-1.{ext}", angles=[0.0], pixel_size_A=1.5)
    assert ts.shape == (1, 2, 2) and ts.values.dtype == np.int16
    np.testing.assert_array_equal(ts.values[0], np.arange(1, 5).reshape(2, 2))
    assert ts.attrs["title"] == "test" and ts.attrs["source_format"] == "digitalmicrograph"
    vol = aet.open(samples / f"dm_3D_test-1.{ext}", kind="volume", voxel_size_A=2.0)
    np.testing.assert_array_equal(vol.values, np.arange(1, 9).reshape(2, 2, 2))
    ts3 = aet.open(samples / f"dm_3D_test-1.{ext}", angles=[-10.0, 10.0], pixel_size_A=2.0)
    np.testing.assert_array_equal(ts3.values, np.arange(1, 9).reshape(2, 2, 2))


@pytest.mark.parametrize("name", ["64x64_TEM_images_acquire.emi",
                                  "64x64_TEM_images_acquire_1.ser"])
def test_tia_image(samples, name):
    # rsciio: (64, 64), axes 6.281833 nm (test_load_stack_image_preview states the same scale)
    ts = aet.open(samples / name, angles=[0.0])
    assert ts.shape == (1, 64, 64)
    assert ts.pixel_size_A == pytest.approx(62.81833, rel=1e-5)  # nm -> Å
    assert ts.attrs["source_format"] == "tia"


def test_tia_emi_and_ser_hold_the_same_image(samples):
    a = aet.open(samples / "64x64_TEM_images_acquire.emi", angles=[0.0])
    b = aet.open(samples / "64x64_TEM_images_acquire_1.ser", angles=[0.0])
    np.testing.assert_array_equal(a.values, b.values)
    assert np.ptp(a.values) > 0


@pytest.mark.parametrize("name", ["64x64x5_TEM_preview.emi", "64x64x5_TEM_preview_1.ser"])
def test_tia_stack(samples, name):
    # rsciio test_load_stack_image_preview: shape (5, 64, 64), signal axes 6.281833 nm,
    # navigation axis scale 1 without units (so no tilt angles in the file)
    with pytest.raises(MetadataError, match=r"no tilt angles were given"):
        aet.open(samples / name)
    ts = aet.open(samples / name, angles=np.linspace(-40, 40, 5))
    assert ts.shape == (5, 64, 64)
    assert ts.pixel_size_A == pytest.approx(62.81833, rel=1e-5)
    vol = aet.open(samples / name, kind="volume")
    assert vol.voxel_size_A == pytest.approx(62.81833, rel=1e-5)


def test_emd_berkeley(samples):
    # rsciio test_emd_ncem: data_image = arange(9).reshape(3, 3).T,
    # data_signal = arange(27).reshape(3, 3, 3).T, title "This is a test!"
    img = aet.open(samples / "example_image.emd", angles=[0.0], pixel_size_A=1.0)
    np.testing.assert_array_equal(img.values[0], np.arange(9).reshape(3, 3).T)
    md = aet.open(samples / "example_metadata.emd", angles=[0.0], pixel_size_A=1.0)
    np.testing.assert_array_equal(md.values[0], np.arange(9).reshape(3, 3).T)
    assert md.attrs["title"] == "This is a test!"
    sig = aet.open(samples / "example_signal.emd", kind="volume", voxel_size_A=1.0)
    np.testing.assert_array_equal(sig.values, np.arange(27).reshape(3, 3, 3).T)


def test_mrc_movie(samples):
    # rsciio test_mrc: 32 frames of (4, 8) (navigation (8, 4), signal (8, 4)), uint16.
    # The header's cell is (-80, -40, 0) Å: a negative "pixel size", treated as none.
    path = samples / "20241021_00405_movie.mrc"
    with pytest.raises(MetadataError, match="pixel_size_A is missing"):
        aet.open(path, angles=[0.0], frames_per_angle=32)
    ts = aet.open(path, angles=[0.0], frames_per_angle=32, pixel_size_A=1.0)
    assert ts.dims == ("angle", "frame", "y", "x") and ts.shape == (1, 32, 4, 8)
    assert ts.values.dtype == np.uint16
    with pytest.raises(ValueError, match=r"frames_per_angle=5 does not divide the 32 "
                                         r"sections"):
        aet.open(path, angles=[0.0], frames_per_angle=5, pixel_size_A=1.0)
    import mrcfile

    with mrcfile.open(path, permissive=True) as m:
        np.testing.assert_array_equal(ts.values[0], m.data)


def test_every_sample_opens(samples):
    """Each file of the folder opens with at most pixel size and angles supplied."""
    opened = 0
    for p in sorted(samples.iterdir()):
        if p.suffix == ".md":
            continue
        n = 1
        kw: dict = {"pixel_size_A": 1.0}
        if "movie" in p.name:
            kw["frames_per_angle"] = 32
        elif "3D" in p.name or "x5" in p.name or "signal" in p.name:
            n = {"x5": 5}.get("x5" if "x5" in p.name else "", 2 if "3D" in p.name else 3)
        obj = aet.open(p, angles=np.linspace(-30, 30, n), **kw)
        assert isinstance(obj, aet.TiltSeries) and len(obj) == n
        opened += 1
    assert opened == 12


# --------------------------------------------------------------------------- no data needed
def _axis(name, size, scale, units, navigate, offset=0.0):
    return {"name": name, "size": size, "scale": scale, "offset": offset, "units": units,
            "navigate": navigate}


@pytest.mark.parametrize(("units", "scale", "want"), [
    ("nm", 0.0325, 0.325), ("µm", 2.5e-5, 0.25), ("um", 2.5e-5, 0.25), ("Å", 0.4, 0.4),
    ("A", -0.4, 0.4), ("pm", 35.0, 0.35), ("1 / nm", 0.1, None), ("", 1.0, None),
    ("<undefined>", 1.0, None), ("nm", 0.0, None)])
def test_pixel_size_units_to_angstrom(units, scale, want):
    from aet.io.rsciio_ import pixel_size_from_axes

    axes = [_axis("y", 4, scale, units, False), _axis("x", 4, scale, units, False)]
    got = pixel_size_from_axes(axes)
    assert (got is None) if want is None else got == pytest.approx(want, rel=1e-12)


def test_non_square_pixels_give_no_pixel_size():
    from aet.io.rsciio_ import pixel_size_from_axes

    assert pixel_size_from_axes([_axis("y", 4, 0.1, "nm", False),
                                 _axis("x", 4, 0.2, "nm", False)]) is None


def test_tilt_stack_with_degree_axis(monkeypatch, tmp_path):
    """A stack whose navigation axis is in degrees carries its tilt angles."""
    import aet.io.rsciio_ as rs

    data = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    sig = {"data": data, "metadata": {"General": {"title": "tilts"},
                                      "Signal": {"quantity": "Intensity"}},
           "axes": [_axis("tilt", 3, 30.0, "°", True, offset=-30.0),
                    _axis("y", 4, 0.05, "nm", False), _axis("x", 5, 0.05, "nm", False)]}
    monkeypatch.setattr(rs, "_reader", lambda path: _fake_reader([sig]))
    (tmp_path / "f.dm4").write_bytes(b"x")
    ts = aet.open(tmp_path / "f.dm4")
    np.testing.assert_array_equal(ts.angles, [-30.0, 0.0, 30.0])
    assert ts.pixel_size_A == pytest.approx(0.5)
    assert ts.attrs["units"] == "Intensity" and ts.attrs["title"] == "tilts"
    np.testing.assert_array_equal(ts.values, data)
    # two images: the caller must choose
    monkeypatch.setattr(rs, "_reader", lambda path: _fake_reader([sig, sig]))
    with pytest.raises(MetadataError, match=r"holds 2 images: \[0\] 'tilts' shape \(3, 4, 5\) "
                                            r".*; pass signal=<index> to choose one"):
        aet.open(tmp_path / "f.dm4")
    assert len(aet.open(tmp_path / "f.dm4", signal=1)) == 3


def _fake_reader(signals):
    def file_reader(filename, lazy=False):
        return signals

    file_reader.__module__ = "rsciio.digitalmicrograph"
    return file_reader
