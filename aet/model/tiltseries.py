"""``TiltSeries``: projections with their angles, pixel size and history."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..core.geometry import TiltGeometry, pixel_size_of
from ..core.meta import (
    centred_coord,
    check_positive_length,
    euler_angles_of,
    spacing_from_coord,
    with_provenance,
)
from ..core.schema import facade_class, register_facade
from ._base import _Facade, as_array, check_dims, check_finite, coerce_angles

_DIMS3 = ("angle", "y", "x")
_DIMS4 = ("angle", "frame", "y", "x")


def _as_tiltseries_dataarray(data, angles, pixel_size_A, attrs: dict) -> xr.DataArray:
    if isinstance(data, TiltSeries):
        data = data.data
    if isinstance(data, xr.DataArray):
        check_dims(data.dims, [_DIMS3, _DIMS4], "data")
        arr = as_array(data.variable._data if hasattr(data.variable, "_data") else data.data,
                       "data")
        base_attrs = dict(data.attrs)
        if angles is None and "angle" in data.coords:
            if {"phi", "psi"} & set(data.coords):
                angles = euler_angles_of(data)
            else:
                angles = data.coords["angle"].values
        if pixel_size_A is None:
            pixel_size_A = base_attrs.get("pixel_size_A")
        if pixel_size_A is None and "x" in data.coords and data.sizes["x"] > 1:
            pixel_size_A = spacing_from_coord(data.coords["x"].values, "x")
        extra_coords = {k: v for k, v in data.coords.items()
                        if k not in ("angle", "y", "x", "frame", "phi", "psi")
                        and set(v.dims) <= set(data.dims)}
        dims = tuple(data.dims)
    else:
        arr = as_array(data, "data")
        if arr.ndim == 2:
            raise ValueError(
                "data has 2 dims (y, x): a single image is not a tilt series; stack the "
                "projections as (angle, y, x), e.g. data[None] for one projection"
            )
        if arr.ndim not in (3, 4):
            raise ValueError(
                f"data must have 3 dims (angle, y, x) or 4 dims (angle, frame, y, x), got "
                f"{arr.ndim} dims with shape {arr.shape}"
            )
        dims = _DIMS3 if arr.ndim == 3 else _DIMS4
        base_attrs = {}
        extra_coords = {}
    if any(s == 0 for s in arr.shape):
        raise ValueError(f"data is empty (shape {tuple(arr.shape)}); every dim needs ≥ 1 sample")
    check_finite(arr, "data")
    px = check_positive_length("pixel_size_A", pixel_size_A)
    theta, euler = coerce_angles(angles, arr.shape[0])
    n_y, n_x = arr.shape[-2], arr.shape[-1]
    coords: dict[str, Any] = {
        "angle": ("angle", theta, {"units": "degree", "long_name": "tilt angle θ"}),
        "y": ("y", centred_coord(n_y, px), {"units": "Å"}),
        "x": ("x", centred_coord(n_x, px), {"units": "Å"}),
    }
    if euler is not None:
        coords["phi"] = ("angle", euler[:, 0], {"units": "degree", "long_name": "Euler φ"})
        coords["psi"] = ("angle", euler[:, 2], {"units": "degree", "long_name": "Euler ψ"})
    if len(dims) == 4:
        coords["frame"] = ("frame", np.arange(arr.shape[1]))
    for k, v in extra_coords.items():
        coords[k] = v
    merged = {**base_attrs, **attrs}
    merged["pixel_size_A"] = px
    merged.setdefault("units", "counts")
    return xr.DataArray(arr, dims=dims, coords=coords, attrs=merged, name="projections")


@register_facade
class TiltSeries(_Facade):
    """A tilt series: projections ``(angle, y, x)`` (or ``(angle, frame, y, x)`` before frames
    are merged), angles in degrees, coordinates in Å centred at index ``n // 2``; the single
    tilt axis is **y**.

    Parameters
    ----------
    data : array_like, dask array, xarray.DataArray or TiltSeries
        Projection intensities. Never modified.
    angles : array_like, optional
        One tilt angle θ per projection in degrees, or an ``(n, 3)`` array of Euler angles
        (φ, θ, ψ) in degrees (ZYZ, active: R = R_z(φ)·R_y(θ)·R_z(ψ)). Taken from the ``angle``
        (and ``phi``/``psi``) coords when ``data`` is a DataArray.
    pixel_size_A : float
        Pixel size in Å (required unless ``data`` carries it).
    **attrs
        Further metadata with units in the key (``dose_e_per_A2``, ``annealing_time_min``...).

    Examples
    --------
    >>> import numpy as np, aet
    >>> ts = aet.TiltSeries(np.ones((3, 8, 8)), angles=[-30, 0, 30], pixel_size_A=0.35)
    >>> ts.angles
    array([-30.,   0.,  30.])
    >>> float(ts.data.x[4])
    0.0
    """

    __slots__ = ()

    def __init__(self, data, *, angles=None, pixel_size_A=None, **attrs):
        da = _as_tiltseries_dataarray(data, angles, pixel_size_A, attrs)
        built = type(self)._wrap(da)
        object.__setattr__(self, "_da", built._da)

    # -- metadata -------------------------------------------------------------------------
    @property
    def angles(self) -> np.ndarray:
        """Tilt angles θ in degrees, one per projection."""
        return np.asarray(self._da.coords["angle"].values, dtype=np.float64)

    @property
    def geometry(self) -> TiltGeometry:
        """The acquisition geometry (:class:`aet.core.geometry.TiltGeometry`): Euler angles,
        pixel size, the shifts and tilt-axis rotation alignment corrected."""
        return TiltGeometry.from_dataarray(self._da)

    def with_geometry(self, geometry: TiltGeometry) -> TiltSeries:
        """A copy of this series carrying ``geometry`` (same images; angles, shifts and
        tilt-axis rotation from ``geometry``), with a provenance record."""
        if not isinstance(geometry, TiltGeometry):
            raise TypeError(f"geometry must be an aet.core.geometry.TiltGeometry, got "
                            f"{type(geometry).__name__}")
        return self._replace(geometry.assign_to(self._da), "with_geometry")

    def apply_geometry(self, geometry: TiltGeometry) -> TiltSeries:
        """This series moved into ``geometry``: each projection's content moved back by the
        change of the recorded shifts (``geometry.shifts_A`` − ``self.geometry.shifts_A``,
        Fourier shift) and its Euler angles taken from ``geometry``, with a provenance record
        of the change. The way a geometry update — the per-projection alignment a refinement
        fitted (``model.refine(ts, refine_alignment=..., return_series=True)``, or
        ``result["geometry"]`` of :func:`aet.atoms.refine`) — becomes a tilt series; a later
        refinement or uncertainty against the result starts from it instead of applying the
        alignment again. Unlike :meth:`with_geometry`, the images move with the shifts.

        Parameters
        ----------
        geometry : aet.core.geometry.TiltGeometry
            The geometry after the update: same number of projections, pixel size and
            tilt-axis rotation as this series (only shifts and Euler angles change).

        Returns
        -------
        TiltSeries
            The updated series (this one, unchanged, when ``geometry`` equals its own).
        """
        if not isinstance(geometry, TiltGeometry):
            raise TypeError(f"geometry must be an aet.core.geometry.TiltGeometry, got "
                            f"{type(geometry).__name__}")
        if self.n_frames > 1:
            raise ValueError("apply_geometry needs merged frames (angle, y, x); call "
                             ".register_frames() first")
        old = self.geometry
        if geometry.n != old.n:
            raise ValueError(f"geometry has {geometry.n} projections but the series has "
                             f"{old.n}; pass the geometry a refinement against this series "
                             f"returned")
        if geometry.pixel_size_A != old.pixel_size_A or (
                (geometry.tilt_axis_rotation_deg or 0.0) != (old.tilt_axis_rotation_deg or 0.0)):
            raise ValueError(
                "geometry changes the pixel size or the tilt-axis rotation; apply_geometry "
                "moves images by shifts and relabels Euler angles only (re-align the series "
                "with .align() for a new tilt-axis rotation)")
        if geometry == old:
            return self
        zero = np.zeros((old.n, 2))
        d = (zero if geometry.shifts_A is None else geometry.shifts_A) - (
            zero if old.shifts_A is None else old.shifts_A)
        da = self._da
        if np.any(d != 0):
            from ..preprocess import apply_alignment

            da = apply_alignment(da, shift_x_A=d[:, 0], shift_y_A=d[:, 1]).astype(
                da.dtype if da.dtype.kind == "f" else np.float64)
            da.attrs = dict(self._da.attrs)
        da = geometry.assign_to(da)
        return self._replace(da, "apply_geometry",
                             {"shift_x_A": d[:, 0], "shift_y_A": d[:, 1],
                              "d_euler_deg": geometry.euler_deg - old.euler_deg})

    def with_refined_alignment(self, geometry) -> TiltSeries:
        """Deprecated alias of :meth:`apply_geometry` (takes the geometry update, a
        :class:`~aet.core.geometry.TiltGeometry`).

        A model no longer carries the alignment its refinement fitted: get the updated series
        with ``model.refine(ts, refine_alignment=..., return_series=True)`` (its
        ``tilt_series``), or ``ts.apply_geometry(result["geometry"])`` after
        :func:`aet.atoms.refine`.
        """
        import warnings

        warnings.warn("TiltSeries.with_refined_alignment() is deprecated; use "
                      "model.refine(ts, refine_alignment=..., return_series=True).tilt_series "
                      "or ts.apply_geometry(geometry)", DeprecationWarning, stacklevel=2)
        if not isinstance(geometry, TiltGeometry):
            raise TypeError(
                f"with_refined_alignment takes the geometry update of a refinement (an "
                f"aet.core.geometry.TiltGeometry), got {type(geometry).__name__}: a model no "
                f"longer carries its fitted alignment; use model.refine(ts, "
                f"refine_alignment=('shifts', 'angles'), return_series=True), whose "
                f"tilt_series is the updated series")
        return self.apply_geometry(geometry)

    @property
    def euler_angles(self) -> np.ndarray:
        """``(n, 3)`` Euler angles (φ, θ, ψ) in degrees (φ = ψ = 0 for a single-axis series)."""
        return np.array(self.geometry.euler_deg)

    @property
    def is_single_axis(self) -> bool:
        """True when every φ and ψ is zero (the fast path of the reconstructors; one tolerance,
        :func:`aet.core.geometry.is_single_axis`)."""
        return self.geometry.single_axis

    @property
    def pixel_size_A(self) -> float:
        """Pixel size in Å."""
        return pixel_size_of(self._da)

    @property
    def n_frames(self) -> int:
        """Frames per angle (1 once frames are merged)."""
        return int(self._da.sizes.get("frame", 1))

    def _repr_lines(self):
        a = self.angles
        lines = [f"angles: {a.size} from {a.min():+.2f}° to {a.max():+.2f}°"
                 + ("" if self.is_single_axis else " (Euler φ, ψ present)"),
                 f"pixel_size_A: {self.pixel_size_A:g}"]
        extra = {k: v for k, v in self.attrs.items()
                 if k not in ("pixel_size_A", "aet_class", "units")}
        if extra:
            lines.append("attrs: " + ", ".join(f"{k}={v!r}" for k, v in list(extra.items())[:6]))
        return lines

    # -- construction of derived series -------------------------------------------------
    def with_angles(self, angles) -> TiltSeries:
        """Return a copy with new angles (1D tilt angles or ``(n, 3)`` Euler angles, degrees)."""
        theta, euler = coerce_angles(angles, self._da.sizes["angle"])
        da = self._da.assign_coords(angle=("angle", theta, {"units": "degree"}))
        da = da.drop_vars([c for c in ("phi", "psi") if c in da.coords])
        if euler is not None:
            da = da.assign_coords(phi=("angle", euler[:, 0]), psi=("angle", euler[:, 2]))
        return self._replace(da, "with_angles", {"angles": angles})

    # -- pipeline stages (thin: each calls one core function) ----------------------------
    def _stage(self, op: str, func, params: dict) -> Any:
        out = func(self._da, **params)
        result = None
        if isinstance(out, tuple):
            out, result = out
        if not isinstance(out, xr.DataArray):
            raise TypeError(f"core function for {op} returned {type(out).__name__}")
        da = with_provenance(out, op, params, parent_attrs=self._da.attrs,
                             **({"result": result} if result is not None else {}))
        return TiltSeries._wrap(da)

    def register_frames(self, **kw) -> TiltSeries:
        """Register and average the frames of each angle (see
        :func:`aet.preprocess.register_frames`)."""
        from .. import preprocess

        return self._stage("register_frames", preprocess.register_frames, kw)

    def correct_scan_distortion(self, **kw) -> TiltSeries:
        """Apply/estimate a scan-distortion correction
        (:func:`aet.preprocess.correct_scan_distortion`)."""
        from .. import preprocess

        return self._stage("correct_scan_distortion", preprocess.correct_scan_distortion, kw)

    def denoise(self, **kw) -> TiltSeries:
        """Denoise each projection (:func:`aet.preprocess.denoise`; BM3D by default)."""
        from .. import preprocess

        return self._stage("denoise", preprocess.denoise, kw)

    def remove_background(self, **kw) -> TiltSeries:
        """Subtract a smooth background (:func:`aet.preprocess.remove_background`)."""
        from .. import preprocess

        return self._stage("remove_background", preprocess.remove_background, kw)

    def align(self, **kw) -> TiltSeries:
        """Align the projections (:func:`aet.preprocess.align`)."""
        from .. import preprocess

        return self._stage("align", preprocess.align, kw)

    def reconstruct(self, method: str = "resire", **kw):
        """Reconstruct a :class:`~aet.Volume` (:func:`aet.reconstruct.reconstruct`).

        ``method``: ``"resire"`` (the default: ordered subsets, momentum, stopping on held-out
        projections), ``"genfire"``, ``"sirt"`` or ``"wbp"``.
        """
        from .. import reconstruct as _rec
        Volume = facade_class("Volume")  # the sibling facade, looked up by name

        if self.n_frames > 1:
            raise ValueError(
                f"the tilt series still has {self.n_frames} frames per angle; merge them first "
                f"with .register_frames()"
            )
        params = {"method": method, **kw}
        out = _rec.reconstruct(self._da, **params)
        result = None
        if isinstance(out, tuple):
            out, result = out
        if params.get("exclude_pixels") is not None:  # a count, not the mask, in the record
            params["exclude_pixels"] = int(np.count_nonzero(params["exclude_pixels"]))
        da = with_provenance(out, "reconstruct", params, parent_attrs=self._da.attrs,
                             **({"result": result} if result is not None else {}))
        return Volume._wrap(da)

    def match_projections(self, **kw) -> TiltSeries:
        """Refine per-projection shifts and Euler angles by projection matching
        (:func:`aet.preprocess.projection_matching`): reconstruct → reproject → register."""
        from .. import preprocess

        return self._stage("match_projections", preprocess.projection_matching, kw)
