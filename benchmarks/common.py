"""Shared helpers of the benchmark scripts: timing with alternation, peak memory, results files."""
from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hybridlib.store import machine  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def device() -> str:
    """``--device`` of the command line (cpu or cuda; default cpu)."""
    args = sys.argv[1:]
    return args[args.index("--device") + 1] if "--device" in args else "cpu"


def sync() -> None:
    """Wait for queued GPU work, so a timing covers it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, repeat: int = 1) -> float:
    sync()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - start) / repeat


def alternate(a, b, rounds: int = 3) -> dict:
    """Time ``a`` and ``b`` alternately (A B A B ...), so drifts in machine load hit both; seconds per call."""
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(timed(a))
        tb.append(timed(b))
    ratios = [y / x for x, y in zip(ta, tb)]
    return {"a_s": ta, "b_s": tb, "speedup_a_over_b": statistics.median(ratios),
            "speedup_min": min(ratios), "speedup_max": max(ratios)}


def flops_per_token(encoder, mean_length: float) -> float:
    """Forward FLOPs per token: 2 x the dense (matrix) parameters outside the embeddings, plus attention's
    two (T x T x H) products per layer, 4 x T x H per token."""
    cfg = encoder.model.config
    dense = sum(p.numel() for n, p in encoder.model.named_parameters() if "embeddings" not in n and p.dim() == 2)
    return 2 * dense + 4 * cfg.num_hidden_layers * mean_length * cfg.hidden_size


def matmul_peak(dtype: torch.dtype, n: int = 2048, on: str = "cpu") -> float:
    """FLOP/s of a large dense matmul in ``dtype``: the machine's practical peak for these kernels."""
    x = torch.randn(n, n, device=on).to(dtype)
    x @ x
    return 2 * n**3 / timed(lambda: x @ x, 5)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def save(name: str, result: dict) -> None:
    """benchmarks/results/<name>.json, or <name>_cuda.json for a run with --device cuda (both are kept)."""
    RESULTS.mkdir(exist_ok=True)
    suffix = "" if device() == "cpu" else f"_{device()}"
    result = {"machine": machine(), "device": device(), **result}
    (RESULTS / f"{name}{suffix}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
