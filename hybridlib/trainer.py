"""Fine-tuning a bi-encoder with one strategy: a batch sampler (xx, xy, ml, hybrid(alpha)) or gradient
mixing (a monolingual and a cross-lingual batch per step, combined by a gradient combiner).

Budgets are training pairs seen, so every strategy sees the same number of pairs; a mixing step sees
two batches. Logs one JSON line per step; checkpoints every N steps (model, optimizer, scheduler,
sampler, combiner and RNG states) and resumes exactly where it stopped. Runs under ``torchrun``:
each rank encodes its slice of the global batch, embeddings are gathered with gradients, and the
gradients summed across ranks, so W processes compute what one process computes on the whole batch.
"""
from __future__ import annotations

import json
import logging
import math
import os
import resource
import shutil
import time
from contextlib import nullcontext
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist
from tqdm import tqdm

from .checkpoint import Checkpoint
from .config import require_data
from .errors import ConfigError, TrainingError
from .losses import gather, info_nce
from .probes import Probe
from .runs import StepLog, read_log, run_config, trained
from .samplers import Stream, make_sampler
from .stages import DataDir, RunDir
from .strategy import Strategy

log = logging.getLogger(__name__)


class NonFiniteError(TrainingError):
    pass


class CollapseError(TrainingError):
    """The loss sat at chance, or the gradient vanished, for ``collapse_steps`` steps running."""


