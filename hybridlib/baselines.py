"""Lexical baseline for the monolingual settings: BM25 (``bm25s``, Lucene's variant, k1 = 1.5, b = 0.75)
over the encoder tokenizer's SentencePiece pieces, so languages written without spaces (zh, th) are
split into terms too. It returns the same per-query table as :func:`hybridlib.evaluate.evaluate`."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from . import metrics
from .evalsets import Collection
from .retrieval import ranks_in


def bm25_ranks(pool_tokens: list[list[str]], query_tokens: list[list[str]], relevant: list[np.ndarray]) -> list[np.ndarray]:
    """Exact 1-based ranks of each query's relevant items under BM25 (ties broken by pool position)."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(pool_tokens, show_progress=False)
    return [ranks_in(torch.from_numpy(np.asarray(retriever.get_scores(tokens), dtype=np.float64)), rel)
            for tokens, rel in zip(query_tokens, relevant)]


def bm25_evaluate(coll: Collection, tokenizer) -> pd.DataFrame:
    """Per-query metrics of BM25 on every monolingual view of ``coll``."""
    def pieces(texts):
        return [e.tokens for e in tokenizer.backend_tokenizer.encode_batch([t.lower() for t in texts],
                                                                          add_special_tokens=False)]

    frames = []
    for x, y, queries, items in coll.views("mono"):
        rel = coll.relevance(queries, items)
        ranks = metrics.pad_ranks(bm25_ranks(pieces(coll.pool["text"].to_numpy()[items]),
                                             pieces(coll.queries["text"].to_numpy()[queries]), rel))
        frames.append(pd.DataFrame({"collection": coll.name, "setting": "mono", "qlang": x, "plang": y,
                                    "query": queries, "group": coll.queries["group"].to_numpy()[queries],
                                    **metrics.all_metrics(ranks), "first_rank": np.nanmin(ranks, 1)}))
    return pd.concat(frames, ignore_index=True)
