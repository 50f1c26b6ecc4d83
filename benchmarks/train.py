"""Training throughput: hybridlib's trainer against sentence-transformers' model + MultipleNegativesRankingLoss
(scale 20 = temperature 0.05) on the same model, pairs, batch size, max lengths, frozen word embeddings and
threads; each run in a fresh process (so its peak memory is its own), alternating A and B; the losses of
both show the work is the same. Also hybridlib with one padded batch per side (``length_chunks=1``, what
sentence-transformers computes), the FLOP/s of a step against the machine's matmul peak, and a gradient-mixing
step against two plain steps on the same two batches. ``--device cuda`` runs every side on the GPU, with
the batch size of ``--batch`` (default 32). ``BENCH_ROUNDS`` sets the number of rounds (default 3)."""
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import torch
from common import device, flops_per_token, matmul_peak, peak_rss_gb, save, sync, timed

from hybridlib.strategy import Strategy

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
           "aten::_scaled_dot_product_flash_attention_for_cpu_backward")
DEVICE = device()
B = int(sys.argv[sys.argv.index("--batch") + 1]) if "--batch" in sys.argv else 32
# a GPU step is short: more of them, the first (warm-up) left out of every timing
STEPS, QLEN, PLEN = (2 if os.environ.get("BENCH_QUICK") else 8 if DEVICE == "cpu" else 16), 64, 128
ROUNDS = 1 if os.environ.get("BENCH_QUICK") else int(os.environ.get("BENCH_ROUNDS", 3))
# results/train[_cuda].json holds the device's usual batch (32 on a CPU, 128 on a GPU); another batch adds _b<B>
NAME = "train" if B == (32 if DEVICE == "cpu" else 128) else f"train_b{B}"


def pairs_and_batches():
    from hybridlib.pairs import mlqa_split
    from hybridlib.samplers import make_sampler
    train, _, _ = mlqa_split()
    return train, list(make_sampler("ml", train, B, seed=0))[:STEPS]


def profile(**fields):
    """The cpu profile with the benchmark's batch, lengths and budget (no probes, no checkpoints, no dropout)."""
    from hybridlib.config import load_profile, override
    return override(load_profile("cpu"), **{"batch_size": B, "budget_pairs": B * STEPS, "probe_every": 0,
                                            "checkpoint_every": 10**6, "lr": 3e-5, "warmup": 0.0, "dropout": 0.0,
                                            "max_query_length": QLEN, "max_passage_length": PLEN, **fields})


def hybridlib_run(bf16: bool, chunks: int) -> dict:
    from hybridlib import encoders
    from hybridlib.trainer import Trainer, read_log
    if bf16:  # force bf16 autocast on the CPU, which the trainer itself does not use there (this measures why)
        encoders.bf16_available = lambda device, training=False: True
    train, _ = pairs_and_batches()
    cfg = profile(bf16=bf16, length_chunks=chunks)
    trainer = Trainer(encoders.load_encoder(device=DEVICE), train, cfg, Strategy.parse("ml"), 0, tempfile.mkdtemp(), progress=False)
    trainer.train()
    log = read_log(trainer.run.path)
    return {"seconds": float(log["seconds"].iloc[1:].sum()), "losses": log["loss"].tolist(),
            "tokens": trainer.tokens, "peak_rss_gb": peak_rss_gb()}


