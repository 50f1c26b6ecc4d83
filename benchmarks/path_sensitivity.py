"""How far a change of floating-point path alone moves a trained run's figures: re-train ``xx`` (cpu profile,
seed 0) with the current trainer and compare its XQuAD-R headline figures with the committed run in
runs/cpu/xx-s0, which was trained with bf16 autocast and one padded batch per side."""
import tempfile
from pathlib import Path

import pandas as pd
from common import save

from hybridlib import evalsets, evaluate
from hybridlib.config import load_profile
from hybridlib.paths import REPO_ROOT
from hybridlib.trainer import train_run

profile = load_profile("cpu")
committed = REPO_ROOT / "runs" / "cpu"
run = Path(tempfile.mkdtemp()) / "xx-s0"
summary = train_run(profile, "xx", 0, committed / "data", run, progress=False)
encoder = evaluate.run_encoder(run, "xx", profile.model, bf16=profile.bf16)
coll = evalsets.Collection.load(committed / "data" / "collections", "xquad-r")
per_query, _, _ = evaluate.evaluate_strategy("xx", encoder, coll, profile)
now = evaluate.summarize(per_query)
before = pd.read_parquet(committed / "xx-s0" / "results.parquet")
key = ["collection", "setting", "qlang", "plang", "metric"]
m = now.merge(before, on=key, suffixes=("_now", "_committed"))
m = m[(m.qlang == "all") & m.metric.isin(["map", "rank_distance"])]
save("path_sensitivity", {
    "run": "xx-s0", "committed_precision": "bf16 autocast, one padded batch per side",
    "now_precision": f"{summary['precision']}, {profile.length_chunks} length chunks",
    "figures": {f"{r.setting} {r.metric}": {"committed": r.value_committed, "now": r.value_now,
                                            "difference": r.value_now - r.value_committed} for r in m.itertuples()},
})
