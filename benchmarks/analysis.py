"""How long the powered design's analysis takes on a study-sized result set: every strategy of the `study`
profile at every seed, every query of every collection (the committed cpu run's per-query tables, re-used
with seed noise added), through the per-strategy seed intervals and the four-way verdicts of the study's
comparisons (compare.design) on the nine headline figures. Target: under a minute on 2 cores."""
import time

import numpy as np
import pandas as pd
from common import peak_rss_gb, save

from hybridlib import compare
from hybridlib.config import load_profile
from hybridlib.paths import REPO_ROOT


def study_sized(seed: int = 0) -> pd.DataFrame:
    study = load_profile("study")
    cpu = compare.collect(REPO_ROOT / "runs" / "cpu", "per_query.parquet")
    templates = {s: d for s, d in cpu.groupby("strategy")}
    rng = np.random.default_rng(seed)
    frames = []
    metrics = ["map", "mrr@10", "ndcg@10", "recall@1", "recall@5", "recall@10", "recall@100"]
    for strategy in study.strategies:
        base = templates.get(strategy) if strategy in templates else templates["hybrid(0.5)"]
        for s in study.seeds if strategy not in ("zero-shot", "bm25") else study.seeds[:1]:
            noise = rng.normal(0, 0.004)  # a seed effect of the measured size
            frames.append(base.assign(strategy=strategy, seed=s, **{m: (base[m] + noise).clip(0, 1) for m in metrics},
                                      rank_distance=base["rank_distance"] + rng.normal(0, 8)))
    return pd.concat(frames, ignore_index=True)


def main():
    t0 = time.perf_counter()
    pq = study_sized()
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    sums = compare.study_sums(pq, compare.FIGURES)  # one pass over the rows, shared by both analyses
    ts = time.perf_counter()
    intervals = compare.seed_intervals(pq, compare.FIGURES, sums=sums)
    t2 = time.perf_counter()
    study = load_profile("study")
    table = compare.verdicts(pq, compare.design(study.strategies), compare.FIGURES, study.margins, sums=sums)
    t3 = time.perf_counter()
    out = {"rows": len(pq), "strategies": pq["strategy"].nunique(), "seeds": pq["seed"].nunique(),
           "comparisons": len(table), "seconds_building_the_table": build, "seconds_group_sums": ts - t1, "seconds_seed_intervals": t2 - ts,
           "seconds_verdicts": t3 - t2, "seconds_analysis": t3 - t1,
           "peak_rss_gb": peak_rss_gb(),
           "target_seconds": 60, "met": t3 - t1 < 60,
           "verdict_counts": table["verdict"].value_counts().to_dict(), "interval_rows": len(intervals)}
    for k, v in out.items():
        print(f"{k}: {v}")
    save("analysis", out)


if __name__ == "__main__":
    main()
