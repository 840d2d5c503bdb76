"""Plot helpers for the preprocessing stages (matplotlib, Agg-safe, each returns a Figure).

Every helper reads what a stage recorded — the per-angle coords it returned or the ``result``
of its provenance record — so it works on the output TiltSeries (or its DataArray) directly.
"""

from __future__ import annotations

import numpy as np


def _figure(**kw):
    from matplotlib.figure import Figure

    return Figure(**kw)


def _da(obj):
    return obj.data if hasattr(obj, "_da") else obj


def _last_result(obj, op: str) -> dict:
    from ..core.meta import get_provenance

    for rec in reversed(get_provenance(_da(obj).attrs)):
        if rec.get("op") == op and isinstance(rec.get("result"), dict):
            return rec["result"]
    raise ValueError(f"no '{op}' record with a result in the provenance; run the stage "
                     f"through the TiltSeries method (ts.{op}()) first")


def plot_frame_drift(merged):
    """Per-frame drift traces (x and y, Å) of every angle after :func:`register_frames`."""
    res = _last_result(merged, "register_frames")
    if "shift_x_A" not in res:
        raise ValueError("the per-frame shifts were not computed (dask input); use the "
                         "coords drift_x_A/drift_y_A or register an in-memory series")
    sx, sy = np.asarray(res["shift_x_A"]), np.asarray(res["shift_y_A"])
    angles = _da(merged).angle.values
    fig = _figure(figsize=(8, 3.2))
    axs = fig.subplots(1, 2, sharey=True)
    cmap = __import__("matplotlib").colormaps["viridis"]
    for i, a in enumerate(angles):
        c = cmap(i / max(len(angles) - 1, 1))
        axs[0].plot(sx[i], color=c, lw=1)
        axs[1].plot(sy[i], color=c, lw=1, label=f"{a:+.0f}°" if i in (0, len(angles) - 1)
                    else None)
    for ax, t in zip(axs, ("x", "y")):
        ax.set_xlabel("frame")
        ax.set_title(f"drift {t}")
    axs[0].set_ylabel("displacement (Å)")
    axs[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_alignment(aligned, truth_x_A=None, truth_y_A=None):
    """Measured shifts per angle (coords ``shift_x_A``, ``shift_y_A``), with the residual
    against given true shifts when passed."""
    da = _da(aligned)
    if "shift_x_A" not in da.coords:
        raise ValueError("the series has no shift_x_A coord; run align() or "
                         "match_projections() first")
    ang = da.angle.values
    sx, sy = da.shift_x_A.values, da.shift_y_A.values
    n = 2 if truth_x_A is not None else 1
    fig = _figure(figsize=(7, 2.8 * n))
    axs = np.atleast_1d(fig.subplots(n, 1, sharex=True))
    axs[0].plot(ang, sx, "o-", ms=3, label="x")
    axs[0].plot(ang, sy, "s-", ms=3, label="y")
    axs[0].set_ylabel("shift (Å)")
    axs[0].legend(fontsize=8)
    if truth_x_A is not None:
        axs[1].plot(ang, sx - np.asarray(truth_x_A), "o-", ms=3, label="x")
        axs[1].plot(ang, sy - np.asarray(truth_y_A), "s-", ms=3, label="y")
        axs[1].axhline(0, color="k", lw=0.5)
        axs[1].set_ylabel("residual (Å)")
        axs[1].legend(fontsize=8)
    axs[-1].set_xlabel("tilt angle (°)")
    fig.tight_layout()
    return fig


def plot_tilt_axis_search(aligned):
    """The common-line objective against the trial tilt-axis rotation (from :func:`align`)."""
    res = _last_result(aligned, "align")
    if "rotation_search" not in res:
        raise ValueError("align() did not estimate the tilt axis (tilt_axis='estimate')")
    a = np.asarray(res["rotation_search"]["alphas_deg"])
    j = np.asarray(res["rotation_search"]["spread"])
    o = np.argsort(a)
    fig = _figure(figsize=(5, 3))
    ax = fig.subplots()
    ax.semilogy(a[o], j[o], ".-")
    ax.axvline(res["tilt_axis_rotation_deg"], color="r", lw=1)
    ax.set_xlabel("tilt-axis rotation α (°)")
    ax.set_ylabel("line-profile spread")
    fig.tight_layout()
    return fig


def plot_projection_matching(matched):
    """Convergence (residual, updates) and angle corrections of projection matching."""
    res = _last_result(matched, "match_projections")
    conv = res["convergence"]
    it = [c["iteration"] for c in conv]
    fig = _figure(figsize=(9, 3))
    axs = fig.subplots(1, 3)
    axs[0].semilogy(it, [c["residual"] for c in conv], "o-")
    axs[0].set_title("relative residual")
    axs[1].semilogy(it, [max(c["rms_shift_update_A"], 1e-6) for c in conv], "o-", label="Å")
    axs[1].semilogy(it, [max(c["rms_angle_update_deg"], 1e-6) for c in conv], "s-", label="°")
    axs[1].set_title("RMS updates")
    axs[1].legend(fontsize=8)
    ang = _da(matched).angle.values
    for k in ("dphi_deg", "dtheta_deg", "dpsi_deg"):
        axs[2].plot(ang, res[k], ".-", label=k[:-4])
    axs[2].set_title("angle corrections (°)")
    axs[2].legend(fontsize=8)
    for ax in axs[:2]:
        ax.set_xlabel("iteration")
    axs[2].set_xlabel("tilt angle (°)")
    fig.tight_layout()
    return fig
