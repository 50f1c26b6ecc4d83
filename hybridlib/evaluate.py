"""Evaluate an encoder on a collection: encode once, rank exactly, score every view, summarise with intervals.

``evaluate`` returns one row per (view, query) with every metric; ``summarize`` turns that into the tidy
results table (collection, setting, query language, pool language, metric, value, 95% interval), with
``all`` rows that macro-average over the views of a setting.
"""
from __future__ import annotations

import hashlib
import io
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from . import bias, metrics, retrieval
from .evalsets import SETTINGS, Collection
from .paths import atomic_write_bytes, cache_dir
from .stages import RunDir
from .stats import bootstrap_ci
from .strategy import Strategy

log = logging.getLogger(__name__)

COLLECTION_SETTINGS = {"xquad-r": SETTINGS, "mlqa-r": SETTINGS, "tydi": ("mono", "multi")}


def run_encoder(run_dir, strategy: Strategy | str, model: str, num_layers: int | None = None, bf16: bool = False):
    """The encoder to evaluate for a run: its trained model in ``run_dir/model`` (checked against the weights
    hash its training recorded), or ``model`` itself (the initial weights) for an untrained strategy."""
    import json
    from pathlib import Path

    from .encoders import ModelNotAvailable, load_encoder
    saved = RunDir(run_dir).model
    if not Strategy.parse(strategy).trains:
        encoder = load_encoder(model, num_layers=num_layers)
    elif not saved.is_dir():
        raise ModelNotAvailable(f"{saved}: run directory without a model for strategy {strategy}; "
                                "train it first (notebook 02)")
    else:
        encoder = load_encoder(str(saved))
        summary = RunDir(run_dir).train_summary
        trained = json.loads(summary.read_text()).get("weights_sha256") if summary.is_file() else None
        if trained and trained != encoder.weights_hash():
            raise ModelNotAvailable(f"{saved}: weights hash {encoder.weights_hash()} differs from the one training "
                                    f"recorded in {summary} ({trained}); the model is not the trained one: "
                                    f"delete {Path(run_dir)} to train it again")
    encoder.bf16 = bf16
    return encoder


def subset(coll: Collection, max_queries_per_language: int | None, distractors: int = 10, seed: int = 0) -> Collection:
    """A smaller collection for quick runs: the queries of the first ``max_queries_per_language`` groups per
    language, their relevant items, and ``distractors`` times as many other pool items drawn at random."""
    if max_queries_per_language is None:
        return coll
    q = coll.queries
    keep_q = np.flatnonzero(q.groupby("lang").cumcount().to_numpy() < max_queries_per_language)
    rel = coll.qrels[coll.qrels["query"].isin(keep_q)]
    rng = np.random.default_rng(seed)
    others = np.setdiff1d(np.arange(len(coll.pool)), rel["item"].unique())
    extra = rng.choice(others, size=min(len(others), distractors * rel["item"].nunique()), replace=False)
    keep_p = np.union1d(rel["item"].unique(), extra)
    qmap = pd.Series(np.arange(len(keep_q)), index=keep_q)
    pmap = pd.Series(np.arange(len(keep_p)), index=keep_p)
    return Collection(coll.name, q.iloc[keep_q].reset_index(drop=True), coll.pool.iloc[keep_p].reset_index(drop=True),
                      pd.DataFrame({"query": qmap[rel["query"]].to_numpy(), "item": pmap[rel["item"]].to_numpy()}))


def encode_cached(encoder, texts: list[str], kind: str, max_length: int, batch_size: int, cache: bool = True,
                  progress: bool | str = False, weights: str | None = None) -> np.ndarray:
    """Embeddings of ``texts``, cached on disk by (encoder weights, kind, max length, precision, texts);
    ``weights`` is the encoder's weights hash when the caller already has it (hashing reads every weight)."""
    path = cache_path(encoder, texts, kind, max_length, weights)
    if cache and path.is_file():
        emb = read_embeddings(path, (len(texts), encoder.dim))
        if emb is not None:
            return emb
    emb = encoder.encode(texts, kind, batch_size=batch_size, max_length=max_length, progress=progress)
    if not np.isfinite(emb).all():
        from .encoders import ModelNotAvailable
        raise ModelNotAvailable(f"{encoder.name}: non-finite embeddings for {int((~np.isfinite(emb).all(1)).sum())} of "
                         f"{len(emb)} {kind} texts; the model's weights are broken")
    if cache:
        buf = io.BytesIO()
        np.savez(buf, embeddings=emb, sha256=np.array(hashlib.sha256(emb.tobytes()).hexdigest()))
        atomic_write_bytes(path, buf.getvalue())
    return emb


