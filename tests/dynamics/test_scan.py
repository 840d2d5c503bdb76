"""The likelihood-ratio scan detector (aet.dynamics.scan / detect) against planted truths."""

import numpy as np
import pytest
import xarray as xr

import aet
from aet.dynamics.scan import (
    NullTail,
    change_llr,
    nearest_atoms,
    null_scores,
    ordered_llr,
    region_scan,
    species_error_probability,
)
from aet.simulate.nucleation import domain_series, measure_model, two_time_case
from aet.testing.dynamics import score_domains

SMALL = [{"name": "A", "sizes": (60, 90)}, {"name": "B", "sizes": (45, 45)},
         {"name": "C", "sizes": (0, 28), "where": "surface"}]


def test_ordered_llr_is_the_formula():
    # two atoms on sublattice 0 (species A under L1_0 variant 0), one matching, one not
    llr, names = ordered_llr(["Fe", "Pt"], [0, 0], [0.01, 0.02], species_AB=("Fe", "Pt"),
                             kind="L10", order_fraction=0.95, composition_A=0.5)
    assert names[0] == "L10:0" and len(names) == 6
    q = [0.95 * 0.99 + 0.05 * 0.01, 0.95 * 0.98 + 0.05 * 0.02]
    r = [0.5, 0.5]
    assert llr[0, 0] == pytest.approx(np.log(q[0] / r[0]))
    assert llr[1, 0] == pytest.approx(np.log((1 - q[1]) / (1 - r[1])))
    # variant 1 is the antiphase of variant 0: the roles swap
    assert llr[0, 1] == pytest.approx(np.log((1 - q[0]) / (1 - r[0])))
    # off-lattice atoms carry no evidence
    assert not ordered_llr(["Fe"], [-1], [0.01], species_AB=("Fe", "Pt"))[0].any()


def test_change_llr_signs():
    # site where variant L10:0 wants Fe: Pt→Fe is a change towards it, Fe→Pt away from it
    s1, s2 = ["Pt", "Fe", "Fe", "Pt"], ["Fe", "Pt", "Fe", "Pt"]
    e = [0.01] * 4
    up, _, rho = change_llr(s1, s2, [0] * 4, e, e, species_AB=("Fe", "Pt"), kind="L10",
                            composition_A=0.5, background_change=0.0)
    down, _, _ = change_llr(s1, s2, [0] * 4, e, e, species_AB=("Fe", "Pt"), kind="L10",
                            composition_A=0.5, background_change=0.0, direction="disorder")
    assert up[0, 0] > 2.5 and up[1, 0] < -2.5          # towards / away from the order
    assert -1.0 < up[2, 0] < 0 and up[3, 0] < -2.5     # matched both times: was ordered
    assert down[1, 0] > 2.5 and down[0, 0] < -2.5
    with pytest.raises(ValueError, match="direction must be"):
        change_llr(s1, s2, [0] * 4, e, e, species_AB=("Fe", "Pt"), direction="up")


def test_error_probability_from_confidence_is_calibrated():
    s = two_time_case(seed=4)
    m = measure_model(s.truth_models[0], seed=5, species_error_rate=0.02)
    wrong = np.asarray(m.species) != np.asarray(s.truth_models[0].species)[m["atom_id"]]
    for drop in ([], ["box_intensity"]):
        eps, src = species_error_probability(m.data.drop_vars(drop), species_AB=("Fe", "Pt"))
        assert src == ("class_confidence" if drop else "box_intensity")
        # the expected number of errors matches the true one, and the wrong atoms are the
        # ones flagged as doubtful
        assert eps.sum() == pytest.approx(wrong.sum(), rel=0.5)
        assert eps[wrong].mean() > 10 * eps[~wrong].mean()
    eps, src = species_error_probability(m.data.drop_vars(["box_intensity",
                                                           "class_confidence"]))
    assert src == "default" and np.all(eps == 0.01)
    # atoms the refinement added after the classification carry no measurement (NaN): they
    # get the default, the others what they had
    full, _ = species_error_probability(m.data, species_AB=("Fe", "Pt"))
    for drop in ([], ["box_intensity"]):
        d = m.data.drop_vars(drop).copy()
        new = np.zeros(d.sizes["atom"], bool)
        new[::40] = True
        for k in ("box_intensity", "class_confidence"):
            if k in d:
                d[k] = d[k].where(~xr.DataArray(new, dims="atom"))
        eps, src = species_error_probability(d, species_AB=("Fe", "Pt"))
        assert src == ("class_confidence" if drop else "box_intensity")
        assert np.all(eps[new] == 0.01) and np.all(np.isfinite(eps))
        ref = full if not drop else species_error_probability(
            m.data.drop_vars(drop), species_AB=("Fe", "Pt"))[0]
        assert np.abs(eps[~new] - ref[~new]).max() < 0.02
        assert eps[wrong & ~new].mean() > 10 * eps[~wrong & ~new].mean()


