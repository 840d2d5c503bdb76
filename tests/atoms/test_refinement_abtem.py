"""Refinement on physics it did not write: the abTEM engine (abTEM's projected potential, a
response calibrated on multislice, abTEM's probe, point sampling; ``aet.simulate``).

The atom model of the refinement (learned per-species profiles, a power-law response) is not
the engine's (a potential raised to a power, then blurred by the probe), so these tests show
whether refinement improves on what tracing found when its model is not the truth's. Every
figure is scored against the ground truth, which the pipeline never reads.
"""

from __future__ import annotations

import pytest

from aet.simulate import fept_benchmark

pytest.importorskip("abtem")


def traced_from_clean(bench):
    vol = bench.clean.reconstruct(method="resire", n_iter=100)
    return vol.trace_atoms(min_distance_A=2.0).classify(["Fe", "Pt"], volume=vol)


def test_refinement_improves_on_noise_free_abtem_projections_small():
    """Small abTEM case (~250 atoms, 15 projections), noise-free at the true angles: refine
    lowers the RMSD of trace + classify (measured 3.86 → 1.74 pm, seed 0) and finds a
    non-linear response."""
    bench = fept_benchmark("small", seed=0, engine="abtem")
    traced = traced_from_clean(bench)
    refined = traced.refine(bench.clean)
    s0, s1 = bench.score(traced), bench.score(refined)
    res = refined.provenance[-1]["result"]
    print(f"small abTEM, noise-free: traced {s0.rmsd_pm:.2f} pm → refined {s1.rmsd_pm:.2f} "
          f"pm; γ {res['profile']['response_gamma']:.3f}")
    assert s0.recall >= 0.99 and s1.recall == s0.recall and s1.precision == s0.precision
    assert s1.rmsd_pm < 0.8 * s0.rmsd_pm
    assert not res["reverted"] and res["held_out_loss"] < res["held_out_loss_start"]
    # the engine raises Σ V^p to γ = 1.4 and then blurs by the probe; the refinement raises
    # the (blurred) sum of profiles to its γ, so the exponent is an effective one (measured
    # 1.148): a non-linear response is found (a linear one is γ = 1), not the engine's number
    assert 1.05 < res["profile"]["response_gamma"] < 1.6


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason=(
    "issue 14 item 3 not met on the 3 nm case: since the RESIRE-OS default traces 2.83 pm "
    "from these projections, refinement makes it 3.37 pm (main's Gaussian model: 2.75 -> "
    "3.80 pm); the held-out loss falls only 0.3 %, the R-factor stays 0.086: the profile "
    "model's response acts after the blur, the engine's before it"))
def test_refinement_improves_on_noise_free_abtem_projections_realistic():
    """The issue-13 case (3 nm FePt, 1164 atoms, 47 projections), noise-free at the true
    angles: refinement must lower the RMSD of trace + classify (measured, seed 0: traced
    2.83 pm, refined 3.37 pm; Fe 3.90 → 4.65, Pt 0.98 → 1.12 pm)."""
    bench = fept_benchmark("realistic", seed=0, engine="abtem")
    traced = traced_from_clean(bench)
    refined = traced.refine(bench.clean)
    s0, s1 = bench.score(traced), bench.score(refined)
    print(f"realistic abTEM, noise-free: traced {s0.rmsd_pm:.2f} pm → refined "
          f"{s1.rmsd_pm:.2f} pm")
    assert s1.rmsd_pm < 0.7 * s0.rmsd_pm
    for sp in ("Fe", "Pt"):
        assert s1.rmsd_pm_by_species[sp] < s0.rmsd_pm_by_species[sp]

