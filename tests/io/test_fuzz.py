"""Hypothesis: random shapes/dtypes/values to the constructors, random and truncated bytes to
every reader. Only documented exceptions may come out:

- the :mod:`aet.errors` types (``MetadataError``, ``UnknownFormatError``, ``CorruptFileError``
  — which names the file —, ``MissingVariableError``), or
- a plain ``ValueError``/``TypeError`` raised by aet's own validation (the raising frame must
  be inside the ``aet`` package: never a crash deep in a library).
"""

from __future__ import annotations

import tempfile
import traceback
from pathlib import Path

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import aet
from aet.errors import AetError, CorruptFileError
from aet.io import REGISTRY

AET_DIR = str(Path(aet.__file__).parent)
# no "explain" phase: it imports libcst, whose DeprecationWarning pytest turns into an error
FAST = settings(max_examples=15, deadline=None,
                phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def _check_documented(exc: BaseException, path: Path | None = None) -> None:
    if isinstance(exc, AetError):
        if isinstance(exc, CorruptFileError) and path is not None:
            assert path.name in str(exc), f"CorruptFileError must name the file: {exc}"
        return
    assert type(exc) in (ValueError, TypeError), \
        f"undocumented exception {type(exc).__module__}.{type(exc).__name__}: {exc}"
    last = traceback.extract_tb(exc.__traceback__)[-1]
    assert last.filename.startswith(AET_DIR), \
        f"{type(exc).__name__} raised inside a library ({last.filename}:{last.lineno}): {exc}"


# --------------------------------------------------------------------------- constructors
dtypes = st.one_of(hnp.floating_dtypes(), hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(),
                   hnp.complex_number_dtypes(), hnp.boolean_dtypes())
arrays = dtypes.flatmap(lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=5,
                                                                   min_side=0, max_side=4)))
lengths = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                    st.integers(-3, 3))


@FAST
@given(arr=arrays, px=lengths, angles=st.one_of(
    st.none(), st.lists(st.one_of(st.floats(-400, 400), st.just(float("nan"))), max_size=5),
    hnp.arrays(np.float64, st.tuples(st.integers(0, 5), st.just(3)),
               elements=st.floats(-200, 200))))
