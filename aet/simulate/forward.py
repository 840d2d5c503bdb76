"""ADF-STEM forward model: analytic projections of atoms and ground-truth volumes.

Every atom is an isotropic 3D Gaussian whose integral is its ADF cross-section
``σ(Z) = reference_cross_section_A2 · (Z / 78) ** z_exponent`` (Å², Pt = Z 78 is the
reference) and whose width combines the thermal motion (B-factor, ``u² = B / 8π²`` per axis)
and the probe (``probe_fwhm_A``): ``s² = B / 8π² + s_probe²``. A projection at Euler angles
(φ, θ, ψ) rotates the atom centres by R = R_z(φ)·R_y(θ)·R_z(ψ) (docs/conventions.rst, active)
and sums along z, which for a Gaussian is the 2D Gaussian of the same width at the (x, y) of
``R @ p``. Each pixel holds the exact integral over its area, so an image is in Å²
(cross-section per pixel) and an expected electron count is ``dose_e_per_A2 × value``.

Cost is O(atoms × footprint) per projection (Numba kernel in ``_kernels.py``), never a
rotated volume.
"""

from __future__ import annotations

import math

import numpy as np
from ase.data import atomic_numbers

from ..core.meta import rotation_matrices as _rotation_matrices
from ..model.atomicmodel import AtomicModel
from ..model.tiltseries import TiltSeries
from ..model.volume import Volume
from . import _kernels

__all__ = ["apply_nonlinearity", "atom_widths", "cross_sections", "euler_array", "forward_images",
           "gaussian_blur_fft", "project_atoms", "project_positions", "render_volume",
           "rotation_matrices", "splat"]

PT_Z = 78
DEFAULT_B_FACTOR_A2 = 0.5
DEFAULT_PROBE_FWHM_A = 0.8
DEFAULT_CROSS_SECTION_A2 = 0.02
MIN_THERMAL_SIGMA_A = 0.02  # floor of the pre-blur width (non-linear mode)
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
_NONLINEAR = (None, "power", "saturation")


# ----------------------------------------------------------------------------- helpers
rotation_matrices = _rotation_matrices  # docs/conventions.rst convention, one implementation


def euler_array(angles, name: str = "angles") -> np.ndarray:
    """Tilt angles θ (1D, degrees) or ``(n, 3)`` Euler angles -> ``(n, 3)`` (φ, θ, ψ) degrees."""
    a = np.asarray(angles)
    if a.dtype == object or a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be numbers in degrees, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim == 1:
        return np.stack([np.zeros_like(a), a, np.zeros_like(a)], axis=1)
    if a.ndim == 2 and a.shape[1] == 3:
        return a.copy()
    raise ValueError(
        f"{name} must be 1D tilt angles θ or an (n, 3) array of Euler angles (φ, θ, ψ) in "
        f"degrees, got shape {a.shape}"
    )