def test_null_tail_rate_and_threshold():
    rng = np.random.default_rng(0)
    scores = rng.exponential(2.0, size=400)          # λ(T) = 400/20 · exp(−T/2) per particle
    tail = NullTail.fit(scores, 20)
    T = tail.threshold(0.01)
    assert tail.p_value(T) <= 0.0100001
    # extrapolated from ~20 tail scores: the fitted decay length is within ~1 sd (25 %)
    assert -1 / tail.slope == pytest.approx(2.0, rel=0.3)
    assert T == pytest.approx(2.0 * np.log(20 / 0.01005), abs=2.5)
    assert tail.p_value(0.0) == pytest.approx(1.0)


def test_null_tail_gumbel_of_the_maxima():
    # maxima of 60 null scans drawn from a Gumbel law (μ = 10, β = 1.2): the threshold at
    # 1 % is μ − β log(−log 0.99) = 15.52; the moment fit of 60 maxima is within ~2 sd
    rng = np.random.default_rng(1)
    mu, beta = 10.0, 1.2
    true = mu - beta * np.log(-np.log1p(-0.01))
    got = []
    for _ in range(20):
        m = rng.gumbel(mu, beta, size=60)
        tail = NullTail.fit(np.r_[m, m - 3.0], 60, maxima=m)
        T = tail.threshold(0.01)
        assert tail.p_value(T) == pytest.approx(0.01, rel=1e-6)
        got.append(T)
    got = np.array(got)
    assert abs(got.mean() - true) < 0.5 and got.std() < 1.2
    # the per-particle false-alarm probability is that of the largest score
    assert tail.p_value(tail.gumbel_loc) == pytest.approx(1 - np.exp(-1.0))
    with pytest.raises(ValueError, match="maxima must hold one score per permutation"):
        NullTail.fit(m, 59, maxima=m)


def _sphere_case(n_atoms, seed):
    rng = np.random.default_rng(seed)
    base = aet.simulate.fept_particle(26.0, phase="A1", seed=seed)
    from aet.simulate.nucleation import _fcc_sublattice, _variant_species

    pos = base.positions
    sub = _fcc_sublattice(pos, 3.81)
    sp = np.asarray(base.species).astype(str)
    inside = np.argsort(np.linalg.norm(pos - rng.normal(0, 3, 3), axis=1))[:n_atoms]
    if n_atoms:
        sp[inside] = _variant_species("L10", int(rng.integers(6)), sub[inside])
    flip = rng.random(sp.size) < 0.01
    sp[flip] = np.where(sp[flip] == "Fe", "Pt", "Fe")
    return pos, sub, sp, inside


@pytest.mark.parametrize("seed", [0, 1])
def test_sphere_scan_finds_a_planted_nucleus_and_nothing_in_a_random_alloy(seed):
    pos, sub, sp, inside = _sphere_case(60, seed)
    eps = np.full(sp.size, 0.01)
    knn = nearest_atoms(pos)
    L, _ = ordered_llr(sp, sub, eps, species_AB=("Fe", "Pt"))
    tail = null_scores(lambda p: ordered_llr(sp[p], sub, eps[p], species_AB=("Fe", "Pt"))[0],
                       knn, n_permutations=20, seed=seed)
    cands = region_scan(L, knn)
    best = cands[0]
    assert tail.p_value(best["score"]) < 1e-4
    assert np.isin(best["atoms"], inside).mean() > 0.7
    # the random alloy of the same particle: nothing at 1 % false alarms
    pos, sub, sp, _ = _sphere_case(0, seed + 10)
    L, _ = ordered_llr(sp, sub, eps, species_AB=("Fe", "Pt"))
    assert all(tail.p_value(c["score"]) > 0.01 for c in region_scan(L, knn))


