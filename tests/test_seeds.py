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
    r = paired_seed_test(same, a, s, g, margin=0.005, n_boot=800)
    assert r["equivalent"] and r["lo90"] > -0.005 and r["hi90"] < 0.005
    shifted = same + 0.010  # two margins better
    r = paired_seed_test(shifted, a, s, g, margin=0.005, n_boot=800)
    assert not r["equivalent"] and r["p"] < 0.01 and r["lo"] > 0
    assert verdict4(r["diff"], r["p"], r["equivalent"]) == "better"
    small = paired_seed_test(a[:60], a[:60][::-1], s[:60], g[:60], margin=0.005, n_boot=800)
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
    half = 1.6449 * 0.001  # a 90% interval of +-1.645 x .001: the question groups' noise alone when sd = 0
    # no seed noise: the interval is as narrow at 3 seeds as at 50
    assert seeds_to_settle(0.002, 0.0, 5, 0.002 - half, 0.002 + half, 0.005) == (3, 2)  # .002 + .0016 < .005; .002 > .00196
    # seed noise alone (an interval no wider than its seed part), sd .006, mean +.003 against +-.005:
    # 1.645 (t / 1.96) .006 / sqrt(n) < .002 first at n = 27 (t = 2.056 on 26 df), and
    # t .006 / sqrt(n) < .003 first at n = 18 (2.110 / sqrt(18) = .497)
    assert seeds_to_settle(0.003, 0.006, 5, 0.003, 0.003, 0.005) == (27, 18)
    # at 5 seeds the seed part of the variance is (2.776 / 1.96)^2 .006^2 / 5 = (.00380)^2; an interval of
    # +-.0075, (.0075 / 1.645)^2 = (.00456)^2 in all, leaves (.00252)^2 to the question groups, which more seeds
    # cannot remove: .003 + 1.645 x .00252 = .0071 > .005, and .003 < 1.96 x .00252 = .0049
    assert seeds_to_settle(0.003, 0.006, 5, 0.003 - 0.0075, 0.003 + 0.0075, 0.005) == (None, None)
    assert seeds_to_settle(0.010, 0.006, 5, 0.002, 0.018, 0.005) == (None, 5)  # past the margin: only a difference
    assert seeds_to_settle(0.003, float("nan"), 1, 0.0, 0.006, 0.005) == (None, None)  # one seed: no spread to project


def test_projected_se_from_5_seeds_matches_the_bootstrap_on_20():
    """Measured: the 90% half-width projected from a study's first 5 seeds to 20 averages 1.17 times the
    bootstrap's on all 20 (30 simulated studies, sd .006 over seeds, 300 question groups): on the safe side,
    since the question groups' part counts the seed-by-question noise that more seeds average away.
    At the 5 seeds measured it is the bootstrap's own, or the seeds' part alone where that is wider."""
    from hybridlib.stats import projected_se
    projected, measured = [], []
    for k in range(30):
        rng = np.random.default_rng(k)
        a, s, g = study(rng, seeds=20, groups=300, seed_sd=0.0)
        b = a + rng.normal(0, 0.006, 20)[s] + rng.normal(0, 0.03, len(a))  # seed noise in the difference
        five = s < 5
        r5 = paired_seed_test(b[five], a[five], s[five], g[five], n_boot=500)
        r20 = paired_seed_test(b, a, s, g, n_boot=500)
        at = lambda n: 1.6449 * projected_se(r5["sd"], 5, r5["lo90"], r5["hi90"], n)  # noqa: E731
        assert at(5) >= (r5["hi90"] - r5["lo90"]) / 2 * (1 - 1e-9)  # the bootstrap's own, or the seeds' part alone
        projected.append(at(20))
        measured.append((r20["hi90"] - r20["lo90"]) / 2)
    assert 1.0 < np.mean(projected) / np.mean(measured) < 1.3, (np.mean(projected), np.mean(measured))