def cross_sections(species, *, z_exponent: float = 1.7,
                   reference_cross_section_A2: float = DEFAULT_CROSS_SECTION_A2) -> np.ndarray:
    """ADF cross-section (Å²) of each atom: ``reference · (Z / 78) ** z_exponent``."""
    sp = np.asarray(species).astype(str)
    try:
        z = np.array([atomic_numbers[s] for s in sp.tolist()], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(f"species contains unknown element symbol {exc.args[0]!r}") from None
    if np.any(z == 0):
        raise ValueError(
            "species contains unclassified atoms ('X'); the forward model needs element "
            "symbols — classify the model first or set species explicitly"
        )
    return float(reference_cross_section_A2) * (z / PT_Z) ** float(z_exponent)


def atom_widths(n_atoms: int, *, b_factor_A2=DEFAULT_B_FACTOR_A2,
                probe_fwhm_A: float = DEFAULT_PROBE_FWHM_A) -> np.ndarray:
    """Gaussian width (Å, 1σ per axis) of each atom: sqrt(B / 8π² + (FWHM / 2.3548)²)."""
    b = np.broadcast_to(np.asarray(b_factor_A2, dtype=np.float64), (n_atoms,))
    if np.any(b < 0) or not np.all(np.isfinite(b)):
        raise ValueError("b_factor_A2 must be finite and ≥ 0 (Å²)")
    if not (math.isfinite(probe_fwhm_A) and probe_fwhm_A >= 0):
        raise ValueError(f"probe_fwhm_A must be finite and ≥ 0 (Å), got {probe_fwhm_A!r}")
    s2 = b / (8 * math.pi**2) + (probe_fwhm_A / FWHM_PER_SIGMA) ** 2
    if np.any(s2 <= 0):
        raise ValueError(
            "an atom has zero width (b_factor_A2 = 0 and probe_fwhm_A = 0); give either a "
            "B-factor or a probe size > 0"
        )
    return np.sqrt(s2)


def _model_arrays(model):
    if isinstance(model, AtomicModel):
        return model.positions, model.species, (model["b_factor"] if "b_factor" in model
                                                else None)
    raise TypeError(f"model must be an aet.AtomicModel, got {type(model).__name__}")


def _check_shape2(shape) -> tuple[int, int]:
    try:
        ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (ny, nx) in pixels, got {shape!r}") from None
    if ny < 1 or nx < 1:
        raise ValueError(f"shape must be positive (ny, nx), got {shape!r}")
    return ny, nx


def _check_pixel(pixel_size_A, name="pixel_size_A") -> float:
    if isinstance(pixel_size_A, bool) or not isinstance(pixel_size_A, (int, float, np.number)):
        raise TypeError(f"{name} must be a number in Å, got {type(pixel_size_A).__name__}")
    p = float(pixel_size_A)
    if not (math.isfinite(p) and p > 0):
        raise ValueError(f"{name} must be a finite positive length in Å, got {pixel_size_A!r}")
    return p


def project_positions(positions_xyz_A, euler_deg, *, center_A=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Image-frame (x, y) Å of every atom in every projection: ``(n_images, n_atoms, 2)``.

    The object is rotated by R(φ, θ, ψ) about ``center_A`` (x, y, z) Å, then summed along z.
    """
    pos = np.asarray(positions_xyz_A, dtype=np.float64).reshape(-1, 3)
    c = np.asarray(center_A, dtype=np.float64).reshape(3)
    R = rotation_matrices(euler_deg)
    rot = np.einsum("kij,aj->kai", R[:, :2, :], pos - c) + c[:2]
    return np.ascontiguousarray(rot)


def splat(xy, amplitudes, widths, *, shape, pixel_size_A, n_sigma: float = 6.0,
          dtype=np.float64) -> np.ndarray:
    """Array-level renderer: pixel-integrated Gaussians at image coordinates ``xy``
    ``(n_images, n_atoms, 2)`` (x, y Å, 0 at index n // 2) -> ``(n_images, ny, nx)``."""
    ny, nx = _check_shape2(shape)
    xy = np.ascontiguousarray(xy, dtype=np.float64)
    if xy.ndim != 3 or xy.shape[2] != 2:
        raise ValueError(f"xy must have shape (n_images, n_atoms, 2), got {xy.shape}")
    out = np.zeros((xy.shape[0], ny, nx), dtype=dtype)
    _kernels.splat_images(xy, np.ascontiguousarray(amplitudes, dtype=np.float64),
                          np.ascontiguousarray(widths, dtype=np.float64),
                          float(pixel_size_A), float(n_sigma), out)
    return out


def gaussian_blur_fft(images, sigma_A: float, pixel_size_A: float) -> np.ndarray:
    """Convolve each (…, y, x) image with a normalised 2D Gaussian of width ``sigma_A`` (Å),
    by FFT with zero padding of 6σ on each side (no wrap-around); preserves the sum."""
    if sigma_A <= 0:
        return np.array(images, copy=True)
    img = np.asarray(images)
    pad = int(math.ceil(6 * sigma_A / pixel_size_A))
    ny, nx = img.shape[-2:]
    padded = np.zeros((*img.shape[:-2], ny + 2 * pad, nx + 2 * pad), dtype=np.float64)
    padded[..., pad:pad + ny, pad:pad + nx] = img
    ky = np.fft.fftfreq(padded.shape[-2], d=pixel_size_A)
    kx = np.fft.rfftfreq(padded.shape[-1], d=pixel_size_A)
    tf = np.exp(-2 * math.pi**2 * sigma_A**2 * (ky[:, None] ** 2 + kx[None, :] ** 2))
    out = np.fft.irfft2(np.fft.rfft2(padded) * tf, s=padded.shape[-2:])
    return out[..., pad:pad + ny, pad:pad + nx].astype(img.dtype, copy=False)


def apply_nonlinearity(values, *, kind: str, reference: float, param: float) -> np.ndarray:
    """Non-linear ADF response on the pixel-integrated projected potential.

    ``kind="power"``: ``ref · (v / ref) ** param`` (param < 1 compresses heavy columns);
    ``kind="saturation"``: ``ref · param · (1 − exp(−v / (ref · param)))`` (saturates at
    ``param`` single-Pt-atom equivalents). ``reference`` is the peak pixel value of one Pt atom.
    """
    v = np.maximum(np.asarray(values, dtype=np.float64), 0.0)
    if kind == "power":
        return reference * (v / reference) ** param
    if kind == "saturation":
        s = reference * param
        return s * (-np.expm1(-v / s))
    raise ValueError(f"nonlinearity must be one of {_NONLINEAR}, got {kind!r}")


def forward_images(positions_xyz_A, species, euler_deg, *, shape, pixel_size_A,
                   b_factor_A2=DEFAULT_B_FACTOR_A2, probe_fwhm_A=DEFAULT_PROBE_FWHM_A,
                   z_exponent=1.7, reference_cross_section_A2=DEFAULT_CROSS_SECTION_A2,
                   nonlinearity=None, nonlinear_param=None, n_sigma=6.0, xy=None,
                   dtype=np.float64) -> np.ndarray:
    """Array-level forward model (see :func:`project_atoms`). ``xy`` (n_images, n_atoms, 2)
    overrides the image-frame atom coordinates (used by the degradation model)."""
    pos = np.asarray(positions_xyz_A, dtype=np.float64).reshape(-1, 3)
    euler = euler_array(euler_deg)
    amp = cross_sections(species, z_exponent=z_exponent,
                         reference_cross_section_A2=reference_cross_section_A2)
    if xy is None:
        xy = project_positions(pos, euler)
    if nonlinearity is None:
        s = atom_widths(len(pos), b_factor_A2=b_factor_A2, probe_fwhm_A=probe_fwhm_A)
        return splat(xy, amp, s, shape=shape, pixel_size_A=pixel_size_A, n_sigma=n_sigma,
                     dtype=dtype)
    if nonlinearity not in _NONLINEAR:
        raise ValueError(f"nonlinearity must be one of {_NONLINEAR}, got {nonlinearity!r}")
    param = {"power": 0.8, "saturation": 10.0}[nonlinearity] if nonlinear_param is None \
        else float(nonlinear_param)
    if not (math.isfinite(param) and param > 0):
        raise ValueError(f"nonlinear_param must be a positive number, got {nonlinear_param!r}")
    # potential at thermal width only; the probe blur comes after the non-linearity
    b = np.broadcast_to(np.asarray(b_factor_A2, dtype=np.float64), (len(pos),))
    atom_widths(len(pos), b_factor_A2=b, probe_fwhm_A=probe_fwhm_A)  # validates
    s_th = np.sqrt(np.maximum(b / (8 * math.pi**2), MIN_THERMAL_SIGMA_A**2))
    pot = splat(xy, amp, s_th, shape=shape, pixel_size_A=pixel_size_A, n_sigma=n_sigma)
    s_ref = float(np.median(s_th)) if len(s_th) else 0.05
    ref = reference_cross_section_A2 * math.erf(pixel_size_A / (2 * math.sqrt(2) * s_ref)) ** 2
    img = apply_nonlinearity(pot, kind=nonlinearity, reference=ref, param=param)
    return gaussian_blur_fft(img, probe_fwhm_A / FWHM_PER_SIGMA, pixel_size_A).astype(dtype)


# ----------------------------------------------------------------------------- public
def project_atoms(model, angles, *, shape, pixel_size_A, b_factor_A2=None,
                  probe_fwhm_A: float = DEFAULT_PROBE_FWHM_A, z_exponent: float = 1.7,
                  reference_cross_section_A2: float = DEFAULT_CROSS_SECTION_A2,
                  nonlinearity: str | None = None, nonlinear_param: float | None = None,
                  n_sigma: float = 6.0, dtype=np.float64) -> TiltSeries:
    """ADF-STEM projections of an atomic model, analytic per atom.

    Parameters
    ----------
    model : AtomicModel
        Positions (x, y, z) Å in the Volume frame, species with element symbols; a
        ``b_factor`` per-atom array (Å²) is used when present and ``b_factor_A2`` is None.
    angles : array_like
        Tilt angles θ in degrees (single axis about y) or ``(n, 3)`` Euler (φ, θ, ψ) degrees,
        R = R_z(φ)·R_y(θ)·R_z(ψ) active, then summed along z (docs/conventions.rst).
    shape : (ny, nx)
        Image size in pixels; 0 Å sits at index ``n // 2``.
    pixel_size_A : float
        Pixel edge in Å.
    b_factor_A2 : float or array, optional
        Thermal B-factor (Å²); default the model's ``b_factor`` array or 0.5 Å².
    probe_fwhm_A : float
        Probe FWHM in Å (Gaussian), folded into the atom width (linear case) or applied as an
        FFT convolution after the non-linearity.
    z_exponent, reference_cross_section_A2 : float
        Cross-section ``reference · (Z / 78) ** z_exponent`` (Å²; Pt is the reference).
    nonlinearity : {None, "power", "saturation"}
        Non-linear ADF response on the projected potential before the probe blur (see
        :func:`apply_nonlinearity`); ``nonlinear_param`` is the exponent (default 0.8) or the
        saturation level in Pt-atom equivalents per pixel (default 10).
    n_sigma : float
        Footprint half-width in Gaussian widths (6 → truncation error < 1e-8).

    Returns
    -------
    TiltSeries
        Dims (angle, y, x); values are pixel-integrated cross-sections in Å² (expected
        electrons per pixel = dose e⁻/Å² × value).

    Examples
    --------
    >>> import aet
    >>> m = aet.AtomicModel([[0.0, 0.0, 0.0]], ["Pt"])
    >>> ts = project_atoms(m, [0.0, 30.0], shape=(16, 16), pixel_size_A=0.5)
    >>> round(float(ts.values[1].sum()), 8)
    0.02
    """
    pos, species, b_model = _model_arrays(model)
    px = _check_pixel(pixel_size_A)
    ny, nx = _check_shape2(shape)
    euler = euler_array(angles)
    b = (b_model if b_model is not None else DEFAULT_B_FACTOR_A2) if b_factor_A2 is None \
        else b_factor_A2
    img = forward_images(pos, species, euler, shape=(ny, nx), pixel_size_A=px, b_factor_A2=b,
                         probe_fwhm_A=probe_fwhm_A, z_exponent=z_exponent,
                         reference_cross_section_A2=reference_cross_section_A2,
                         nonlinearity=nonlinearity, nonlinear_param=nonlinear_param,
                         n_sigma=n_sigma, dtype=dtype)
    single = bool(np.all(euler[:, 0] == 0) and np.all(euler[:, 2] == 0))
    return TiltSeries(img, angles=euler[:, 1] if single else euler, pixel_size_A=px,
                      units="A2 per pixel (ADF cross-section)", probe_fwhm_A=probe_fwhm_A,
                      z_exponent=z_exponent, nonlinearity=str(nonlinearity))


def render_volume(model, voxel_size_A, *, shape=None, b_factor_A2=None,
                  probe_fwhm_A: float = DEFAULT_PROBE_FWHM_A, z_exponent: float = 1.7,
                  reference_cross_section_A2: float = DEFAULT_CROSS_SECTION_A2,
                  n_sigma: float = 6.0, dtype=np.float64) -> Volume:
    """Ground-truth volume ``(z, y, x)``: voxel-integrated 3D Gaussian atoms.

    Same atom (amplitude, width) as :func:`project_atoms`, so summing the volume along z gives
    the zero-tilt projection at the same sampling. Values are cross-section per voxel (Å²).
    ``shape`` (nz, ny, nx) defaults to a cube covering the atoms with a 3 Å margin; 0 Å sits at
    index ``n // 2`` of each axis.
    """
    pos, species, b_model = _model_arrays(model)
    vs = _check_pixel(voxel_size_A, "voxel_size_A")
    if shape is None:
        ext = float(np.abs(pos).max()) if len(pos) else 0.0
        n = 2 * int(math.ceil((ext + 3.0) / vs)) + 1
        shape = (n, n, n)
    try:
        nz, ny, nx = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be (nz, ny, nx) in voxels, got {shape!r}") from None
    b = (b_model if b_model is not None else DEFAULT_B_FACTOR_A2) if b_factor_A2 is None \
        else b_factor_A2
    amp = cross_sections(species, z_exponent=z_exponent,
                         reference_cross_section_A2=reference_cross_section_A2)
    s = atom_widths(len(pos), b_factor_A2=b, probe_fwhm_A=probe_fwhm_A)
    out = np.zeros((nz, ny, nx), dtype=dtype)
    _kernels.splat_volume(np.ascontiguousarray(pos), amp, s, vs, float(n_sigma), out)
    return Volume(out, voxel_size_A=vs, units="A2 per voxel (ADF cross-section)")
