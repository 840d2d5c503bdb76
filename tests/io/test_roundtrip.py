"""One parametrised round trip over every registered writable format and extension.

Each object is written with :func:`aet.io.write` and read back with :func:`aet.open`. Data
must come back exactly; metadata and provenance exactly where the format can carry them.
``CAPABILITIES`` states, per format, what it keeps; the test asserts both directions: kept
fields equal, lost fields absent (so a format that starts or stops keeping something fails).
"""

from __future__ import annotations

import numpy as np
import pytest

import aet
from aet.errors import MetadataError
from aet.io import REGISTRY

# what each writable format keeps. "euler": φ/ψ per projection; "attrs": user attrs;
# "provenance": the history before the "open" record; "arrays": extra per-atom arrays.
CAPABILITIES = {
    "zarr": {"pixel", "angles", "euler", "attrs", "provenance", "arrays"},
    "netcdf": {"pixel", "angles", "euler", "attrs", "provenance", "arrays"},
    ".npz": {"pixel", "angles", "euler", "attrs", "provenance"},
    ".npy": set(),  # the bare array: angles and pixel size are passed when reading
    "tiff": {"pixel", "angles", "euler", "attrs", "provenance"},
    "mrc": {"pixel", "angles"},  # Euler series are refused by the writer (tested below)
    "csv": {"attrs", "provenance", "arrays"},
    "xyz": {"attrs", "provenance", "arrays"},
    "cif": set(),
    "poscar": set(),
}

# every writable format × extension × kind; arrays also dask-backed (models are in memory)
# a NucleusTracker (kind "tracker", zarr only) round-trips in tests/dynamics/test_tracker.py
CASES = [(f.name, ext, kind, lazy) for f in REGISTRY.values() if f.writer
         for ext in (f.extensions or (".vasp",)) for kind in f.kinds if kind != "tracker"
         for lazy in ((False,) if kind == "model" else (False, True))]


def _caps(name, ext):
    return CAPABILITIES[ext] if ext in CAPABILITIES else CAPABILITIES[name]


def _tilt_series(rng, euler: bool, lazy: bool):
    data = rng.normal(100, 20, size=(4, 6, 10)).astype(np.float32)
    th = np.array([-45.5, -10.25, 12.125, 60.0])
    angles = np.stack([[0.5, -0.25, 0, 1.5], th, [0, 0.75, -1, 0]], 1) if euler else th
    ts = aet.TiltSeries(data, angles=angles, pixel_size_A=0.3216, dose_e_per_A2=1234.5,
                        operator="aet test")
    ts = ts.isel(angle=slice(0, 4))  # one provenance record
    return ts.chunk({"angle": 3}) if lazy else ts


def _volume(rng, lazy: bool):
    vol = aet.Volume(rng.random((5, 6, 7)).astype(np.float32), voxel_size_A=0.4321,
                     annealing_time_min=9.0)
    vol = vol.isel(z=slice(0, 5))
    return vol.chunk({"z": 2}) if lazy else vol


def _model(rng):
    pos = rng.uniform(-15, 15, (40, 3))
    sp = np.where(rng.random(40) < 0.5, "Fe", "Pt")
    m = aet.AtomicModel(pos, sp, intensity=rng.random(40), b_factor=rng.random(40) + 0.5,
                        annealing_time_min=16.0)
    return m.select(center=(0, 0, 0), radius_A=100.0)  # one provenance record


def _open(path, name, ext, kind, obj):
    if ext == ".npy":  # the bare array: the caller supplies what is not in the file
        if kind == "tilt_series":
            return aet.open(path, angles=obj.euler_angles, pixel_size_A=obj.pixel_size_A)
        return aet.open(path, kind="volume", voxel_size_A=obj.voxel_size_A)
    return aet.open(path)


@pytest.mark.parametrize(("name", "ext", "kind", "lazy"), CASES,
                         ids=[f"{n}{e}-{k}-{'dask' if z else 'numpy'}" for n, e, k, z in CASES])