def world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def setup_distributed() -> None:
    """Join the process group when launched by torchrun (gloo on CPU, NCCL on GPU)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


class CollapseCheck:
    """Stops a run that has stopped learning (a learning rate far too high, a degenerate batch). Chance is
    ln(batch), the loss of a uniform guess; a collapsed model scores every passage alike and its loss sits
    within 1% of chance (a tolerance that grows with the batch), while a learning one, even a weak one, moves
    by tenths from batch to batch. It fires when 3 in 4 of the last ``steps`` steps sat there (a few steps that
    dip do not hide it), or the gradient vanished on all of them; ``steps=0`` turns it off."""

    def __init__(self, steps: int, batch: int, lr: float):
        self.steps, self.chance, self.lr = steps, math.log(batch), lr
        self.recent: list[list[float]] = []  # [loss, gradient norm] of the last steps: part of a checkpoint

    def __call__(self, step: int, loss: float, norm: float) -> None:
        n = self.steps
        if not n:
            return
        self.recent = [*self.recent, [loss, norm]][-n:]
        at_chance = sum(abs(x - self.chance) < 0.01 * self.chance for x, _ in self.recent)
        largest = max(g for _, g in self.recent)
        if len(self.recent) == n and (at_chance >= 0.75 * n or largest < 1e-8):
            raise CollapseError(
                f"step {step}: training collapsed: the loss sat within 1% of chance "
                f"(ln({round(math.exp(self.chance))}) = {self.chance:.4f}) on {at_chance} of the last {n} steps, "
                f"the largest gradient norm was {largest:.2e}; lower lr (now {self.lr:g}) or raise "
                "collapse_steps (0 turns this check off)")


class Objective:
    """InfoNCE of a batch slice over the global batch, and its gradient into the parameters' ``.grad``
    (summed across ranks); counts the tokens it encodes. The pairs are tokenised once: a step only pads its
    rows (a GPU step would otherwise wait for the tokenizer)."""

    def __init__(self, encoder, pairs: pd.DataFrame, profile, params: dict, scaler, world_size: int):
        self.encoder, self.pairs, self.profile, self.scaler, self.world_size = encoder, pairs, profile, scaler, world_size
        self.params, self.tokens = list(params.values()), 0
        c = profile
        texts = {"question": "query", "passage": "passage", **({"negative": "passage"} if c.hard_negatives else {})}
        self.ids = {col: encoder.tokenize(pairs[col].tolist(), kind,
                                          c.max_query_length if kind == "query" else c.max_passage_length)
                    for col, kind in texts.items()}

    def loss(self, rows: list[int]) -> tuple[torch.Tensor, int]:
        """InfoNCE of a batch slice (rows of the pair table), over the global batch; and its token count."""
        c, enc = self.profile, self.encoder
        embed = lambda col: enc.embed_ids([self.ids[col][i] for i in rows], c.length_chunks)  # noqa: E731
        with enc.autocast():
            (qe, qt), (pe, pt) = embed("question"), embed("passage")
            tokens, neg = qt + pt, None
            if c.hard_negatives and (self.pairs["negative"].iloc[rows] != "").all():
                ne, nt = embed("negative")
                tokens, neg = tokens + nt, gather(ne)
            loss = info_nce(gather(qe), gather(pe), neg, c.temperature, c.symmetric)
        return loss, tokens

    def backward(self, rows: list[int]) -> torch.Tensor:
        """Add the gradient of the batch slice's loss to the parameters' ``.grad``; returns the loss, on the
        device (read once a step: each read makes the host wait for the GPU)."""
        loss, tokens = self.loss(rows)
        self.tokens += tokens
        # Every rank computes the same global loss; all_gather's backward sums over ranks, hence / W.
        ((self.scaler.scale(loss) if self.scaler else loss) / self.world_size).backward()
        if self.world_size > 1:
            for p in self.params:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
        return loss.detach()


class Trainer:
    """Trains ``encoder`` on ``pairs`` with one strategy under a profile's training fields, into ``run_dir``."""

    def __init__(self, encoder, pairs: pd.DataFrame, profile, strategy: Strategy, seed: int,
                 run_dir: str | os.PathLike, progress: bool = True):
        if not isinstance(strategy, Strategy):
            raise TypeError(f"Trainer takes a Strategy, got {strategy!r}: pass Strategy.parse({strategy!r})")
        if not strategy.trains:
            raise ConfigError(f"strategy {strategy} does not train")
        self.encoder, self.pairs, self.seed, self.strategy = encoder, pairs.reset_index(drop=True), seed, strategy
        self.config = run_config(profile, strategy, seed)
        self.profile = c = profile.trained_with(strategy)  # budget, lr, frozen as the strategy sets them
        self.run = RunDir(run_dir)
        self.rank, self.world_size = world()
        self.progress = progress and self.rank == 0
        self.pairs_per_step = strategy.pairs_per_step(c.batch_size)
        self.steps = c.budget_pairs // self.pairs_per_step
        self.params = prepare_model(encoder, c)
        kw = dict(seed=seed, rank=self.rank, world_size=self.world_size)
        self.batches = Stream(strategy.sampler(self.pairs, c.batch_size, **kw))
        self.probe = Probe(Stream(make_sampler("paired", self.pairs, c.batch_size, **{**kw, "seed": seed + 10_007}))) \
            if c.probe_every else None
        self.combiner = strategy.combiner(c) if strategy.mixing else None
        self.optimizer, self.scheduler = optimizer(self.params, c, self.steps)
        # fp16 (a GPU without bfloat16) scales the loss so small gradients survive; a step whose gradient
        # overflows is skipped and the scale lowered (torch.amp.GradScaler)
        self.scaler = torch.amp.GradScaler(encoder.device.type) if encoder.precision == "fp16" else None
        self.objective = Objective(encoder, self.pairs, c, self.params, self.scaler, self.world_size)
        self.step = 0
        self.collapse = CollapseCheck(c.collapse_steps, c.batch_size * (2 if c.hard_negatives else 1), c.lr)
        self.checkpoint = Checkpoint(self.run.checkpoint, self.config, encoder.name, self.params, {
            "optimizer": self.optimizer, "scheduler": self.scheduler, "batches": self.batches, "probe": self.probe,
            "combiner": self.combiner, "scaler": self.scaler})

    def check(self, what: str, value: float, label: str = "") -> float:
        """``value``, or a NonFiniteError naming ``what`` (``non-finite mono gradient (norm nan)``). Under a loss
        scale a non-finite gradient is an overflow: the step is skipped, not the run stopped."""
        if not math.isfinite(value) and not (self.scaler and "gradient" in what):
            where = (f"the last good checkpoint is {self.run.checkpoint.parent} (step {self.checkpoint.step})"
                     if self.checkpoint.step else "no checkpoint was saved before it: a re-run starts from the "
                     "initial weights")
            raise NonFiniteError(f"step {self.step + 1}: non-finite {what} ({label}{value}); {where}")
        return value

    def gradient(self, rows: list[int], objective: str) -> tuple[torch.Tensor, float, float]:
        """Flat gradient (P,) of one objective (for the combiners), its loss and its norm."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.objective.backward(rows)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                          for p in self.params.values()])
        if self.scaler:
            flat = flat / self.scaler.get_scale()  # the combiners and the log see the true gradient
        value, norm = read(loss, flat.norm())
        return flat, self.check(f"{objective} loss", value), self.check(f"{objective} gradient", norm, "norm ")

    def save_checkpoint(self) -> None:
        if self.rank == 0:
            self.checkpoint.save(self.step, tokens=self.objective.tokens, recent=self.collapse.recent)
        self.checkpoint.step = self.step

    def resume(self) -> bool:
        counters = self.checkpoint.restore()
        if counters is not None:
            self.step, self.objective.tokens = counters["step"], counters["tokens"]
            self.collapse.recent = counters.get("recent", [])
        return counters is not None

    def update(self, rows: list[int]) -> dict:
        """One optimizer step on a batch (two halves, mono then cross, when mixing); its log entry."""
        c = self.profile
        entry: dict = {"step": self.step + 1}
        if self.strategy.mixing:
            half = len(rows) // 2
            g_mono, l_mono, n_mono = self.gradient(rows[:half], "mono")
            g_cross, l_cross, n_cross = self.gradient(rows[half:], "cross")
            assert self.combiner is not None  # a mixing strategy has one
            combined, w = self.combiner(torch.stack([g_mono, g_cross]))  # back to the scale the step unscales:
            assign_gradient(self.params.values(), combined * self.scaler.get_scale() if self.scaler else combined)
            objective = f"combined update ({self.strategy})"
        else:
            same = self.pairs["qlang"].iloc[rows] == self.pairs["plang"].iloc[rows]
            objective = "mono" if same.all() else "cross" if not same.any() else "mixed"
            self.optimizer.zero_grad(set_to_none=True)
            device_loss = self.objective.backward(rows)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        device_norm = torch.nn.utils.clip_grad_norm_(list(self.params.values()), c.max_grad_norm)
        if self.strategy.mixing:
            w_mono, w_cross, dot, norm = read(w[0], w[1], g_mono @ g_cross, device_norm)
            self.check(f"{objective} gradient", norm, "norm ")
            entry |= {"loss": (l_mono + l_cross) / 2, "loss_mono": l_mono, "loss_cross": l_cross,
                      "weight_mono": w_mono, "weight_cross": w_cross, "grad_norm_mono": n_mono,
                      "grad_norm_cross": n_cross, "cosine": dot / (n_mono * n_cross + 1e-12)}
        else:
            loss, norm = read(device_loss, device_norm)
            self.check(f"{objective} loss", loss)
            self.check(f"{objective} gradient", norm, "norm ")
            entry |= {"loss": loss, f"loss_{objective}": loss, "batch_kind": objective, f"grad_norm_{objective}": norm}
        # clip_ratio > 1: the step was clipped, and its length set by max_grad_norm rather than the gradient
        entry |= {"grad_norm": norm, "clip_ratio": norm / c.max_grad_norm, "lr": self.scheduler.get_last_lr()[0]}
        if self.scaler and not math.isfinite(norm):  # an fp16 overflow: the step is skipped, the scale lowered
            entry["skipped"] = True
        else:
            self.collapse(self.step + 1, entry["loss"], norm)
        if self.scaler:
            entry["loss_scale"] = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return entry

    def train(self) -> dict:
        """Train to the budget (resuming from a checkpoint when one exists); returns the run's summary."""
        torch.manual_seed(self.seed)
        resumed = self.resume()
        self.run.path.mkdir(parents=True, exist_ok=True)
        log = StepLog(self.run.train_log, self.step if resumed else 0) if self.rank == 0 else None
        self.encoder.train()
        bar = tqdm(total=self.steps, initial=self.step, desc=f"train {self.strategy}", unit="step",
                   disable=not self.progress)
        start, start_step, start_tokens = time.perf_counter(), self.step, self.objective.tokens
        try:
            while self.step < self.steps:
                t0 = time.perf_counter()
                entry = self.update(self.batches.next())
                self.step += 1
                dt = time.perf_counter() - t0  # the probe below is measurement, not training
                if self.probe and (self.step % self.profile.probe_every == 0 or self.step == 1):
                    tokens, probe = self.objective.tokens, self.probe.cosines(self.gradient)
                    self.objective.tokens = tokens  # probe work is measurement, not training work
                    entry |= probe if self.strategy.mixing else {**probe, "cosine": probe["probe_cosine"]}
                entry |= {"pairs_seen": self.step * self.pairs_per_step, "seconds": dt,
                          "pairs_per_s": self.pairs_per_step / dt}
                if log:
                    log.write(entry)
                bar.update(1)
                bar.set_postfix(loss=f"{entry['loss']:.3f}")
                if self.step % self.profile.checkpoint_every == 0 or self.step == self.steps:
                    self.save_checkpoint()
        finally:
            bar.close()
            if log:
                log.close()
        self.encoder.eval()
        elapsed, steps_now = time.perf_counter() - start, self.step - start_step
        return summary(self, resumed, elapsed, steps_now * self.pairs_per_step, self.objective.tokens - start_tokens)


