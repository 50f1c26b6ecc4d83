"""Evaluation collections: queries, one candidate pool with a language per item, and relevance.

A collection is encoded once; its settings are views on it:
``mono`` (queries in X, pool items in X), ``cross`` (queries in X, pool items in Y != X)
and ``multi`` (queries in X, the whole pool). Relevance is a list of (query, pool item)
index pairs; a view keeps the pairs whose item is in the view's pool.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .data import QA, load_all
from .errors import HybridError
from .paths import atomic_write_bytes

SETTINGS = ("mono", "cross", "multi")


class CollectionError(HybridError, ValueError):
    """A collection that cannot be evaluated as it is (unknown ids in relevance, empty pool, ...)."""


@dataclass
class Collection:
    """``queries``: columns qid, lang, text, group (parallel translations share ``group``);
    ``pool``: columns lang, text; ``qrels``: columns query, item (row numbers into queries and pool)."""
    name: str
    queries: pd.DataFrame
    pool: pd.DataFrame
    qrels: pd.DataFrame

    def __post_init__(self):
        if len(self.pool) == 0:
            raise CollectionError(f"collection {self.name}: empty pool")
        if len(self.queries) == 0:
            raise CollectionError(f"collection {self.name}: no queries")
        for col, table in (("query", self.queries), ("item", self.pool)):
            bad = self.qrels[col][(self.qrels[col] < 0) | (self.qrels[col] >= len(table))]
            if len(bad):
                raise CollectionError(f"collection {self.name}: relevance names unknown {col} ids "
                                      f"{bad.unique()[:5].tolist()} (valid 0..{len(table) - 1})")

    @property
    def languages(self) -> list[str]:
        return sorted(set(self.queries["lang"]))

    @property
    def pool_languages(self) -> list[str]:
        return sorted(set(self.pool["lang"]))

    def views(self, setting: str):
        """Yield (query language, pool language or "all", query rows, pool rows) of one setting.

        Only queries with at least one relevant item in the view's pool are kept."""
        if setting not in SETTINGS:
            raise ValueError(f"unknown setting {setting!r}; valid: {', '.join(SETTINGS)}")
        qlang = self.queries["lang"].to_numpy()
        plang = self.pool["lang"].to_numpy()
        rq, ri = self.qrels["query"].to_numpy(), self.qrels["item"].to_numpy()
        for x in self.languages:
            targets = {"mono": [x], "cross": [y for y in self.pool_languages if y != x], "multi": ["all"]}[setting]
            for y in targets:
                items = np.flatnonzero(plang == y) if y != "all" else np.arange(len(plang))
                in_view = np.isin(ri, items) & (qlang[rq] == x)
                queries = np.unique(rq[in_view])
                if len(queries):
                    yield x, y, queries, items

    def relevance(self, queries: np.ndarray, items: np.ndarray) -> list[np.ndarray]:
        """For each query row, the positions (into ``items``) of its relevant pool items."""
        pos = np.full(len(self.pool), -1)
        pos[items] = np.arange(len(items))
        rq, ri = self.qrels["query"].to_numpy(), self.qrels["item"].to_numpy()
        keep = pos[ri] >= 0
        order = np.argsort(rq[keep], kind="stable")
        rq, found = rq[keep][order], pos[ri[keep]][order]
        uniq, starts = np.unique(rq, return_index=True)
        by_query = dict(zip(uniq.tolist(), np.split(found, starts[1:])))
        return [np.sort(by_query.get(int(q), np.array([], dtype=int))) for q in queries]

    def save(self, directory: str | Path) -> Path:
        d = Path(directory) / self.name
        for part in ("queries", "pool", "qrels"):
            buf = getattr(self, part).to_parquet(index=False)
            atomic_write_bytes(d / f"{part}.parquet", buf)
        return d

    @classmethod
    def load(cls, directory: str | Path, name: str) -> Collection:
        d = Path(directory) / name
        parts = {}
        for part in ("queries", "pool", "qrels"):
            path = d / f"{part}.parquet"
            if not path.is_file():
                from .config import data_command
                data = Path(directory).parent  # RUNS/PROFILE/data/collections: what makes them
                raise CollectionError(f"{path}: missing; build the collections first (notebook 01). "
                                      f"{data_command(data, data.parent.name)}")
            parts[part] = pd.read_parquet(path)
        return cls(name, **parts)


