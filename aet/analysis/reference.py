"""Which ideal lattice a model has: the reference for strain (``structure="auto"``).

A strain map measures deviations from a reference lattice, so the reference must be the
structure the crystal has. An L1₀ FePt particle is tetragonal (c/a ≈ 0.96); measured against
cubic fcc, that tetragonality alone reads as a uniform strain of 1–2 % (on the demo's ground
truth e_xy = 1.3 % with an fcc reference, < 0.05 % with the L1₀ one).

:func:`identify_structure` decides in two steps:

1. geometry: the ideal lattice (fcc, bcc, hcp) that fits the most atoms
   (:func:`aet.analysis.fit_lattice`, the fraction of atoms within 0.25 d_nn of their site);
   fcc is tried first and kept when it fits ≥ 90 % of the atoms. (Local bond-order
   classification, :func:`aet.analysis.structure_types`, is not used: 20 pm of position noise
   turns most fcc atoms into "hcp" or "other" there, while the lattice fit still places 99 %
   of them);
2. chemical order, for an fcc lattice of two species: the composition names the candidate
   phase (minority fraction ≥ 0.375: L1₀; 0.125–0.375: L1₂) and the candidate is taken when the
   mean local order parameter of that phase (:func:`aet.analysis.order_parameters`, 0 random,
   1 perfect) is at least ``min_order`` (default 0.5), else the disordered alloy's fcc.

Only L1₀ changes the reference's shape (c ≠ a); L1₂ and fcc share the cubic cell.
"""

from __future__ import annotations

import numpy as np

from .lattice import _positions_species

__all__ = ["identify_structure"]


def identify_structure(ds, *, species=None, min_order: float = 0.5) -> dict:
    """The ideal lattice of a model, with the evidence.

    Parameters
    ----------
    ds : xarray.Dataset or AtomicModel
    species : (A, B), optional
        The two species of an ordered alloy (default: the two most common).
    min_order : float
        Mean order parameter above which the model counts as ordered.

    Returns
    -------
    dict
        ``structure`` ("fcc", "bcc", "hcp", "L10" or "L12") and ``reason`` (one sentence),
        plus ``geometry_fractions`` (fraction of atoms each tried lattice fits) and, for binary
        fcc models, ``minority_fraction`` and
        ``mean_order``.
    """
    from .lattice import fit_lattice
    from .order import order_parameters

    pos, sp = _positions_species(ds)
    fr: dict[str, float] = {}
    for geom in ("fcc", "bcc", "hcp"):
        try:
            fr[geom] = float(np.mean(fit_lattice(ds, geom).inlier))
        except ValueError:  # too few atoms to fit
            fr[geom] = 0.0
        if geom == "fcc" and fr["fcc"] >= 0.9:
            break
    geom = max(fr, key=fr.get)
    article = "a" if geom == "bcc" else "an"
    why = f"{article} {geom} lattice fits {fr[geom]:.0%} of the atoms"
    out = {"structure": geom, "reason": why, "geometry_fractions": fr}
    names, counts = np.unique(sp[sp != "X"], return_counts=True)
    if geom != "fcc" or len(names) < 2:
        return out
    top = np.sort(counts)[::-1][:2]
    x = float(top[1] / top.sum())
    out["minority_fraction"] = x
    kind = "L10" if x >= 0.375 else "L12" if x >= 0.125 else None
    if kind is None:
        out["reason"] = why + f"; minority species {x:.0%}: a dilute fcc alloy"
        return out
    o = order_parameters(ds, kind, species=species)
    s = float(np.nanmean(o[f"order_{kind}"].values))
    out["mean_order"] = s
    label = {"L10": "L1₀", "L12": "L1₂"}[kind]
    if s >= min_order:
        out["structure"] = kind
        out["reason"] = why + (f"; {x:.0%} minority species and mean {label} order "
                               f"{s:.2f} ≥ {min_order}: an ordered {label} alloy")
    else:
        out["reason"] = why + (f"; mean {label} order {s:.2f} < {min_order}: a disordered "
                               f"(A1) alloy")
    return out