def prepare_model(encoder, profile) -> dict[str, torch.Tensor]:
    """Set the encoder up for a profile's training (precision, dropout, frozen word embeddings, gradient
    checkpointing); returns its trainable parameters by name."""
    model = encoder.model
    encoder.bf16 = profile.bf16
    for m in model.modules() if profile.dropout is not None else []:
        if isinstance(m, torch.nn.Dropout):
            m.p = profile.dropout
    if profile.freeze_embeddings:
        model.embeddings.word_embeddings.weight.requires_grad_(False)
    if profile.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def optimizer(params: dict, profile, steps: int):
    """AdamW (no weight decay on biases and LayerNorm) and a linear warm-up then linear decay over ``steps``."""
    no_decay = lambda n: n.endswith("bias") or "LayerNorm" in n  # noqa: E731
    opt = torch.optim.AdamW(
        [{"params": [p for n, p in params.items() if not no_decay(n)], "weight_decay": profile.weight_decay},
         {"params": [p for n, p in params.items() if no_decay(n)], "weight_decay": 0.0}], lr=profile.lr, fused=True)
    warm = max(1, int(profile.warmup * steps))
    return opt, torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))


def assign_gradient(params, flat: torch.Tensor) -> None:
    """Set the parameters' ``.grad`` from one flat (P,) gradient, in order."""
    offset = 0
    for p in params:
        p.grad = flat[offset:offset + p.numel()].view_as(p).to(p.dtype)
        offset += p.numel()


