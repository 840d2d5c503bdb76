"""trace → classify → refine against ground truth (aet.simulate), no manual step.

The default test runs the atom stages on a reconstructed-like volume (the true volume
blurred anisotropically, as a missing wedge elongates atoms along z, plus noise) and noisy
projections of a small FePt particle. The slow test is the issue's end-to-end target on the
``standard`` benchmark with the non-linear forward model: raw frames → preprocess →
reconstruct → trace → classify → refine.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import aet
from aet import simulate


def reconstructed_like(bench, rng, *, noise=0.03):
    v = bench.truth_volume(0.35).values
    # blur: 0.5 Å along z (missing-wedge elongation), 0.25 Å across, on top of the probe
    rec = gaussian_filter(v.astype(np.float64), (0.5 / 0.35, 0.25 / 0.35, 0.25 / 0.35))
    rec = rec + rng.normal(0, noise * rec.max(), rec.shape)
    return aet.Volume(rec, voxel_size_A=0.35)


def test_atom_stages_reach_the_targets_on_a_reconstructed_like_volume(rng):
    bench = simulate.fept_benchmark("small", seed=3, particle_diameter_A=13.0)
    vol = reconstructed_like(bench, rng)
    c = bench.clean.values
    ts = aet.TiltSeries(c + rng.normal(0, 0.02 * c.max(), c.shape), angles=bench.clean.angles,
                        pixel_size_A=0.35)
    traced = vol.trace_atoms(min_distance_A=2.0)
    classified = traced.classify(["Fe", "Pt"], volume=vol)
    s_cl = bench.score(classified)
    assert s_cl.recall >= 0.99 and s_cl.precision >= 0.99
    assert s_cl.species_accuracy >= 0.99
    # R-factor at the traced positions with the best heights/B-factors, then full refinement
    at_traced = classified.refine(ts, fit_positions=False, n_cycles=1)
    refined = classified.refine(ts, n_cycles=1, max_iter=40)
    s_rf = bench.score(refined)
    r_traced = at_traced.provenance[-1]["result"]["r_factor"]
    r_refined = refined.provenance[-1]["result"]["r_factor"]
    print(f"classified: {s_cl}\nrefined: {s_rf}\nR-factor traced {r_traced:.4f} → refined "
          f"{r_refined:.4f}")
    assert r_refined < r_traced
    assert s_rf.rmsd_pm < 0.6 * s_cl.rmsd_pm
    assert s_rf.rmsd_pm <= 15.0  # pm (target 22 pm, aim 15 pm)
    assert s_rf.recall >= 0.99 and s_rf.precision >= 0.99 and s_rf.species_accuracy >= 0.99
    assert np.all(np.isfinite(refined["uncertainty"]))


@pytest.mark.slow
def test_end_to_end_standard_nonlinear_benchmark():
    """Raw frames → register → background → align → RESIRE → trace → classify → refine with
    the per-projection alignment (shifts, φ/θ/ψ corrections) and atoms added/removed from the
    residual.

    Measured (seed 0): classified recall 98.8 % (12 dim Fe missed: 7 traced but as dim as
    noise peaks, 5 not traced, 3 of them 2.0 Å from a neighbour), 24.5 pm; refined without
    the alignment 24.4 pm; with it and add/remove: recall 99.8 %, precision 100 %, species
    100 %, 21.6 pm, of which the bulk is a rigid rotation about the beam by the tilt-axis
    rotation α (1.26°): align() de-rotates the images by α but the angles stay (0, θ, 0),
    so the reconstruction frame is the truth's turned by α (a gauge no projection sees);
    after a rigid rotation fit 7.7 pm. (Giving the aligned series ``psi = −α̂`` coords and
    the model the matching rotation puts the refinement in the truth frame: 8.5 pm without
    any rotation fit.) Fitted δθ match the planted errors to 0.04° RMS.
    """
    bench = simulate.fept_benchmark("standard", seed=0, nonlinear=True)
    # background (detector offset, support film) must go before alignment and reconstruction:
    # the atom model has no offset term
    aligned = bench.tilt_series.register_frames().remove_background().align()
    vol = aligned.denoise().reconstruct(method="resire", n_iter=100)
    model = vol.trace_atoms(min_distance_A=2.0).classify(["Fe", "Pt"], volume=vol)
    refined = model.refine(aligned, refine_alignment=("shifts", "angles"), add_remove=True)
    res = refined.provenance[-1]["result"]
    s_cl, s = bench.score(model), bench.score(refined)
    s_rot = bench.score(refined, allow_rotation=True)
    rot_deg = float(np.degrees(np.arctan2(s_rot.rotation[1, 0], s_rot.rotation[0, 0])))
    dth = np.asarray(res["dtheta_deg"])
    true_dth = bench.alignment["dtheta_deg"].values
    th_err = float(np.sqrt(np.mean((dth - (true_dth - true_dth.mean())) ** 2)))
    print("end-to-end standard/non-linear\nclassified:", s_cl, "\nrefined:", s,
          f"\nafter a rigid rotation fit ({rot_deg:.2f}° about z): {s_rot.rmsd_pm:.1f} pm; "
          f"δθ error {th_err:.3f}° RMS; R-factor {res['r_factor_start']:.4f} → "
          f"{res['r_factor']:.4f}; added {res['n_added']}, removed {res['n_removed']}")
    assert s.recall >= 0.99 and s.precision >= 0.99
    assert s.species_accuracy >= 0.99
    assert s.rmsd_pm <= 22.0 and s.rmsd_pm < s_cl.rmsd_pm
    assert res["r_factor"] < res["r_factor_start"]
    # the frame: turned about the beam by the tilt-axis rotation (+ mean δψ), nothing else
    alpha = bench.alignment.attrs["tilt_axis_rotation_deg"]
    assert abs(abs(rot_deg) - alpha) < 0.2
    assert s_rot.rmsd_pm <= 10.0
    assert th_err < 0.1


@pytest.mark.slow
def test_standard_nonlinear_from_aligned_projections_reaches_the_targets():
    """The atom stages on a real RESIRE reconstruction of the standard non-linear benchmark:
    the true-angle projections (no frame/alignment degradations) with Poisson noise at the
    benchmark dose → reconstruct → trace → classify → refine."""
    bench = simulate.fept_benchmark("standard", seed=0, nonlinear=True)
    c = bench.clean.values
    dose = bench.params["dose_e_per_A2"]
    noisy = np.random.default_rng(0).poisson(np.maximum(c, 0) * dose) / dose
    ts = aet.TiltSeries(noisy, angles=bench.clean.angles, pixel_size_A=0.35)
    vol = ts.reconstruct(method="resire", n_iter=100)
    classified = vol.trace_atoms(min_distance_A=2.0).classify(["Fe", "Pt"], volume=vol)
    refined = classified.refine(ts)
    s_cl, s = bench.score(classified), bench.score(refined)
    print("classified:", s_cl, "\nrefined:", s)
    assert s.recall >= 0.99 and s.precision >= 0.99 and s.species_accuracy >= 0.99
    assert s.rmsd_pm <= 15.0 and s.rmsd_pm < s_cl.rmsd_pm
