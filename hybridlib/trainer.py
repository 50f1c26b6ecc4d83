"""Fine-tuning a bi-encoder with one strategy: a batch sampler (xx, xy, ml, hybrid(alpha)) or gradient
mixing (a monolingual and a cross-lingual batch per step, combined by a gradient combiner).

Budgets are training pairs seen, so every strategy sees the same number of pairs; a mixing step sees
two batches. Logs one JSON line per step; checkpoints every N steps (model, optimizer, scheduler,
sampler, combiner and RNG states) and resumes exactly where it stopped. Runs under ``torchrun``:
each rank encodes its slice of the global batch, embeddings are gathered with gradients, and the
gradients summed across ranks, so W processes compute what one process computes on the whole batch.
"""
from __future__ import annotations

import io
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

from .combiners import make_combiner
from .config import require_data
from .errors import ConfigError, HybridError
from .losses import gather, info_nce
from .paths import atomic_write_bytes, atomic_write_text
from .samplers import make_sampler
from .strategy import Strategy

log = logging.getLogger(__name__)


class TrainingError(HybridError, RuntimeError):
    pass


class NonFiniteError(TrainingError):
    pass


class CollapseError(TrainingError):
    """The loss sat at chance, or the gradient vanished, for ``collapse_steps`` steps running."""


