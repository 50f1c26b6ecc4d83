"""The study end to end: execute a profile's tasks (:mod:`hybridlib.runs`) with papermill, in order.

The resolved profile is written to ``<runs>/<profile>/profile.yaml`` and every notebook reads that file,
so a profile of one's own runs exactly as written and its provenance records it. A task runs when the
run layer says it is not done (never finished, an output missing or changed, its settings or inputs
changed); an executed notebook is written to a temporary file and renamed when it succeeded. A failed
task is reported with the notebook's own error and the tasks that depend on it are not run; the others
go on. One pipeline at a time per results directory (a lock).
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from .cleaning import clean_notebook
from .config import ConfigError, Profile, load_profile
from .estimates import estimate_seconds, measured_ranges, measured_times
from .paths import (
    CHECKOUT,
    NOTEBOOKS,
    REPO_ROOT,
    Locked,
    atomic_write_bytes,
    atomic_write_text,
    default_runs_dir,
    locked,
)
from .runs import Task, adopt, analysis_tasks, tasks
from .stages import RunDir
from .strategy import Strategy

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)
PipelineLocked = Locked


def workdir(runs_dir: Path) -> Path:
    """Where the notebooks execute: notebooks/ of a checkout (their default paths are relative to it), else
    the results directory (an installed package's notebooks sit in site-packages)."""
    return NOTEBOOKS if CHECKOUT else runs_dir


def prepare(profile: str | Profile, runs_dir=None, data_dir: str = "") -> tuple[Profile, Path, list[Task]]:
    """The profile, its resolved file and its tasks (nothing written)."""
    profile = load_profile(profile)
    runs_dir = Path(runs_dir or default_runs_dir()).resolve()
    profile_file = runs_dir / profile.name / "profile.yaml"
    if data_dir:  # handed to the notebooks relative to where they run
        data_dir = os.path.relpath(Path(data_dir).resolve(), workdir(runs_dir))
    return profile, profile_file, tasks(profile, runs_dir, profile_file, workdir(runs_dir), data_dir)


def plan(todo: list[Task]) -> tuple[dict[str, str | None], set[str]]:
    """Task name -> why it must run (None: done), and the done tasks that must run all the same: a run that
    must be evaluated but whose trained model is gone is trained again first. (A task downstream of one
    that runs is checked again when it is reached: what ran may have reproduced its inputs.)"""
    reasons, forced = {t.name: t.check() for t in todo}, set()
    for t in todo:
        missing = [n for n in t.needs if not (t.out_dir / n).exists()]
        for u in t.upstream:  # the upstream task of the same run directory wrote what is missing
            if reasons[t.name] and missing and u.out_dir == t.out_dir and reasons[u.name] is None:
                reasons[u.name] = f"{', '.join(missing)} needed by {t.notebook} is missing"
                forced.add(u.name)
    return reasons, forced


def _run_notebook(source: Path, out: Path, parameters: dict, cwd: Path, threads: int | None = None) -> None:
    """papermill with a kernel that talks to this process over Unix sockets in the temporary directory: no
    TCP ports, no 'Kernel is running over TCP without encryption' warning per task; the socket files are
    removed afterwards. ``threads`` caps the kernel's CPU threads (torch, BLAS, the tokenizer) when several
    tasks share the machine."""
    import glob
    import tempfile

    import papermill
    from jupyter_client.manager import AsyncKernelManager

    ipc = os.path.join(tempfile.gettempdir(), f"hybridlib-kernel-{os.getpid()}-{threading.get_ident()}")
    env = {**os.environ, **thread_env(threads)} if threads else None
    # The kernel process's own log (not the cells' output, which the notebook keeps): shown only when the task
    # fails, so that an interrupt or a kernel's shutdown chatter prints no traceback of a closed socket.
    kernel_log = tempfile.TemporaryFile("w+")

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs):
            super().__init__(transport="ipc", ip=ipc, **kwargs)

        async def _async_pre_start_kernel(self, **kw):
            if env is not None:
                kw["env"] = env
            kw["stderr"] = kernel_log
            return await super()._async_pre_start_kernel(**kw)
    try:
        papermill.execute_notebook(str(source), str(out), parameters=parameters, cwd=str(cwd), progress_bar=False,
                                   kernel_name="python3", language="python", kernel_manager_class=IPCKernelManager)
    except Exception:
        kernel_log.seek(0)
        if text := kernel_log.read().strip():
            log.warning("%s: the kernel's log:\n%s", out.name, text[-4000:])
        raise
    finally:
        kernel_log.close()
        for socket in glob.glob(f"{ipc}-*"):
            os.unlink(socket)


