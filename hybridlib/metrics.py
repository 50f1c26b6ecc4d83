"""Ranking metrics as pure functions of the 1-based ranks of a query's relevant items in the full ranking.

``ranks`` is a 2-D float array (queries x max relevant): ``nan`` pads a query with fewer relevant items,
``inf`` marks a relevant item that was not retrieved at all; every metric returns one value per query. Because the ranks are exact over the whole
pool, mAP (LAReQA's definition: average precision over *all* relevant items) needs no cut-off.
"""
from __future__ import annotations

import numpy as np


def pad_ranks(ranks: list[np.ndarray]) -> np.ndarray:
    """Ragged per-query rank lists -> (Q, R) sorted float array padded with nan."""
    width = max((len(r) for r in ranks), default=0)
    out = np.full((len(ranks), max(width, 1)), np.nan)
    for i, r in enumerate(ranks):
        out[i, :len(r)] = np.sort(r)
    return out


def _n_relevant(ranks: np.ndarray) -> np.ndarray:
    n = (~np.isnan(ranks)).sum(1)
    if (n == 0).any():
        raise ValueError(f"{int((n == 0).sum())} queries have no relevant item; drop them before scoring")
    return n


def average_precision(ranks: np.ndarray) -> np.ndarray:
    """AP = mean over the relevant items (in rank order) of (their position among relevant items) / rank."""
    n = _n_relevant(ranks)
    r = np.sort(ranks, axis=1)  # nan padding sorts last
    precision = np.arange(1, r.shape[1] + 1) / r  # not retrieved (inf) gives 0
    return np.nansum(precision, 1) / n


def reciprocal_rank(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """1 / rank of the first relevant item, 0 when it is below ``k``."""
    _n_relevant(ranks)
    first = np.nanmin(ranks, 1)
    return np.where(first <= k, 1 / first, 0.0)


def ndcg(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """Binary-gain nDCG@k: sum of 1/log2(rank+1) over relevant items in the top k, over the ideal."""
    n = _n_relevant(ranks)
    gains = np.where(ranks <= k, 1 / np.log2(np.fmin(ranks, k) + 1), 0.0).sum(1)
    ideal = np.cumsum(1 / np.log2(np.arange(2, k + 2)))[np.minimum(n, k) - 1]
    return gains / ideal


def recall(ranks: np.ndarray, k: int) -> np.ndarray:
    """Share of a query's relevant items ranked in the top ``k``."""
    return (ranks <= k).sum(1) / _n_relevant(ranks)


def rank_distance(ranks: np.ndarray) -> np.ndarray:
    """Max minus min rank over a query's relevant items (one per language in a multilingual pool):
    0 when all its translations are ranked together, large when some languages are pushed down."""
    _n_relevant(ranks)
    return np.nanmax(ranks, 1) - np.nanmin(ranks, 1)


METRICS = {
    "map": average_precision,
    "mrr@10": reciprocal_rank,
    "ndcg@10": ndcg,
    "recall@1": lambda r: recall(r, 1),
    "recall@5": lambda r: recall(r, 5),
    "recall@10": lambda r: recall(r, 10),
    "recall@100": lambda r: recall(r, 100),
}


def all_metrics(ranks: np.ndarray) -> dict[str, np.ndarray]:
    return {name: fn(ranks) for name, fn in METRICS.items()}