def test_tiltseries_constructor(arr, px, angles):
    try:
        ts = aet.TiltSeries(arr, angles=angles, pixel_size_A=px)
    except Exception as exc:  # noqa: BLE001 - we check the type below
        _check_documented(exc)
        return
    assert ts.dims in (("angle", "y", "x"), ("angle", "frame", "y", "x"))
    np.testing.assert_array_equal(ts.values, arr)
    assert ts.data.x.values[arr.shape[-1] // 2] == 0.0
    assert len(ts.angles) == arr.shape[0] and np.all(np.abs(ts.angles) <= 180)
    assert ts.pixel_size_A > 0


@FAST
@given(arr=arrays, vs=lengths)
def test_volume_constructor(arr, vs):
    try:
        vol = aet.Volume(arr, voxel_size_A=vs)
    except Exception as exc:  # noqa: BLE001
        _check_documented(exc)
        return
    assert vol.dims == ("z", "y", "x")
    np.testing.assert_array_equal(vol.values, arr)
    for d, n in zip(vol.dims, arr.shape):
        assert vol.data[d].values[n // 2] == 0.0


species = st.sampled_from(["Fe", "Pt", "X", "Qq", "", "fe"])


@FAST
@given(pos=st.one_of(hnp.arrays(st.sampled_from([np.float64, np.float32, np.int32,
                                                 np.complex64, np.bool_]),
                                hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)),
                     st.lists(st.lists(st.floats(allow_nan=True), max_size=4), max_size=4)),
       sp=st.one_of(species, st.lists(species, max_size=6)))
def test_atomicmodel_constructor(pos, sp):
    try:
        m = aet.AtomicModel(pos, sp)
    except Exception as exc:  # noqa: BLE001
        _check_documented(exc)
        return
    p = np.asarray(pos, dtype=np.float64).reshape(-1, 3)
    np.testing.assert_array_equal(m.positions, p)
    assert m.n_atoms == len(p)


# --------------------------------------------------------------------------- readers
def _valid_bytes() -> dict[str, bytes]:
    """One small valid file per writable extension (what truncation starts from)."""
    out = {}
    ts = aet.TiltSeries(np.arange(60, dtype=np.float32).reshape(3, 4, 5),
                        angles=[-30.0, 0.0, 30.0], pixel_size_A=0.5)
    model = aet.AtomicModel([[0.0, 0.0, 0.0], [1.5, 1.5, 0.0]], ["Fe", "Pt"])
    with tempfile.TemporaryDirectory() as d:
        for ext, obj in ((".tif", ts), (".mrc", ts), (".npz", ts), (".npy", ts), (".nc", ts),
                         (".csv", model), (".xyz", model), (".cif", model),
                         (".vasp", model)):
            p = Path(d) / f"f{ext}"
            aet.io.write(obj, p)
            out[ext] = p.read_bytes()
        import scipy.io

        scipy.io.savemat(Path(d) / "f.mat", {"proj": np.ones((5, 4, 3), np.float32),
                                             "angles": np.zeros((3, 3))})
        out[".mat"] = (Path(d) / "f.mat").read_bytes()
        from tests.io.test_matlab import _save_v73

        _save_v73(Path(d) / "g.mat", {"model": np.ones((3, 4)), "atoms": np.ones((1, 4))})
        out["v7.3.mat"] = (Path(d) / "g.mat").read_bytes()
    return out


VALID = _valid_bytes()
READ_EXTS = sorted({e for f in REGISTRY.values() if f.reader for e in f.extensions
                    if e != ".zarr"} | {".vasp"})


def _open_bytes(ext: str, data: bytes):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzz.{ext.rsplit('.', 1)[-1]}"
        path.write_bytes(data)
        try:
            aet.open(path, pixel_size_A=1.0, angles=None)
        except Exception as exc:  # noqa: BLE001
            _check_documented(exc, path)


@pytest.mark.parametrize("ext", READ_EXTS)
@FAST
@given(data=st.binary(max_size=1500))
def test_random_bytes_to_every_reader(ext, data):
    _open_bytes(ext, data)


@pytest.mark.parametrize("ext", sorted(VALID))
@FAST
@given(cut=st.floats(0.0, 1.0, exclude_max=True), flip=st.integers(0, 2**16), bit=st.booleans())
def test_truncated_or_damaged_files_to_every_reader(ext, cut, flip, bit):
    data = bytearray(VALID[ext][: int(len(VALID[ext]) * cut)] if not bit else VALID[ext])
    if bit and data:  # one flipped byte instead of a cut
        data[flip % len(data)] ^= 0xFF
    _open_bytes(ext, bytes(data))


@pytest.mark.parametrize("name", ["dm_3D_test-1.dm3", "dm_3D_test-1.dm4",
                                  "64x64x5_TEM_preview_1.ser", "example_signal.emd",
                                  "20241021_00405_movie.mrc"])
@FAST
@given(cut=st.floats(0.0, 1.0, exclude_max=True), flip=st.integers(0, 2**16), bit=st.booleans())
def test_truncated_or_damaged_microscope_files(shared_data, name, cut, flip, bit):
    """The files written by acquisition software (RosettaSciIO's samples), damaged."""
    raw = (shared_data / "io_samples" / name).read_bytes()
    data = bytearray(raw[: int(len(raw) * cut)] if not bit else raw)
    if bit and data:
        data[flip % len(data)] ^= 0xFF
    _open_bytes(name, bytes(data))


@FAST
@given(cut=st.floats(0.0, 1.0, exclude_max=True), which=st.integers(0, 50))
def test_damaged_zarr_store(cut, which):
    ts = aet.TiltSeries(np.ones((3, 4, 5), np.float32), angles=[-1.0, 0.0, 1.0],
                        pixel_size_A=1.0)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.zarr"
        ts.save(path)
        files = sorted(p for p in path.rglob("*") if p.is_file())
        victim = files[which % len(files)]
        raw = victim.read_bytes()
        victim.write_bytes(raw[: int(len(raw) * cut)])
        try:
            aet.open(path).values  # noqa: B018 - reading the data is the point
        except Exception as exc:  # noqa: BLE001
            _check_documented(exc, path)