def thread_env(threads: int) -> dict[str, str]:
    """The environment that holds a process to ``threads`` CPU threads."""
    return {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")} | \
        {"TOKENIZERS_PARALLELISM": "true" if threads > 1 else "false"}


GPU_GB_PER_JOB = 4  # a study run peaks at 2-3 GB of GPU memory, the CUDA context included


def auto_jobs() -> int:
    """How many tasks a machine runs at once: on a GPU, as many as its free memory holds at
    ``GPU_GB_PER_JOB`` each, at most one per CPU core (each job's kernel tokenises and steers its GPU work on
    a core); on a CPU, one per 4 cores (a training scales to about 4 threads)."""
    cores = os.cpu_count() or 1
    import torch
    if torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info()
        return max(1, min(cores, int(free / 2**30 // GPU_GB_PER_JOB)))
    return max(1, cores // 4)


def parse_jobs(value: str | int) -> int:
    """``--jobs``: a positive count or ``auto`` (:func:`auto_jobs`)."""
    if value == "auto":
        return auto_jobs()
    try:
        jobs = int(value)
    except (TypeError, ValueError):
        jobs = 0
    if jobs < 1:
        raise ConfigError(f"--jobs {value!r}: a positive number of tasks at once, or 'auto'")
    return jobs


def execute(t: Task, cwd: Path = NOTEBOOKS, threads: int | None = None) -> str:
    """Run one task's notebook in ``cwd`` (its kernel held to ``threads`` CPU threads); record it as done; its
    status line."""
    from papermill.exceptions import PapermillExecutionError

    t.out_dir.mkdir(parents=True, exist_ok=True)
    old, key = t.manifest(), t.key()
    # Outputs that still match their record: kept as they are when the re-run reproduces the same products
    # (a fresh clone regenerating notebook 01's ignored pairs must not rewrite the committed notebook).
    keep = {}
    if old and old.get("key") == key:
        for name, digest in old.get("outputs", {}).items():
            path = t.out_dir / name
            if name not in t.products and path.is_file() and t.integrity(name) == digest:
                keep[name] = path.read_bytes()
    t.manifest_path.unlink(missing_ok=True)  # a failed re-run must not leave an earlier success marked done
    tmp = t.out_dir / f".{Path(t.notebook).stem}.running.ipynb"
    start = time.perf_counter()
    try:
        _run_notebook(NOTEBOOKS / t.notebook, tmp, t.parameters, cwd, threads)
    except Exception as e:  # a failed run is reported with the notebook's own error; the others go on
        failed = t.out_dir / f"{Path(t.notebook).stem}.failed.ipynb"
        if tmp.exists():
            os.replace(tmp, failed)
        why = f"{e.ename}: {e.evalue}" if isinstance(e, PapermillExecutionError) else f"{type(e).__name__}: {e}"
        return f"failed: {why.strip().splitlines()[0] if why.strip() else type(e).__name__} (see {failed})"
    clean_notebook(tmp)  # no warnings, debug lines or machine paths in what the book shows
    os.replace(tmp, t.out_dir / t.notebook)
    (t.out_dir / f"{Path(t.notebook).stem}.failed.ipynb").unlink(missing_ok=True)
    if keep and old is not None and old.get("products") == t.product_digests():
        for name, data in keep.items():
            atomic_write_bytes(t.out_dir / name, data)
    try:
        t.record()
    except ValueError as e:
        return f"failed: {e}"
    return f"done in {time.perf_counter() - start:.0f} s"


IF_INPUTS_CHANGE = "would run: if its inputs change"  # a done task after one that would run
CHANGES = ("would run: settings changed", "would run: after ")  # statuses of tasks whose outputs will differ


def run(profile: str | Profile, runs_dir=None, dry_run: bool = False, adopt_existing: bool = False,
        data_dir: str = "", progress: bool = True, until: str | None = None, seeds: list[int] | None = None,
        strategies: list[str] | None = None, interim: bool = False, jobs: int = 1,
        threads: int | None = None) -> dict[str, str]:
    """Execute every task of the profile that is not done; returns task name -> status ('done in N s',
    'skipped (done)', 'adopted', 'failed: ...', 'not run: ...', or with ``dry_run`` 'would run: why').
    ``until`` (a notebook, e.g. ``03_evaluate``) leaves out the notebooks after it. ``seeds`` and
    ``strategies`` select the runs of a slice of a long study (notebook 01, then those runs' training and
    evaluation; the analysis notebooks wait for a run without them); the profile, and the resolved file
    the notebooks read, stay whole. ``interim``: the analysis notebooks only, over the runs finished so far
    (a long study's answer as it stands; it runs again as more runs land). ``jobs``: tasks at once, each in
    its own kernel (trainings, and the evaluations they feed as soon as they are trained; on one GPU or on
    the CPU cores), with ``threads`` CPU threads each (default: the cores shared out, ``cores // jobs``; one
    job keeps the machine's default). Progress, failures and resumability are per task, as with one job.
    On a CPU the thread count changes results in the last bits; at the same thread count, any ``jobs``
    writes the same outputs."""
    if data_dir and not Path(data_dir).is_dir():
        raise ConfigError(f"data directory {data_dir!r}: no such directory")
    profile, profile_file, todo = prepare(profile, runs_dir, data_dir)
    if jobs > 1 and threads is None:
        threads = max(1, (os.cpu_count() or 1) // jobs)
    todo = select(profile, profile_file, todo, until, seeds, strategies, interim)
    if dry_run:
        return dry_run_statuses(todo, adopt_existing)
    logging.getLogger("papermill").setLevel(logging.WARNING)
    with locked(profile_file.parent / ".lock", "another pipeline is running on this results directory"):
        text = profile.to_yaml()
        if not profile_file.is_file() or profile_file.read_text() != text:
            atomic_write_text(profile_file, text)
        reasons, forced = plan(todo)
        candidates = []
        for t in todo:
            if reasons[t.name] or any(u in candidates for u in t.upstream):
                candidates.append(t)
        bar = tqdm(total=len(candidates), desc=f"profile {profile.name}", unit="task", disable=not progress)
        cwd, lock = workdir(profile_file.parent.parent), threading.Lock()
        status: dict[str, str] = {}
        running: list = []

        def settle(t: Task) -> str:
            """One task's status: not run (an upstream task failed), adopted, skipped (done) or executed."""
            blocked = [u.name for u in t.upstream if status.get(u.name, "").startswith(("failed", "not run"))]
            if blocked:
                return f"not run: {blocked[0]} failed"
            if adopt_existing and adopt(t):
                return "adopted"
            if t.name not in forced and t.check() is None:  # checked now: what ran before may have
                return "skipped (done)"                      # reproduced the inputs it read
            with lock:  # the progress bar names the tasks executing
                running.append(t.name)
                bar.set_postfix_str(", ".join(running))
            try:
                result = execute(t, cwd, threads)
            finally:
                with lock:
                    running.remove(t.name)
            if result.startswith("failed"):
                log.error("%s %s", t.name, result)
            return result

        def settled(t: Task, result: str) -> None:
            status[t.name] = result
            if not profile.keep_models and "model" in t.needs and result.startswith(("done", "skipped", "adopted")):
                shutil.rmtree(RunDir(t.out_dir).model, ignore_errors=True)  # evaluated: nothing reads the model again
            if t in candidates:
                bar.update(1)

        for t, result in schedule(todo, settle, jobs):
            settled(t, result)
        bar.close()
    return {t.name: status[t.name] for t in todo}


def select(profile: Profile, profile_file: Path, todo: list[Task], until: str | None = None,
           seeds: list[int] | None = None, strategies: list[str] | None = None, interim: bool = False) -> list[Task]:
    """The tasks of a slice (:func:`run`'s ``until``, ``seeds``, ``strategies``) or of an interim answer."""
    if until:
        stems = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
        if until not in stems:
            raise ConfigError(f"until={until!r}: not a notebook; one of {', '.join(stems)}")
        todo = [t for t in todo if Path(t.notebook).stem <= until]
    if seeds is not None or strategies is not None:
        wanted = None if strategies is None else {str(Strategy.parse(s)) for s in strategies}
        unknown = sorted((wanted or set()) - {str(s) for s in profile.strategies}) + \
            [str(s) for s in seeds or [] if s not in profile.all_seeds]
        if unknown:
            raise ConfigError(f"--seeds/--strategies: {', '.join(unknown)} not in profile {profile.name}")
        todo = [t for t in todo if t.notebook == "01_data.ipynb" or (
            "STRATEGY" in t.parameters and (seeds is None or t.parameters["SEED"] in seeds)
            and (wanted is None or t.parameters["STRATEGY"] in wanted))]
    if interim:
        if until or seeds is not None or strategies is not None:
            raise ConfigError("--interim runs the analysis notebooks over every finished run: no --until, "
                              "--seeds or --strategies with it")
        reasons, _ = plan(todo)
        finished = [t for t in todo if t.notebook == "03_evaluate.ipynb" and reasons[t.name] is None]
        if not finished:
            raise ConfigError(f"--interim: no run of profile {profile.name} has finished yet")
        todo = analysis_tasks(profile_file.parent, workdir(profile_file.parent.parent), finished)
    return todo


def dry_run_statuses(todo: list[Task], adopt_existing: bool = False) -> dict[str, str]:
    """What :func:`run` would do with each task, and why."""
    reasons, _ = plan(todo)
    out: dict[str, str] = {}
    for t in todo:  # in order, so "pending" travels down the whole chain
        pending = any(out.get(u.name, "skipped (done)") != "skipped (done)" for u in t.upstream)
        # an upstream task re-run with other settings writes other outputs: this one surely runs after it
        changed = next((u.name for u in t.upstream if out.get(u.name, "").startswith(CHANGES)), None)
        adoptable = adopt_existing and not t.manifest_path.exists() and t.outputs_valid() is None
        out[t.name] = "would adopt (outputs there, no manifest)" if adoptable else \
            f"would run: {reasons[t.name]}" if reasons[t.name] else \
            f"would run: after {changed}" if changed else \
            IF_INPUTS_CHANGE if pending else "skipped (done)"
    return out


def schedule(todo: list[Task], settle, jobs: int = 1):
    """Settle every task of ``todo`` (``settle(task) -> status``), at most ``jobs`` at once, each once its
    upstream tasks in ``todo`` are settled; the earliest ready task in ``todo``'s order goes first, so an
    evaluation starts as soon as its training ends. Yields (task, status) as each ends, in the main thread.
    One job: ``todo``'s order, in this thread."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    if jobs == 1:
        for t in todo:
            yield t, settle(t)
        return

    names, waiting, done = {t.name for t in todo}, list(todo), set()
    running: dict = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while waiting or running:
            for t in [t for t in waiting if all(u.name in done or u.name not in names for u in t.upstream)]:
                if len(running) == jobs:
                    break
                waiting.remove(t)
                running[pool.submit(settle, t)] = t
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in [f for f in running if f in finished]:  # in submission order
                t = running.pop(future)
                done.add(t.name)
                yield t, future.result()


def progress(profile: str | Profile, runs_dir=None) -> pd.DataFrame:
    """Where a study stands: one row per strategy (profile order), one column per seed; a cell is 'done'
    (trained and evaluated), 'trained' (evaluation to run) or '-' (to run). Untrained baselines are
    evaluated once, under the first seed, and their other cells are empty."""
    import pandas as pd
    profile, _, todo = prepare(profile, runs_dir)
    reasons, _ = plan(todo)
    cells: dict[tuple[str, int], str] = {}
    for t in todo:
        if "STRATEGY" in t.parameters:
            key, done = (t.parameters["STRATEGY"], t.parameters["SEED"]), reasons[t.name] is None
            if t.notebook == "02_train.ipynb":
                cells[key] = "trained" if done else "-"
            elif done or key not in cells:
                cells[key] = "done" if done else "-"
    return pd.DataFrame([[cells.get((str(s), seed), "") for seed in profile.all_seeds] for s in profile.strategies],
                        index=[str(s) for s in profile.strategies],
                        columns=[f"seed {seed}" for seed in profile.all_seeds]).rename_axis("strategy")


def estimate(profile, runs_dir, names: list[str], reference: Path | None = None) -> str:
    """One line: how many of the profile's tasks would run and about how long they take, scaled from the
    notebook times measured in ``reference``: by default the profile's own finished runs (those made on this
    machine where there are some), else the committed cpu run (the embedded model on a 2-core CPU)."""
    profile, _, todo = prepare(profile, runs_dir)
    todo = [t for t in todo if t.name in names]
    trained = sum(t.notebook == "02_train.ipynb" for t in todo)
    if reference is None:
        own = Path(runs_dir or default_runs_dir()) / profile.name
        reference = own if any(own.glob("*/02_train.ipynb")) and any(own.glob("*/03_evaluate.ipynb")) \
            else REPO_ROOT / "runs" / "cpu"
    times = measured_times(reference)
    seconds, here = estimate_seconds(todo, times)
    where = f"this machine's {here} notebook time(s)" if here else "no notebook time from this machine yet"
    if times is not None:
        where += f": {measured_ranges(times)}"
    when = "" if seconds is None else (f"; about {seconds / 3600:.1f} hours at the speed measured in "
                                       f"{os.path.relpath(reference)} ({where})")
    return f"{len(todo)} task(s) would run, {trained} of them training{when}"
