"""Batches per second of every sampler on the real MLQA training pairs, at the cpu profile's batch size."""
import time

from common import save

from hybridlib.pairs import mlqa_split
from hybridlib.samplers import make_sampler
from hybridlib.strategy import Strategy

train, _, _ = mlqa_split()
out = {}
for spec in ["xx", "xy", "ml", "hybrid(0.5)", "paired"]:  # paired: the draw of every mixing strategy
    sampler = make_sampler(spec, train, 32, seed=0) if spec == "paired" else Strategy.parse(spec).sampler(train, 32, seed=0)
    n, start = 0, time.perf_counter()
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for _ in sampler:
            n += 1
    out[spec] = {"batches_per_s": n / (time.perf_counter() - start), "batches": n}
save("samplers", {"batch_size": 32, "pairs": len(train), "samplers": out})
