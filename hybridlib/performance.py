"""The performance appendix's tables (notebook 06): where a profile's time went, and what the benchmarks in
``benchmarks/results`` measured against their targets. Each function reads records and returns a small
table with readable column names; the notebook only formats and shows them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd


def notebook_time(times: pd.DataFrame) -> pd.DataFrame:
    """Per kind of notebook (:func:`hybridlib.analysis.notebook_durations`' table): how many, their minutes
    in all and their share of the profile's time."""
    total = times["seconds"].sum()
    by_kind = times.groupby("notebook")["seconds"].agg(["count", "sum"])
    return pd.DataFrame({"notebooks": by_kind["count"], "minutes": by_kind["sum"] / 60,
                         "share": by_kind["sum"] / total}).rename_axis(None)


def encoding(profile_dir: str | Path) -> pd.DataFrame:
    """Encoding throughput of the profile's evaluations (BM25 left out), median over runs per collection and
    precision: texts encoded (pool and queries), seconds encoding, seconds scoring, texts per second. The
    median, because a run whose embeddings were already cached encodes in about a second."""
    rows = []
    for path in sorted(Path(profile_dir).glob("*/eval_meta.json")):
        for collection, t in json.loads(path.read_text())["timing"].items():
            if t.get("precision") == "bm25":
                continue
            encode = t["encode_pool_s"] + t["encode_queries_s"]
            rows.append({"collection": collection, "precision": t.get("precision", "fp32"),
                         "texts": t["pool"] + t["queries"], "encoding (s)": encode, "scoring (s)": t["score_s"],
                         "texts/s": (t["pool"] + t["queries"]) / encode})
    columns = ["texts", "encoding (s)", "scoring (s)", "texts/s"]
    if not rows:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(rows).groupby(["collection", "precision"])[columns].median()


def training(trained: pd.DataFrame) -> pd.DataFrame:
    """Per strategy (the ``train_summary.json`` of its runs): runs, optimizer steps, pairs seen, and the
    median over its runs of pairs per second, minutes of training and peak memory."""
    g = trained.groupby("strategy", sort=False)
    return pd.DataFrame({"runs": g.size(), "steps": g["steps"].first(), "pairs": g["pairs_seen"].first(),
                         "pairs/s": g["pairs_per_s"].median(), "minutes": g["seconds_this_session"].median() / 60,
                         "peak GB": g["peak_rss_gb"].median()}).rename_axis(None)


def targets(bench: dict) -> pd.DataFrame:
    """The CPU benchmarks against their targets: measure, target, measured, met."""
    tr, en = bench["train"], bench["encode"]
    worst = max(tr["mixing_step_vs_two_plain_steps"].items(), key=lambda kv: kv[1]["ratio"])
    rows = [
        ("training pairs/s vs sentence-transformers (fp32)", ">= 1.3x", tr["speedup_over_sentence_transformers"], 1.3, ">="),
        ("encoding texts/s vs SentenceTransformer.encode (fp32)", ">= 1.5x", en["speedup_over_sentence_transformers"], 1.5, ">="),
        ("same embeddings: min cosine vs sentence-transformers", "> 0.9999", en["cosine_min_vs_sentence_transformers"], 0.9999, ">"),
        ("same work: max loss difference over the timed steps (fp32)", "< 1e-4", tr["max_loss_difference_fp32"], 1e-4, "<"),
        (f"gradient-mixing step / two plain steps (worst: {worst[0]})", "<= 1.15x", worst[1]["ratio"], 1.15, "<="),
        ("training FLOP/s / matmul peak (fp32)", ">= 0.50", tr["fraction_of_matmul_peak_fp32"], 0.5, ">="),
        ("encoding FLOP/s / matmul peak (fp32)", ">= 0.50", en["fraction_of_matmul_peak_fp32"], 0.5, ">="),
    ]
    met = {">=": lambda v, t: v >= t, ">": lambda v, t: v > t, "<": lambda v, t: v < t, "<=": lambda v, t: v <= t}
    return pd.DataFrame([(m, target, v, "yes" if met[op](v, t) else "no") for m, target, v, t, op in rows],
                        columns=["measure", "target", "measured", "met"])


def side_by_side(bench: dict) -> pd.DataFrame:
    """hybridlib's speed over sentence-transformers on each machine that ran the benchmarks (``*_cuda.json``:
    the GPU's), by training and encoding precision; NaN where a run did not measure a figure fairly."""
    sides = {"CPU": {k: v for k, v in bench.items() if not k.endswith("_cuda")},
             "GPU": {k.removesuffix("_cuda"): v for k, v in bench.items() if k.endswith("_cuda")}}
    rows = {f"{side}: {b['train']['machine'].get('cuda') or b['train']['machine']['cpu']}": {
        "training batch": b["train"]["batch_size"],
        "training fp32": b["train"]["speedup_over_sentence_transformers"],
        "training bf16": b["train"].get("speedup_over_sentence_transformers_bf16"),
        "encoding fp32": b["encode"]["speedup_over_sentence_transformers"],
        "encoding bf16": b["encode"].get("bf16_speedup_over_sentence_transformers_bf16")}
        for side, b in sides.items() if {"train", "encode"} <= set(b)}
    return pd.DataFrame.from_dict(rows, orient="index").astype(float)


GPU_CHECK_RUN = re.compile(r"# run (\d+), code ([0-9a-f]+)")


def gpu_check(path: str | Path) -> tuple[pd.DataFrame, str]:
    """``benchmarks/gpu_check.py``'s record as a dated table: each check's latest result, with the run and the
    commit it ran at (a check that failed and then passed in a later run shows the pass, and says which run);
    and the record's heading (date, machine, versions)."""
    lines = Path(path).read_text().splitlines()
    run, code, results = None, None, {}
    for line in lines:
        if m := GPU_CHECK_RUN.match(line):
            run, code = int(m.group(1)), m.group(2)
        elif line[:4] in ("PASS", "FAIL"):
            check, _, figures = line[5:].partition(": ")
            results[check] = {"check": check, "result": line[:4], "figures": figures,
                              "run": f"run {run} ({code})" if run else "-"}
    table = pd.DataFrame(list(results.values()), columns=["check", "result", "figures", "run"])
    return table, lines[0].lstrip("# ") if lines else ""
