"""The study on one GPU: the `study` profile's tasks per minute with one job and with K jobs at once, the GPU's
busy fraction meanwhile, and the whole study's time extrapolated from the slice measured with K jobs.

    python benchmarks/study_gpu.py [--jobs K|auto] [--runs-dir DIR]

Notebook 01 runs first (not timed). One job then trains and evaluates seed 0's ``xx``; K jobs train and
evaluate every trained strategy of seed 1 (28 runs: a fifth of the study's 140 trainings, every kind of arm in
the study's proportions). The study is 5 such seeds plus two untrained evaluations; the extrapolation scales
the K-job slice's wall time by tasks (282 / 56). Busy fraction: NVML's utilisation (the share of time a
kernel ran) sampled every 0.2 s. Writes results/study_cuda.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import save  # noqa: E402


class Busy:
    """The GPU's utilisation and memory in use, sampled in a thread while the block runs."""

    def __enter__(self):
        self.samples, self.memory, self.stop, self.start = [], [], threading.Event(), time.perf_counter()
        try:
            import pynvml
            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVIDIA GPU (a trial of this script on a CPU): timings only
            self.thread = None
            return self

        def sample():
            while not self.stop.wait(0.2):
                self.samples.append(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100)
                self.memory.append(pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**30)
        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        self.stop.set()
        if self.thread:
            self.thread.join()

    def figures(self) -> dict:
        return {"wall_s": self.seconds,
                "gpu_busy_fraction": sum(self.samples) / len(self.samples) if self.samples else None,
                "gpu_memory_peak_gb": max(self.memory, default=0.0), "samples": len(self.samples)}


def slice_run(profile, runs_dir: Path, jobs: int, seeds: list[int], strategies: list[str]) -> dict:
    from hybridlib.analysis import notebook_durations
    from hybridlib.pipeline import run
    with Busy() as busy:
        status = run(profile, runs_dir, seeds=seeds, strategies=strategies, jobs=jobs)
    ran = {k: v for k, v in status.items() if not k.startswith("01_data")}
    failed = {k: v for k, v in ran.items() if not v.startswith("done")}
    times = notebook_durations(runs_dir / profile.name)
    runs = {k.split(" -> ")[1] for k in ran}
    times = times[times.run.isin(runs)]
    summaries = [json.loads(f.read_text()) for r in runs if (f := runs_dir / profile.name / r / "train_summary.json").is_file()]
    out = {"jobs": jobs, "seeds": seeds, "strategies": strategies, "tasks": len(ran),
           "trainings": sum(k.startswith("02_train") for k in ran), **busy.figures(),
           "tasks_per_minute": len(ran) / busy.seconds * 60, "failed": failed,
           "precision": sorted({s["precision"] for s in summaries}),
           "training_pairs_per_s": {s["strategy"]: s["pairs_per_s"] for s in summaries},
           "notebook_seconds": {nb: {"median": float(g.median()), "min": float(g.min()), "max": float(g.max())}
                                for nb, g in times.groupby("notebook").seconds}}
    print(json.dumps(out, indent=1), flush=True)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", default="auto")
    parser.add_argument("--runs-dir", default=None)
    parser.add_argument("--profile", default="study", help="a profile of two seeds or more (default: study)")
    args = parser.parse_args()
    import torch

    from hybridlib.config import load_profile
    from hybridlib.pipeline import parse_jobs, run
    runs_dir = Path(args.runs_dir or tempfile.mkdtemp(prefix="study-gpu-"))
    jobs = parse_jobs(args.jobs)
    study = load_profile(args.profile)
    trained = [str(s) for s in study.strategies if s.trains]
    start = time.perf_counter()
    status = run(study, runs_dir, until="01_data")
    assert all(v.startswith(("done", "skipped")) for v in status.values()), status
    data_s = time.perf_counter() - start
    result = {"profile": study.name, "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
              "date": time.strftime("%Y-%m-%d"), "notebook_01_s": data_s}
    result["one_job"] = one = slice_run(study, runs_dir, 1, study.seeds[:1], trained[:1])
    save("study", result)  # kept if the K-job slice is cut short
    many = slice_run(study, runs_dir, jobs, study.seeds[1:2], trained)
    study_tasks = len(study.seeds) * len(trained) * 2 + sum(not s.trains for s in study.strategies)
    minutes = many["wall_s"] / many["tasks"] * study_tasks / 60
    save("study", {
        **result, "k_jobs": {**many, "complete": not many["failed"]},
        "throughput_ratio": many["tasks_per_minute"] / one["tasks_per_minute"],
        "study_tasks": study_tasks,
        "study_minutes_extrapolated": minutes,
        "extrapolation": f"the {many['tasks']}-task slice at {jobs} jobs ({many['wall_s']:.0f} s) scaled by tasks "
                         f"to the study's {study_tasks}",
    })


if __name__ == "__main__":
    main()
