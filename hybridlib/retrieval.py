"""Retrieval: exact ranks of relevant items (blockwise, never a queries x pool matrix in memory) and top-k
lists with FAISS (exact inner product by default; HNSW or IVF for large pools, on the GPU when available)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _check(queries: np.ndarray, pool: np.ndarray) -> None:
    if queries.ndim != 2 or pool.ndim != 2 or queries.shape[1] != pool.shape[1]:
        raise ValueError(f"embedding dimensions differ: queries {queries.shape}, pool {pool.shape}")
    if len(pool) == 0:
        raise ValueError("empty pool")


def ranks_in(scores: torch.Tensor, relevant: np.ndarray) -> np.ndarray:
    """1-based ranks of the ``relevant`` positions in the ranking of ``scores`` (N,) by descending score,
    ties broken by position (as a stable sort would)."""
    rel = torch.as_tensor(relevant, dtype=torch.long)
    target = scores[rel]
    higher = (scores[None, :] > target[:, None]).sum(1)
    tied_before = ((scores[None, :] == target[:, None]) & (torch.arange(len(scores))[None, :] < rel[:, None])).sum(1)
    return (higher + tied_before + 1).numpy()


def relevant_ranks(queries: np.ndarray, pool: np.ndarray, relevant: list[np.ndarray], block: int = 256,
                   device: str | None = None) -> list[np.ndarray]:
    """1-based rank, in the ranking of the whole ``pool`` by inner product, of each query's relevant items.

    Ties are broken by pool position (as a stable sort by descending score would). Memory is one
    (block x pool) score matrix at a time. On a GPU (``device``, by default CUDA where there is one) a block's
    ranks are computed at once, on the CPU one query at a time: the same ranks of the same scores."""
    _check(queries, pool)
    on = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    P = torch.from_numpy(np.ascontiguousarray(pool, dtype=np.float32)).to(on)
    out = []
    for start in range(0, len(queries), block):
        S = torch.from_numpy(np.ascontiguousarray(queries[start:start + block], dtype=np.float32)).to(on) @ P.T
        rel = relevant[start:start + block]
        out.extend(block_ranks(S, rel) if on.type != "cpu" else [ranks_in(S[i], r) for i, r in enumerate(rel)])
    return out


def block_ranks(scores: torch.Tensor, relevant: list[np.ndarray]) -> list[np.ndarray]:
    """:func:`ranks_in` of every row of ``scores`` (B, N) and its ``relevant`` positions, in one go (a GPU
    computes a block as fast as a row)."""
    row = torch.from_numpy(np.repeat(np.arange(len(relevant)), [len(r) for r in relevant])).to(scores.device)
    item = torch.from_numpy(np.concatenate([np.asarray(r, dtype=np.int64) for r in relevant])).to(scores.device)
    s, target = scores[row], scores[row, item][:, None]
    before = torch.arange(scores.shape[1], device=scores.device)[None, :] < item[:, None]
    ranks = ((s > target).sum(1) + ((s == target) & before).sum(1) + 1).cpu().numpy()
    return np.split(ranks, np.cumsum([len(r) for r in relevant])[:-1])


def search(queries: np.ndarray, pool: np.ndarray, k: int = 10, index: str = "flat", gpu: bool = False) -> np.ndarray:
    """Top-``k`` pool positions (Q, k) per query by inner product with FAISS.

    ``index``: ``flat`` (exact), ``hnsw`` (HNSW32, approximate) or ``ivf`` (IVF with sqrt(N) lists, nprobe 16).
    Where FAISS is not installed (a GPU machine with torch only), ``flat`` is an exact torch top-k."""
    _check(queries, pool)
    try:
        import faiss
    except ImportError:
        if index != "flat":
            raise ImportError(f"index {index!r} needs FAISS: pip install faiss-cpu") from None
        return torch_search(queries, pool, k)
    pool = np.ascontiguousarray(pool, dtype=np.float32)
    d = pool.shape[1]
    ix: Any
    if index == "flat":
        ix = faiss.IndexFlatIP(d)
    elif index == "hnsw":
        ix = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    elif index == "ivf":
        nlist = max(1, int(np.sqrt(len(pool))))
        ix = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        ix.train(pool)
        ix.nprobe = min(16, nlist)
    else:
        raise ValueError(f"unknown index {index!r}; valid: flat, hnsw, ivf")
    if gpu and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        ix = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, ix)
    ix.add(pool)
    _, top = ix.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(pool)))
    return top


def torch_search(queries: np.ndarray, pool: np.ndarray, k: int = 10, block: int = 1024) -> np.ndarray:
    """Exact top-``k`` by inner product with torch, blockwise, on the GPU where there is one (what ``search``
    does without FAISS)."""
    _check(queries, pool)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    P = torch.from_numpy(np.ascontiguousarray(pool, dtype=np.float32)).to(device)
    return np.concatenate([torch.topk(torch.from_numpy(np.ascontiguousarray(queries[i:i + block], dtype=np.float32))
                                      .to(device) @ P.T, min(k, len(pool)), dim=1).indices.cpu().numpy()
                           for i in range(0, len(queries), block)] or [np.empty((0, min(k, len(pool))), int)])