def st_step(train, bf16: bool):
    """sentence-transformers' model and loss in a plain loop (no Trainer overhead: its most favourable case):
    a function doing one step on a batch's rows of ``train`` and returning its loss."""
    from sentence_transformers import SentenceTransformer, losses
    from sentence_transformers.util import batch_to_device

    from hybridlib.paths import cache_dir
    model = SentenceTransformer(str(cache_dir() / "models" / "multilingual-e5-small"), device=DEVICE)
    model[0].auto_model.embeddings.word_embeddings.weight.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    loss_fn = losses.MultipleNegativesRankingLoss(model, scale=20.0)
    # hybridlib's optimizer and schedule: AdamW, no decay on biases and LayerNorms, linear decay (no warm-up)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    plain = [p for n, p in named if n.endswith("bias") or "LayerNorm" in n]
    opt = torch.optim.AdamW([{"params": [p for n, p in named if not (n.endswith("bias") or "LayerNorm" in n)],
                              "weight_decay": 0.01}, {"params": plain, "weight_decay": 0.0}], lr=3e-5,
                            fused=True)  # its Trainer's default optimizer (adamw_torch_fused) with torch >= 2.8
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s + 1, (STEPS - s) / (STEPS - 1)))
    model.train()

    def step(rows) -> float:
        b = train.iloc[rows]
        model.max_seq_length = QLEN
        q = batch_to_device(model.tokenize(["query: " + t for t in b["question"]]), DEVICE)
        model.max_seq_length = PLEN
        p = batch_to_device(model.tokenize(["passage: " + t for t in b["passage"]]), DEVICE)
        with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=bf16):  # what its Trainer does with bf16=True
            loss = loss_fn([q, p], None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        return float(loss.detach())
    return step


def st_run(bf16: bool) -> dict:
    train, batches = pairs_and_batches()
    step = st_step(train, bf16)
    out, seconds = [], []
    for rows in batches:
        start = time.perf_counter()
        out.append(step(rows))
        seconds.append(time.perf_counter() - start)
    return {"seconds": sum(seconds[1:]), "losses": out, "peak_rss_gb": peak_rss_gb()}


def fresh(fn, *args) -> dict:
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def mixing_overhead(rounds: int = 3) -> dict:
    """Seconds of one gradient-mixing step (two batches, two gradients, the combiner, one optimizer step)
    against two plain steps on the same two batches, alternating; median ratio per combiner."""
    from hybridlib.combiners import COMBINERS
    from hybridlib.encoders import load_encoder
    from hybridlib.trainer import Trainer
    train, batches = pairs_and_batches()
    encoder = load_encoder(device=DEVICE)
    cfg = profile(budget_pairs=2 * B * STEPS, bf16=False)
    plain = Trainer(encoder, train, cfg, Strategy.parse("ml"), 0, tempfile.mkdtemp(), progress=False)
    a, b = batches[0], batches[1]
    plain.update(a)  # warm-up
    out = {}
    for name in COMBINERS:
        mixing = Trainer(encoder, train, cfg, Strategy.parse(name), 0, tempfile.mkdtemp(), progress=False)
        ratios = []
        for _ in range(rounds):
            two = timed(lambda: (plain.update(a), plain.update(b)))
            one = timed(lambda: mixing.update(a + b))  # noqa: B023
            ratios.append(one / two)
        out[name] = {"ratio": statistics.median(ratios), "range": [min(ratios), max(ratios)],
                     "extra_memory_gb": 2 * sum(p.numel() for p in mixing.params) * 4 / 2**30}
    return out


def op_profile() -> dict:
    """Where a warm training step's time goes, by operator, for hybridlib and sentence-transformers (bf16
    on a GPU, fp32 on a CPU): the share in matrix products bounds the fraction of the matmul peak a step can
    reach; on a GPU, the device's busy time against the step's wall time says whether the host keeps it fed."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from hybridlib.encoders import load_encoder
    from hybridlib.trainer import Trainer
    gpu = DEVICE != "cpu"
    train, batches = pairs_and_batches()
    trainer = Trainer(load_encoder(device=DEVICE), train, profile(bf16=gpu), Strategy.parse("ml"), 0, tempfile.mkdtemp(),
                      progress=False)
    out = {}
    for name, step in {"hybridlib": trainer.update, "sentence_transformers": st_step(train, gpu)}.items():
        step(batches[0])  # warm-up
        sync()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
        with torch_profile(activities=activities) as prof:
            start = time.perf_counter()
            step(batches[-1])
            sync()
            wall = time.perf_counter() - start
        events = prof.key_averages()
        cpu = sorted(((e.key, e.self_cpu_time_total) for e in events), key=lambda x: -x[1])
        total = sum(t for _, t in cpu)
        out[name] = {"wall_s": wall, "ops": [{"op": k, "share": t / total} for k, t in cpu[:12]]}
        if gpu:
            dev = sorted(((e.key, e.self_device_time_total, e.count) for e in events if e.self_device_time_total > 0),
                         key=lambda x: -x[1])
            busy = sum(t for _, t, _ in dev) / 1e6
            out[name] |= {"device_busy_s": busy, "device_busy_fraction": busy / wall,
                          "kernel_launches": sum(n for _, _, n in dev),
                          "device_ops": [{"op": k, "seconds": t / 1e6, "count": n} for k, t, n in dev[:12]]}
    return out


def main():
    from hybridlib.encoders import load_encoder
    sides = {"hybridlib": (hybridlib_run, False, 4), "sentence_transformers": (st_run, False),
             "hybridlib_one_padded_batch": (hybridlib_run, False, 1),
             "hybridlib_bf16": (hybridlib_run, True, 4), "sentence_transformers_bf16": (st_run, True)}
    if DEVICE != "cpu":  # a GPU never cuts a batch into chunks: that side would repeat the first
        del sides["hybridlib_one_padded_batch"]
    runs = {k: [] for k in sides}
    for _ in range(ROUNDS):  # A B C ... A B C ...: drifts in machine load hit every side
        for name, (fn, *args) in sides.items():
            runs[name].append(fresh(fn, *args))
            print(name, f"{runs[name][-1]['seconds']:.1f} s", flush=True)
    seconds = {k: [r["seconds"] for r in v] for k, v in runs.items()}
    per_s = {k: B * (STEPS - 1) / statistics.median(v) for k, v in seconds.items()}
    ratio = lambda a, b: [y / x for x, y in zip(seconds[a], seconds[b])]
    ours = runs["hybridlib"][0]
    # FLOPs (the first, warm-up step excluded from every timing): forward 2 x dense parameters + attention per real token; backward twice the forward (weights and
    # activations), less the frozen word embeddings, which are a lookup with no matmul.
    encoder = load_encoder()
    texts_tokens = ours["tokens"] / STEPS / (2 * B)
    step_flops = 3 * flops_per_token(encoder, texts_tokens) * ours["tokens"] / STEPS
    peak32, peak16 = matmul_peak(torch.float32, on=DEVICE), matmul_peak(torch.bfloat16, on=DEVICE)
    step_s = {k: statistics.median(v) / (STEPS - 1) for k, v in seconds.items()}
    mixing = fresh(mixing_overhead)
    ops = fresh(op_profile)
    save(NAME, {
        "batch_size": B, "steps": STEPS, "rounds": ROUNDS, "max_lengths": [QLEN, PLEN], "frozen_word_embeddings": True,
        "length_chunks": 4, "pairs_per_s": per_s, "raw_seconds": seconds,
        "speedup_over_sentence_transformers": statistics.median(ratio("hybridlib", "sentence_transformers")),
        "speedup_range": [min(ratio("hybridlib", "sentence_transformers")), max(ratio("hybridlib", "sentence_transformers"))],
        "speedup_over_sentence_transformers_bf16": statistics.median(ratio("hybridlib_bf16", "sentence_transformers_bf16")),
        "speedup_from_length_chunks": statistics.median(ratio("hybridlib", "hybridlib_one_padded_batch"))
        if "hybridlib_one_padded_batch" in seconds else None,
        "losses": {k: v[0]["losses"] for k, v in runs.items()},
        "max_loss_difference_fp32": float(np.max(np.abs(np.subtract(ours["losses"], runs["sentence_transformers"][0]["losses"])))),
        "peak_rss_gb": {k: max(r["peak_rss_gb"] for r in v) for k, v in runs.items()},
        "real_tokens_per_step": ours["tokens"] / STEPS,
        "achieved_gflops_fp32": step_flops / step_s["hybridlib"] / 1e9,
        "achieved_gflops_bf16": step_flops / step_s["hybridlib_bf16"] / 1e9,
        "matmul_peak_gflops_fp32": peak32 / 1e9, "matmul_peak_gflops_bf16": peak16 / 1e9,
        "fraction_of_matmul_peak_fp32": step_flops / step_s["hybridlib"] / peak32,
        "fraction_of_matmul_peak_bf16": step_flops / step_s["hybridlib_bf16"] / peak16,
        "matmul_share_of_step": sum(o["share"] for o in ops["hybridlib"]["ops"] if o["op"] in MATMULS), "op_profile": ops,
        "mixing_step_vs_two_plain_steps": mixing,
    })


if __name__ == "__main__":
    main()