def summary(t: Trainer, resumed: bool, elapsed: float, pairs_now: int, tokens_now: int) -> dict:
    """A training run's summary (``train_summary.json`` without the provenance ``train_run`` adds)."""
    return {"strategy": str(t.strategy), "seed": t.seed, "precision": t.encoder.precision,
            "steps": t.step, "pairs_seen": t.step * t.pairs_per_step,
            "pairs_per_step": t.pairs_per_step, "world_size": t.world_size,
            **log_shares(read_log(t.run.path) if t.rank == 0 else pd.DataFrame()),
            "seconds_this_session": elapsed, "resumed": resumed,
            "pairs_per_s": pairs_now / elapsed if pairs_now else None,
            "tokens_per_s": tokens_now / elapsed if pairs_now else None,
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "config": t.config}


def read(*values: torch.Tensor) -> list[float]:
    """Device scalars as floats, in one transfer (one wait for the GPU)."""
    return torch.stack([v.float().reshape(()).to(values[0].device) for v in values]).tolist()


def log_shares(log: pd.DataFrame) -> dict:
    """The realised share of monolingual batches (hybrid(alpha) draws it by coin) and of clipped steps."""
    kinds = log["batch_kind"].value_counts() if "batch_kind" in log else pd.Series(dtype=int)
    return {"mono_share": float(kinds.get("mono", 0) / kinds.sum()) if kinds.sum() else None,
            "clipped_share": float((log["clip_ratio"] > 1).mean()) if "clip_ratio" in log else None}


def train_run(profile, strategy, seed: int, data_out: str | os.PathLike, run_dir: str | os.PathLike,
              progress: bool = True) -> dict:
    """Train one (strategy, seed) of a profile on notebook 01's pairs into ``run_dir`` (resumable), save the
    encoder to ``run_dir/model`` and the summary to ``run_dir/train_summary.json``. One process at a time
    per run directory (a lock); a finished run is returned as it is, or refused if its settings differ.
    ``strategy`` is a :class:`~hybridlib.strategy.Strategy` (a name, as a notebook of an earlier version passes it, is parsed)."""
    from .encoders import load_encoder
    from .paths import locked
    from .store import provenance, read_meta, read_table, write_json

    strategy, run = Strategy.parse(strategy), RunDir(run_dir)
    config = run_config(profile, strategy, seed)
    # Loaded before joining the process group: transformers writes a model on rank 0 only, and under torchrun
    # every rank may have to build the embedded model's cache (each in a private folder, renamed into place).
    encoder = load_encoder(profile.model, num_layers=profile.num_layers,
                           device="cuda" if torch.cuda.is_available() else None)
    setup_distributed()
    run.path.mkdir(parents=True, exist_ok=True)
    with locked(run.lock, "another process is training this run") if world()[0] == 0 else nullcontext():
        summary = trained(run.path, config)
        if summary is not None:
            return summary
        require_data(data_out, profile.name)  # or the command that makes it
        pairs_path = Path(data_out) / DataDir.TRAIN_PAIRS
        pairs = read_table(pairs_path, required=("qid", "question", "passage", "qlang", "plang"))
        if profile.tydi_train:
            from .data import load_all
            from .pairs import tydi_pairs
            pairs = pd.concat([pairs, tydi_pairs(load_all("tydi-train"))], ignore_index=True)
        summary = Trainer(encoder, pairs, profile, strategy, seed, run.path, progress=progress).train()
        if world()[0] == 0:
            encoder.save(run.model)
            summary |= provenance(encoder, profile, seed, ["tydi-train"] if profile.tydi_train else [])
            summary["data_sha256"] |= read_meta(pairs_path).get("data_sha256", {})  # the pairs' sources
            write_json(summary, run.train_summary)  # marks the run trained
            shutil.rmtree(run.checkpoint.parent, ignore_errors=True)
    return json.loads(json.dumps(summary, default=str))  # as a later call reads it back
