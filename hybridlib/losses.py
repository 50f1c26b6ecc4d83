"""Contrastive loss for bi-encoders: InfoNCE over cosine similarities with in-batch (and hard) negatives.

Under distributed training the embeddings are gathered across ranks with gradients, so every rank
scores its queries against the global batch's passages.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (B_local, D) over ranks in rank order, keeping gradients (identity without DDP)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    import warnings

    from torch.distributed.nn.functional import all_gather
    with warnings.catch_warnings():  # deprecated for a private successor; it stays in the torch versions pinned
        warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_gather is deprecated", FutureWarning)
        return torch.cat(all_gather(x), dim=0)


def info_nce(q: torch.Tensor, p: torch.Tensor, negatives: torch.Tensor | None = None, temperature: float = 0.05,
             symmetric: bool = False) -> torch.Tensor:
    """Mean InfoNCE loss of queries ``q`` (B, D) against passages ``p`` (B, D), row i's positive being p[i]
    and every other passage (and every hard negative, (B, D)) a negative (van den Oord et al. 2018;
    Karpukhin et al. 2020). Inputs are L2-normalised, so q @ p.T are cosines; ``temperature`` divides them.
    ``symmetric`` adds the passage-to-query direction (Radford et al. 2021)."""
    candidates = p if negatives is None else torch.cat([p, negatives])
    logits = q @ candidates.T / temperature
    target = torch.arange(len(q), device=q.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = (loss + F.cross_entropy(p @ q.T / temperature, target)) / 2
    return loss