def _sentence_collection(name: str, records: dict[str, list[QA]], keep=None) -> Collection:
    """Queries = questions in every language; pool = every sentence of the kept paragraphs; an item is relevant
    to a query when it is the answer sentence of the query's id, in any language."""
    pool: list = []
    queries: list = []
    answer_item: dict = {}
    for lang, recs in records.items():
        first: dict[int, int] = {}
        for r in recs:
            if keep is not None and r.qid not in keep:
                continue
            if r.paragraph not in first:
                first[r.paragraph] = len(pool)
                pool.extend((lang, s) for s in r.sentences)
            answer_item.setdefault(r.qid, []).append(first[r.paragraph] + r.answer_sentence)
            queries.append((r.qid, lang, r.question, r.qid))
    qrels = [(qi, item) for qi, (qid, *_ ) in enumerate(queries) for item in answer_item[qid]]
    return Collection(name, pd.DataFrame(queries, columns=["qid", "lang", "text", "group"]),
                      pd.DataFrame(pool, columns=["lang", "text"]), pd.DataFrame(qrels, columns=["query", "item"]))


def xquad_r(data_dir=None, langs=None) -> Collection:
    """XQuAD-R (LAReQA): 11 languages x 1,190 questions, 13,014 sentences, 11 relevant per query in ``multi``."""
    return _sentence_collection("xquad-r", load_all("xquad-r", langs, data_dir))


def mlqa_r(heldout_ids: set[str], data_dir=None, langs=None) -> Collection:
    """MLQA-R restricted to the held-out question ids (and so to the held-out articles)."""
    return _sentence_collection("mlqa-r", load_all("mlqa-r", langs, data_dir), keep=heldout_ids)


def tydi(data_dir=None, langs=None) -> Collection:
    """TyDi GoldP dev: queries in 9 languages; pool = the distinct passages of every language; each query's
    gold passage is its relevant item (one language only: the collection has no cross-lingual relevance)."""
    records = load_all("tydi-dev", langs, data_dir)
    pool: list = []
    queries: list = []
    where, qrels = {}, []  # type: ignore[var-annotated]
    for lang, recs in records.items():
        for r in recs:
            key = (lang, r.context)
            if key not in where:
                where[key] = len(pool)
                pool.append(key)
            qrels.append((len(queries), where[key]))
            queries.append((r.qid, lang, r.question, r.qid))
    return Collection("tydi", pd.DataFrame(queries, columns=["qid", "lang", "text", "group"]),
                      pd.DataFrame(pool, columns=["lang", "text"]), pd.DataFrame(qrels, columns=["query", "item"]))


MIRACL_LANGS = ("ar", "bn", "de", "en", "es", "fa", "fi", "fr", "hi", "id", "ja", "ko", "ru", "sw", "te", "th", "yo", "zh")


def miracl(langs=("sw",), rows: dict[str, list[dict]] | None = None) -> Collection:
    """MIRACL dev (Zhang et al. 2023) from its official Hugging Face data set ``miracl/miracl``: queries and,
    as the pool, every judged passage of the language (positive and negative; the full corpus is several GB).

    ``rows`` maps a language to rows in the official format (query_id, query, positive_passages,
    negative_passages); without it they are downloaded, which needs the hub."""
    from .data import DataError
    bad = [l for l in langs if l not in MIRACL_LANGS]
    if bad:
        raise ValueError(f"unknown MIRACL language(s) {bad}; valid: {', '.join(MIRACL_LANGS)}")
    if rows is None:
        rows = {}
        for lang in langs:
            try:
                import datasets
                rows[lang] = list(datasets.load_dataset("miracl/miracl", lang, split="dev"))
            except Exception as e:  # offline: the hub is the only source of MIRACL
                raise DataError(f"miracl/miracl ({lang}, dev): cannot load from the Hugging Face hub ({type(e).__name__}); "
                                "MIRACL needs internet access (unset HF_DATASETS_OFFLINE)") from None
    pool: list = []
    queries: list = []
    where, qrels = {}, []  # type: ignore[var-annotated]
    for lang in langs:
        for i, row in enumerate(rows[lang]):
            for key in ("query_id", "query", "positive_passages"):
                if key not in row:
                    raise DataError(f"miracl {lang} row {i}: missing field {key!r}")
            for relevant, passages in ((True, row["positive_passages"]), (False, row.get("negative_passages", []))):
                for p in passages:
                    if (lang, p["docid"]) not in where:
                        where[(lang, p["docid"])] = len(pool)
                        pool.append((lang, f"{p.get('title', '')} {p['text']}".strip()))
                    if relevant:
                        qrels.append((len(queries), where[(lang, p["docid"])]))
            queries.append((row["query_id"], lang, row["query"], f"{lang}:{row['query_id']}"))
    return Collection("miracl", pd.DataFrame(queries, columns=["qid", "lang", "text", "group"]),
                      pd.DataFrame(pool, columns=["lang", "text"]), pd.DataFrame(qrels, columns=["query", "item"]))
