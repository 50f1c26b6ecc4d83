"""Statistics over queries and seeds: bootstrap intervals, paired tests, multiple-comparison correction, and
for several training seeds the two-level bootstrap, the equivalence test and the four-way verdict.

Queries that are translations of one another are not independent: resampling is by ``group``
(the question id), so a question counts once however many languages ask it.
"""
from __future__ import annotations

import numpy as np


def _group_sums(values: np.ndarray, groups: np.ndarray, weights=None) -> tuple[np.ndarray, np.ndarray]:
    _, inverse = np.unique(groups, return_inverse=True)
    return np.bincount(inverse, weights=values), np.bincount(inverse, weights=weights).astype(float)


def bootstrap_ci(values, groups=None, weights=None, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """Weighted mean of ``values`` and its percentile bootstrap interval, resampling whole groups with
    replacement. With weights 1 / (views x queries in the view), the mean is a macro-average over views."""
    values = np.asarray(values, dtype=float)
    groups = np.arange(len(values)) if groups is None else np.asarray(groups)
    weights = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=float)
    sums, counts = _group_sums(values * weights, groups, weights)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(len(sums), np.full(len(sums), 1 / len(sums)), size=n_boot).astype(float)
    means = (w @ sums) / (w @ counts)
    a = (1 - level) / 2
    return float(sums.sum() / counts.sum()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


# ---- seeds as the unit of replication (the powered design) ---------------------------------------------

def hierarchical_bootstrap(values, seeds, groups, weights=None, n_boot: int = 1000, level: float = 0.95,
                           seed: int = 0) -> tuple[float, float, float, np.ndarray]:
    """Mean over training seeds of each seed's (weighted) mean of ``values``, and its percentile interval
    from a two-level bootstrap: each draw resamples the seeds with replacement and the question groups with
    replacement, so both sources of noise, training and queries, are in the interval. The groups of a draw
    are shared by its seeds: every seed answers the same questions, so their sampling noise is common to
    all seeds (resampling them independently per seed would shrink it by the number of seeds). With one
    seed this is the group bootstrap. Also returns the bootstrap distribution (n_boot,).

    ``values``, ``seeds``, ``groups``, ``weights``: one entry per (seed, query) row; weights 1 / (views x
    queries in the view) make each seed's mean a macro-average over views."""
    values = np.asarray(values, dtype=float)
    weights = np.ones(len(values)) if weights is None else np.asarray(weights, dtype=float)
    sums, counts = group_seed_sums(values, seeds, groups, weights)
    return bootstrap_sums(sums, counts, n_boot, level, seed)


def group_seed_sums(values, seeds, groups, weights) -> tuple[np.ndarray, np.ndarray]:
    """Weighted sums of ``values`` and of the weights per (question group, seed): two (G, S) arrays."""
    _, s_idx = np.unique(np.asarray(seeds), return_inverse=True)
    _, g_idx = np.unique(np.asarray(groups), return_inverse=True)
    sums, counts = np.zeros((g_idx.max() + 1, s_idx.max() + 1)), np.zeros((g_idx.max() + 1, s_idx.max() + 1))
    np.add.at(sums, (g_idx, s_idx), np.asarray(values, dtype=float) * weights)
    np.add.at(counts, (g_idx, s_idx), weights)
    return sums, counts


def group_draws(n_groups: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot, G) multinomial counts: how often each question group is drawn in each bootstrap sample."""
    return np.random.default_rng(seed).multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=n_boot).astype(float)


def bootstrap_sums(sums: np.ndarray, counts: np.ndarray, n_boot: int = 1000, level: float = 0.95,
                   seed: int = 0, draws: np.ndarray | None = None) -> tuple[float, float, float, np.ndarray]:
    """:func:`hierarchical_bootstrap` on (group, seed) sums and weight sums, (G, S) each. ``draws``
    (:func:`group_draws`) lets many strategies of one figure share their group samples (common random
    numbers, and one draw instead of many)."""
    G, S = sums.shape
    estimate = float((sums.sum(0) / counts.sum(0)).mean())
    rng = np.random.default_rng(seed)
    w = group_draws(G, n_boot, seed + 1) if draws is None else draws  # (n_boot, G): one group draw each
    per_seed = (w @ sums) / (w @ counts)  # (n_boot, S)
    if S > 1:
        # With a handful of seeds a percentile bootstrap is too narrow: resampling shrinks their variance by
        # (S - 1) / S, and the mean of S draws has t tails, not normal ones. Widening the seeds' spread by both
        # factors makes the seed part a t interval (coverage measured in tests/test_seeds.py).
        from scipy.stats import norm, t
        centre = per_seed.mean(1, keepdims=True)
        widen = np.sqrt(S / (S - 1)) * t.ppf(1 - (1 - level) / 2, S - 1) / norm.ppf(1 - (1 - level) / 2)
        per_seed = centre + (per_seed - centre) * widen
    picks = rng.integers(S, size=(n_boot, S))
    boot = np.take_along_axis(per_seed, picks, axis=1).mean(1)
    a = (1 - level) / 2
    return estimate, float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a)), boot


def paired_seed_test(a, b, seeds, groups, weights=None, margin: float = 0.005, min_seeds: int = 3) -> dict:
    """Difference a - b paired by (seed, query): ``seed_test`` on its (question group, seed) sums."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    weights = np.ones(len(diff)) if weights is None else np.asarray(weights, dtype=float)
    sums, counts = group_seed_sums(diff, seeds, groups, weights)
    return seed_test(sums, counts, margin, min_seeds)


def seed_test(sums: np.ndarray, counts: np.ndarray, margin: float = 0.005, min_seeds: int = 3) -> dict:
    """:func:`paired_seed_test` on the (group, seed) sums of the differences and of their weights (G, S): the
    mean over seeds of each seed's (weighted) mean difference, its standard error from :func:`crossed_variance`
    (seeds and question groups, each once), and a t reference with Satterthwaite's degrees of freedom: with a
    handful of seeds, the seeds' part dominates and the tails are t with about S - 1 degrees of freedom, not
    normal. The 95% interval and the two-sided p-value for "no difference" come from it; equivalence within
    +-``margin`` is the two one-sided tests at 5%, i.e. the 90% interval inside the margins (Schuirmann
    1987), and only with at least ``min_seeds`` seeds. ``bound``: how far apart the two can be, the larger
    end of the 90% interval in absolute value."""
    from scipy.stats import t
    v = crossed_variance(sums, counts)
    diff, se, df = v["diff"], np.sqrt(v["seed_var"] + v["group_var"]), v["df"]
    if se > 0:
        p = float(2 * t.sf(abs(diff) / se, df))
        (lo, hi), (lo90, hi90) = (diff + np.array([-1, 1]) * t.ppf(q, df) * se for q in (0.975, 0.95))
    else:
        p, lo, hi, lo90, hi90 = float(diff == 0), diff, diff, diff, diff
    n_seeds = sums.shape[1]
    return {"diff": diff, "sd": v["sd"], "se": float(se), "se_groups": float(np.sqrt(v["group_var"])), "df": df,
            "lo": float(lo), "hi": float(hi), "lo90": float(lo90), "hi90": float(hi90), "p": p,
            "bound": float(max(abs(lo90), abs(hi90))),
            # without several seeds the interval holds no training noise: equivalence cannot be claimed
            "equivalent": bool(n_seeds >= min_seeds and -margin < lo90 and hi90 < margin), "margin": margin,
            "seeds": n_seeds, "groups": sums.shape[0]}


def crossed_variance(sums: np.ndarray, counts: np.ndarray) -> dict:
    """The variance of a mean over seeds of per-seed weighted means, when every seed answers the same question
    groups (a crossed design: x[g, s] = effect + seed_s + question_g + interaction_gs). Split in two parts,
    each counted once:

    - the seeds': the variance of the S per-seed means over S (it holds the seed effects and, averaged over
      the groups, the interaction);
    - the question groups': the weighted variance of the groups' means over the seeds (the delta method of a
      ratio estimator, as a group bootstrap measures it) less the interaction it also holds, estimated from
      the residuals of the two-way table.

    Degrees of freedom: Satterthwaite's, from S - 1 and G - 1. With one seed the groups' part is all there is
    (the interaction cannot be told from it). Returns diff, sd (over seeds), seed_var, group_var, df."""
    keep = counts.sum(1) > 0
    sums, counts = sums[keep], counts[keep]
    G, S = sums.shape
    w = counts.mean(1)  # a group's weight: every seed scores the same queries
    x = sums / np.where(counts > 0, counts, 1)  # (G, S) each group's mean per seed
    per_seed = (w @ x) / w.sum()
    diff = float(per_seed.mean())
    share = w / w.sum()
    group_mean = x.mean(1)
    raw = G / (G - 1) * float((share ** 2) @ (group_mean - diff) ** 2) if G > 1 else 0.0
    if S > 1:
        sd = float(per_seed.std(ddof=1))
        seed_var = sd ** 2 / S
        resid = x - group_mean[:, None] - per_seed[None, :] + diff
        interaction = float((resid ** 2).sum() / ((G - 1) * (S - 1))) if G > 1 else 0.0
        group_var = max(raw - float(share @ share) * interaction / S, 0.0)
    else:
        sd, seed_var, group_var = np.nan, 0.0, raw
    df = float(satterthwaite(seed_var, S, group_var, G))
    return {"diff": diff, "sd": sd, "seed_var": seed_var, "group_var": group_var, "df": df}


def satterthwaite(seed_var, seeds, group_var, groups):
    """Satterthwaite's degrees of freedom of a variance in two parts, the seeds' (on ``seeds`` - 1) and the
    question groups' (on ``groups`` - 1); ``groups`` - 1 where neither part has any spread."""
    seed_var, seeds = np.asarray(seed_var, dtype=float), np.asarray(seeds, dtype=float)
    denom = np.where(seeds > 1, seed_var ** 2 / np.maximum(seeds - 1, 1), 0.0) + group_var ** 2 / max(groups - 1, 1)
    return np.where(denom > 0, (seed_var + group_var) ** 2 / np.where(denom > 0, denom, 1), max(groups - 1, 1))


def projected_se(sd: float, se_groups: float, n) -> np.ndarray:
    """The standard error a comparison of :func:`seed_test` would have on ``n`` seeds, were its noise to stay
    as measured: the seeds' part, sd^2 / n, shrinks as seeds are added; the question groups' part, which
    every seed shares, does not."""
    return np.sqrt(sd ** 2 / np.asarray(n, dtype=float) + se_groups ** 2)


def seeds_to_settle(diff: float, sd: float, seeds: int, se_groups: float, margin: float, most: int = 50,
                    min_seeds: int = 3, groups: int = 10**6) -> tuple[int | None, int | None]:
    """How many seeds would settle a comparison of :func:`seed_test`, were its mean difference ``diff`` and its
    noise (:func:`projected_se`, with its t reference) to stay as measured on ``seeds`` seeds: the fewest at
    which the 90% interval would lie inside +-``margin`` (equivalent; never under ``min_seeds``), and at which
    the 95% interval would leave 0 (a difference, before any multiplicity correction); each None past
    ``most`` seeds or without a spread to project (one seed). A projection for planning, not a result."""
    from scipy.stats import t
    if seeds < 2 or not np.isfinite(sd):
        return None, None
    n = np.arange(2, most + 1)
    se, df = projected_se(sd, se_groups, n), satterthwaite(sd ** 2 / n, n, se_groups ** 2, groups)
    equivalent = n[(n >= min_seeds) & (abs(diff) + t.ppf(0.95, df) * se < margin)]
    different = n[abs(diff) > t.ppf(0.975, df) * se]
    return (int(equivalent[0]) if len(equivalent) else None), (int(different[0]) if len(different) else None)


def verdict4(diff: float, p_holm: float, equivalent: bool, higher_is_better: bool = True, alpha: float = 0.05) -> str:
    """One of four outcomes for "a against b": ``equivalent`` when the TOST puts the difference inside the
    stated margin (a difference too small to matter, significant or not); else ``better`` / ``worse`` when
    the Holm-corrected test rejects "no difference"; else ``inconclusive``. "No difference" is only ever
    said through ``equivalent``."""
    if equivalent:
        return "equivalent"
    if p_holm < alpha:
        return "better" if (diff > 0) == higher_is_better else "worse"
    return "inconclusive"