def test_round_trip(tmp_path, rng, name, ext, kind, lazy):
    caps = _caps(name, ext)
    path = tmp_path / f"obj{ext}"
    if kind == "tilt_series":
        euler = "euler" in caps or ".npy" == ext
        obj = _tilt_series(rng, euler=euler, lazy=lazy)
    elif kind == "volume":
        obj = _volume(rng, lazy)
    else:
        obj = _model(rng)
    aet.io.write(obj, path)
    assert not [p for p in tmp_path.iterdir() if "aet-tmp" in p.name]
    back = _open(path, name, ext, kind, obj)
    assert type(back) is type(obj)

    # provenance: the native stores restore it as it was (save/load is an identity); the
    # other formats add exactly one "open" record naming the file
    prov = back.provenance
    if name in ("zarr", "netcdf"):
        assert prov == obj.provenance
    else:
        assert prov[-1]["op"] == "open" and prov[-1]["params"]["path"] == str(path)
        if "provenance" in caps:
            assert prov[:-1] == obj.provenance
        else:
            assert len(prov) == 1

    user_attrs = {k: v for k, v in obj.attrs.items()
                  if k not in ("pixel_size_A", "voxel_size_A", "units")}
    if "attrs" in caps:
        assert {k: back.attrs.get(k) for k in user_attrs} == user_attrs
    else:
        assert not set(user_attrs) & set(back.attrs)

    if kind == "model":
        _check_model(back, obj, caps, name)
        return
    np.testing.assert_array_equal(back.values, obj.values)
    assert back.values.dtype == obj.values.dtype
    size = "pixel_size_A" if kind == "tilt_series" else "voxel_size_A"
    assert getattr(back, size) == getattr(obj, size)  # exact, also through float32 headers
    for d in back.dims:
        np.testing.assert_array_equal(back.data[d].values, obj.data[d].values)
    if kind == "tilt_series":
        np.testing.assert_array_equal(back.euler_angles, obj.euler_angles)


def _check_model(back, obj, caps, name):
    exact = name in ("csv", "zarr", "netcdf")  # binary, or text with repr(float)
    if exact:
        np.testing.assert_array_equal(back.positions, obj.positions)
    else:
        # the ASE writers (XYZ: 8 decimals, CIF, POSCAR) keep 1e-6 Å or better
        np.testing.assert_allclose(back.positions, obj.positions, atol=1e-6, rtol=0)
    assert list(back.species) == list(obj.species)
    extras = ("intensity", "b_factor")
    if "arrays" in caps:
        for k in extras:
            np.testing.assert_allclose(back[k], obj[k], rtol=0 if exact else 1e-7, atol=0)
    else:
        assert not set(extras) & set(back.data.data_vars)


@pytest.mark.parametrize("ext", REGISTRY["mrc"].extensions)
def test_mrc_refuses_to_drop_euler_angles(tmp_path, rng, ext):
    ts = _tilt_series(rng, euler=True, lazy=False)
    with pytest.raises(MetadataError, match=r"Euler angles φ/ψ that MRC cannot store; write "
                                            r"\.zarr, \.nc or \.tif"):
        aet.io.write(ts, tmp_path / f"ts{ext}")
    assert list(tmp_path.iterdir()) == []
    # dropping them explicitly is one call
    aet.io.write(ts.with_angles(ts.angles), tmp_path / f"ts{ext}")
    np.testing.assert_array_equal(aet.open(tmp_path / f"ts{ext}").angles, ts.angles)


def test_mrc_needs_dtype_for_float64_and_widens_uint8(tmp_path):
    vol = aet.Volume(np.linspace(0, 1, 27).reshape(3, 3, 3), voxel_size_A=1.0)
    with pytest.raises(TypeError, match=r"MRC files hold int8, int16, uint16, float16 or "
                                        r"float32 data, not float64; pass dtype='float32'"):
        aet.io.write(vol, tmp_path / "v.mrc")
    aet.io.write(vol, tmp_path / "v.mrc", dtype="float32")
    back = aet.open(tmp_path / "v.mrc")
    np.testing.assert_array_equal(back.values, vol.values.astype(np.float32))
    u8 = aet.Volume(np.arange(27, dtype=np.uint8).reshape(3, 3, 3) * 9, voxel_size_A=1.0)
    aet.io.write(u8, tmp_path / "u8.mrc")
    back = aet.open(tmp_path / "u8.mrc")
    assert back.values.dtype == np.uint16
    np.testing.assert_array_equal(back.values, u8.values)


def test_four_d_series_round_trips_frames(tmp_path, rng):
    data = rng.integers(0, 4000, size=(3, 2, 5, 6)).astype(np.uint16)
    ts = aet.TiltSeries(data, angles=[-20.0, 0.0, 20.0], pixel_size_A=0.5)
    for ext in (".mrc", ".tif", ".zarr"):
        aet.io.write(ts, tmp_path / f"ts{ext}")
        back = aet.open(tmp_path / f"ts{ext}")
        assert back.dims == ("angle", "frame", "y", "x")
        np.testing.assert_array_equal(back.values, data)
        np.testing.assert_array_equal(back.angles, ts.angles)


def test_imagej_tiff_round_trip(tmp_path, rng):
    ts = _tilt_series(rng, euler=True, lazy=False)
    aet.io.write(ts, tmp_path / "ij.tif", imagej=True)
    import tifffile

    with tifffile.TiffFile(tmp_path / "ij.tif") as tif:
        ij = tif.imagej_metadata
    assert ij["unit"] == "nm" and ij["spacing"] == pytest.approx(0.03216)
    back = aet.open(tmp_path / "ij.tif")
    np.testing.assert_array_equal(back.values, ts.values)
    np.testing.assert_array_equal(back.euler_angles, ts.euler_angles)
    assert back.pixel_size_A == ts.pixel_size_A
    assert back.provenance[:-1] == ts.provenance
