"""Statistics over queries: bootstrap intervals, paired tests, multiple-comparison correction, seed spread.

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


def paired_randomization(a, b, groups=None, weights=None, n_perm: int = 10000, seed: int = 0) -> tuple[float, float]:
    """(Weighted) mean difference a - b over the same queries and its two-sided p-value under a sign-flip
    randomization test on the per-group differences (the null: which system produced a group's scores
    is exchangeable)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired test needs the same queries: {a.shape} vs {b.shape}")
    groups = np.arange(len(a)) if groups is None else np.asarray(groups)
    weights = np.ones(len(a)) if weights is None else np.asarray(weights, dtype=float)
    diff_sums, counts = _group_sums((a - b) * weights, groups, weights)
    observed = diff_sums.sum() / counts.sum()
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(n_perm, len(diff_sums)))
    null = (signs @ diff_sums) / counts.sum()
    p = (1 + np.sum(np.abs(null) >= abs(observed) - 1e-12)) / (n_perm + 1)
    return float(observed), float(p)


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out


def seed_summary(values) -> dict[str, float]:
    """Mean, sample standard deviation and range over seeds."""
    v = np.asarray(values, dtype=float)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max()), "n": len(v)}
