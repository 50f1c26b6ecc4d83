"""The powered design's statistics on simulated studies whose truth is known."""
import numpy as np
import pytest

from hybridlib.stats import hierarchical_bootstrap, paired_seed_test, verdict4


def study(rng, seeds=5, groups=200, per_group=3, mu=0.5, seed_sd=0.004, group_sd=0.08, noise=0.05):
    """Per (seed, query) values: a seed effect (training noise), a group effect shared by every seed (the
    same questions), and per-query noise; the population mean is ``mu``."""
    s = np.repeat(np.arange(seeds), groups * per_group)
    g = np.tile(np.repeat(np.arange(groups), per_group), seeds)
    values = mu + rng.normal(0, seed_sd, seeds)[s] + rng.normal(0, group_sd, groups)[g] + rng.normal(0, noise, len(s))
    return values, s, g


@pytest.mark.parametrize("seed_sd", [0.0, 0.01, 0.03])  # query noise alone, both, training noise dominant
def test_hierarchical_bootstrap_covers_the_true_mean_about_95_times_in_100(seed_sd):
    """Measured: 285, 284 and 287 of 300 simulated studies (5 seeds, 200 question groups) are covered."""
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(300):
        values, s, g = study(rng, seed_sd=seed_sd)
        _, lo, hi, _ = hierarchical_bootstrap(values, s, g, n_boot=400, seed=i)
        hits += lo <= 0.5 <= hi
    # a 95% interval covers 285 of 300 on average; binomial sd 3.8
    assert 276 <= hits <= 294, hits


def test_seed_noise_widens_the_interval_and_one_seed_is_the_group_bootstrap():
    from hybridlib.stats import bootstrap_ci
    rng = np.random.default_rng(1)
    quiet, s, g = study(rng, seed_sd=0.0)
    noisy = quiet + np.array([0.03, -0.03, 0.02, -0.02, 0.0])[s]
    width = lambda v: np.subtract(*hierarchical_bootstrap(v, s, g, n_boot=500)[2:0:-1])  # noqa: E731
    assert width(noisy) > 2 * width(quiet)
    one = s == 0
    est, lo, hi, _ = hierarchical_bootstrap(quiet[one], s[one], g[one], n_boot=2000)
    ref = bootstrap_ci(quiet[one], g[one], n_boot=2000)
    assert est == pytest.approx(ref[0]) and lo == pytest.approx(ref[1], abs=0.003) and hi == pytest.approx(ref[2], abs=0.003)


def test_tost_says_equivalent_for_no_difference_and_not_for_two_margins():
    rng = np.random.default_rng(2)
    a, s, g = study(rng, groups=600)
    same = a + rng.normal(0, 0.01, len(a))  # the same system, re-measured: true difference 0
    r = paired_seed_test(same, a, s, g, margin=0.005)
    assert r["equivalent"] and r["lo90"] > -0.005 and r["hi90"] < 0.005
    shifted = same + 0.010  # two margins better
    r = paired_seed_test(shifted, a, s, g, margin=0.005)
    assert not r["equivalent"] and r["p"] < 0.01 and r["lo"] > 0
    assert verdict4(r["diff"], r["p"], r["equivalent"]) == "better"
    small = paired_seed_test(a[:60], a[:60][::-1], s[:60], g[:60], margin=0.005)
    assert not small["equivalent"]  # too few queries to show equivalence: not "the same place"
    one = s == 0
    assert not paired_seed_test(same[one], a[one], s[one], g[one], margin=0.005)["equivalent"]  # one seed: never


@pytest.mark.parametrize("diff, p, equivalent, higher, expected", [
    (0.010, 0.001, False, True, "better"),
    (0.010, 0.001, False, False, "worse"),   # a rank distance 10 higher is worse
    (-0.010, 0.001, False, True, "worse"),
    (-12.0, 0.001, False, False, "better"),
    (0.003, 0.001, True, True, "equivalent"),  # significant but inside the margin: practically the same
    (0.000, 0.9, True, True, "equivalent"),
    (0.004, 0.049, False, True, "better"),     # at the boundary of the test
    (0.004, 0.050, False, True, "inconclusive"),
    (0.0, 0.9, False, True, "inconclusive"),   # "no difference" is never said without the equivalence test
])
def test_four_way_verdict_at_its_boundaries(diff, p, equivalent, higher, expected):
    assert verdict4(diff, p, equivalent, higher) == expected


