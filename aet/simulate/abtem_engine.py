"""An independent ADF-STEM image engine built on abTEM (physics this package did not write).

The Gaussian engine of :mod:`aet.simulate.forward` draws every atom as the same isotropic
Gaussian that :meth:`aet.AtomicModel.refine` fits, so data made with it sit inside the model
family of the code under test. This engine takes the atoms' scattering from abTEM (PyPI
``abtem``) and a response calibrated on a real abTEM multislice simulation
(``docs/calibration.rst``, ``benchmarks/calibrate_abtem.py``). Per projection:

1. **Rotate** the atoms in 3D (R = R_z(φ)·R_y(θ)·R_z(ψ), active, docs/conventions.rst; done by the
   caller, :func:`aet.simulate.simulate_acquisition`, which also adds the per-projection
   shifts and the tilt-axis geometry).
2. **Projected potential** of abTEM's parametrisation (``"lobato"`` or ``"kirkland"``), the
   infinite projection that ``abtem.Potential(..., projection="infinite")`` uses: the
   projected potential of the rotated cluster is the sum of per-atom projected potentials,
   each radially symmetric. One radial table per species is the Hankel transform of abTEM's
   ``projected_scattering_factor`` times the thermal Debye–Waller factor
   ``exp(−2π² σ_th² k²)`` (a Gaussian smear of σ_th per axis: thermal motion); the tables are
   summed on a fine grid (pixel / ``oversampling``, default 4), truncated at ``cutoff_A`` (4 Å keeps
   99.9 % of the integral). ``tests/simulate/test_abtem_engine.py`` checks the sum against
   ``abtem.Potential`` on a rotated cluster.
3. **Response** ``A · (Σ_j (V_j / V_REF) ** p) ** γ``: the high-angle signal of one atom
   comes from its core, more localised than its potential and growing faster with Z (an
   isolated Pt atom gives 6.1× the peak ADF signal of an Fe atom in multislice, while its
   potential peak is only 2.3× higher): each atom's potential V_j is raised to the atom
   exponent p (``atom_exponent``, default 1.75) before the atoms are summed along the beam;
   the sum is raised to the response exponent γ (``response_exponent``, default 1.4): the
   super-linear growth of a column's signal with the atoms along it. With p = 1.75, γ = 1.4
   the engine correlates 0.956 with multislice line scans through a particle and 0.961
   with those and single-atom scans together (one scale; isolated Pt/Fe 6.3 vs 6.1); the
   potential alone, p = 1, reaches at most 0.89 at any γ. ``A`` (``response_scale``)
   defaults to the calibrated scale of that (p, γ).
4. **Probe and source**: convolution with the probe intensity that ``abtem.Probe(energy,
   semiangle_cutoff, aberrations)`` builds on the same fine grid (normalised to unit sum)
   and a Gaussian source of width ``source_sigma_A`` (incoherent source size).
5. **Point sampling** at the scan positions (cubic-spline interpolation of the band-limited
   fine-grid image): STEM samples the probe position, it does not integrate a pixel. The
   scan positions carry drift and scan distortion (:func:`aet.simulate.simulate_acquisition`).

The result is the fraction of the probe's electrons that reach the ADF detector, times the
pixel area: Å² per pixel, the unit of the Gaussian engine, so ``dose (e⁻/Å²) × value`` is
the expected number of detected electrons per pixel. What the model leaves out: channelling,
probe spreading with depth and other dynamical effects (the calibration measures how much
that costs: ``docs/calibration.rst``).

abTEM is an optional dependency (``pip install "aet[abtem]"``); it is imported only when
this engine runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache

import numpy as np
import scipy.fft as sfft
from scipy.ndimage import map_coordinates
from scipy.special import j0

from . import _kernels
from ._abtem_calibration import CALIBRATION

__all__ = ["ENGINES", "V_REF", "AbtemEngine", "require_abtem"]

ENGINES = ("gaussian", "abtem")
V_REF = 1000.0
"""Reference projected potential (abTEM units, V·Å): the response is ``A (V / V_REF) ** γ``
(a thermally smeared Pt atom peaks at ~1800 V·Å, Fe at ~790)."""
PARAMETRIZATIONS = ("lobato", "kirkland")
_TABLE_DR_A = 0.0025
_THERMAL_FLOOR_A = 0.02


def require_abtem():
    """Import and return :mod:`abtem`, or raise an ImportError that says how to install it."""
    try:
        import abtem
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "engine='abtem' needs the abTEM package: pip install \"aet[abtem]\" "
            "(or pip install abtem)") from exc
    return abtem


def _positive(name, value, *, allow_zero=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    ok = (v >= 0) if allow_zero else (v > 0)
    if not (math.isfinite(v) and ok):
        bound = "≥ 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return v


@dataclass(frozen=True)
class AbtemEngine:
    """Settings of the abTEM image engine (see the module docstring for the model).

    Parameters
    ----------
    energy_keV : float
        Beam energy (keV).
    semiangle_mrad : float
        Probe convergence semi-angle (mrad).
    aberrations : dict, optional
        Probe aberrations passed to ``abtem.Probe`` (abTEM names and units: Å for
        ``"C10"``/``"defocus"``, ``"C30"``/``"Cs"``…; radians for angles), e.g.
        ``{"C10": 20.0}``. Stored as sorted (name, value) pairs.
    source_sigma_A : float
        Width (1σ, Å) of the Gaussian incoherent source.
    thermal_sigma_A : float
        RMS thermal displacement per axis (Å) smearing each atom's potential (≥ 0.02 Å;
        0.08 Å ≈ a B-factor of 0.5 Å²).
    response_exponent : float
        γ of the response ``A (Σ_j (V_j / V_REF) ** p) ** γ``: how a column's signal grows
        with the atoms along the beam (n atoms give n^γ times one atom's signal).
    atom_exponent : float
        p: each atom's potential is raised to p before the sum along the beam (localises
        the ADF object function at the atom's core and sets the Z contrast).
    response_scale : float, optional
        A; default: the calibrated scale for this (p, γ) (interpolated in log A between the
        calibrated exponents, ``docs/calibration.rst``).
    parametrization : {"lobato", "kirkland"}
        abTEM's potential parametrisation.
    oversampling : int
        Fine-grid spacing = pixel size / ``oversampling`` (4: 0.0875 Å at 0.35 Å pixels;
        images differ from oversampling 8 by < 1e-4 of their peak).
    cutoff_A : float
        Radius (Å) beyond which an atom's projected potential is dropped.
    """

    energy_keV: float = 300.0
    semiangle_mrad: float = 22.0
    aberrations: tuple = field(default=())
    source_sigma_A: float = 0.25
    thermal_sigma_A: float = 0.08
    response_exponent: float = 1.4
    atom_exponent: float = 1.75
    response_scale: float | None = None
    parametrization: str = "lobato"
    oversampling: int = 4
    cutoff_A: float = 4.0

    def __post_init__(self):
        _positive("energy_keV", self.energy_keV)
        _positive("semiangle_mrad", self.semiangle_mrad)
        _positive("source_sigma_A", self.source_sigma_A, allow_zero=True)
        t = _positive("thermal_sigma_A", self.thermal_sigma_A)
        if t < _THERMAL_FLOOR_A:
            raise ValueError(f"thermal_sigma_A must be ≥ {_THERMAL_FLOOR_A} Å (the projected "
                             f"potential diverges at an atom's centre without thermal "
                             f"smearing), got {self.thermal_sigma_A!r}")
        _positive("response_exponent", self.response_exponent)
        _positive("atom_exponent", self.atom_exponent)
        if self.response_scale is not None:
            _positive("response_scale", self.response_scale)
        if self.parametrization not in PARAMETRIZATIONS:
            raise ValueError(f"parametrization must be one of {PARAMETRIZATIONS}, got "
                             f"{self.parametrization!r}")
        if isinstance(self.oversampling, bool) or not isinstance(
                self.oversampling, (int, np.integer)) or self.oversampling < 1:
            raise ValueError(f"oversampling must be an int ≥ 1, got {self.oversampling!r}")
        _positive("cutoff_A", self.cutoff_A)
        ab = self.aberrations
        if isinstance(ab, dict):
            ab = tuple(sorted((str(k), float(v)) for k, v in ab.items()))
        elif ab is None:
            ab = ()
        else:
            try:
                ab = tuple(sorted((str(k), float(v)) for k, v in ab))
            except (TypeError, ValueError):
                raise TypeError("aberrations must be a dict of abTEM aberration names to "
                                "numbers, e.g. {'C10': 20.0}") from None
        object.__setattr__(self, "aberrations", ab)

    # ------------------------------------------------------------------ derived numbers
    @property
    def scale(self) -> float:
        """Response scale A in use (the given one or the calibrated one for this p, γ)."""
        if self.response_scale is not None:
            return float(self.response_scale)
        return calibrated_scale(self.response_exponent, self.parametrization,
                                atom_exponent=self.atom_exponent)

    def to_dict(self) -> dict:
        """JSON-able settings, with the scale in use and the engine's name."""
        d = asdict(self)
        d["aberrations"] = dict(self.aberrations)
        d["response_scale"] = self.scale
        d["response_scale_calibrated"] = self.response_scale is None
        d["v_ref"] = V_REF
        d["engine"] = "abtem"
        return d

    def radial_table(self, symbol: str) -> np.ndarray:
        """Thermally smeared projected potential of one ``symbol`` atom (abTEM units, V·Å)
        at radii ``i × 0.0025`` Å up to ``cutoff_A`` (the last entry is 0)."""
        return _radial_table(self.parametrization, str(symbol), float(self.thermal_sigma_A),
                             float(self.cutoff_A))

    def object_table(self, symbol: str) -> np.ndarray:
        """``(V / V_REF) ** p`` of one ``symbol`` atom on the radii of :meth:`radial_table`:
        what is summed along the beam before the response exponent."""
        return _object_table(self.parametrization, str(symbol), float(self.thermal_sigma_A),
                             float(self.cutoff_A), float(self.atom_exponent))

    def atom_cross_section_A2(self, symbol: str) -> float:
        """Detected signal of one isolated ``symbol`` atom integrated over probe positions:
        ``∫ A ((V / V_REF) ** p) ** γ d²r`` in Å² (the probe and source conserve it)."""
        t = self.object_table(symbol)
        r = np.arange(len(t)) * _TABLE_DR_A
        resp = self.scale * t ** self.response_exponent
        return float(np.trapezoid(resp * 2 * math.pi * r, r))

    # ------------------------------------------------------------------ rendering
    def render(self, xy, species, points, *, pixel_size_A: float, batch: int = 8,
               dtype=np.float64) -> np.ndarray:
        """Point-sampled ADF images of atoms at image-frame positions.

        Parameters
        ----------
        xy : (n_images, n_atoms, 2) array
            Atom positions (x, y) in Å in each image's frame (rotated, shifted: the aligned
            frame of the sample).
        species : (n_atoms,) sequence of str
            Element symbols.
        points : (n_images, ..., 2) array
            Probe positions (x, y) Å, in the same frame, at which each image is sampled.
        pixel_size_A : float
            Pixel size of the recorded image (Å): sets the fine grid (pixel /
            ``oversampling``) and the unit (the value is the detected fraction × pixel area).
        batch : int
            Images rendered at once (memory ~ batch × fine-grid size × 24 bytes).

        Returns
        -------
        numpy.ndarray
            ``points.shape[:-1]``: detected fraction of the probe × pixel area (Å² per
            pixel; × dose in e⁻/Å² = expected electrons).
        """
        xy = np.ascontiguousarray(xy, dtype=np.float64)
        pts = np.asarray(points, dtype=np.float64)
        if xy.ndim != 3 or xy.shape[2] != 2:
            raise ValueError(f"xy must have shape (n_images, n_atoms, 2), got {xy.shape}")
        if pts.shape[0] != xy.shape[0] or pts.shape[-1] != 2:
            raise ValueError(f"points must have shape (n_images, ..., 2) with n_images = "
                             f"{xy.shape[0]}, got {pts.shape}")
        px = _positive("pixel_size_A", pixel_size_A)
        sp = np.asarray(species).astype(str).reshape(-1)
        if sp.size != xy.shape[1]:
            raise ValueError(f"species has {sp.size} entries but xy has {xy.shape[1]} atoms")
        symbols, kind = np.unique(sp, return_inverse=True)
        tables = np.stack([self.object_table(s) for s in symbols]) if len(symbols) else \
            np.zeros((1, 2))
        kind = np.ascontiguousarray(kind, dtype=np.int64)
        h = px / int(self.oversampling)
        n_img = xy.shape[0]
        flat = pts.reshape(n_img, -1, 2)
        # one fine grid shape for every image (one probe transfer function), centred on
        # each image's sample points, with a margin for the probe and source tails
        margin = 4.0 + 4.0 * float(self.source_sigma_A)
        lo = flat.min(axis=1) - margin
        hi = flat.max(axis=1) + margin
        width = (hi - lo).max(axis=0)
        nx = sfft.next_fast_len(int(math.ceil(width[0] / h)) + 1, real=True)
        ny = sfft.next_fast_len(int(math.ceil(width[1] / h)) + 1, real=True)
        centre = 0.5 * (lo + hi)
        origin = np.ascontiguousarray(centre - 0.5 * h * np.array([nx - 1, ny - 1]))
        transfer = self._transfer((ny, nx), h)
        out = np.empty(flat.shape[:2], dtype=np.float64)
        gamma = float(self.response_exponent)
        scale = self.scale
        for k0 in range(0, n_img, max(1, int(batch))):
            k1 = min(n_img, k0 + max(1, int(batch)))
            V = np.zeros((k1 - k0, ny, nx), dtype=np.float64)
            _kernels.deposit_radial(xy[k0:k1], kind, tables, _TABLE_DR_A, origin[k0:k1], h, V)
            resp = np.maximum(V, 0.0).astype(np.float32)
            del V
            np.power(resp, np.float32(gamma), out=resp)
            resp *= np.float32(scale)
            # single precision: 3e-7 of the peak from double, 3× faster
            img = sfft.irfft2(sfft.rfft2(resp, workers=-1) * transfer, s=(ny, nx),
                              workers=-1)
            for k in range(k0, k1):
                c = (flat[k] - origin[k]) / h
                out[k] = map_coordinates(img[k - k0], [c[:, 1], c[:, 0]], order=3,
                                         mode="nearest")
        return (out * px * px).reshape(pts.shape[:-1]).astype(dtype, copy=False)

    def probe_intensity(self, shape, sampling_A: float) -> np.ndarray:
        """abTEM's probe intensity on a ``shape`` (ny, nx) grid of spacing ``sampling_A``
        (Å), centred at index ``n // 2`` of each axis, normalised to unit sum."""
        return _probe_intensity(self, tuple(int(s) for s in shape), float(sampling_A))

    def _transfer(self, shape, h):
        return _transfer(self, shape, float(h))


# ----------------------------------------------------------------------------- cached numbers
@lru_cache(maxsize=64)
def _radial_table(parametrization: str, symbol: str, sigma: float, cutoff: float) -> np.ndarray:
    """Hankel transform of abTEM's projected scattering factor × exp(−2π²σ²k²)."""
    abtem_par = _parametrization(parametrization)
    try:
        f = abtem_par.projected_scattering_factor(symbol)
    except (KeyError, RuntimeError):
        raise ValueError(f"abTEM's {parametrization} parametrisation has no element "
                         f"{symbol!r}") from None
    kmax = math.sqrt(32.0 / (2 * math.pi**2 * sigma**2))  # Debye–Waller factor < e⁻³²
    r = np.arange(0.0, cutoff + 0.5 * _TABLE_DR_A, _TABLE_DR_A)
    # Simpson's rule with ≥ 12 points per period of J0(2π k r) at the cut-off radius
    # (6e-6 of the peak from a 48-point trapezoid)
    nk = int(math.ceil(kmax * cutoff * 12)) | 1
    k = np.linspace(0.0, kmax, nk)
    fk = np.asarray(f(k**2), dtype=np.float64) * np.exp(-2 * math.pi**2 * sigma**2 * k**2)
    w = np.full(nk, 2.0)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    w *= (k[1] - k[0]) / 3.0
    wf = 2 * math.pi * w * fk * k
    out = np.empty_like(r)
    for i0 in range(0, len(r), 256):
        rr = r[i0:i0 + 256]
        out[i0:i0 + 256] = j0(2 * math.pi * rr[:, None] * k[None, :]) @ wf
    out[-1] = 0.0
    out.setflags(write=False)
    return out


@lru_cache(maxsize=64)
def _object_table(parametrization: str, symbol: str, sigma: float, cutoff: float,
                  p: float) -> np.ndarray:
    out = (np.maximum(_radial_table(parametrization, symbol, sigma, cutoff), 0.0) / V_REF) ** p
    out.setflags(write=False)
    return out


@lru_cache(maxsize=4)
def _parametrization(name: str):
    require_abtem()
    from abtem.parametrizations import validate_parametrization

    return validate_parametrization(name)


@lru_cache(maxsize=8)
def _probe_intensity(engine: AbtemEngine, shape, h) -> np.ndarray:
    abtem = require_abtem()
    ny, nx = shape
    with abtem.config.set({"diagnostics.progress_bar": False}):
        probe = abtem.Probe(energy=engine.energy_keV * 1e3,
                            semiangle_cutoff=engine.semiangle_mrad,
                            gpts=(nx, ny), sampling=(h, h),
                            aberrations=dict(engine.aberrations))
        waves = probe.build(scan=((nx // 2) * h, (ny // 2) * h), lazy=False)
        inten = np.asarray(waves.intensity().array, dtype=np.float64)
    inten = inten.reshape(nx, ny).T  # abTEM arrays are (x, y)
    inten = inten / inten.sum()
    inten.setflags(write=False)
    return inten


@lru_cache(maxsize=8)
def _transfer(engine: AbtemEngine, shape, h) -> np.ndarray:
    """rfft of the centred probe intensity × the source's Gaussian transfer function."""
    ny, nx = shape
    p = np.fft.ifftshift(_probe_intensity(engine, shape, h))
    t = sfft.rfft2(p)
    ky = np.fft.fftfreq(ny, d=h)[:, None]
    kx = np.fft.rfftfreq(nx, d=h)[None, :]
    s = float(engine.source_sigma_A)
    t = (t * np.exp(-2 * math.pi**2 * s**2 * (ky**2 + kx**2))).astype(np.complex64)
    t.setflags(write=False)
    return t


def calibrated_scale(gamma: float, parametrization: str = "lobato", *,
                     atom_exponent: float = 1.75) -> float:
    """Response scale A for the exponents (p = ``atom_exponent``, γ = ``gamma``) from the
    stored multislice calibration (bilinear interpolation of log A between calibrated
    exponents; outside their range pass ``response_scale=`` explicitly)."""
    cal = CALIBRATION["scale"].get(parametrization)
    if cal is None:
        raise ValueError(f"no calibration stored for parametrization {parametrization!r}; "
                         f"pass response_scale=")
    ps = sorted(cal, key=float)
    pv = np.array([float(k) for k in ps])
    gs = sorted(cal[ps[0]], key=float)
    gv = np.array([float(k) for k in gs])
    logA = np.log(np.array([[cal[p][g] for g in gs] for p in ps], dtype=np.float64))
    p, g = float(atom_exponent), float(gamma)
    if not (pv[0] - 1e-9 <= p <= pv[-1] + 1e-9):
        raise ValueError(f"atom_exponent={p:g} is outside the calibrated range "
                         f"[{pv[0]:g}, {pv[-1]:g}]; pass response_scale= explicitly")
    if not (gv[0] - 1e-9 <= g <= gv[-1] + 1e-9):
        raise ValueError(f"response_exponent={g:g} is outside the calibrated range "
                         f"[{gv[0]:g}, {gv[-1]:g}]; pass response_scale= explicitly")
    along_g = np.array([np.interp(g, gv, row) for row in logA])
    return float(np.exp(np.interp(p, pv, along_g)))