def test_region_boundary_stays_within_a_shell_of_a_small_surface_nucleus():
    """A 30-atom L1_0 nucleus planted at the surface of a random 50/50 alloy, its region
    settled from the 50 atoms nearest to it (as the scan's sphere gives it): the matrix next
    to it holds atoms that match the variant by chance on every side, and the region must not
    follow them. Over 12 particles: no detected atom more than one neighbour shell from the
    nucleus, and every nucleus atom within one shell of the region. (Grown over single bonds,
    the region took 3, 4 and 1 atoms beyond the shell in three of the 12.)"""
    from scipy.spatial import cKDTree

    from aet.analysis import fit_lattice
    from aet.dynamics.detect import _Time
    from aet.simulate.nucleation import _fcc_sublattice, _variant_species

    far, covered = [], []
    for seed in range(12):
        rng = np.random.default_rng(seed)
        base = aet.simulate.fept_particle(26.0, phase="A1", seed=seed)
        pos = base.positions
        sp = np.asarray(base.species).astype(str)
        u = rng.normal(size=3)
        centre = u / np.linalg.norm(u) * (np.linalg.norm(pos, axis=1).max() - 2.0)
        inside = np.argsort(np.linalg.norm(pos - centre, axis=1))[:30]
        sp[inside] = _variant_species("L10", int(rng.integers(6)),
                                      _fcc_sublattice(pos, 3.81)[inside])
        ds = aet.AtomicModel(pos, sp, arrays={"species_error": np.full(sp.size, 0.01)}).data
        fit = fit_lattice(ds, "fcc")
        tm = _Time(ds, fit, ("Fe", "Pt"), "L10", 0.95, 250, 1.2 * fit.d_nn_A)
        match = tm.expA == (tm.sp == "Fe")[:, None]
        v = int(np.argmax(match[inside].sum(axis=0)))     # the planted variant
        assert match[inside, v].all()
        start = np.argsort(np.linalg.norm(pos - pos[inside].mean(axis=0), axis=1))[:50]
        got = tm.refine(start, v)
        shell = 1.2 * fit.d_nn_A
        far.append(int((cKDTree(pos[inside]).query(pos[got])[0] > shell).sum()))
        covered.append(float((cKDTree(pos[got]).query(pos[inside])[0] <= shell).mean()))
    assert sum(far) == 0, far
    assert min(covered) >= 0.9, covered


@pytest.fixture(scope="module")
def small_case():
    s = domain_series(SMALL, diameter_A=26.0, hops=(0, 4), seed=3)
    models = [measure_model(m, seed=20 + t) for t, m in enumerate(s.truth_models)]
    return s, models, aet.NucleusTracker(models, times_min=s.times_min).track()


def test_tracker_default_is_the_scan_on_measured_models(small_case):
    s, models, res = small_case
    assert res.params["method"] == "scan"
    sc = score_domains(res, s, models)
    d = sc["domains"]
    # every planted domain (28–90 atoms) at every time, boundary within one shell
    assert d["found"].all(), d
    assert (d["boundary"] >= 0.9).all(), d
    # and no detected atom beyond one shell of the truth (grown over single bonds, the
    # regions of B followed chance matches into the matrix: 44 atoms at t1, 4 beyond)
    assert (d[["boundary_true", "boundary_detected"]] >= 0.95).all().all(), d
    assert sc["false_nuclei"] == 0
    # growth of A and the 28-atom birth of C, nothing else, each with a confidence
    assert sorted(sc["events"]) == sorted(sc["planted_events"])
    assert (res.events["confidence"] > 0.99).all()
    birth = res.events[res.events["event"] == "birth"].iloc[0]
    ident = np.asarray(res.labels[1])  # the born nucleus' atoms are the planted ones
    ids = np.asarray(models[1]["atom_id"])
    nid = np.asarray(s.truth_models[1]["nucleus_id"])[ids]
    born = ident == int(birth["nuclei_to"])
    assert np.mean(born[nid == 2]) > 0.8             # most planted atoms, within one shell
    assert np.mean(nid[born] == 2) > 0.6
    assert len(birth["atoms"]) == int(birth["n_atoms_to"])
    # every nucleus has a false-alarm probability
    assert (res.nuclei["p_value"] < 0.01).all()
    # the hopped surface atoms are reported as moved, with the species they had
    mv = res.params["moved"]
    assert len(mv) >= 3
    hopped = {h[1] for h in s.params["hops"]}
    ids0 = np.asarray(models[0]["atom_id"])
    assert sum(int(ids0[a]) in hopped for a in mv["atom_from"]) >= 3