def test_seeds_to_settle_by_hand():
    from hybridlib.stats import seeds_to_settle
    # no seed noise, question groups' se .001 (a normal reference: ~1e6 groups): .002 + 1.645 x .001 < .005 at
    # the fewest seeds equivalence allows (3), and .002 > 1.96 x .001 from 2
    assert seeds_to_settle(0.002, 0.0, 5, 0.001, 0.005) == (3, 2)
    # seed noise alone, sd .006, mean +.003 against +-.005, t on n - 1 df: t(.95, 26) .006 / sqrt(27) = .00197 <
    # .002 first at n = 27, and t(.975, 17) .006 / sqrt(18) = .00298 < .003 first at n = 18
    assert seeds_to_settle(0.003, 0.006, 5, 0.0, 0.005) == (27, 18)
    # question noise that more seeds cannot remove: 1.645 x .00456 = .0075 > .005 - .003, and .003 < 1.96 x .00456
    assert seeds_to_settle(0.003, 0.006, 5, 0.00456, 0.005) == (None, None)
    # past the margin: only a difference, at 4 seeds (se sqrt(.006^2 / 4 + .002^2) = .00361, 6.3 df, t 2.42)
    assert seeds_to_settle(0.010, 0.006, 5, 0.002, 0.005) == (None, 4)
    assert seeds_to_settle(0.003, float("nan"), 1, 0.001, 0.005) == (None, None)  # one seed: no spread to project


def test_projected_se_from_5_seeds_matches_the_se_on_20():
    """The standard error projected from a study's first 5 seeds to 20 averages the one measured on all 20
    (60 simulated crossed studies): the seeds' part shrinks as 1 / n, the question groups' part stays."""
    from hybridlib.stats import projected_se, seed_test
    projected, measured = [], []
    rng = np.random.default_rng(3)
    for _ in range(60):
        sums, w = crossed(rng, seeds=20)
        r5, r20 = seed_test(sums[:, :5], w[:, :5]), seed_test(sums, w)
        assert projected_se(r5["sd"], r5["se_groups"], 5) == pytest.approx(r5["se"])
        projected.append(projected_se(r5["sd"], r5["se_groups"], 20))
        measured.append(r20["se"])
    assert 0.85 < np.mean(projected) / np.mean(measured) < 1.15, (np.mean(projected), np.mean(measured))

def crossed(rng, diff=0.0, seeds=5, groups=300, seed_sd=0.006, group_sd=0.05, interaction_sd=0.08):
    """(group, seed) sums and weights of a paired difference in a crossed design: a seed effect, a question
    group effect every seed shares, and their interaction; groups weigh 1-3 queries."""
    w = rng.integers(1, 4, groups).astype(float)[:, None] * np.ones(seeds)
    x = diff + rng.normal(0, seed_sd, seeds)[None, :] + rng.normal(0, group_sd, groups)[:, None] \
        + rng.normal(0, interaction_sd, (groups, seeds)) / np.sqrt(w)
    return x * w, w


@pytest.mark.parametrize("parts", [dict(), dict(seed_sd=0.0), dict(seed_sd=0.015, group_sd=0.01)])
def test_the_seed_test_holds_its_level_and_covers_with_five_seeds(parts):
    """2,000 simulated 5-seed studies with no true difference: the 5% test rejects 3.5-6.5% of them and the 90%
    interval covers 0 in 88-92%; a true difference of .02 is detected (in more than 90% of 200 studies; in more
    than half where the seeds' sd is .015). Parts: the study's mix (seed sd .006, interaction comparable), no
    seed noise at all, and seed noise dominant, where a normal tail rejects more than 10%. Measured: rejected
    5.7%, 5.75%, 6.05% (a normal tail: 7.2%, 6.1%, 13.4%); covered 89.1%, 89.15%, 89.25%."""
    from hybridlib.stats import seed_test
    rng = np.random.default_rng(7)
    null = [seed_test(*crossed(rng, **parts)) for _ in range(2000)]
    rejected = np.mean([r["p"] < 0.05 for r in null])
    covered = np.mean([r["lo90"] <= 0 <= r["hi90"] for r in null])
    assert 0.035 <= rejected <= 0.065 and 0.88 <= covered <= 0.92, (rejected, covered)
    if parts.get("seed_sd") == 0.015:  # what a normal tail on the same standard errors would do: too often
        from scipy.stats import norm
        assert np.mean([2 * norm.sf(abs(r["diff"]) / r["se"]) < 0.05 for r in null]) > 0.10
    shifted = [seed_test(*crossed(rng, diff=0.02, **parts)) for _ in range(200)]
    power = np.mean([r["p"] < 0.05 and r["lo"] > 0 for r in shifted])
    assert power > (0.5 if parts.get("seed_sd", 0.006) > 0.006 else 0.9), power
    assert all(r["bound"] == max(abs(r["lo90"]), abs(r["hi90"])) for r in shifted)