def run_config(profile, strategy: Strategy, seed: int) -> dict:
    """What a training run's weights depend on: the strategy, the seed and the training fields of the
    profile as the strategy's options set them (``Strategy.apply``)."""
    return {"strategy": str(strategy), "seed": seed, **strategy.apply(profile).stage("train")}


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
    """Trains ``encoder`` on ``pairs`` with one strategy under a profile's training fields, into ``run_dir``."""

    def __init__(self, encoder, pairs: pd.DataFrame, profile, strategy: Strategy | str, seed: int,
                 run_dir: str | os.PathLike, progress: bool = True):
        self.strategy = strategy = Strategy.parse(strategy)
        if not strategy.trains:
            raise ConfigError(f"strategy {strategy} does not train")
        self.encoder, self.pairs, self.seed = encoder, pairs.reset_index(drop=True), seed
        self.config = run_config(profile, strategy, seed)
        self.profile = profile = strategy.apply(profile)  # budget, lr, frozen as the strategy sets them
        self.run_dir = Path(run_dir)
        self.rank, self.world_size = world()
        self.progress = progress and self.rank == 0
        self.pairs_per_step = strategy.pairs_per_step(profile.batch_size)
        self.steps = profile.budget_pairs // self.pairs_per_step
        c = profile
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
        kw = dict(seed=seed, rank=self.rank, world_size=self.world_size)
        name, args = strategy.sampler()
        self.batches = Stream(make_sampler(name, self.pairs, c.batch_size, **args, **kw))
        self.probe = Stream(make_sampler("paired", self.pairs, c.batch_size, **{**kw, "seed": seed + 10_007})) \
            if c.probe_every else None
        self.combiner = None
        if strategy.mixing:
            name, args = strategy.combiner(c.cagrad_c, c.gradvac_beta)
            self.combiner = make_combiner(name, **args)
        decay = [p for n, p in zip(self.names, self.params) if not (n.endswith("bias") or "LayerNorm" in n)]
        no_decay = [p for n, p in zip(self.names, self.params) if n.endswith("bias") or "LayerNorm" in n]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": c.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=c.lr, fused=True)
        # fp16 (a GPU without bfloat16) scales the loss so small gradients survive; a step whose gradient
        # overflows is skipped and the scale lowered (torch.amp.GradScaler)
        self.scaler = torch.amp.GradScaler(encoder.device.type) if encoder.precision == "fp16" else None
        steps, warm = self.steps, max(1, int(c.warmup * self.steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
        # Tokenised once: a step only pads its rows (a GPU step would otherwise wait for the tokenizer)
        texts = {"question": "query", "passage": "passage", **({"negative": "passage"} if c.hard_negatives else {})}
        self.ids = {col: encoder.tokenize(self.pairs[col].tolist(), kind,
                                          c.max_query_length if kind == "query" else c.max_passage_length)
                    for col, kind in texts.items()}
        self.step, self.saved_step, self.tokens, self.recent = 0, 0, 0, []
        self.chance = math.log(c.batch_size * (2 if c.hard_negatives else 1))  # InfoNCE of a uniform guess

    # ---- one objective's loss and gradient ---------------------------------------------------------
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
        """Gradient of one objective over the global batch into the parameters' ``.grad`` (replacing what was
        there); returns its loss, on the device (read once a step: each read makes the host wait for the GPU)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, tokens = self.loss(rows)
        self.tokens += tokens
        # Every rank computes the same global loss; all_gather's backward sums over ranks, hence / W.
        (self.scaled(loss) / self.world_size).backward()
        if self.world_size > 1:
            for p in self.params:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
        return loss.detach()

    def scaled(self, loss: torch.Tensor) -> torch.Tensor:
        return self.scaler.scale(loss) if self.scaler else loss

    def read(self, *values: torch.Tensor) -> list[float]:
        """Device scalars as floats, in one transfer (one wait for the GPU)."""
        return torch.stack([v.float().reshape(()).to(values[0].device) for v in values]).tolist()

    def check(self, what: str, value: float, label: str = "") -> float:
        """``value``, or a NonFiniteError naming ``what`` (``non-finite mono gradient (norm nan)``). Under a loss
        scale a non-finite gradient is an overflow: the step is skipped, not the run stopped."""
        if not math.isfinite(value) and not (self.scaler and "gradient" in what):
            raise self.non_finite(f"{what} ({label}{value})")
        return value

    def gradient(self, rows: list[int], objective: str) -> tuple[torch.Tensor, float, float]:
        """Flat gradient (P,) of one objective (for the combiners), its loss and its norm."""
        loss = self.backward(rows)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float()
                          for p in self.params])
        if self.scaler:
            flat = flat / self.scaler.get_scale()  # the combiners and the log see the true gradient
        value, norm = self.read(loss, flat.norm())
        return flat, self.check(f"{objective} loss", value), self.check(f"{objective} gradient", norm, "norm ")

    def non_finite(self, what: str) -> NonFiniteError:
        where = (f"the last good checkpoint is {self.run_dir / 'checkpoint'} (step {self.saved_step})" if self.saved_step
                 else "no checkpoint was saved before it: a re-run starts from the initial weights")
        return NonFiniteError(f"step {self.step + 1}: non-finite {what}; {where}")

    # ---- checkpoints -------------------------------------------------------------------------------
    def state(self) -> dict:
        return {"step": self.step, "tokens": self.tokens, "recent": self.recent,
                "params": {n: p.detach().cpu().clone() for n, p in zip(self.names, self.params)},
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "batches": self.batches.state_dict(), "probe": self.probe.state_dict() if self.probe else None,
                "combiner": self.combiner.state_dict() if self.combiner else None,
                "scaler": self.scaler.state_dict() if self.scaler else None,
                "rng": torch.get_rng_state(), "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "config": self.config, "model": self.encoder.name}

    def save_checkpoint(self) -> None:
        self.saved_step = self.step
        if self.rank != 0:
            return
        path = self.run_dir / "checkpoint" / "state.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        atomic_write_bytes(path, buf.getvalue())  # a kill or a full disk mid-save keeps the previous checkpoint

    def resume(self) -> bool:
        path = self.run_dir / "checkpoint" / "state.pt"
        self.saved_step = 0
        if not path.is_file():
            return False
        try:
            s = torch.load(path, weights_only=False, map_location="cpu")
        except Exception as e:
            raise TrainingError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e}); delete it to start over") from None
        old, new = s.get("config", {}), self.config
        diff = {k: (old.get(k), v) for k, v in new.items() if old.get(k) != v}
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
        self.step, self.tokens, self.recent = s["step"], s["tokens"], s.get("recent", [])
        self.batches.load_state_dict(s["batches"])
        if self.probe:
            self.probe.load_state_dict(s["probe"])
        if self.combiner:
            self.combiner.load_state_dict(s["combiner"])
        if self.scaler and s.get("scaler"):
            self.scaler.load_state_dict(s["scaler"])
        torch.set_rng_state(s["rng"])
        if s["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["cuda_rng"])
        self.saved_step = self.step
        return True

    # ---- the loop ----------------------------------------------------------------------------------
    def probe_cosines(self) -> dict[str, float]:
        """Gradient cosines on two independent pairs of probe batches (a monolingual and a cross-lingual
        batch each): mono vs cross, and the noise floor beside it, mono vs mono and cross vs cross. Two
        batches of one kind are not perfectly aligned either; a mono/cross cosine is only evidence of
        conflict when it is below that floor. Measurement only: it changes neither the weights nor the
        random stream training draws from."""
        rng, tokens = torch.get_rng_state(), self.tokens
        grads = []
        for _ in range(2):
            rows = self.probe.next()
            half = len(rows) // 2
            grads.append((self.gradient(rows[:half], "probe mono"), self.gradient(rows[half:], "probe cross")))
        torch.set_rng_state(rng)
        self.tokens = tokens  # probe work is not training work
        self.optimizer.zero_grad(set_to_none=True)
        cos = lambda x, y: float(x[0] @ y[0]) / (x[2] * y[2] + 1e-12)  # noqa: E731
        (m1, c1), (m2, c2) = grads
        return {"probe_cosine": cos(m1, c1), "cosine_mono_mono": cos(m1, m2), "cosine_cross_cross": cos(c1, c2)}

    def update(self, rows: list[int]) -> dict:
        """One optimizer step on a batch (two halves, mono then cross, when mixing); its log entry."""
        c = self.profile
        entry = {"step": self.step + 1}
        if self.strategy.mixing:
            half = len(rows) // 2
            g_mono, l_mono, n_mono = self.gradient(rows[:half], "mono")
            g_cross, l_cross, n_cross = self.gradient(rows[half:], "cross")
            if not math.isfinite(n_mono + n_cross):  # an fp16 overflow (else check() raised): skipped below
                combined, w = g_mono + g_cross, torch.full((2,), math.nan)
            else:
                combined, w = self.combiner(torch.stack([g_mono, g_cross]))
            if self.scaler:  # back to the scale the optimizer step unscales
                combined = combined * self.scaler.get_scale()
            offset = 0
            for p in self.params:
                p.grad = combined[offset:offset + p.numel()].view_as(p).to(p.dtype)
                offset += p.numel()
            objective = f"combined update ({self.strategy})"
        else:
            batch = self.pairs.iloc[rows]
            objective = "mono" if (batch["qlang"] == batch["plang"]).all() else \
                "cross" if (batch["qlang"] != batch["plang"]).all() else "mixed"
            loss = self.backward(rows)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.params, c.max_grad_norm)
        if self.strategy.mixing:
            w_mono, w_cross, dot, norm = self.read(w[0], w[1], g_mono @ g_cross, norm)
            self.check(f"{objective} gradient", norm, "norm ")
            entry |= {"loss": (l_mono + l_cross) / 2, "loss_mono": l_mono, "loss_cross": l_cross,
                      "weight_mono": w_mono, "weight_cross": w_cross, "grad_norm_mono": n_mono,
                      "grad_norm_cross": n_cross, "cosine": dot / (n_mono * n_cross + 1e-12)}
        else:
            loss, norm = self.read(loss, norm)
            self.check(f"{objective} loss", loss)
            self.check(f"{objective} gradient", norm, "norm ")
            entry |= {"loss": loss, f"loss_{objective}": loss, "batch_kind": objective, f"grad_norm_{objective}": norm}
        # clip_ratio > 1: the step was clipped, and its length set by max_grad_norm rather than the gradient
        entry |= {"grad_norm": norm, "clip_ratio": norm / c.max_grad_norm, "lr": self.scheduler.get_last_lr()[0]}
        if self.scaler and not math.isfinite(norm):  # an fp16 overflow: the step is skipped, the scale lowered
            entry["skipped"] = True
        else:
            self.check_collapse(entry["loss"], norm)
        if self.scaler:
            entry["loss_scale"] = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        return entry

    def check_collapse(self, loss: float, norm: float) -> None:
        """Stop a run that has stopped learning (a learning rate far too high, a degenerate batch). Chance is
        ln(batch), the loss of a uniform guess; a collapsed model scores every passage alike and its loss sits
        within 1% of chance (a tolerance that grows with the batch), while a learning one, even a weak one,
        moves by tenths from batch to batch. The check fires when 3 in 4 of the last ``collapse_steps`` steps
        sat there (a few steps that dip do not hide it), or the gradient vanished on all of them."""
        n = self.profile.collapse_steps
        if not n:
            return
        self.recent = [*self.recent, [loss, norm]][-n:]
        at_chance = sum(abs(x - self.chance) < 0.01 * self.chance for x, _ in self.recent)
        largest = max(g for _, g in self.recent)
        if len(self.recent) == n and (at_chance >= 0.75 * n or largest < 1e-8):
            raise CollapseError(
                f"step {self.step + 1}: training collapsed: the loss sat within 1% of chance "
                f"(ln({round(math.exp(self.chance))}) = {self.chance:.4f}) on {at_chance} of the last {n} steps, "
                f"the largest gradient norm was {largest:.2e}; lower lr (now {self.profile.lr:g}) or raise "
                "collapse_steps (0 turns this check off)")

    def train(self) -> dict:
        """Train to the budget (resuming from a checkpoint when one exists); returns the run's summary."""
        torch.manual_seed(self.seed)
        resumed = self.resume()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.run_dir / "train_log.jsonl"
        if self.rank == 0:  # keep the log lines up to the checkpoint: a resumed run rewrites the rest
            kept = [e for e in read_entries(log_path) if e["step"] <= self.step] if resumed else []
            atomic_write_text(log_path, "".join(json.dumps(e) + "\n" for e in kept))
        logf = open(log_path, "a") if self.rank == 0 else None
        self.encoder.train()
        bar = tqdm(total=self.steps, initial=self.step, desc=f"train {self.strategy}", unit="step",
                   disable=not self.progress)
        start, start_step, start_tokens = time.perf_counter(), self.step, self.tokens
        try:
            while self.step < self.steps:
                t0 = time.perf_counter()
                entry = self.update(self.batches.next())
                self.step += 1
                dt = time.perf_counter() - t0  # the probe below is measurement, not training
                if self.probe and (self.step % self.profile.probe_every == 0 or self.step == 1):
                    probe = self.probe_cosines()
                    entry |= probe if self.strategy.mixing else {**probe, "cosine": probe["probe_cosine"]}
                entry |= {"pairs_seen": self.step * self.pairs_per_step, "seconds": dt,
                          "pairs_per_s": self.pairs_per_step / dt}
                if logf:
                    logf.write(json.dumps(entry) + "\n")
                    logf.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{entry['loss']:.3f}")
                if self.step % self.profile.checkpoint_every == 0 or self.step == self.steps:
                    self.save_checkpoint()
        finally:
            bar.close()
            if logf:
                logf.close()
        elapsed = time.perf_counter() - start
        steps_now = self.step - start_step
        log = read_log(self.run_dir) if self.rank == 0 else pd.DataFrame()
        kinds = log["batch_kind"].value_counts() if "batch_kind" in log else pd.Series(dtype=int)
        summary = {"strategy": str(self.strategy), "seed": self.seed, "precision": self.encoder.precision,
                   "steps": self.step, "pairs_seen": self.step * self.pairs_per_step,
                   "pairs_per_step": self.pairs_per_step, "world_size": self.world_size,
                   # the realised share of monolingual batches (hybrid(alpha) draws it by coin)
                   "mono_share": float(kinds.get("mono", 0) / kinds.sum()) if kinds.sum() else None,
                   "clipped_share": float((log["clip_ratio"] > 1).mean()) if "clip_ratio" in log else None,
                   "seconds_this_session": elapsed, "resumed": resumed,
                   "pairs_per_s": steps_now * self.pairs_per_step / elapsed if steps_now else None,
                   "tokens_per_s": (self.tokens - start_tokens) / elapsed if steps_now else None,
                   "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                   "config": self.config}
        self.encoder.eval()
        return summary


def read_entries(path: Path) -> list[dict]:
    """The log's entries; a torn last line (a kill mid-write) is dropped, a bad line elsewhere is an error."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    entries = []
    for i, line in enumerate(lines):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                log.warning("%s: dropped a torn last line (line %d)", path, i + 1)
                break
            raise TrainingError(f"{path}: line {i + 1} is not JSON ({line[:60]!r})") from None
    return entries


def read_log(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The per-step training log of a run as a table."""
    path = Path(run_dir) / "train_log.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training log (has the run been trained?)")
    return pd.DataFrame(read_entries(path))


def finished(run_dir: Path, config: dict) -> dict | None:
    """The summary of a run finished with ``config``; None when unfinished. A run finished with other
    settings is an error: its results would be reported under settings that did not produce them."""
    done = run_dir / "train_summary.json"
    if not done.is_file():
        return None
    try:
        summary = json.loads(done.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TrainingError(f"{done}: unreadable ({e}); delete it to train the run again") from None
    old = summary.get("config", {})
    diff = [f"{k}: finished with {old[k]!r}, now {v!r}" for k, v in config.items() if k in old and old[k] != v]
    if diff:
        raise ConfigError(f"{run_dir}: this run finished with other settings ({'; '.join(diff)}); "
                          "use another run directory, or delete this one to train again")
    if not (run_dir / "model").is_dir():
        return None
    log_path = run_dir / "train_log.jsonl"
    steps = sorted({e.get("step") for e in read_entries(log_path)})
    if steps != list(range(1, summary["steps"] + 1)):
        raise TrainingError(f"{log_path}: holds {len(steps)} of the finished run's {summary['steps']} steps "
                            f"(last {steps[-1] if steps else 'none'}): lost or damaged; its curves cannot be "
                            "redrawn without training again: delete the run directory to do so")
    return summary


def train_run(profile, strategy, seed: int, data_out: str | os.PathLike, run_dir: str | os.PathLike,
              progress: bool = True) -> dict:
    """Train one (strategy, seed) of a profile on notebook 01's pairs into ``run_dir`` (resumable), save the
    encoder to ``run_dir/model`` and the summary to ``run_dir/train_summary.json``. One process at a time
    per run directory (a lock); a finished run is returned as it is, or refused if its settings differ."""
    from .encoders import load_encoder
    from .paths import locked
    from .store import provenance, read_meta, read_table, write_json

    strategy, run_dir = Strategy.parse(strategy), Path(run_dir)
    config = run_config(profile, strategy, seed)
    # Loaded before joining the process group: transformers writes a model on rank 0 only, and under torchrun
    # every rank may have to build the embedded model's cache (each in a private folder, renamed into place).
    encoder = load_encoder(profile.model, num_layers=profile.num_layers,
                           device="cuda" if torch.cuda.is_available() else None)
    setup_distributed()
    run_dir.mkdir(parents=True, exist_ok=True)
    with locked(run_dir / ".train.lock", "another process is training this run") if world()[0] == 0 else nullcontext():
        summary = finished(run_dir, config)
        if summary is not None:
            return summary
        require_data(data_out, profile.name)  # or the command that makes it
        pairs_path = Path(data_out) / "train_pairs.parquet"
        pairs = read_table(pairs_path, required=("qid", "question", "passage", "qlang", "plang"))
        if profile.tydi_train:
            from .data import load_all
            from .pairs import tydi_pairs
            pairs = pd.concat([pairs, tydi_pairs(load_all("tydi-train"))], ignore_index=True)
        summary = Trainer(encoder, pairs, profile, strategy, seed, run_dir, progress=progress).train()
        if world()[0] == 0:
            encoder.save(run_dir / "model")
            summary |= provenance(encoder, profile, seed, ["tydi-train"] if profile.tydi_train else [])
            summary["data_sha256"] |= read_meta(pairs_path).get("data_sha256", {})  # the pairs' sources
            write_json(summary, run_dir / "train_summary.json")  # marks the run trained
            shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    return json.loads(json.dumps(summary, default=str))  # as a later call reads it back