def cache_path(encoder, texts: list[str], kind: str, max_length: int, weights: str | None = None) -> Path:
    """The embedding cache entry of these texts under this encoder (it may not exist)."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\x00")
    key = f"{weights or encoder.weights_hash()}-{kind}-{max_length}-{encoder.precision}-{h.hexdigest()[:16]}"
    return cache_dir() / "embeddings" / f"{key}.npz"


def read_embeddings(path, shape: tuple[int, int]) -> np.ndarray | None:
    """A cache entry whose checksum and shape hold; None (and a warning naming the file) otherwise."""
    try:
        with np.load(path, allow_pickle=False) as f:
            emb, digest = f["embeddings"], str(f["sha256"])
        if emb.shape == shape and hashlib.sha256(emb.tobytes()).hexdigest() == digest:
            return emb
        problem = f"shape {emb.shape} or checksum does not match"
    except Exception as e:  # truncated, not a zip, missing members: all mean "recompute"
        problem = f"unreadable ({type(e).__name__}: {e})"
    log.warning("%s: embedding cache entry %s; recomputing it", path, problem)
    return None


def evaluate(encoder, coll: Collection, settings=None, max_query_length: int = 64, max_passage_length: int = 128,
             batch_size: int = 128, cache: bool = True, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Per-query metrics of every view of ``coll``; the language-preference table of its multilingual views
    (collection, qlang, retrieved language, share of the top 10); timing figures."""
    settings = settings or COLLECTION_SETTINGS.get(coll.name, SETTINGS)
    weights = encoder.weights_hash() if cache else None
    cached = cache and all(cache_path(encoder, texts, kind, n, weights).is_file() for texts, kind, n in (
        (coll.pool["text"].tolist(), "passage", max_passage_length), (coll.queries["text"].tolist(), "query", max_query_length)))
    t0 = time.perf_counter()
    P = encode_cached(encoder, coll.pool["text"].tolist(), "passage", max_passage_length, batch_size, cache,
                      progress and f"{coll.name} pool", weights)
    t1 = time.perf_counter()
    Q = encode_cached(encoder, coll.queries["text"].tolist(), "query", max_query_length, batch_size, cache,
                      progress and f"{coll.name} queries", weights)
    t2 = time.perf_counter()
    if Q.shape[1] != P.shape[1]:
        raise ValueError(f"{coll.name}: query embeddings have dimension {Q.shape[1]}, pool {P.shape[1]}")
    qlang, plang = coll.queries["lang"].to_numpy(), coll.pool["lang"].to_numpy()
    frames, preference = [], []
    for setting in settings:
        for x, y, queries, items in coll.views(setting):
            rel = coll.relevance(queries, items)
            ranks = metrics.pad_ranks(retrieval.relevant_ranks(Q[queries], P[items], rel))
            row = {"collection": coll.name, "setting": setting, "qlang": x, "plang": y, "query": queries,
                   "group": coll.queries["group"].to_numpy()[queries], **metrics.all_metrics(ranks),
                   "first_rank": np.nanmin(ranks, 1)}
            if setting == "multi":
                if ranks.shape[1] > 1:
                    row["rank_distance"] = metrics.rank_distance(ranks)
                top = retrieval.search(Q[queries], P[items], k=10)
                row["own_language@10"] = bias.own_language_share(qlang[queries], top, plang[items])
                pref = bias.language_preference(qlang[queries], top, plang[items])
                preference.append(pref.stack().rename("share").reset_index().assign(collection=coll.name))
            frames.append(pd.DataFrame(row))
    t3 = time.perf_counter()
    timing = {"pool": len(P), "queries": len(Q), "encode_pool_s": t1 - t0, "encode_queries_s": t2 - t1,
              "score_s": t3 - t2, "precision": encoder.precision, "from_cache": bool(cached)}
    preference = pd.concat(preference, ignore_index=True) if preference else pd.DataFrame(
        columns=["query language", "retrieved", "share", "collection"])
    return pd.concat(frames, ignore_index=True), preference, timing


def evaluate_strategy(strategy: Strategy | str, encoder, coll: Collection, profile) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """What notebook 03 runs for one collection: the encoder with the profile's lengths, or BM25 on the
    monolingual views for the ``bm25`` baseline."""
    if Strategy.parse(strategy).name == "bm25":
        from .baselines import bm25_evaluate
        t0 = time.perf_counter()
        pq = bm25_evaluate(coll, encoder.tokenizer)
        return pq, pd.DataFrame(columns=["query language", "retrieved", "share", "collection"]), {
            "pool": len(coll.pool), "queries": len(coll.queries), "encode_pool_s": 0.0, "encode_queries_s": 0.0,
            "score_s": time.perf_counter() - t0, "precision": "bm25", "from_cache": False}
    return evaluate(encoder, coll, max_query_length=profile.max_query_length,
                    max_passage_length=profile.max_passage_length, batch_size=profile.encode_batch_size,
                    progress=False)


VALUE_COLUMNS = [*metrics.METRICS, "rank_distance", "own_language@10"]


def summarize(per_query: pd.DataFrame, n_boot: int = 1000, boot_seed: int = 0, **meta) -> pd.DataFrame:
    """Tidy results: one row per (collection, setting, qlang, plang, metric) with the mean and its 95%
    bootstrap interval over query groups, plus ``qlang = plang = "all"`` rows macro-averaged over views;
    ``meta`` (run, strategy, seed, ...) become leading columns."""
    rows = []
    for (coll, setting), d in per_query.groupby(["collection", "setting"], sort=False):
        views = d.groupby(["qlang", "plang"], sort=False)
        n_views = views.ngroups
        weight = 1.0 / (n_views * views["query"].transform("size").to_numpy())
        for metric in [m for m in VALUE_COLUMNS if m in d and d[m].notna().any()]:
            ok = d[metric].notna().to_numpy()
            value, lo, hi = bootstrap_ci(d[metric].to_numpy()[ok], d["group"].to_numpy()[ok], weight[ok], n_boot, seed=boot_seed)
            rows.append((coll, setting, "all", "all", metric, value, lo, hi, int(ok.sum())))
            if setting == "cross" and metric not in ("map",):
                continue  # 110 cross-lingual views: keep the per-view table to mAP
            for (x, y), v in views:
                vals = v[metric].to_numpy()
                if np.isnan(vals).all():
                    continue
                value, lo, hi = bootstrap_ci(vals, v["group"].to_numpy(), None, n_boot, seed=boot_seed)
                rows.append((coll, setting, x, y, metric, value, lo, hi, len(vals)))
    out = pd.DataFrame(rows, columns=["collection", "setting", "qlang", "plang", "metric", "value", "lo", "hi", "n"])
    for k, v in reversed(meta.items()):
        out.insert(0, k, v)
    return out
