"""Training throughput: hybridlib's trainer against sentence-transformers' model + MultipleNegativesRankingLoss
(scale 20 = temperature 0.05) on the same model, pairs, batch size, max lengths, frozen word embeddings and
threads, alternating A and B; the first losses of both show the work is the same. Also the cost of each
gradient combiner against two plain backward passes on the same two batches."""
import os
import tempfile
import time

import numpy as np
import torch
from common import peak_rss_gb, save

from hybridlib.combiners import COMBINERS, make_combiner
from hybridlib.encoders import load_encoder
from hybridlib.pairs import mlqa_split
from hybridlib.paths import cache_dir
from hybridlib.trainer import TrainConfig, Trainer, read_log

B, STEPS, QLEN, PLEN = 32, (2 if os.environ.get("BENCH_QUICK") else 6), 64, 128
train, _, _ = mlqa_split()


def hybridlib_run(bf16=False):
    enc = load_encoder()
    cfg = TrainConfig("ml", batch_size=B, budget_pairs=B * STEPS, probe_every=0, checkpoint_every=10**6,
                      max_query_length=QLEN, max_passage_length=PLEN, dropout=0.0, bf16=bf16)
    t = Trainer(enc, train, cfg, tempfile.mkdtemp(), progress=False)
    start = time.perf_counter()
    s = t.train()
    return time.perf_counter() - start, s["tokens_per_s"], t


def st_run(batches):
    from sentence_transformers import SentenceTransformer, losses
    model = SentenceTransformer(str(cache_dir() / "models" / "multilingual-e5-small"), device="cpu")
    model[0].auto_model.embeddings.word_embeddings.weight.requires_grad_(False)
    model[0].auto_model.config.hidden_dropout_prob = 0.0
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    loss_fn = losses.MultipleNegativesRankingLoss(model, scale=20.0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-5)
    model.train()
    first, start = None, time.perf_counter()
    for rows in batches:
        b = train.iloc[rows]
        model.max_seq_length = QLEN
        q = model.tokenize(["query: " + t for t in b["question"]])
        model.max_seq_length = PLEN
        p = model.tokenize(["passage: " + t for t in b["passage"]])
        loss = loss_fn([q, p], None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        first = first if first is not None else float(loss)
    return time.perf_counter() - start, first


results = {"ours_s": [], "st_s": []}
for _ in range(2):  # A B A B
    secs, tps, trainer = hybridlib_run()
    results["ours_s"].append(secs)
    from hybridlib.samplers import make_sampler
    batches = list(make_sampler("ml", train, B, seed=0))[:STEPS]
    st_secs, st_first = st_run(batches)
    results["st_s"].append(st_secs)
ours_first = float(read_log(trainer.run_dir)["loss"].iloc[0])
bf_secs, _, _ = hybridlib_run(bf16=True)

# Gradient combiners on real gradients: two objectives' flat gradients (the trainable parameters).
# The combiners' cost depends only on the gradient size: two random gradients of the trainable size.
g = torch.randn(2, sum(p.numel() for p in trainer.params))
backward_s = np.median(results["ours_s"]) / STEPS  # one step = one forward + backward + optimizer on one batch
combine = {}
for name in COMBINERS:
    c = make_combiner(name)
    start = time.perf_counter()
    for _ in range(5):
        c(g)
    combine[name] = (time.perf_counter() - start) / 5
save("train", {
    "batch_size": B, "steps": STEPS, "max_lengths": [QLEN, PLEN], "frozen_word_embeddings": True,
    "hybridlib_pairs_per_s": B * STEPS / float(np.median(results["ours_s"])),
    "sentence_transformers_pairs_per_s": B * STEPS / float(np.median(results["st_s"])),
    "speedup_over_sentence_transformers": float(np.median(np.array(results["st_s"]) / np.array(results["ours_s"]))),
    "hybridlib_bf16_pairs_per_s": B * STEPS / bf_secs,
    "first_loss": {"hybridlib": ours_first, "sentence_transformers": st_first},
    "raw_seconds": results, "peak_rss_gb": peak_rss_gb(),
    "combiner_seconds_per_step": combine, "plain_step_seconds": backward_s,
    "mixing_overhead_vs_two_plain_steps": {n: (2 * backward_s + s) / (2 * backward_s) for n, s in combine.items()},
})