def test_noise_only_pair_gives_no_event(small_case):
    s, _, _ = small_case
    truth = s.truth_models[1]
    models = [measure_model(truth, seed=40 + t) for t in range(2)]
    res = aet.NucleusTracker(models, times_min=[9, 16]).track()
    assert len(res.events) == 0, res.events
    assert res.summary()["n_nuclei"] == [3, 3]


@pytest.mark.slow
def test_two_time_case_over_five_seeds():
    """Issue #16 at the atom level: every planted domain at each time with its boundary within
    one shell (≥ 90 % of its atoms), ≥ 95 % of the events with the right type and domains, the
    30-atom birth found, no false nucleus."""
    right = planted = wrong = false = 0
    for seed in range(5):
        s = two_time_case(seed=seed)
        models = [measure_model(m, seed=100 * seed + t) for t, m in enumerate(s.truth_models)]
        res = aet.NucleusTracker(models, times_min=s.times_min).track()
        sc = score_domains(res, s, models)
        d = sc["domains"]
        assert d["found"].all(), (seed, d)
        # every domain (the smallest 30 atoms): minimum 0.964 over the three boundary scores
        assert (d[["boundary", "boundary_true", "boundary_detected"]] >= 0.9).all().all(), \
            (seed, d)
        assert (1, "birth", (), ("C",)) in sc["events"], (seed, sc["events"])
        right += sc["events_right"]
        planted += len(sc["planted_events"])
        wrong += sc["events_wrong"]
        false += sc["false_nuclei"]
    assert right >= 0.95 * planted and wrong == 0 and false <= 1


@pytest.mark.slow
def test_noise_only_pairs_and_random_alloys():
    """10 pairs where nothing changed but the measurement (5 of the two-time case's second
    time, 5 random-alloy particles): no event, at most one false nucleus in all."""
    events = false = 0
    for seed in range(10):
        if seed % 2 == 0:
            truth, planted = two_time_case(seed=seed).truth_models[1], 3
        else:
            truth, planted = domain_series([], diameter_A=32.0, seed=seed).truth_models[0], 0
        models = [measure_model(truth, seed=1000 + 10 * seed + t) for t in range(2)]
        res = aet.NucleusTracker(models, times_min=[9, 16]).track()
        events += len(res.events)
        false += sum(max(k - planted, 0) for k in res.summary()["n_nuclei"])
    assert events == 0 and false <= 1


def test_inverted_labels_at_one_time_are_swapped_back(small_case):
    """One classification across times: a model whose two species labels came out inverted
    (heavy called light) is swapped back, by its intensities or, without them, by its paired
    atoms' disagreement with the previous time; the result is the same."""
    s, models, res = small_case
    m1 = models[1]
    sp = np.asarray(m1.species).astype(str)
    inv = aet.AtomicModel(m1.positions, np.where(sp == "Fe", "Pt", "Fe"),
                          arrays={k: np.asarray(m1[k]) for k in
                                  ("atom_id", "class_confidence")})
    res2 = aet.NucleusTracker([models[0], inv], times_min=s.times_min).track()
    assert res2.params["species_swapped"] == [False, True]
    assert sorted(map(tuple, res2.events[["event", "nuclei_from", "nuclei_to"]].values)) == \
        sorted(map(tuple, res.events[["event", "nuclei_from", "nuclei_to"]].values))
