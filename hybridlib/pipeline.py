"""The study end to end: execute the notebooks with papermill for a profile's whole grid.

Each task writes its executed notebook and results into the run directory; a task whose marker file
exists is skipped, so an interrupted pipeline resumes where it stopped. A failed task is reported and
the others go on. One pipeline at a time per results directory (a lock file).
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from .config import Profile, load_profile
from .paths import REPO_ROOT

log = logging.getLogger(__name__)
NOTEBOOKS = REPO_ROOT / "notebooks"


@dataclass
class Task:
    notebook: str
    out_dir: Path  # run directory of this task
    done_marker: str  # file in out_dir whose presence means the task finished
    parameters: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.notebook} -> {self.out_dir.name}"

    def done(self) -> bool:
        return (self.out_dir / self.done_marker).is_file()


def tasks(profile: Profile, runs_dir: Path) -> list[Task]:
    """The grid of a profile, in execution order."""
    root = runs_dir / profile.name
    data = root / "data"
    # Notebooks run in notebooks/: paths relative to it keep the executed notebooks portable.
    rel = lambda p: os.path.relpath(p, NOTEBOOKS)  # noqa: E731
    # Marked done by the pairs it writes, which are not committed: a fresh clone rebuilds them (seconds).
    out = [Task("01_data.ipynb", data, "train_pairs.parquet", {"PROFILE": profile.name, "OUT_DIR": rel(data)})]
    for seed in profile.seeds:
        for strategy in profile.strategies:
            run = root / run_name(strategy, seed)
            params = {"PROFILE": profile.name, "DATA_OUT": rel(data), "RUN_DIR": rel(run), "STRATEGY": strategy,
                      "SEED": seed}
            if strategy not in ("zero-shot", "bm25"):
                out.append(Task("02_train.ipynb", run, "train_summary.json", params))
            out.append(Task("03_evaluate.ipynb", run, "results.parquet", params))
    # The comparisons read every run: re-executed whenever anything before them ran.
    for nb in ("04_language_bias.ipynb", "05_compare.ipynb", "06_performance.ipynb"):
        out.append(Task(nb, root, f".{nb}.done", {"PROFILE_DIR": rel(root)}))
    return out


def run_name(strategy: str, seed: int) -> str:
    """A run directory name without characters that paths and URLs dislike: hybrid(0.5), seed 0 -> hybrid-0.5-s0."""
    return f"{strategy.replace('(', '-').replace(')', '')}-s{seed}"


class PipelineLocked(RuntimeError):
    pass


def run(profile_name: str, runs_dir: str | os.PathLike | None = None, dry_run: bool = False) -> dict[str, str]:
    """Execute every unfinished task of the profile; returns task name -> 'done' | 'skipped' | 'failed: ...'."""
    import papermill

    profile = load_profile(profile_name)
    runs_dir = Path(runs_dir or REPO_ROOT / "runs").resolve()
    todo = tasks(profile, runs_dir)
    if dry_run:
        return {t.name: "skipped (done)" if t.done() else f"would run {t.parameters}" for t in todo}
    (runs_dir / profile.name).mkdir(parents=True, exist_ok=True)
    lock_path = runs_dir / profile.name / ".lock"
    lock = open(lock_path, "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise PipelineLocked(f"{lock_path}: another pipeline is running on this results directory; "
                             "wait for it to finish") from None
    status = {}
    try:
        bar = tqdm(todo, desc=f"profile {profile.name}", unit="task")
        ran = False
        for t in bar:
            summary = t.notebook.startswith(("04", "05", "06"))
            if t.done() and not (summary and ran):
                status[t.name] = "skipped"
                continue
            ran = True
            bar.set_postfix_str(t.name)
            t.out_dir.mkdir(parents=True, exist_ok=True)
            if summary:  # a re-run that fails must not leave an earlier success marked done
                (t.out_dir / t.done_marker).unlink(missing_ok=True)
            start = time.perf_counter()
            try:
                papermill.execute_notebook(str(NOTEBOOKS / t.notebook), str(t.out_dir / t.notebook),
                                           parameters=t.parameters, cwd=str(NOTEBOOKS), progress_bar=False,
                                           kernel_name="python3")
                status[t.name] = f"done in {time.perf_counter() - start:.0f} s"
                if summary:
                    (t.out_dir / t.done_marker).touch()
            except Exception as e:  # a failed run is reported; the others go on
                status[t.name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                log.error("%s failed; see %s", t.name, t.out_dir / t.notebook)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    return status
