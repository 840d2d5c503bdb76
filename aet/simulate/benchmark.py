"""Benchmark cases: FePt nanoparticle tilt series with every degradation and the ground truth.

``fept_benchmark(size)`` with ``size``:

============  ========  =====  ============  ======  =====  ======  ==========================
size          particle  atoms  projections   pixel   image  frames  use
============  ========  =====  ============  ======  =====  ======  ==========================
"small"       18 Å      ~250   15 over ±69°  0.35 Å  80²    2       unit tests (< 2 s)
"standard"    30 Å      ~1000  47 over ±69°  0.35 Å  144²   4       the demo, method comparisons
"realistic"   31.7 Å    ~1170  47 over ±70°  0.35 Å  144²   3       the independent case (below)
"large"       80 Å      ~19k   68 over ±69°  0.35 Å  288²   3       the published scale
============  ========  =====  ============  ======  =====  ======  ==========================

The particle (``fept_particle``) has L1_0 grains of different variants (two in "standard"
and "realistic", four in "large"), an antiphase boundary, antisite and swap defects and a
mild core–shell strain; all are in the truth model's per-atom arrays. Any keyword of
:func:`fept_particle` (prefix ``particle_``) or :func:`simulate_acquisition` can be overridden.

**Engines.** ``engine="gaussian"`` (default) draws each atom as the analytic Gaussian that
refinement fits: fast, for unit tests. ``engine="abtem"`` images the same atoms with
:class:`aet.simulate.AbtemEngine` (abTEM's projected potential, a response calibrated on a
multislice simulation, abTEM's probe, point sampling): use it for every accuracy figure.
Structure and degradations are the same for both engines at the same seed.

**Dose.** ``dose_e_per_A2`` is the dose **per projection** (summed over its frames);
``total_dose_e_per_A2`` is the dose of the **whole series** (all projections and frames;
per projection = total / n_angles). Give one of them; ``params`` records both.

**"realistic"** is the independent case of issue 13: a 3 nm FePt particle (~1170 atoms),
47 projections over ±70°, 3 frames per projection, 1×10⁵ e⁻/Å² in total (2128 e⁻/Å² per
projection), per-projection shifts of RMS 0.505 Å (1.44 px, the RMS of a uniform ±2.5 px),
drift of RMS 0.15 Å per frame and axis (a speed of ~0.6 px per frame, mostly 0.3–0.9 px),
mild scan skew (0.5 % RMS), 0.3° RMS Euler angle errors, the tilt axis exactly along the
image y axis (no rotation, no offset), a 30 Å carbon support and a detector offset of 100
counts that is left in the data. Run it with ``fept_benchmark("realistic", engine="abtem")``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..model.atomicmodel import AtomicModel
from ..model.tiltseries import TiltSeries
from ..model.volume import Volume
from .abtem_engine import ENGINES, AbtemEngine
from .degrade import image_grid, simulate_acquisition
from .forward import (
    DEFAULT_B_FACTOR_A2,
    cross_sections,
    project_atoms,
    project_positions,
    render_volume,
)
from .scoring import Score, score
from .structures import CoreShellStrain, fept_film, fept_particle

__all__ = ["Benchmark", "benchmark_from_model", "fept_benchmark", "fept_film_benchmark"]

_PARTICLE = {
    "small": {"diameter_A": 18.0, "n_grains": 1, "phase": "L10", "variant": 2,
              "antisite_fraction": 0.02, "n_swaps": 2, "antiphase_boundary": False,
              "core_shell": (4.0, -0.005, 0.005)},
    "standard": {"diameter_A": 30.0, "n_grains": 2, "phase": "L10", "variant": [2, 0],
                 "antisite_fraction": 0.03, "n_swaps": 5, "antiphase_boundary": True,
                 "core_shell": (7.0, -0.01, 0.005)},
    "realistic": {"diameter_A": 31.7, "n_grains": 2, "phase": "L10", "variant": [2, 0],
                  "antisite_fraction": 0.03, "n_swaps": 5, "antiphase_boundary": True,
                  "core_shell": (7.0, -0.01, 0.005)},
    "large": {"diameter_A": 80.0, "n_grains": 4, "phase": ["L10", "L10", "A1", "L12_FePt3"],
              "variant": [2, 0, 1, 2], "antisite_fraction": 0.03, "n_swaps": 50,
              "antiphase_boundary": True, "core_shell": (20.0, -0.01, 0.005)},
}
_ACQ = {
    "small": {"n_angles": 15, "shape": (80, 80), "n_frames": 2},
    "standard": {"n_angles": 47, "shape": (144, 144), "n_frames": 4},
    "realistic": {"n_angles": 47, "shape": (144, 144), "n_frames": 3, "max_tilt_deg": 70.0,
                  "dose_e_per_A2": None, "total_dose_e_per_A2": 1.0e5,
                  "shift_sigma_A": 2.5 / math.sqrt(3.0) * 0.35, "drift_A_per_frame": 0.15,
                  "scan_distortion": 0.005, "angle_error_deg": 0.3,
                  "tilt_axis_rotation_deg": 0.0, "tilt_axis_offset_A": 0.0},
    "large": {"n_angles": 68, "shape": (288, 288), "n_frames": 3},
}
_COMMON = {"pixel_size_A": 0.35, "max_tilt_deg": 69.0, "dose_e_per_A2": 2.0e4,
           "total_dose_e_per_A2": None, "gain": 2.5,
           "offset": 100.0, "read_noise": 2.0, "shift_sigma_A": 1.0, "drift_A_per_frame": 0.3,
           "scan_distortion": 0.005, "scan_directions_deg": [0.0], "angle_error_deg": 0.3,
           "background_thickness_A": 30.0,
           "probe_fwhm_A": 0.8, "b_factor_A2": DEFAULT_B_FACTOR_A2, "z_exponent": 1.7,
           "reference_cross_section_A2": 0.02}
# keywords of the Gaussian engine only, and of the abTEM engine only
_GAUSSIAN_ONLY = ("probe_fwhm_A", "b_factor_A2", "z_exponent", "reference_cross_section_A2",
                  "nonlinear_param")
_ABTEM_KEYS = ("energy_keV", "semiangle_mrad", "aberrations", "source_sigma_A",
               "thermal_sigma_A", "response_exponent", "atom_exponent", "response_scale",
               "parametrization", "oversampling")
_ACQ_KEYS = ("n_angles", "max_tilt_deg", "shape", "pixel_size_A", "n_frames", "dose_e_per_A2",
             "total_dose_e_per_A2", "gain", "offset", "read_noise", "shift_sigma_A",
             "drift_A_per_frame", "scan_distortion", "scan_directions_deg", "angle_error_deg",
             "tilt_axis_rotation_deg", "tilt_axis_offset_A", "background_thickness_A")


@dataclass(frozen=True)
class Benchmark:
    """A simulated experiment with its answers.

    Attributes
    ----------
    tilt_series : TiltSeries
        Raw data, dims (angle, frame, y, x), detector counts, nominal angles; attrs
        ``simulation_engine`` and ``simulated`` name the engine and the call.
    clean : TiltSeries
        Noise-free, undegraded projections (angle, y, x) of the truth at the nominal angles
        (no shifts, drift, distortion, angle errors, background or noise), same engine and
        forward model (non-linear when asked), Å² per pixel.
    truth : AtomicModel
        Ground-truth atoms with the per-atom truth arrays of :func:`fept_particle` plus
        ``b_factor`` (Å²) and ``cross_section_A2`` (the engine's integrated signal per atom).
    alignment : xarray.Dataset
        Every applied degradation (see :func:`simulate_acquisition`).
    params : dict
        All parameters used (JSON-able), including ``engine`` and, for the abTEM engine,
        its settings under ``abtem``.
    noise_free : numpy.ndarray
        (angle, frame, y, x) expected signal in Å² per pixel with all geometric degradations
        and the background, before the detector.
    background : numpy.ndarray
        (angle, y, x) expected carbon background, Å² per pixel.
    engine : {"gaussian", "abtem"}
        The image engine that made the data.
    """

    tilt_series: TiltSeries
    clean: TiltSeries
    truth: AtomicModel
    alignment: xr.Dataset
    params: dict
    noise_free: np.ndarray = field(repr=False)
    background: np.ndarray = field(repr=False)
    engine: str = "gaussian"

    def truth_volume(self, voxel_size_A: float | None = None, *, shape=None,
                     dtype=np.float32) -> Volume:
        """Ground-truth volume (z, y, x): the truth's atoms as the Gaussian engine's 3D
        Gaussians (cross-section per voxel, Å²; a reference for reconstructions, for either
        engine); default voxel = pixel size and a cube as wide as the images."""
        vs = self.params["pixel_size_A"] if voxel_size_A is None else float(voxel_size_A)
        if shape is None:
            n = int(round(self.params["shape"][1] * self.params["pixel_size_A"] / vs))
            shape = (n, n, n)
        return render_volume(self.truth, vs, shape=shape,
                             probe_fwhm_A=self.params["probe_fwhm_A"],
                             z_exponent=self.params["z_exponent"],
                             reference_cross_section_A2=self.params[
                                 "reference_cross_section_A2"], dtype=dtype)

    def score(self, predicted, **kw) -> Score:
        """:func:`aet.simulate.score` of ``predicted`` against :attr:`truth`."""
        return score(predicted, self.truth, **kw)

    def __repr__(self) -> str:
        p = self.params
        if self.engine == "abtem":
            a = p["abtem"]
            model = (f"engine='abtem' ({a['parametrization']}, p={a['atom_exponent']:g}, "
                     f"γ={a['response_exponent']:g}, "
                     f"{a['energy_keV']:g} kV, {a['semiangle_mrad']:g} mrad)")
        else:
            model = f"engine='gaussian', nonlinear={p['nonlinear']}"
        total = p.get("total_dose_e_per_A2")
        dose = (f"dose {p['dose_e_per_A2']:g} e⁻/Å² per projection"
                + (f" ({total:g} in total)" if total else "")) if p["dose_e_per_A2"] else \
            "no shot noise"
        return (f"<aet.simulate.Benchmark size={p['size']!r} seed={p['seed']}: "
                f"{self.truth.n_atoms} atoms {self.truth.species_counts()}, "
                f"{p['n_angles']} projections × {p['n_frames']} frames of "
                f"{p['shape'][0]}×{p['shape'][1]} px at {p['pixel_size_A']} Å, "
                f"{dose}, {model}>")


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int (the benchmark is keyed by it), got {seed!r}")


def _check_engine(engine):
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")


def _split_engine_overrides(engine: str, overrides: dict) -> tuple[dict, dict]:
    """Pull the abTEM keywords out of ``overrides``; refuse those of the other engine."""
    eng = {k: overrides.pop(k) for k in list(overrides) if k in _ABTEM_KEYS}
    if engine == "gaussian" and eng:
        raise ValueError(f"{sorted(eng)} configure the abTEM engine; pass engine='abtem' "
                         f"or drop them")
    if engine == "abtem":
        bad = sorted(k for k in overrides if k in _GAUSSIAN_ONLY)
        if bad:
            raise ValueError(f"{bad} configure the Gaussian engine and have no effect with "
                             f"engine='abtem'; use thermal_sigma_A, semiangle_mrad, "
                             f"source_sigma_A, response_exponent... instead")
    return overrides, eng


def _resolve_dose(acq: dict, given: dict) -> None:
    """One of dose_e_per_A2 (per projection) / total_dose_e_per_A2 (whole series)."""
    if "dose_e_per_A2" in given and "total_dose_e_per_A2" in given \
            and given["dose_e_per_A2"] is not None and given["total_dose_e_per_A2"] is not None:
        raise ValueError("give either dose_e_per_A2 (per projection) or total_dose_e_per_A2 "
                         "(whole series), not both")
    if given.get("total_dose_e_per_A2") is not None:
        acq["dose_e_per_A2"] = None
    elif "dose_e_per_A2" in given:
        acq["total_dose_e_per_A2"] = None
    total = acq.get("total_dose_e_per_A2")
    if total is not None:
        if not (isinstance(total, (int, float, np.number)) and total > 0):
            raise ValueError(f"total_dose_e_per_A2 must be > 0 e⁻/Å² (whole series), got "
                             f"{total!r}")
        acq["dose_e_per_A2"] = float(total) / int(acq["n_angles"])
    elif acq.get("dose_e_per_A2") is not None:
        acq["total_dose_e_per_A2"] = None


def _simulate(truth: AtomicModel, angles, acq: dict, engine: AbtemEngine | None,
              nonlinear: str | None, rng) -> tuple:
    """Degraded acquisition and clean projections of ``truth`` (the shared core of every
    benchmark builder)."""
    shape = tuple(int(s) for s in acq["shape"])
    px = float(acq["pixel_size_A"])
    forward = {"probe_fwhm_A": acq["probe_fwhm_A"], "z_exponent": acq["z_exponent"],
               "reference_cross_section_A2": acq["reference_cross_section_A2"],
               "nonlinearity": nonlinear, "nonlinear_param": acq["nonlinear_param"]}
    a = simulate_acquisition(
        truth, angles, shape=shape, pixel_size_A=px,
        n_frames=acq["n_frames"], dose_e_per_A2=acq["dose_e_per_A2"], gain=acq["gain"],
        offset=acq["offset"], read_noise=acq["read_noise"],
        shift_sigma_A=acq["shift_sigma_A"], drift_A_per_frame=acq["drift_A_per_frame"],
        scan_distortion=acq["scan_distortion"], angle_error_deg=acq["angle_error_deg"],
        scan_directions_deg=acq["scan_directions_deg"],
        tilt_axis_rotation_deg=acq["tilt_axis_rotation_deg"],
        tilt_axis_offset_A=acq["tilt_axis_offset_A"],
        background_thickness_A=acq["background_thickness_A"], engine=engine, seed=rng,
        **forward)
    if engine is None:
        clean = project_atoms(truth, angles, shape=shape, pixel_size_A=px, dtype=np.float32,
                              **forward)
    else:
        clean = clean_projections(truth, angles, shape=shape, pixel_size_A=px, engine=engine)
    return a, clean


def clean_projections(model: AtomicModel, angles, *, shape, pixel_size_A: float,
                      engine: AbtemEngine, dtype=np.float32) -> TiltSeries:
    """Noise-free abTEM-engine projections (angle, y, x) of ``model`` at ``angles`` (tilt θ
    or (n, 3) Euler, degrees), sampled at the pixel centres; Å² per pixel."""
    from .forward import euler_array

    euler = euler_array(angles)
    ny, nx = (int(s) for s in shape)
    xy = project_positions(model.positions, euler)
    y, x = image_grid((ny, nx), pixel_size_A)
    grid = np.stack(np.broadcast_arrays(x[None, :], y[:, None]), axis=-1)
    pts = np.broadcast_to(grid, (len(euler), ny, nx, 2))
    img = engine.render(xy, model.species, pts, pixel_size_A=pixel_size_A, dtype=dtype)
    single = bool(np.all(euler[:, 0] == 0) and np.all(euler[:, 2] == 0))
    return TiltSeries(img, angles=euler[:, 1] if single else euler,
                      pixel_size_A=float(pixel_size_A),
                      units="A2 per pixel (ADF fraction x pixel area)",
                      simulation_engine="abtem")


def _truth_with_arrays(truth: AtomicModel, acq: dict, engine: AbtemEngine | None,
                       op: str, op_params: dict) -> AtomicModel:
    n = truth.n_atoms
    if engine is None:
        xs = cross_sections(truth.species, z_exponent=acq["z_exponent"],
                            reference_cross_section_A2=acq["reference_cross_section_A2"])
        b = np.full(n, float(acq["b_factor_A2"]))
    else:
        per = {s: engine.atom_cross_section_A2(s) for s in np.unique(truth.species)}
        xs = np.array([per[s] for s in truth.species.tolist()], dtype=np.float64)
        b = np.full(n, 8 * math.pi**2 * float(engine.thermal_sigma_A) ** 2)
    truth = truth.with_arrays(b_factor=b, cross_section_A2=xs)
    ds = truth.data.assign_coords(atom=np.arange(n))
    ds.attrs.pop("provenance", None)
    return AtomicModel._from_core(ds, op=op, params=op_params)


def _finish(truth, angles, acq, engine_name, engine, nonlinear, rng, *, size, seed, call,
            extra_params) -> Benchmark:
    a, clean = _simulate(truth, angles, acq, engine, nonlinear, rng)
    params = {"size": size, "seed": int(seed), "engine": engine_name, "nonlinear": nonlinear,
              **{k: v for k, v in acq.items()},
              "shape": [int(s) for s in acq["shape"]],
              "angles_deg": np.asarray(angles).tolist(), **extra_params,
              "n_atoms": truth.n_atoms}
    if engine is not None:
        params["abtem"] = engine.to_dict()
    ts = TiltSeries(a.tilt_series.data.assign_attrs(simulated=call))
    ts = ts._replace(ts.data, "simulate", {"engine": engine_name, "call": call,
                                           **({"abtem": params["abtem"]} if engine else {})})
    return Benchmark(ts, clean, truth, a.alignment, params, a.noise_free, a.background,
                     engine=engine_name)


def _engine_from(engine: str, eng_kw: dict) -> AbtemEngine | None:
    if engine == "gaussian":
        return None
    kw = dict(eng_kw)
    try:
        return AbtemEngine(**kw)
    except TypeError as exc:
        raise TypeError(f"abTEM engine keywords: {exc}") from None


def fept_benchmark(size: str = "standard", *, seed: int = 0, engine: str = "gaussian",
                   nonlinear: bool | str = False, **overrides: Any) -> Benchmark:
    """A simulated FePt AET experiment with ground truth.

    Parameters
    ----------
    size : {"small", "standard", "realistic", "large"}
        See the module table; "realistic" is the independent case of issue 13.
    seed : int
        Everything random (structure and degradations) follows from it: the same seed gives
        identical data, and the same structure and degradations for both engines.
    engine : {"gaussian", "abtem"}
        Image engine: analytic Gaussian atoms (fast; the model family refinement fits) or
        :class:`aet.simulate.AbtemEngine` (abTEM potential, calibrated response, abTEM
        probe, point sampling; for accuracy figures).
    nonlinear : bool or {"power", "saturation"}
        Gaussian engine only: non-linear ADF response (True = saturation at 15 Pt-atom
        equivalents per pixel). The abTEM engine's response is ``response_exponent``.
    **overrides
        Acquisition keywords (``dose_e_per_A2`` — **per projection**, all frames —,
        ``total_dose_e_per_A2`` — **whole series**, all projections and frames; give one —,
        ``n_frames``, ``n_angles``, ``shape``, ``max_tilt_deg``, ``shift_sigma_A``,
        ``drift_A_per_frame``, ``scan_distortion``, ``angle_error_deg``,
        ``tilt_axis_rotation_deg``, ``tilt_axis_offset_A``, ``scan_directions_deg`` (e.g.
        ``(0, 90)`` for alternating scan directions), ``background_thickness_A``, ``gain``,
        ``offset``, ``read_noise``...), Gaussian-engine keywords (``probe_fwhm_A``,
        ``b_factor_A2``, ``z_exponent``, ``reference_cross_section_A2``,
        ``nonlinear_param``), abTEM-engine keywords (``response_exponent`` γ (default 1.4),
        ``atom_exponent`` p (default 1.75), ``response_scale``, ``parametrization``
        ("lobato"/"kirkland"), ``energy_keV`` (300), ``semiangle_mrad`` (22),
        ``source_sigma_A`` (0.25), ``thermal_sigma_A`` (0.08), ``aberrations`` (dict for
        ``abtem.Probe``), ``oversampling`` (4); see
        :class:`aet.simulate.AbtemEngine`) and particle keywords prefixed ``particle_``
        (``particle_diameter_A=25``). Set a degradation to 0 (or ``dose_e_per_A2=None``)
        to switch it off.

    Returns
    -------
    Benchmark

    Examples
    --------
    >>> b = fept_benchmark("small", seed=0)
    >>> b.tilt_series.data.dims
    ('angle', 'frame', 'y', 'x')
    >>> b.clean.data.shape
    (15, 80, 80)
    """
    if size not in _PARTICLE:
        raise ValueError(f"size must be one of {sorted(_PARTICLE)}, got {size!r}")
    _check_seed(seed)
    _check_engine(engine)
    overrides, eng_kw = _split_engine_overrides(engine, dict(overrides))
    part = copy.deepcopy(_PARTICLE[size])
    acq = {**_COMMON, **_ACQ[size]}
    rng = np.random.default_rng([int(seed), 20260])
    axis_rot = float(rng.uniform(-2.0, 2.0))
    axis_off = float(rng.uniform(-1.5, 1.5))
    acq.setdefault("tilt_axis_rotation_deg", axis_rot)
    acq.setdefault("tilt_axis_offset_A", axis_off)
    acq["nonlinear_param"] = None
    given = {}
    for k, v in overrides.items():
        if k.startswith("particle_"):
            name = k[len("particle_"):]
            if name not in part and name not in ("pt_rich_core_A", "core_pt_fraction",
                                                 "shape", "c_over_a", "pt_fraction",
                                                 "grain_orientations", "displacements"):
                raise ValueError(f"unknown particle override {k!r}; use particle_ + a keyword "
                                 f"of aet.simulate.fept_particle")
            part[name] = v
        elif k in acq:
            acq[k] = v
            given[k] = v
        else:
            raise ValueError(
                f"unknown override {k!r}; valid: {sorted(acq)}, the abTEM engine's "
                f"{list(_ABTEM_KEYS)} or particle_<fept_particle kw>")
    _resolve_dose(acq, given)
    if nonlinear is True:
        kind = "saturation"
    elif nonlinear is False or nonlinear is None:
        kind = None
    elif nonlinear in ("power", "saturation"):
        kind = nonlinear
    else:
        raise ValueError(f"nonlinear must be True, False, 'power' or 'saturation', "
                         f"got {nonlinear!r}")
    if kind is not None and engine == "abtem":
        raise ValueError("nonlinear= applies to the Gaussian engine; the abTEM engine's "
                         "response is set by response_exponent=")
    if kind == "saturation" and acq["nonlinear_param"] is None:
        acq["nonlinear_param"] = 15.0
    eng = _engine_from(engine, eng_kw)
    core_shell = part.pop("core_shell", None)
    displacements = list(part.pop("displacements", ()))
    if core_shell is not None:
        displacements.append(CoreShellStrain(*core_shell))
    truth = fept_particle(**part, displacements=displacements, orientation="random",
                          seed=rng)
    shuffle = rng.permutation(truth.n_atoms)
    truth = truth.isel(shuffle)
    truth = _truth_with_arrays(truth, acq, eng, "simulate.fept_benchmark",
                               {"size": size, "seed": int(seed), "engine": engine})
    angles = np.linspace(-acq["max_tilt_deg"], acq["max_tilt_deg"], int(acq["n_angles"]))
    call = f"aet.simulate.fept_benchmark({size!r}, seed={int(seed)}, engine={engine!r})"
    extra = {"particle": {k: (v if not callable(v) else repr(v)) for k, v in part.items()},
             "core_shell_strain": list(core_shell) if core_shell else None}
    return _finish(truth, angles, acq, engine, eng, kind, rng, size=size, seed=seed,
                   call=call, extra_params=extra)


def _auto_shape(model: AtomicModel, pixel_size_A: float, margin_A: float = 6.0) -> tuple:
    """Square image wide enough for the model at any rotation (its radius + margin)."""
    pos = model.positions
    r = float(np.linalg.norm(pos, axis=1).max()) if len(pos) else 0.0
    n = 2 * int(math.ceil((r + margin_A) / pixel_size_A))
    return (n, n)


def benchmark_from_model(truth_model: AtomicModel, *, engine: str = "abtem", seed: int = 0,
                         **acquisition: Any) -> Benchmark:
    """Image any ground-truth atomic model as a degraded tilt series.

    Parameters
    ----------
    truth_model : AtomicModel
        Ground truth: positions (x, y, z) Å in the Volume frame (the rotation centre is the
        origin) and element symbols (``"X"`` is refused); its per-atom arrays are kept.
    engine : {"abtem", "gaussian"}
        Image engine (default abTEM: accuracy figures come from physics we did not write).
    seed : int
        Seed of the degradations (shifts, drift, distortion, angle errors, background,
        noise).
    **acquisition
        Defaults are the acquisition of the "realistic" case: ``n_angles`` 47,
        ``max_tilt_deg`` 70, ``n_frames`` 3, ``total_dose_e_per_A2`` 1×10⁵ (**whole
        series**; or ``dose_e_per_A2`` **per projection**), ``pixel_size_A`` 0.35,
        ``shape`` (default: a square covering the model at any rotation with 6 Å margin),
        ``shift_sigma_A`` 0.505, ``drift_A_per_frame`` 0.15, ``scan_distortion`` 0.005,
        ``angle_error_deg`` 0.3, ``tilt_axis_rotation_deg`` 0, ``tilt_axis_offset_A`` 0,
        ``background_thickness_A`` 30, ``gain`` 2.5, ``offset`` 100, ``read_noise`` 2;
        ``angles_deg`` (explicit nominal tilt angles, degrees) replaces ``n_angles`` and
        ``max_tilt_deg``; plus the engine keywords of :func:`fept_benchmark`.

    Returns
    -------
    Benchmark
        ``size`` is ``"model"``; ``truth`` is ``truth_model`` (atoms in the given order)
        with ``b_factor`` and ``cross_section_A2`` set by the engine.
    """
    if not isinstance(truth_model, AtomicModel):
        raise TypeError(f"truth_model must be an aet.AtomicModel, got "
                        f"{type(truth_model).__name__}")
    if truth_model.n_atoms == 0:
        raise ValueError("truth_model has no atoms; give a model with at least one atom")
    _check_seed(seed)
    _check_engine(engine)
    acqd, eng_kw = _split_engine_overrides(engine, dict(acquisition))
    angles_deg = acqd.pop("angles_deg", None)
    acq = {**_COMMON, **_ACQ["realistic"], "nonlinear_param": None}
    unknown = sorted(k for k in acqd if k not in acq)
    if unknown:
        raise ValueError(f"unknown acquisition keyword(s) {unknown}; valid: "
                         f"{sorted(_ACQ_KEYS)}, 'angles_deg', the Gaussian engine's "
                         f"{list(_GAUSSIAN_ONLY)} or the abTEM engine's {list(_ABTEM_KEYS)}")
    acq.update(acqd)
    if angles_deg is not None:
        angles = np.asarray(angles_deg, dtype=np.float64).reshape(-1)
        acq["n_angles"] = len(angles)
        acq["max_tilt_deg"] = float(np.abs(angles).max())
    else:
        angles = np.linspace(-acq["max_tilt_deg"], acq["max_tilt_deg"], int(acq["n_angles"]))
    _resolve_dose(acq, acqd)
    if "shape" not in acqd:
        acq["shape"] = _auto_shape(truth_model, float(acq["pixel_size_A"]))
    eng = _engine_from(engine, eng_kw)
    rng = np.random.default_rng([int(seed), 20261])
    truth = _truth_with_arrays(truth_model, acq, eng, "simulate.benchmark_from_model",
                               {"seed": int(seed), "engine": engine})
    call = f"aet.simulate.benchmark_from_model(<{truth.n_atoms} atoms>, seed={int(seed)}, " \
           f"engine={engine!r})"
    return _finish(truth, angles, acq, engine, eng, None, rng, size="model", seed=seed,
                   call=call, extra_params={})


def fept_film_benchmark(size_A=(70.0, 40.0, 16.0), *, seed: int = 0, engine: str = "gaussian",
                        field_of_view_A: float = 40.0, **overrides: Any) -> Benchmark:
    """An extended FePt film imaged as a tilt series (material enters and leaves the view).

    The film is :func:`aet.simulate.fept_film` (a box ``size_A = (Lx, Ly, thickness)`` Å,
    one L1_0 grain of random lattice orientation, 3 % antisites), wider along x than the
    square field of view ``field_of_view_A`` (Å), so its edges leave the view as it tilts
    about y. Keywords as :func:`benchmark_from_model` (acquisition and engine) plus
    ``particle_<fept_film keyword>``; the default acquisition is the "realistic" one.

    Returns
    -------
    Benchmark
        ``size`` is ``"film"``; ``truth`` holds every atom of the film (in the view or
        not at a given tilt).
    """
    _check_seed(seed)
    _check_engine(engine)
    rng = np.random.default_rng([int(seed), 20262])
    film_kw = {"phase": "L10", "variant": 2, "antisite_fraction": 0.03,
               "lattice_orientation": "random"}
    acq = {}
    for k, v in overrides.items():
        if k.startswith("particle_"):
            film_kw[k[len("particle_"):]] = v
        else:
            acq[k] = v
    px = float(acq.get("pixel_size_A", _COMMON["pixel_size_A"]))
    fov = float(field_of_view_A)
    if not (math.isfinite(fov) and fov > 0):
        raise ValueError(f"field_of_view_A must be a positive length in Å, got "
                         f"{field_of_view_A!r}")
    acq.setdefault("shape", (int(round(fov / px)),) * 2)
    truth = fept_film(size_A, seed=rng, **film_kw)
    b = benchmark_from_model(truth, engine=engine, seed=seed, **acq)
    params = {**b.params, "size": "film", "film_size_A": [float(v) for v in size_A],
              "film": {k: (v if not callable(v) else repr(v)) for k, v in film_kw.items()}}
    call = f"aet.simulate.fept_film_benchmark({tuple(size_A)!r}, seed={int(seed)}, " \
           f"engine={engine!r})"
    ts = b.tilt_series._replace(b.tilt_series.data.assign_attrs(simulated=call),
                                "simulate.fept_film_benchmark",
                                {"size_A": [float(v) for v in size_A], "seed": int(seed),
                                 "engine": engine})
    return Benchmark(ts, b.clean, b.truth, b.alignment, params, b.noise_free, b.background,
                     engine=b.engine)
