import numpy as np
import pytest

from hybridlib.stats import bootstrap_ci, holm


def test_bootstrap_interval_covers_the_mean_and_shrinks_with_data():
    rng = np.random.default_rng(0)
    small, big = rng.normal(0.5, 0.2, 50), rng.normal(0.5, 0.2, 5000)
    m, lo, hi = bootstrap_ci(small)
    assert lo < m < hi and m == pytest.approx(small.mean())
    _, lo2, hi2 = bootstrap_ci(big)
    assert hi2 - lo2 < (hi - lo) / 5


def test_bootstrap_resamples_whole_groups():
    # 11 translations of each question share its value: the effective sample is the 20 questions, not 220 rows.
    rng = np.random.default_rng(1)
    per_question = rng.normal(size=20)
    values, groups = np.repeat(per_question, 11), np.repeat(np.arange(20), 11)
    _, lo_g, hi_g = bootstrap_ci(values, groups)
    _, lo_q, hi_q = bootstrap_ci(values)
    assert (hi_g - lo_g) > 2.5 * (hi_q - lo_q)


def test_weighted_mean_is_a_macro_average():
    values = np.array([1.0, 1.0, 1.0, 0.0])  # view A: three queries at 1; view B: one query at 0
    weights = np.array([1 / 6, 1 / 6, 1 / 6, 1 / 2])
    assert bootstrap_ci(values, weights=weights)[0] == pytest.approx(0.5)


def test_holm_by_hand():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.001]), [0.5, 0.002])
