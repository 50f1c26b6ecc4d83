"""Training pairs from MLQA: (question in X, the sentence holding its answer in Y), and the article split.

MLQA's question ids are parallel: the same id in two languages is the same
translated question, answered in the parallel paragraph. For every id and every
pair of languages (X, Y) in which it exists we make one pair, ``mono`` when
X = Y, ``cross`` otherwise (4,199 and 11,548 over all of MLQA dev).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .data import QA, load_all

PAIR_COLUMNS = ["qid", "qlang", "plang", "question", "passage", "negative", "group", "kind"]


def article_groups(records: dict[str, list[QA]]) -> dict[str, int]:
    """A group number per question id: ids connected through a shared (language, article title) share a group,
    so a split by group keeps every language of an id, and every article, on one side."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for lang, recs in records.items():
        for r in recs:
            a, b = find("q:" + r.qid), find(f"a:{lang}:{r.title}")
            if a != b:
                parent[a] = b
    roots: dict[str, int] = {}
    return {r.qid: roots.setdefault(find("q:" + r.qid), len(roots)) for recs in records.values() for r in recs}


def split_groups(groups: dict[str, int], heldout_fraction: float, seed: int) -> set[str]:
    """Question ids of the held-out side: whole groups, in a seeded random order, until the fraction is reached."""
    if not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    rng = np.random.default_rng(seed)
    ids_of: dict[int, list[str]] = {}
    for qid, g in groups.items():
        ids_of.setdefault(g, []).append(qid)
    held: set[str] = set()
    target = heldout_fraction * len(groups)
    for g in rng.permutation(sorted(ids_of)):
        if len(held) >= target:
            break
        held.update(ids_of[g])
    return held


def build_pairs(records: dict[str, list[QA]], hard_negatives: bool = False, seed: int = 0) -> pd.DataFrame:
    """One row per (question id, query language, passage language) of segmented QA records (MLQA-R).

    ``negative`` is another sentence of the positive's paragraph (same language), or "" when off or none exists.
    """
    rng = np.random.default_rng(seed)
    groups = article_groups(records)
    by_id: dict[str, dict[str, QA]] = {}
    for lang, recs in records.items():
        for r in recs:
            by_id.setdefault(r.qid, {})[lang] = r
    rows = []
    for qid, langs in by_id.items():
        for x, q in langs.items():
            for y, p in langs.items():
                negative = ""
                if hard_negatives and len(p.sentences) > 1:
                    others = [i for i in range(len(p.sentences)) if i != p.answer_sentence]
                    negative = p.sentences[others[rng.integers(len(others))]]
                rows.append((qid, x, y, q.question, p.sentences[p.answer_sentence], negative, groups[qid],
                             "mono" if x == y else "cross"))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def tydi_pairs(records: dict[str, list[QA]]) -> pd.DataFrame:
    """Monolingual pairs (question, its gold passage) from TyDi GoldP train (en, ko, sw)."""
    rows = [(r.qid, lang, lang, r.question, r.context, "", -1 - i, "mono")
            for lang, recs in records.items() for i, r in enumerate(recs)]
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def mlqa_split(data_dir=None, heldout_fraction: float = 0.2, seed: int = 0, hard_negatives: bool = False,
               langs=None) -> tuple[pd.DataFrame, pd.DataFrame, set[str]]:
    """Train pairs, held-out pairs and the held-out question ids of MLQA-R, split by article group."""
    records = load_all("mlqa-r", langs, data_dir)
    pairs = build_pairs(records, hard_negatives, seed)
    held = split_groups(article_groups(records), heldout_fraction, seed)
    is_held = pairs["qid"].isin(held)
    return pairs[~is_held].reset_index(drop=True), pairs[is_held].reset_index(drop=True), held
