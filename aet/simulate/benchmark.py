"""Benchmark cases: FePt nanoparticle tilt series with every degradation and the ground truth.

``fept_benchmark(size)`` with ``size``:

===========  ========  =====  ============  ======  =====  ======  ===========================
size         particle  atoms  projections   pixel   image  frames  use
===========  ========  =====  ============  ======  =====  ======  ===========================
"small"      18 Å      ~250   15 over ±69°  0.35 Å  80²    2       unit tests (< 2 s)
"standard"   30 Å      ~1000  47 over ±69°  0.35 Å  144²   4       the demo, method comparisons
"large"      80 Å      ~19k   68 over ±69°  0.35 Å  288²   3       the published scale
===========  ========  =====  ============  ======  =====  ======  ===========================

The particle (``fept_particle``) has L1_0 grains of different variants (two in "standard",
four in "large"), an antiphase boundary, antisite and swap defects and a mild core–shell
strain; all are in the truth model's per-atom arrays. Any keyword of
:func:`fept_particle` (prefix ``particle_``) or :func:`simulate_acquisition` can be overridden.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr

from ..model.atomicmodel import AtomicModel
from ..model.tiltseries import TiltSeries
from ..model.volume import Volume
from .degrade import simulate_acquisition
from .forward import DEFAULT_B_FACTOR_A2, cross_sections, project_atoms, render_volume
from .scoring import Score, score
from .structures import CoreShellStrain, fept_particle

__all__ = ["Benchmark", "fept_benchmark"]

_PARTICLE = {
    "small": {"diameter_A": 18.0, "n_grains": 1, "phase": "L10", "variant": 2,
              "antisite_fraction": 0.02, "n_swaps": 2, "antiphase_boundary": False,
              "core_shell": (4.0, -0.005, 0.005)},
    "standard": {"diameter_A": 30.0, "n_grains": 2, "phase": "L10", "variant": [2, 0],
                 "antisite_fraction": 0.03, "n_swaps": 5, "antiphase_boundary": True,
                 "core_shell": (7.0, -0.01, 0.005)},
    "large": {"diameter_A": 80.0, "n_grains": 4, "phase": ["L10", "L10", "A1", "L12_FePt3"],
              "variant": [2, 0, 1, 2], "antisite_fraction": 0.03, "n_swaps": 50,
              "antiphase_boundary": True, "core_shell": (20.0, -0.01, 0.005)},
}
_ACQ = {
    "small": {"n_angles": 15, "shape": (80, 80), "n_frames": 2},
    "standard": {"n_angles": 47, "shape": (144, 144), "n_frames": 4},
    "large": {"n_angles": 68, "shape": (288, 288), "n_frames": 3},
}
_COMMON = {"pixel_size_A": 0.35, "max_tilt_deg": 69.0, "dose_e_per_A2": 2.0e4, "gain": 2.5,
           "offset": 100.0, "read_noise": 2.0, "shift_sigma_A": 1.0, "drift_A_per_frame": 0.3,
           "scan_distortion": 0.005, "scan_directions_deg": [0.0], "angle_error_deg": 0.3,
           "background_thickness_A": 30.0,
           "probe_fwhm_A": 0.8, "b_factor_A2": DEFAULT_B_FACTOR_A2, "z_exponent": 1.7,
           "reference_cross_section_A2": 0.02}


@dataclass(frozen=True)
class Benchmark:
    """A simulated experiment with its answers.

    Attributes
    ----------
    tilt_series : TiltSeries
        Raw data, dims (angle, frame, y, x), detector counts, nominal angles.
    clean : TiltSeries
        Noise-free, undegraded projections (angle, y, x) of the truth at the nominal angles
        (no shifts, drift, distortion, angle errors, background or noise), same forward model
        (non-linear when asked), Å² per pixel.
    truth : AtomicModel
        Ground-truth atoms with the per-atom truth arrays of :func:`fept_particle` plus
        ``b_factor`` (Å²) and ``cross_section_A2``.
    alignment : xarray.Dataset
        Every applied degradation (see :func:`simulate_acquisition`).
    params : dict
        All parameters used (JSON-able).
    noise_free : numpy.ndarray
        (angle, frame, y, x) expected signal in Å² per pixel with all geometric degradations
        and the background, before the detector.
    background : numpy.ndarray
        (angle, y, x) expected carbon background, Å² per pixel.
    """

    tilt_series: TiltSeries
    clean: TiltSeries
    truth: AtomicModel
    alignment: xr.Dataset
    params: dict
    noise_free: np.ndarray = field(repr=False)
    background: np.ndarray = field(repr=False)

    def truth_volume(self, voxel_size_A: float | None = None, *, shape=None,
                     dtype=np.float32) -> Volume:
        """Ground-truth volume (z, y, x) rendered with the forward model's atoms (cross-section
        per voxel, Å²); default voxel = pixel size and a cube as wide as the images."""
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
        return (f"<aet.simulate.Benchmark size={p['size']!r} seed={p['seed']}: "
                f"{self.truth.n_atoms} atoms {self.truth.species_counts()}, "
                f"{p['n_angles']} projections × {p['n_frames']} frames of "
                f"{p['shape'][0]}×{p['shape'][1]} px at {p['pixel_size_A']} Å, "
                f"dose {p['dose_e_per_A2']:g} e⁻/Å² per projection, "
                f"nonlinear={p['nonlinear']}>")


def fept_benchmark(size: str = "standard", *, seed: int = 0, nonlinear: bool | str = False,
                   **overrides: Any) -> Benchmark:
    """A simulated FePt AET experiment with ground truth.

    Parameters
    ----------
    size : {"small", "standard", "large"}
        See the module table.
    seed : int
        Everything random (structure and degradations) follows from it: the same seed gives
        identical data.
    nonlinear : bool or {"power", "saturation"}
        Non-linear ADF response (True = saturation at 15 Pt-atom equivalents per pixel).
    **overrides
        Acquisition keywords (``dose_e_per_A2``, ``n_frames``, ``n_angles``, ``shape``,
        ``max_tilt_deg``, ``shift_sigma_A``, ``drift_A_per_frame``, ``scan_distortion``,
        ``angle_error_deg``, ``tilt_axis_rotation_deg``, ``tilt_axis_offset_A``,
        ``scan_directions_deg`` (e.g. ``(0, 90)`` for alternating scan directions),
        ``background_thickness_A``, ``gain``, ``offset``, ``read_noise``, ``probe_fwhm_A``,
        ``b_factor_A2``, ``nonlinear_param``...) and particle keywords prefixed ``particle_``
        (``particle_diameter_A=25``). Set a degradation to 0 (or ``dose_e_per_A2=None``) to
        switch it off.

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
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int (the benchmark is keyed by it), got {seed!r}")
    part = copy.deepcopy(_PARTICLE[size])
    acq = {**_COMMON, **_ACQ[size]}
    rng = np.random.default_rng([int(seed), 20260])
    acq["tilt_axis_rotation_deg"] = float(rng.uniform(-2.0, 2.0))
    acq["tilt_axis_offset_A"] = float(rng.uniform(-1.5, 1.5))
    acq["nonlinear_param"] = None
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
        else:
            raise ValueError(
                f"unknown override {k!r}; valid: {sorted(acq)} or particle_<fept_particle kw>")
    if nonlinear is True:
        kind = "saturation"
    elif nonlinear is False or nonlinear is None:
        kind = None
    elif nonlinear in ("power", "saturation"):
        kind = nonlinear
    else:
        raise ValueError(f"nonlinear must be True, False, 'power' or 'saturation', "
                         f"got {nonlinear!r}")
    if kind == "saturation" and acq["nonlinear_param"] is None:
        acq["nonlinear_param"] = 15.0
    core_shell = part.pop("core_shell", None)
    displacements = list(part.pop("displacements", ()))
    if core_shell is not None:
        displacements.append(CoreShellStrain(*core_shell))
    truth = fept_particle(**part, displacements=displacements, orientation="random",
                          seed=rng)
    shuffle = rng.permutation(truth.n_atoms)
    truth = truth.isel(shuffle)
    n = truth.n_atoms
    forward = {"probe_fwhm_A": acq["probe_fwhm_A"], "z_exponent": acq["z_exponent"],
               "reference_cross_section_A2": acq["reference_cross_section_A2"],
               "nonlinearity": kind, "nonlinear_param": acq["nonlinear_param"]}
    truth = truth.with_arrays(
        b_factor=np.full(n, float(acq["b_factor_A2"])),
        cross_section_A2=cross_sections(truth.species, z_exponent=acq["z_exponent"],
                                        reference_cross_section_A2=acq[
                                            "reference_cross_section_A2"]))
    ds = truth.data.assign_coords(atom=np.arange(n))
    ds.attrs.pop("provenance", None)
    truth = AtomicModel._from_core(ds, op="simulate.fept_benchmark",
                                   params={"size": size, "seed": int(seed)})
    angles = np.linspace(-acq["max_tilt_deg"], acq["max_tilt_deg"], int(acq["n_angles"]))
    shape = tuple(int(s) for s in acq["shape"])
    a = simulate_acquisition(
        truth, angles, shape=shape, pixel_size_A=acq["pixel_size_A"],
        n_frames=acq["n_frames"], dose_e_per_A2=acq["dose_e_per_A2"], gain=acq["gain"],
        offset=acq["offset"], read_noise=acq["read_noise"],
        shift_sigma_A=acq["shift_sigma_A"], drift_A_per_frame=acq["drift_A_per_frame"],
        scan_distortion=acq["scan_distortion"], angle_error_deg=acq["angle_error_deg"],
        scan_directions_deg=acq["scan_directions_deg"],
        tilt_axis_rotation_deg=acq["tilt_axis_rotation_deg"],
        tilt_axis_offset_A=acq["tilt_axis_offset_A"],
        background_thickness_A=acq["background_thickness_A"], seed=rng, **forward)
    clean = project_atoms(truth, angles, shape=shape, pixel_size_A=acq["pixel_size_A"],
                          dtype=np.float32, **forward)
    params = {"size": size, "seed": int(seed), "nonlinear": kind, **acq,
              "shape": list(shape), "angles_deg": angles.tolist(),
              "particle": {k: (v if not callable(v) else repr(v)) for k, v in part.items()},
              "core_shell_strain": list(core_shell) if core_shell else None,
              "n_atoms": n}
    ts = TiltSeries(a.tilt_series.data.assign_attrs(
        simulated=f"aet.simulate.fept_benchmark({size!r}, seed={int(seed)})"))
    return Benchmark(ts, clean, truth, a.alignment, params, a.noise_free, a.background)
