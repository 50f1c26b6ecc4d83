"""Language bias on multilingual pools beyond rank distance (``metrics.rank_distance``): the own-language share of
the top k and the language-preference matrix."""
from __future__ import annotations

import numpy as np
import pandas as pd


def language_preference(query_langs: np.ndarray, top: np.ndarray, pool_langs: np.ndarray) -> pd.DataFrame:
    """Share of each pool language among the top-k results, per query language (rows sum to 1)."""
    retrieved = pool_langs[top]  # (Q, k)
    frame = pd.DataFrame({"query language": np.repeat(query_langs, top.shape[1]), "retrieved": retrieved.ravel()})
    table = pd.crosstab(frame["query language"], frame["retrieved"], normalize="index")
    return table.reindex(columns=sorted(set(pool_langs)), fill_value=0.0)


def own_language_share(query_langs: np.ndarray, top: np.ndarray, pool_langs: np.ndarray) -> np.ndarray:
    """Per query, the share of its top-k results in the query's own language."""
    return (pool_langs[top] == np.asarray(query_langs)[:, None]).mean(1)
