"""Fine-tuning a bi-encoder with one strategy: a batch sampler (xx, xy, ml, hybrid(alpha)) or gradient
mixing (a monolingual and a cross-lingual batch per step, combined by a gradient combiner).

Budgets are training pairs seen, so every strategy sees the same number of pairs; a mixing step sees
two batches. Logs one JSON line per step; checkpoints every N steps (model, optimizer, scheduler,
sampler, combiner and RNG states) and resumes exactly where it stopped. Runs under ``torchrun``:
each rank encodes its slice of the global batch, embeddings are gathered with gradients, and the
gradients summed across ranks, so W processes compute what one process computes on the whole batch.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from tqdm import tqdm

from .combiners import COMBINERS, make_combiner
from .losses import gather, info_nce
from .paths import atomic_write_text
from .samplers import make_sampler, parse

log = logging.getLogger(__name__)
RESUME_FIELDS = ("strategy", "batch_size", "budget_pairs", "lr", "seed", "temperature", "freeze_embeddings",
                 "max_query_length", "max_passage_length", "length_chunks", "hard_negatives", "symmetric")


class TrainingError(RuntimeError):
    pass


class NonFiniteError(TrainingError):
    pass


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``strategy``: a sampler (``xx``, ``xy``, ``ml``, ``hybrid(alpha)``) or a gradient
    combiner (``sum``, ``pcgrad``, ``gradvac``, ``cagrad``, ``mgda``) mixing a monolingual and a
    cross-lingual batch per step."""
    strategy: str = "hybrid(0.5)"
    batch_size: int = 32
    budget_pairs: int = 4096
    lr: float = 3e-5
    warmup: float = 0.1  # share of the steps
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    temperature: float = 0.05
    symmetric: bool = False
    hard_negatives: bool = False
    freeze_embeddings: bool = True  # the 96M-row word embeddings: most parameters, most optimizer time on a CPU
    gradient_checkpointing: bool = False
    dropout: float | None = None  # None keeps the model's
    bf16: bool = True  # bfloat16 autocast where it is faster (CUDA); fp32 elsewhere, CPU training included
    max_query_length: int = 64
    max_passage_length: int = 128
    length_chunks: int = 4  # each side of a batch encoded as this many length-sorted groups (less padding)
    seed: int = 0
    checkpoint_every: int = 50
    probe_every: int = 10  # gradient-cosine probe for sampler strategies; 0 = off
    cagrad_c: float = 0.5
    gradvac_beta: float = 0.01

    def __post_init__(self):
        if self.strategy not in COMBINERS:
            try:
                name, _ = parse(self.strategy)
            except ValueError:
                name = None
            if name in (None, "paired"):
                raise TrainingError(f"unknown strategy {self.strategy!r}; valid: xx, xy, ml, hybrid(alpha) "
                                    f"(batch samplers) or {', '.join(COMBINERS)} (gradient mixing)")
        for name in ("batch_size", "budget_pairs", "max_query_length", "max_passage_length", "length_chunks",
                     "checkpoint_every"):
            if getattr(self, name) < 1:
                raise TrainingError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0 or not self.temperature > 0:
            raise TrainingError(f"TrainConfig lr and temperature must be > 0, got {self.lr}, {self.temperature}")
        if self.pairs_per_step > self.budget_pairs:
            raise TrainingError(f"budget_pairs={self.budget_pairs} is smaller than one step "
                                f"({self.pairs_per_step} pairs for strategy {self.strategy!r})")

    @property
    def mixing(self) -> bool:
        return self.strategy in COMBINERS

    @property
    def pairs_per_step(self) -> int:
        return self.batch_size * (2 if self.mixing else 1)

    @property
    def steps(self) -> int:
        return self.budget_pairs // self.pairs_per_step


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


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_distributed() -> None:
    """Join the process group when launched by torchrun (gloo on CPU, NCCL on GPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


class Trainer:
    def __init__(self, encoder, pairs: pd.DataFrame, config: TrainConfig, run_dir: str | os.PathLike,
                 progress: bool = True):
        self.encoder, self.pairs, self.config, self.run_dir = encoder, pairs.reset_index(drop=True), config, Path(run_dir)
        self.rank, self.world_size = world()
        self.progress = progress and self.rank == 0
        c = config
        model = encoder.model
        encoder.bf16 = c.bf16
        if c.dropout is not None:
            for m in model.modules():
                if isinstance(m, torch.nn.Dropout):
                    m.p = c.dropout
        if c.freeze_embeddings:
            model.embeddings.word_embeddings.weight.requires_grad_(False)
        if c.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        kw = dict(seed=c.seed, rank=self.rank, world_size=self.world_size)
        self.batches = Stream(make_sampler("paired" if c.mixing else c.strategy, self.pairs, c.batch_size, **kw))
        self.probe = Stream(make_sampler("paired", self.pairs, c.batch_size, **{**kw, "seed": c.seed + 10_007})) \
            if not c.mixing and c.probe_every else None
        self.combiner = make_combiner(c.strategy, **({"c": c.cagrad_c} if c.strategy == "cagrad" else
                                                     {"beta": c.gradvac_beta} if c.strategy == "gradvac" else {})) \
            if c.mixing else None
        decay = [p for n, p in zip(self.names, self.params) if not (n.endswith("bias") or "LayerNorm" in n)]
        no_decay = [p for n, p in zip(self.names, self.params) if n.endswith("bias") or "LayerNorm" in n]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=c.lr, fused=True)
        warm = max(1, int(c.warmup * c.steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min((s + 1) / warm, max(0.0, (c.steps - s) / max(1, c.steps - warm))))
        self.step, self.saved_step = 0, 0
        self.tokens = 0

    # ---- one objective's loss and gradient ---------------------------------------------------------
    def loss(self, rows: list[int]) -> tuple[torch.Tensor, int]:
        """InfoNCE of a batch slice (rows of the pair table), over the global batch; and its token count."""
        c, enc = self.config, self.encoder
        batch = self.pairs.iloc[rows]
        with enc.autocast():
            qe, qt = enc.embed(batch["question"].tolist(), "query", c.max_query_length, c.length_chunks)
            pe, pt = enc.embed(batch["passage"].tolist(), "passage", c.max_passage_length, c.length_chunks)
            tokens, neg = qt + pt, None
            if c.hard_negatives and (batch["negative"] != "").all():
                ne, nt = enc.embed(batch["negative"].tolist(), "passage", c.max_passage_length, c.length_chunks)
                tokens, neg = tokens + nt, gather(ne)
            loss = info_nce(gather(qe), gather(pe), neg, c.temperature, c.symmetric)
        return loss, tokens

    def backward(self, rows: list[int], objective: str) -> float:
        """Gradient of one objective over the global batch into the parameters' ``.grad`` (replacing what was
        there); returns its loss."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, tokens = self.loss(rows)
        self.tokens += tokens
        value = loss.item()
        if not math.isfinite(value):
            raise self.non_finite(f"{objective} loss ({value})")
        # Every rank computes the same global loss; all_gather's backward sums over ranks, hence / W.
        (loss / self.world_size).backward()
        if self.world_size > 1:
            for p in self.params:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
        return value

    def gradient(self, rows: list[int], objective: str) -> tuple[torch.Tensor, float, float]:
        """Flat gradient (P,) of one objective (for the combiners), its loss and its norm."""
        value = self.backward(rows, objective)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                          for p in self.params])
        norm = float(flat.norm())
        if not math.isfinite(norm):
            raise self.non_finite(f"{objective} gradient (norm {norm})")
        return flat, value, norm

    def non_finite(self, what: str) -> NonFiniteError:
        return NonFiniteError(f"step {self.step + 1}: non-finite {what}; the last good checkpoint is "
                              f"{self.run_dir / 'checkpoint'} (step {self.saved_step})")

    # ---- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step, "tokens": self.tokens,
                "params": {n: p.detach().cpu().clone() for n, p in zip(self.names, self.params)},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "batches": self.batches.state_dict(), "probe": self.probe.state_dict() if self.probe else None,
                "combiner": self.combiner.state_dict() if self.combiner else None,
                "rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "config": dataclasses.asdict(self.config), "model": self.encoder.name}

    def save_checkpoint(self) -> None:
        self.saved_step = self.step
        if self.rank != 0:
            return
        path = self.run_dir / "checkpoint" / "state.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)  # a kill mid-save leaves the previous checkpoint intact

    def resume(self) -> bool:
        path = self.run_dir / "checkpoint" / "state.pt"
        self.saved_step = 0
        if not path.is_file():
            return False
        try:
            s = torch.load(path, weights_only=False, map_location="cpu")
        except Exception as e:
            raise TrainingError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e}); delete it to start over") from None
        old, new = s.get("config", {}), dataclasses.asdict(self.config)
        diff = {k: (old.get(k), new[k]) for k in RESUME_FIELDS if old.get(k) != new[k]}
        if s.get("model") != self.encoder.name:
            diff["model"] = (s.get("model"), self.encoder.name)
        if diff or set(s.get("params", {})) != set(self.names):
            raise TrainingError(f"{path}: checkpoint does not match this run ({'; '.join(f'{k}: checkpoint {a!r}, now {b!r}' for k, (a, b) in diff.items()) or 'different trainable parameters'}); "
                                "use another run directory or delete the checkpoint")
        with torch.no_grad():
            for n, p in zip(self.names, self.params):
                p.copy_(s["params"][n])
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        self.step, self.tokens = s["step"], s["tokens"]
        self.batches.load_state_dict(s["batches"])
        if self.probe:
            self.probe.load_state_dict(s["probe"])
        if self.combiner:
            self.combiner.load_state_dict(s["combiner"])
        torch.set_rng_state(s["rng"])
        if s["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["cuda_rng"])
        self.saved_step = self.step
        return True

    # ---- the loop ----------------------------------------------------------------------------------
    def probe_cosine(self) -> float:
        rows = self.probe.next()
        half = len(rows) // 2
        tokens = self.tokens
        g_mono, _, n_mono = self.gradient(rows[:half], "probe mono")
        g_cross, _, n_cross = self.gradient(rows[half:], "probe cross")
        self.tokens = tokens  # probe work is not training work
        return float(g_mono @ g_cross) / (n_mono * n_cross + 1e-12)

    def update(self, rows: list[int]) -> dict:
        """One optimizer step on a batch (two halves, mono then cross, when mixing); its log entry."""
        c = self.config
        entry = {"step": self.step + 1}
        if c.mixing:
            half = len(rows) // 2
            g_mono, l_mono, n_mono = self.gradient(rows[:half], "mono")
            g_cross, l_cross, n_cross = self.gradient(rows[half:], "cross")
            combined, w = self.combiner(torch.stack([g_mono, g_cross]))
            offset = 0
            for p in self.params:
                p.grad = combined[offset:offset + p.numel()].view_as(p).to(p.dtype)
                offset += p.numel()
            entry |= {"loss": (l_mono + l_cross) / 2, "loss_mono": l_mono, "loss_cross": l_cross,
                      "weight_mono": float(w[0]), "weight_cross": float(w[1]), "grad_norm_mono": n_mono,
                      "grad_norm_cross": n_cross, "cosine": float(g_mono @ g_cross) / (n_mono * n_cross + 1e-12)}
            objective = f"combined update ({c.strategy})"
        else:
            batch = self.pairs.iloc[rows]
            objective = "mono" if (batch["qlang"] == batch["plang"]).all() else \
                "cross" if (batch["qlang"] != batch["plang"]).all() else "mixed"
            loss = self.backward(rows, objective)
            entry |= {"loss": loss, f"loss_{objective}": loss, "batch_kind": objective}
        norm = float(torch.nn.utils.clip_grad_norm_(self.params, c.max_grad_norm))
        if not math.isfinite(norm):
            raise self.non_finite(f"{objective} gradient (norm {norm})")
        if not c.mixing:
            entry[f"grad_norm_{objective}"] = norm
        entry |= {"grad_norm": norm, "lr": self.scheduler.get_last_lr()[0]}
        self.optimizer.step()
        self.scheduler.step()
        return entry

    def train(self) -> dict:
        """Train to the budget (resuming from a checkpoint when one exists); returns the run's summary."""
        c = self.config
        torch.manual_seed(c.seed)
        resumed = self.resume()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.run_dir / "train_log.jsonl"
        if self.rank == 0:  # keep the log lines up to the checkpoint: a resumed run rewrites the rest
            lines = log_path.read_text().splitlines() if resumed and log_path.is_file() else []
            atomic_write_text(log_path, "".join(l + "\n" for l in lines if json.loads(l)["step"] <= self.step))
        logf = open(log_path, "a") if self.rank == 0 else None
        self.encoder.train()
        bar = tqdm(total=c.steps, initial=self.step, desc=f"train {c.strategy}", unit="step", disable=not self.progress)
        start, start_step, start_tokens = time.perf_counter(), self.step, self.tokens
        try:
            while self.step < c.steps:
                t0 = time.perf_counter()
                entry = self.update(self.batches.next())
                self.step += 1
                dt = time.perf_counter() - t0  # the probe below is measurement, not training
                if self.probe and (self.step % c.probe_every == 0 or self.step == 1):
                    entry["cosine"] = self.probe_cosine()
                entry |= {"pairs_seen": self.step * c.pairs_per_step, "seconds": dt,
                          "pairs_per_s": c.pairs_per_step / dt}
                if logf:
                    logf.write(json.dumps(entry) + "\n")
                    logf.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{entry['loss']:.3f}")
                if self.step % c.checkpoint_every == 0 or self.step == c.steps:
                    self.save_checkpoint()
        finally:
            bar.close()
            if logf:
                logf.close()
        elapsed = time.perf_counter() - start
        steps_now = self.step - start_step
        summary = {"strategy": c.strategy, "seed": c.seed, "precision": self.encoder.precision, "steps": self.step, "pairs_seen": self.step * c.pairs_per_step,
                   "pairs_per_step": c.pairs_per_step, "world_size": self.world_size,
                   "seconds_this_session": elapsed, "resumed": resumed,
                   "pairs_per_s": steps_now * c.pairs_per_step / elapsed if steps_now else None,
                   "tokens_per_s": (self.tokens - start_tokens) / elapsed if steps_now else None,
                   "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                   "config": dataclasses.asdict(c)}
        self.encoder.eval()
        return summary


def read_log(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The per-step training log of a run as a table."""
    path = Path(run_dir) / "train_log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training log (has the run been trained?)")
    return pd.read_json(path, lines=True)


TRAIN_FIELDS = ("batch_size", "budget_pairs", "max_query_length", "max_passage_length", "length_chunks", "lr",
                "temperature", "freeze_embeddings", "hard_negatives", "dropout", "checkpoint_every", "probe_every", "bf16")


def train_run(profile, strategy: str, seed: int, data_out: str | os.PathLike, run_dir: str | os.PathLike,
              progress: bool = True) -> dict:
    """Train one (strategy, seed) of a profile on notebook 01's pairs into ``run_dir`` (resumable), save the
    encoder to ``run_dir/model`` and the summary to ``run_dir/train_summary.json``."""
    from .encoders import load_encoder
    from .store import provenance, read_meta, read_table, write_json

    setup_distributed()
    run_dir = Path(run_dir)
    config = TrainConfig(strategy=strategy, seed=seed, **{f: getattr(profile, f) for f in TRAIN_FIELDS})
    done = run_dir / "train_summary.json"
    if done.is_file() and (run_dir / "model").is_dir():  # finished before: nothing to redo
        return json.loads(done.read_text())
    pairs_path = Path(data_out) / "train_pairs.parquet"
    pairs = read_table(pairs_path)
    if profile.tydi_train:
        from .data import load_all
        from .pairs import tydi_pairs
        pairs = pd.concat([pairs, tydi_pairs(load_all("tydi-train"))], ignore_index=True)
    encoder = load_encoder(profile.model, num_layers=profile.num_layers,
                           device="cuda" if torch.cuda.is_available() else None)
    summary = Trainer(encoder, pairs, config, run_dir, progress=progress).train()
    if world()[0] == 0:
        encoder.save(run_dir / "model")
        summary |= provenance(encoder, profile, seed, ["tydi-train"] if profile.tydi_train else [])
        summary["data_sha256"] |= read_meta(pairs_path).get("data_sha256", {})  # the pairs' sources
        write_json(summary, done)  # marks the run trained; the checkpoint is no longer needed
        shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    return summary
