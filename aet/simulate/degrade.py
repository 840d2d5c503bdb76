"""Experimental degradations of a simulated tilt series, each recorded as ground truth.

The acquisition model (all lengths Å, angles degrees; image frame: x, y with 0 at n // 2):

1. **Geometry.** Projection ``k`` is nominally at tilt θ_k about y. The true rotation adds the
   Euler angle errors (dφ, dθ, dψ)_k and an in-plane rotation α of the tilt axis:
   R_true = R_z(α)·R_zyz(dφ, θ + dθ, dψ)·R_z(−α) = R_zyz(α + dφ, θ + dθ, dψ − α), about a
   rotation centre ``o = δ (cos α, sin α, 0)`` (tilt-axis offset δ ⊥ the axis). The tilt
   axis thus runs along (−sin α, cos α) in the image (x, y): +y turned by α towards −x. An atom at
   ``q`` lands at ``p = xy(R_true (q − o) + o) + s_k`` with the per-projection shift ``s_k``.
2. **Frames, drift, scan distortion.** Each projection is ``n_frames`` frames. In frame ``f``
   the sample has drifted by ``d(t) = d0_f + v_f t`` (t in frames, 0 at the frame start; ``d0``
   of frame 0 is 0) and the scan coils put the probe at ``S_f r`` for the nominal position
   ``r`` (``S_f`` ≈ identity: scale and shear). Rows are scanned in order of increasing y, so
   ``t = (r_y − y_first) / (n_y · pixel)``. The atom appears where ``S_f r = p + d(t)``,
   i.e. ``r = M_f⁻¹ (p + d0_f − v_f c y_first)`` with ``M_f = S_f − v_f c e_yᵀ``,
   ``c = 1/(n_y pixel)`` — exact for atom centres; the atom keeps its round shape (the ≤ 1 %
   shape change of the distortion is neglected). A frame with scan direction 90° has x as
   its slow axis (x and y swap roles in t, M and b).
3. **Background.** A smooth amorphous-carbon film: a Gaussian random field of correlation
   length ``background_correlation_A`` with relative contrast ``background_contrast``, mean
   cross-section of a carbon film of ``background_thickness_A`` (density 0.1 atoms/Å³) ×
   1 / cos θ (path length through a tilted film), same for all frames of an angle.
4. **Detector.** ``counts = gain · Poisson(dose_frame · (image + background)) + offset +
   N(0, read_noise)`` with ``dose_frame = dose_e_per_A2 / n_frames`` (dose per projection).

All applied values are returned in the alignment ``xarray.Dataset``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..core.meta import centred_coord
from ..model.atomicmodel import AtomicModel
from ..model.tiltseries import TiltSeries
from .forward import (
    DEFAULT_B_FACTOR_A2,
    cross_sections,
    euler_array,
    forward_images,
    project_positions,
)

CARBON_ATOMS_PER_A3 = 0.1


def _rng(seed) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def true_euler_deg(theta_deg, *, dphi_deg=0.0, dtheta_deg=0.0, dpsi_deg=0.0,
                   tilt_axis_rotation_deg: float = 0.0) -> np.ndarray:
    """``(n, 3)`` true Euler angles (φ, θ, ψ) in degrees of projections nominally at tilt
    ``theta_deg`` with Euler errors and an in-plane tilt-axis rotation α:
    (α + dφ, θ + dθ, dψ − α)."""
    th = np.asarray(theta_deg, dtype=np.float64).reshape(-1)
    a = float(tilt_axis_rotation_deg)
    z = np.zeros_like(th)
    return np.stack([a + dphi_deg + z, th + dtheta_deg, dpsi_deg - a + z], axis=1)


def frame_transform(scan_matrix, drift0_A, velocity_A_per_frame, *, ny: int,
                    pixel_size_A: float, nx: int | None = None,
                    scan_direction_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``(M, b)`` of one frame: an atom at aligned image position ``p`` (x, y Å) is recorded
    at ``r = M⁻¹ (p + b)``; invert with ``p = M r − b``.

    ``scan_matrix`` is S (2×2, acting on (x, y)), ``drift0_A`` the drift (x, y) at the frame
    start, ``velocity_A_per_frame`` the drift during the frame. ``scan_direction_deg`` 0: the
    slow scan axis is y (rows along x, scanned in increasing y); 90: the slow axis is x
    (columns along y, scanned in increasing x; needs ``nx``).
    """
    S = np.asarray(scan_matrix, dtype=np.float64).reshape(2, 2)
    d0 = np.asarray(drift0_A, dtype=np.float64).reshape(2)
    v = np.asarray(velocity_A_per_frame, dtype=np.float64).reshape(2)
    slow = _slow_axis(scan_direction_deg)
    n = ny if slow == 1 else nx
    if n is None:
        raise ValueError("scan_direction_deg=90 needs nx= (the slow axis is x)")
    c = 1.0 / (n * pixel_size_A)
    first = -(n // 2) * pixel_size_A
    M = S.copy()
    M[:, slow] -= v * c
    return M, d0 - v * c * first


def _slow_axis(scan_direction_deg) -> int:
    d = float(scan_direction_deg) % 180.0
    if d == 0.0:
        return 1
    if d == 90.0:
        return 0
    raise ValueError(f"scan directions must be 0° (slow axis y) or 90° (slow axis x), got "
                     f"{scan_direction_deg!r}")


def add_detector_noise(expected, *, dose_e_per_A2: float | None, gain: float = 1.0,
                       offset: float = 0.0, read_noise: float = 0.0, seed=0) -> np.ndarray:
    """Detector model on an image of expected cross-section per pixel (Å²).

    ``counts = gain · Poisson(dose · expected) + offset + N(0, read_noise)``; with
    ``dose_e_per_A2=None`` there is no shot noise and ``gain · expected + offset + N(0, read)``
    is returned. Mean ``gain · dose · expected + offset``, variance
    ``gain² · dose · expected + read_noise²``.
    """
    rng = _rng(seed)
    e = np.asarray(expected, dtype=np.float64)
    if np.any(e < 0):
        raise ValueError("expected image has negative values; the Poisson mean must be ≥ 0")
    if dose_e_per_A2 is None:
        sig = e
    else:
        if not dose_e_per_A2 > 0:
            raise ValueError(f"dose_e_per_A2 must be > 0 e⁻/Å², got {dose_e_per_A2!r}")
        sig = rng.poisson(dose_e_per_A2 * e).astype(np.float64)
    out = gain * sig + offset
    if read_noise > 0:
        out = out + rng.normal(0.0, read_noise, size=out.shape)
    return out


def carbon_background(angles_deg, shape, pixel_size_A: float, *, thickness_A: float,
                      correlation_A: float = 6.0, contrast: float = 0.3,
                      z_exponent: float = 1.7, reference_cross_section_A2: float = 0.02,
                      carbon_cross_section_A2: float | None = None, seed=0) -> np.ndarray:
    """Smooth amorphous-carbon background ``(n_angles, ny, nx)`` in Å² per pixel (expected).

    Mean: carbon cross-section × 0.1 atoms/Å³ × ``thickness_A`` / cos θ × pixel area; relative
    fluctuations: a zero-mean Gaussian random field of RMS ``contrast`` and correlation length
    ``correlation_A``; clipped at 0. The carbon cross-section is the Gaussian engine's
    ``reference · (6 / 78) ** z_exponent`` unless ``carbon_cross_section_A2`` (Å²) is given.
    """
    rng = _rng(seed)
    th = np.radians(np.asarray(angles_deg, dtype=np.float64).reshape(-1))
    ny, nx = shape
    if carbon_cross_section_A2 is None:
        sc = cross_sections(["C"], z_exponent=z_exponent,
                            reference_cross_section_A2=reference_cross_section_A2)[0]
    else:
        sc = float(carbon_cross_section_A2)
    mean = sc * CARBON_ATOMS_PER_A3 * thickness_A * pixel_size_A**2 / np.cos(th)
    noise = rng.normal(size=(len(th), ny, nx))
    # periodic Gaussian filtering of white noise (a stationary random field; no padding)
    ky = np.fft.fftfreq(ny, d=pixel_size_A)[:, None]
    kx = np.fft.rfftfreq(nx, d=pixel_size_A)[None, :]
    tf = np.exp(-2 * math.pi**2 * correlation_A**2 * (ky**2 + kx**2))
    field_ = np.fft.irfft2(np.fft.rfft2(noise) * tf, s=(ny, nx))
    field_ = field_ - field_.mean(axis=(1, 2), keepdims=True)
    rms = field_.std(axis=(1, 2), keepdims=True)
    field_ = field_ / np.where(rms > 0, rms, 1.0)
    return np.maximum(mean[:, None, None] * (1.0 + contrast * field_), 0.0)


@dataclass(frozen=True)
class Acquisition:
    """Output of :func:`simulate_acquisition`.

    ``tilt_series``: raw (angle, frame, y, x) at the nominal angles; ``alignment``: every
    applied degradation (see :func:`simulate_acquisition`); ``noise_free``: the expected
    signal (Å² per pixel) of every frame with geometry and background, before the detector;
    ``background``: the expected background (angle, y, x), Å² per pixel.
    """

    tilt_series: TiltSeries
    alignment: xr.Dataset
    noise_free: np.ndarray = field(repr=False)
    background: np.ndarray = field(repr=False)


def simulate_acquisition(model: AtomicModel, angles_deg, *, shape, pixel_size_A: float,
                         n_frames: int = 1, dose_e_per_A2: float | None = None,
                         gain: float = 1.0, offset: float = 0.0, read_noise: float = 0.0,
                         shift_sigma_A: float = 0.0, drift_A_per_frame: float = 0.0,
                         scan_distortion: float = 0.0, angle_error_deg: float = 0.0,
                         tilt_axis_rotation_deg: float = 0.0, tilt_axis_offset_A: float = 0.0,
                         background_thickness_A: float = 0.0,
                         background_correlation_A: float = 6.0,
                         background_contrast: float = 0.3, scan_directions_deg=(0.0,),
                         b_factor_A2=None,
                         probe_fwhm_A: float = 0.8, z_exponent: float = 1.7,
                         reference_cross_section_A2: float = 0.02,
                         nonlinearity: str | None = None, nonlinear_param: float | None = None,
                         engine=None, seed=0, dtype=np.float32) -> Acquisition:
    """Simulate a degraded ADF-STEM tilt series of ``model`` (see the module docstring).

    Parameters
    ----------
    model : AtomicModel
        Ground truth (positions Å, species).
    angles_deg : array
        Nominal tilt angles θ (degrees, about y), or ``(n, 3)`` nominal Euler angles
        (φ, θ, ψ); the true ones are (α + φ + dφ, θ + dθ, ψ + dψ − α).
    shape : (ny, nx); pixel_size_A : float
    n_frames : int
        Frames per angle.
    dose_e_per_A2 : float or None
        Electron dose per projection (all frames), e⁻/Å²; None = no shot noise.
    gain, offset, read_noise : float
        Detector counts per electron, offset (counts), Gaussian read noise (counts RMS).
    shift_sigma_A : float
        RMS of the random per-projection shifts (x and y).
    drift_A_per_frame : float
        RMS drift speed (Å per frame, per axis): a per-angle velocity plus 20 % per-frame
        jitter, integrated between frames (with 10 % dead time).
    scan_distortion : float
        RMS of the scale and shear entries of S − 1 per frame (dimensionless).
    angle_error_deg : float
        RMS of the Euler errors dφ, dθ, dψ (degrees).
    tilt_axis_rotation_deg, tilt_axis_offset_A : float
        In-plane rotation α of the tilt axis and its offset δ (Å) perpendicular to it.
    background_thickness_A : float
        Thickness of the amorphous carbon support (0: none).
    scan_directions_deg : sequence of {0, 90}
        Scan direction of the frames, cycled (``(0, 90)`` alternates: slow axis y, then x);
        recorded as the ``scan_direction_deg`` coord on ``frame``.
    b_factor_A2, probe_fwhm_A, z_exponent, reference_cross_section_A2, nonlinearity,
    nonlinear_param
        Forward model of the Gaussian engine (see :func:`aet.simulate.project_atoms`).
    engine : AbtemEngine, optional
        Image engine. None (default): the Gaussian engine (analytic pixel-integrated
        Gaussian atoms, the keywords above). An :class:`aet.simulate.AbtemEngine`: abTEM's
        projected potential, the calibrated response, abTEM's probe and point sampling at
        the scan positions ``p = M r − b`` of every pixel ``r`` of every frame (the same
        drift and scan distortion, exact for every point, not only atom centres); the
        carbon background then uses the engine's carbon cross-section. The random draws
        (geometry, background, noise) are the same for both engines at the same seed.
    seed : int or Generator
    dtype : output dtype of the raw series.

    Returns
    -------
    Acquisition
        Raw TiltSeries (angle, frame, y, x) in detector counts (or Å² without dose) at the
        nominal angles; alignment Dataset with, over ``angle``: ``shift_x_A``, ``shift_y_A``,
        ``dphi_deg``, ``dtheta_deg``, ``dpsi_deg``, ``phi_true_deg``, ``theta_true_deg``,
        ``psi_true_deg``, ``total_shift_x_A``, ``total_shift_y_A`` (shift plus the effect of
        the axis offset); over ``(angle, frame)``: ``drift_x_A``, ``drift_y_A`` (at the frame
        start, relative to frame 0), ``drift_velocity_x_A``, ``drift_velocity_y_A`` (Å per
        frame), ``frame_offset_x_A``, ``frame_offset_y_A`` (drift at the frame's middle row,
        ``d0 + v / 2``: what frame registration should find, relative to frame 0's start),
        ``scan_xx``, ``scan_xy``, ``scan_yx``, ``scan_yy`` (S); attrs
        ``tilt_axis_rotation_deg``, ``tilt_axis_offset_A``, ``dose_e_per_A2``, ``gain``,
        ``offset``, ``read_noise``, ``pixel_size_A``.
    """
    if not isinstance(model, AtomicModel):
        raise TypeError(f"model must be an aet.AtomicModel, got {type(model).__name__}")
    rng = _rng(seed)
    nominal = np.asarray(angles_deg, dtype=np.float64)
    if nominal.ndim == 2 and nominal.shape[1] == 3:
        theta = nominal[:, 1]
        nom_phi, nom_psi = nominal[:, 0], nominal[:, 2]
    elif nominal.ndim == 1:
        theta = nominal
        nom_phi = nom_psi = np.zeros_like(theta)
    else:
        raise ValueError(
            f"angles_deg must be 1D nominal tilt angles or (n, 3) nominal Euler angles "
            f"(degrees), got shape {nominal.shape}")
    single_axis = bool(np.all(nom_phi == 0) and np.all(nom_psi == 0))
    n_frames = int(n_frames)
    if n_frames < 1:
        raise ValueError(f"n_frames must be ≥ 1, got {n_frames}")
    dirs_in = np.atleast_1d(np.asarray(scan_directions_deg, dtype=np.float64))
    if dirs_in.ndim != 1 or dirs_in.size == 0:
        raise ValueError("scan_directions_deg must be a non-empty sequence of 0/90 (degrees)")
    scan_dirs = np.array([dirs_in[f % dirs_in.size] for f in range(n_frames)])
    for d in scan_dirs:
        _slow_axis(d)
    ny, nx = (int(s) for s in shape)
    px = float(pixel_size_A)
    na = len(theta)
    # ---- geometry truth
    shift = rng.normal(0.0, shift_sigma_A, (na, 2)) if shift_sigma_A > 0 else np.zeros((na, 2))
    err = rng.normal(0.0, angle_error_deg, (na, 3)) if angle_error_deg > 0 \
        else np.zeros((na, 3))
    euler = true_euler_deg(theta, dphi_deg=nom_phi + err[:, 0], dtheta_deg=err[:, 1],
                           dpsi_deg=nom_psi + err[:, 2],
                           tilt_axis_rotation_deg=tilt_axis_rotation_deg)
    alpha = math.radians(tilt_axis_rotation_deg)
    centre = float(tilt_axis_offset_A) * np.array([math.cos(alpha), math.sin(alpha), 0.0])
    pos = model.positions
    xy = project_positions(pos, euler, center_A=centre) + shift[:, None, :]
    axis_shift = project_positions(np.zeros((1, 3)), euler, center_A=centre)[:, 0, :]
    # ---- frames: drift and scan distortion
    vel = np.zeros((na, n_frames, 2))
    d0 = np.zeros((na, n_frames, 2))
    if drift_A_per_frame > 0:
        base = rng.normal(0.0, drift_A_per_frame, (na, 1, 2))
        vel = base + rng.normal(0.0, 0.2 * drift_A_per_frame, (na, n_frames, 2))
        d0[:, 1:] = np.cumsum(vel[:, :-1] * 1.1, axis=1)
    S = np.tile(np.eye(2), (na, n_frames, 1, 1))
    if scan_distortion > 0:
        S = S + rng.normal(0.0, scan_distortion, (na, n_frames, 2, 2))
    frames_xy = np.empty((na, n_frames, len(pos), 2))
    transforms = np.empty((na, n_frames, 2, 3))
    for k in range(na):
        for f in range(n_frames):
            M, b = frame_transform(S[k, f], d0[k, f], vel[k, f], ny=ny, nx=nx,
                                   pixel_size_A=px, scan_direction_deg=scan_dirs[f])
            frames_xy[k, f] = np.linalg.solve(M, (xy[k] + b).T).T
            transforms[k, f, :, :2], transforms[k, f, :, 2] = M, b
    engine_name = "gaussian" if engine is None else "abtem"
    if engine is None:
        b_model = model["b_factor"] if "b_factor" in model else DEFAULT_B_FACTOR_A2
        b = b_model if b_factor_A2 is None else b_factor_A2
        img = forward_images(pos, model.species, np.zeros((na * n_frames, 3)),
                             shape=(ny, nx), pixel_size_A=px, b_factor_A2=b,
                             probe_fwhm_A=probe_fwhm_A, z_exponent=z_exponent,
                             reference_cross_section_A2=reference_cross_section_A2,
                             nonlinearity=nonlinearity, nonlinear_param=nonlinear_param,
                             xy=frames_xy.reshape(na * n_frames, len(pos), 2))
        img = img.reshape(na, n_frames, ny, nx)
        carbon = None
    else:
        img = engine.render(xy, model.species, scan_points(transforms, (ny, nx), px),
                            pixel_size_A=px)
        carbon = engine.atom_cross_section_A2("C")
    # ---- background and detector
    if background_thickness_A > 0:
        bg = carbon_background(theta, (ny, nx), px, thickness_A=background_thickness_A,
                               correlation_A=background_correlation_A,
                               contrast=background_contrast, z_exponent=z_exponent,
                               reference_cross_section_A2=reference_cross_section_A2,
                               carbon_cross_section_A2=carbon, seed=rng)
    else:
        bg = np.zeros((na, ny, nx))
    expected = np.maximum(img + bg[:, None], 0.0)
    dose_frame = None if dose_e_per_A2 is None else float(dose_e_per_A2) / n_frames
    raw = add_detector_noise(expected, dose_e_per_A2=dose_frame, gain=gain, offset=offset,
                             read_noise=read_noise, seed=rng).astype(dtype)
    units = "detector counts" if dose_e_per_A2 is not None else "A2 per pixel"
    ts = TiltSeries(raw, angles=theta if single_axis else nominal, pixel_size_A=px,
                    units=units,
                    dose_e_per_A2=float(dose_e_per_A2) if dose_e_per_A2 else 0.0,
                    n_frames=n_frames, simulation_engine=engine_name)
    frame = np.arange(n_frames)
    ts = TiltSeries(ts.data.assign_coords(scan_direction_deg=("frame", scan_dirs,
                                                              {"units": "degree"})))
    alignment = xr.Dataset(
        {
            "shift_x_A": ("angle", shift[:, 0]), "shift_y_A": ("angle", shift[:, 1]),
            "dphi_deg": ("angle", err[:, 0]), "dtheta_deg": ("angle", err[:, 1]),
            "dpsi_deg": ("angle", err[:, 2]),
            "phi_true_deg": ("angle", euler[:, 0]), "theta_true_deg": ("angle", euler[:, 1]),
            "psi_true_deg": ("angle", euler[:, 2]),
            "total_shift_x_A": ("angle", shift[:, 0] + axis_shift[:, 0]),
            "total_shift_y_A": ("angle", shift[:, 1] + axis_shift[:, 1]),
            "drift_x_A": (("angle", "frame"), d0[..., 0]),
            "drift_y_A": (("angle", "frame"), d0[..., 1]),
            "frame_offset_x_A": (("angle", "frame"), d0[..., 0] + 0.5 * vel[..., 0]),
            "frame_offset_y_A": (("angle", "frame"), d0[..., 1] + 0.5 * vel[..., 1]),
            "drift_velocity_x_A": (("angle", "frame"), vel[..., 0]),
            "drift_velocity_y_A": (("angle", "frame"), vel[..., 1]),
            "scan_xx": (("angle", "frame"), S[..., 0, 0]),
            "scan_xy": (("angle", "frame"), S[..., 0, 1]),
            "scan_yx": (("angle", "frame"), S[..., 1, 0]),
            "scan_yy": (("angle", "frame"), S[..., 1, 1]),
        },
        coords={"angle": ("angle", theta, {"units": "degree"}), "frame": frame,
                "phi_nominal_deg": ("angle", nom_phi), "psi_nominal_deg": ("angle", nom_psi),
                "scan_direction_deg": ("frame", scan_dirs)},
        attrs={"tilt_axis_rotation_deg": float(tilt_axis_rotation_deg),
               "tilt_axis_offset_A": float(tilt_axis_offset_A),
               "dose_e_per_A2": float(dose_e_per_A2) if dose_e_per_A2 else 0.0,
               "gain": float(gain), "offset": float(offset), "read_noise": float(read_noise),
               "pixel_size_A": px, "n_frames": n_frames, "simulation_engine": engine_name,
               "description": "applied degradations (ground truth); an atom at aligned image "
                              "position p appears at p + shift; see the "
                              "aet.simulate.degrade module docstring for the model"},
    )
    return Acquisition(ts, alignment, expected, bg)


def scan_points(transforms, shape, pixel_size_A: float) -> np.ndarray:
    """Probe positions in the aligned sample frame of every pixel of every frame.

    ``transforms`` (..., 2, 3) holds ``[M | b]`` of :func:`frame_transform` per frame; pixel
    ``r`` (x, y Å, 0 at index n // 2) of that frame probes the aligned position
    ``p = M r − b``. Returns (..., ny, nx, 2) (x, y) Å.
    """
    t = np.asarray(transforms, dtype=np.float64)
    y, x = image_grid(shape, pixel_size_A)
    r = np.stack(np.broadcast_arrays(x[None, :], y[:, None]), axis=-1)  # (ny, nx, 2)
    M, b = t[..., :2], t[..., 2]
    p = np.einsum("...ij,yxj->...yxi", M, r) - b[..., None, None, :]
    return p


def euler_from_alignment(alignment: xr.Dataset) -> np.ndarray:
    """``(n, 3)`` true Euler angles (φ, θ, ψ) in degrees from an alignment Dataset."""
    return np.stack([alignment["phi_true_deg"].values, alignment["theta_true_deg"].values,
                     alignment["psi_true_deg"].values], axis=1)


def image_grid(shape, pixel_size_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Centred pixel-centre coordinates ``(y, x)`` in Å (0 at index n // 2)."""
    return centred_coord(shape[0], pixel_size_A), centred_coord(shape[1], pixel_size_A)


__all__ = ["Acquisition", "add_detector_noise", "carbon_background", "euler_array",
           "euler_from_alignment", "frame_transform", "image_grid", "scan_points",
           "simulate_acquisition", "true_euler_deg"]
