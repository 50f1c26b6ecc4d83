"""Language-aware batch samplers (torch batch samplers with an explicit, seeded ``torch.Generator``).

Every batch is drawn from a pool of candidate pairs (one language, the cross-lingual pairs, all pairs)
without replacement inside the batch, and never holds two pairs of the same question id nor the same
passage twice: with parallel data both would be false in-batch negatives. The draw is vectorised
torch on the generator's device. Under distributed training every rank draws the same global batch
and yields its slice, so all ranks share the batch's language composition.

Names: ``xx`` (monolingual, one language per batch drawn uniformly, as in arXiv 2408.10536),
``xy`` (cross-lingual), ``ml`` (multilingual random), ``hybrid(alpha)`` (monolingual with probability
alpha, else cross-lingual; arXiv 2408.10536) and ``paired`` (one monolingual and one cross-lingual
batch per step, for gradient mixing).
"""
from __future__ import annotations

import pandas as pd
import torch

from .errors import HybridError
from .registry import Param, check_params, registrar

SAMPLERS: dict[str, type[PairSampler]] = {}


register = registrar(SAMPLERS)


class SamplerError(HybridError, ValueError):
    pass


def first_occurrence(keys: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the first occurrence of each value in ``keys`` (1-D)."""
    sorted_keys, order = torch.sort(keys, stable=True)
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    mask = torch.empty_like(first)
    mask[order] = first
    return mask


class PairSampler:
    """Base class. ``pairs`` is a table with columns qid, qlang, plang, passage (see :mod:`hybridlib.pairs`).

    Iterating yields lists of row indices, ``batch_size // world_size`` per rank; one pass is
    ``len(self)`` batches (the number of global batches that cover the pairs once on average). Subclasses
    declare the numbers they take in ``params``; ``is_strategy`` says whether a strategy may name them.
    """
    name = "base"
    params: dict[str, Param] = {}
    is_strategy = True

    def __init__(self, pairs: pd.DataFrame, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 device: str | torch.device = "cpu", languages: list[str] | None = None):
        if batch_size < 1:
            raise SamplerError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size or batch_size % world_size:
            raise SamplerError(f"batch_size {batch_size} must split evenly over world_size {world_size} "
                               f"(rank {rank})")
        if len(pairs) == 0:
            raise SamplerError("no training pairs")
        if languages is not None:  # train on these languages only; each must have pairs
            keep = pairs["qlang"].isin(languages) & pairs["plang"].isin(languages)
            empty = [l for l in languages if not (pairs["qlang"][keep] == l).any()]
            if empty:
                raise SamplerError(f"{self.name}: no training pairs for language(s) {empty}; languages with "
                                   f"pairs: {sorted(set(pairs['qlang']))}")
            pairs = pairs[keep]
        self.rows = torch.tensor(pairs.index.to_numpy(), device=device)  # row labels of the given table
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.device = torch.device(device)
        self.epoch, self.position = 0, 0
        codes = lambda col: torch.as_tensor(pd.factorize(col)[0], device=self.device)
        self.qid = codes(pairs["qid"])
        self.pid = codes(pairs["plang"].astype(str) + "\x00" + pairs["passage"].astype(str))
        self.languages = sorted(set(pairs["qlang"]) | set(pairs["plang"]))
        lang = {l: i for i, l in enumerate(self.languages)}
        self.qlang = torch.tensor(pairs["qlang"].map(lang).to_numpy(), device=self.device)
        self.plang = torch.tensor(pairs["plang"].map(lang).to_numpy(), device=self.device)
        self.generator = torch.Generator(device=self.device)

    # ---- candidate pools -------------------------------------------------------------------------
    def pool(self, mask: torch.Tensor, what: str) -> torch.Tensor:
        """Row indices of ``mask``; checks that a batch of distinct questions and passages can be drawn."""
        idx = torch.nonzero(mask).flatten()
        distinct = min(torch.unique(self.qid[idx]).numel(), torch.unique(self.pid[idx]).numel()) if len(idx) else 0
        if distinct < self.batch_size:
            raise SamplerError(f"{self.name}: batch_size {self.batch_size} is larger than the {distinct} distinct "
                               f"questions/passages of {what}; lower the batch size or drop that language")
        return idx

    def draw(self, pool: torch.Tensor) -> torch.Tensor:
        """``batch_size`` rows of ``pool``, at random, with distinct question ids and distinct passages."""
        n, taken = len(pool), torch.empty(0, dtype=torch.long, device=self.device)
        want = min(n, 2 * self.batch_size)
        while True:  # one round almost always suffices; a second only when duplicates are dense
            cand = torch.cat([taken, pool[torch.randperm(n, generator=self.generator, device=self.device)[:want]]])
            keep = first_occurrence(self.qid[cand])
            keep &= first_occurrence(torch.where(keep, self.pid[cand], -1 - torch.arange(len(cand), device=self.device)))
            taken = cand[keep]
            if len(taken) >= self.batch_size:
                return taken[:self.batch_size]
            want = n

    def coin(self, p: float) -> bool:
        return bool(torch.rand((), generator=self.generator, device=self.device) < p)

    def choice(self, k: int) -> int:
        return int(torch.randint(k, (), generator=self.generator, device=self.device))

    def draw_from(self, pools: list[torch.Tensor]) -> torch.Tensor:
        """A batch from one of ``pools``, the pool drawn uniformly."""
        return self.draw(pools[self.choice(len(pools))] if len(pools) > 1 else pools[0])

    def mono_pools(self) -> list[torch.Tensor]:
        """One pool per language that has monolingual pairs."""
        mono = self.qlang == self.plang
        pools = [self.pool(mono & (self.qlang == i), f"language {l!r}") for i, l in enumerate(self.languages)
                 if bool((mono & (self.qlang == i)).any())]
        if not pools:
            raise SamplerError(f"{self.name}: no monolingual pairs")
        return pools

    def cross_pools(self, single_pair: bool = False) -> list[torch.Tensor]:
        """The cross-lingual pairs: one pool, or one per (query language, passage language)."""
        cross = self.qlang != self.plang
        if not bool(cross.any()):
            raise SamplerError(f"{self.name}: no cross-lingual pairs")
        if not single_pair:
            return [self.pool(cross, "the cross-lingual pairs")]
        n = len(self.languages)
        combos = torch.unique(self.qlang[cross] * n + self.plang[cross]).tolist()
        return [self.pool(cross & (self.qlang == c // n) & (self.plang == c % n),
                          f"languages {self.languages[c // n]}->{self.languages[c % n]}") for c in combos]

    # ---- iteration -------------------------------------------------------------------------------
    def global_batch(self) -> torch.Tensor:
        raise NotImplementedError

    def shard(self, batch: torch.Tensor) -> list[int]:
        """This rank's slice of each objective's part of the global batch, as row labels of the table."""
        per = self.batch_size // self.world_size
        parts = self.rows[batch].view(-1, self.batch_size)  # one row per objective (the paired sampler has two)
        return parts[:, self.rank * per:(self.rank + 1) * per].flatten().tolist()

    def __len__(self) -> int:
        return max(1, len(self.qid) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]

    def __iter__(self):
        # The stream of an epoch depends only on (seed, epoch): resuming replays to ``position``.
        self.generator.manual_seed(self.seed * 1_000_003 + self.epoch)
        start, self.position = self.position, 0
        for i in range(len(self)):
            batch = self.global_batch()
            self.position = i + 1
            if i >= start:
                yield self.shard(batch)
        self.position = 0  # a finished pass replays from the start unless set_epoch moves on


@register("xx")
class Monolingual(PairSampler):
    """Every batch one language, drawn uniformly; the batch holds that language's monolingual pairs."""

    def __init__(self, pairs, batch_size, **kw):
        super().__init__(pairs, batch_size, **kw)
        self.pools = self.mono_pools()

    def global_batch(self):
        return self.draw_from(self.pools)


@register("xy")
class CrossLingual(PairSampler):
    """Every pair cross-lingual (query language != passage language); ``single_pair=True`` draws one
    (X, Y) language pair per batch, uniformly, instead of mixing them."""

    def __init__(self, pairs, batch_size, single_pair: bool = False, **kw):
        super().__init__(pairs, batch_size, **kw)
        self.pools = self.cross_pools(single_pair)

    def global_batch(self):
        return self.draw_from(self.pools)


@register("ml")
class Multilingual(PairSampler):
    """Pairs drawn regardless of language (monolingual and cross-lingual mixed at random)."""

    def __init__(self, pairs, batch_size, **kw):
        super().__init__(pairs, batch_size, **kw)
        self.pools = [self.pool(torch.ones_like(self.qid, dtype=torch.bool), "all pairs")]

    def global_batch(self):
        return self.draw_from(self.pools)


@register("hybrid")
class Hybrid(PairSampler):
    """Each batch monolingual (an ``xx`` batch) with probability ``alpha``, else cross-lingual (an ``xy`` batch)."""

    params = {"alpha": Param(0, 1, positional=True, required=True, doc="share of monolingual batches")}

    def __init__(self, pairs, batch_size, alpha: float = 0.5, single_pair: bool = False, **kw):
        check_params(type(self), {"alpha": alpha})
        super().__init__(pairs, batch_size, **kw)
        self.alpha = alpha
        self.mono = self.mono_pools() if alpha > 0 else []
        self.cross = self.cross_pools(single_pair) if alpha < 1 else []

    def global_batch(self):
        return self.draw_from(self.mono if self.coin(self.alpha) else self.cross)


@register("paired")
class Paired(PairSampler):
    """One monolingual batch (an ``xx`` batch) and one cross-lingual batch per step, concatenated:
    rank r's list is its slice of the monolingual batch followed by its slice of the cross-lingual one."""

    objectives = ("mono", "cross")
    is_strategy = False  # the draw of gradient mixing, whose strategies are the combiners

    def __init__(self, pairs, batch_size, single_pair: bool = False, **kw):
        super().__init__(pairs, batch_size, **kw)
        self.mono, self.cross = self.mono_pools(), self.cross_pools(single_pair)

    def global_batch(self):
        return torch.cat([self.draw_from(self.mono), self.draw_from(self.cross)])

    def __len__(self) -> int:  # two batches per step
        return max(1, len(self.qid) // (2 * self.batch_size))


class Stream:
    """Endless batches of a sampler: when an epoch ends the next one (reshuffled) begins; resumable."""

    def __init__(self, sampler):
        self.sampler, self.epoch, self._it = sampler, 0, None

    def next(self) -> list[int]:
        while True:
            self._it = self._it or iter(self.sampler)
            try:
                return next(self._it)
            except StopIteration:
                self.epoch += 1
                self.sampler.set_epoch(self.epoch)
                self._it = None

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self._it = state["epoch"], None
        self.sampler.set_epoch(self.epoch)
        self.sampler.load_state_dict(state["sampler"])



def make_sampler(name: str, pairs: pd.DataFrame, batch_size: int, **kw) -> PairSampler:
    """The sampler registered as ``name`` (``"xx"``, ``"hybrid"`` with ``alpha=0.25``, ``"paired"``) over ``pairs``;
    a strategy's own is :meth:`hybridlib.strategy.Strategy.sampler`."""
    if name not in SAMPLERS:
        raise SamplerError(f"unknown sampler {name!r}; registered: {', '.join(SAMPLERS)}")
    return SAMPLERS[name](pairs, batch_size, **kw)
