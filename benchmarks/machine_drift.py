"""Machine drift: train a committed run again on this machine, its first steps only, and compare the
per-step loss and gradient norm with its committed ``train_log.jsonl`` (made on the machine its
``train_summary.json`` records, or an earlier one where it records none). Needs the profile's notebook 01
output beside the run (``python -m hybridlib run --profile study --until 01_data`` writes ``runs/study/data``).

    python benchmarks/machine_drift.py [RUN_DIR] [--steps N]   # default runs/study/sum-s2, 12 steps
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import save

root = Path(__file__).resolve().parents[1]
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run", nargs="?", default=str(root / "runs/study/sum-s2"))
parser.add_argument("--steps", type=int, default=12)
args = parser.parse_args()
run = Path(args.run).resolve()
summary = json.loads((run / "train_summary.json").read_text())
committed = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()][:args.steps]
if not (run.parent / "data" / "train_pairs.parquet").exists():
    sys.exit(f"{run.parent / 'data' / 'train_pairs.parquet'}: missing; run the profile's notebook 01 first")

with tempfile.TemporaryDirectory() as tmp:
    log = Path(tmp) / "train_log.jsonl"
    cmd = [sys.executable, "-m", "hybridlib", "train", "--profile", str(run.parent / "profile.yaml"),
           "--strategy", summary["strategy"], "--seed", str(summary["seed"]), "--data", str(run.parent / "data"),
           "--run-dir", tmp]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root)}
    with subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL) as proc:
        while proc.poll() is None and (not log.exists() or len(log.read_text().splitlines()) < len(committed)):
            time.sleep(2)
        proc.terminate()
    again = [json.loads(line) for line in log.read_text().splitlines()][:len(committed)] if log.exists() else []
if len(again) < len(committed):
    sys.exit(f"the training stopped after {len(again)} of {len(committed)} steps (exit code {proc.returncode})")

fields = ("loss", "loss_mono", "loss_cross", "grad_norm")
steps = [{"step": a["step"], **{f: b[f] - a[f] for f in fields if f in a}} for a, b in zip(committed, again)]
save("machine_drift", {
    "run": f"{run.parent.name}/{run.name}", "committed_code_version": summary.get("code_version"),
    "committed_machine": summary.get("machine", "not recorded"),
    "max_abs_difference": {f: max(abs(s[f]) for s in steps) for f in fields if f in steps[0]},
    "per_step_difference": steps})
