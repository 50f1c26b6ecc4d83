"""The run layer: the tasks of a profile's study, the files each writes, and when each counts as done.

A task is one notebook executed over one directory. It counts as done only when its manifest
(``.<notebook stem>.json`` beside its outputs) exists and

- records the same **key**: a hash of the task's configuration (the profile fields of its stage, its
  strategy and seed) and of the digests of the upstream outputs it reads, so a changed setting or a
  changed input re-runs that task and what depends on it, and nothing else;
- every output it lists exists and has the digest recorded when the task finished (a truncated,
  emptied or edited file is not done): the SHA-256 of its bytes, or for a product (below) of its content.

Upstream outputs enter a key by the digest of their content, not their bytes: a table's digest ignores
its file metadata (which names the code version), a training run's is the hash of the weights it
produced. So regenerating an ignored output (notebook 01's pairs on a fresh clone) does not invalidate
the committed runs built on it, as long as it comes out the same.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .config import Profile
from .errors import ConfigError, TrainingError
from .paths import REPO_ROOT, atomic_write_text
from .stages import DATA, EVALUATE, SUMMARIES, TRAIN, RunDir
from .store import write_json
from .strategy import Strategy

log = logging.getLogger(__name__)
BENCHMARKS = REPO_ROOT / "benchmarks" / "results"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def content_digest(out_dir: Path, product: str) -> str:
    """The digest of what a product holds: a table's data (without file metadata), every table of a
    directory, a JSON field (``file.json#field``), or a file's bytes. Raises ``ValueError`` naming the file
    when it is missing or does not parse."""
    name, _, key = product.partition("#")
    path = out_dir / name
    try:
        if key:
            value = json.loads(path.read_text(encoding="utf-8"))[key]
            return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()
        if path.is_dir():
            parts = sorted(p for p in path.rglob("*.parquet"))
            if not parts:
                raise ValueError("an empty directory")
            return hashlib.sha256("".join(f"{p.relative_to(path)}:{content_digest(p.parent, p.name)}"
                                          for p in parts).encode()).hexdigest()
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            table = pq.read_table(path).replace_schema_metadata(None)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()
        return sha256_file(path)
    except Exception as e:
        raise ValueError(f"{path}: {type(e).__name__}: {e}") from None


@dataclass
class Task:
    notebook: str
    out_dir: Path
    parameters: dict
    outputs: tuple[str, ...]  # files (or directories of tables) the notebook writes, relative to out_dir
    products: tuple[str, ...]  # what downstream tasks read (see content_digest): their digests key the downstream
    config: dict  # the settings that determine the outputs
    upstream: list[Task] = field(default_factory=list)
    needs: tuple[str, ...] = ()  # files of its run directory it needs to run (not to be done): a trained model

    @property
    def name(self) -> str:
        return f"{self.notebook} -> {self.out_dir.name}"

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / f".{Path(self.notebook).stem}.json"

    def manifest(self) -> dict | None:
        try:
            return json.loads(self.manifest_path.read_text())
        except (OSError, ValueError):
            return None

    def inputs(self) -> dict:
        """Upstream products and their digests, as the upstream manifests recorded them."""
        out = {}
        for u in self.upstream:
            recorded = (u.manifest() or {}).get("products", {})
            out[f"{u.out_dir.name}/{u.notebook}"] = {p: recorded.get(p) for p in u.products}
        return out

    def key(self) -> str:
        blob = json.dumps({"notebook": self.notebook, "config": self.config, "inputs": self.inputs()},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def check(self) -> str | None:
        """None when done; otherwise why the task must run."""
        m = self.manifest()
        if m is None:
            return "never finished" if not self.manifest_path.exists() else f"{self.manifest_path.name} unreadable"
        for name, digest in m.get("outputs", {}).items():
            if not (self.out_dir / name).exists():
                return f"output {name} missing"
            try:
                if self.integrity(name) != digest:
                    return f"output {name} changed since it was written"
            except ValueError as e:
                return f"output unreadable: {e}"
        if set(m.get("outputs", {})) != set(self.outputs):
            return "its outputs differ from what this version writes"
        if m.get("key") != self.key():
            now, then = json.loads(json.dumps(self.config, default=str)), m.get("config", {})
            changed = [k for k in sorted(set(now) | set(then)) if now.get(k) != then.get(k)]
            return f"settings changed ({', '.join(changed)})" if changed else "an input changed"
        return None

    def outputs_valid(self) -> str | None:
        """None when every output exists and its products parse; else what is wrong."""
        for name in self.outputs:
            path = self.out_dir / name
            if not path.exists():
                return f"output {name} missing"
            if path.is_file() and path.stat().st_size == 0:
                return f"output {path} is empty"
            if path.suffix == ".ipynb":
                try:
                    notebook = json.loads(path.read_text(encoding="utf-8"))
                    failed = notebook["metadata"].get("papermill", {}).get("exception")
                    cells = notebook["cells"]
                except (ValueError, KeyError, TypeError, AttributeError) as e:
                    return f"output {path} is not a notebook ({type(e).__name__}: {e})"
                if failed or not cells:
                    return f"output {path} {'stopped with an error' if failed else 'has no cells'}"
        for product in self.products:
            try:
                content_digest(self.out_dir, product)
            except ValueError as e:
                return str(e)
        return None

    def product_digests(self) -> dict[str, str | None]:
        """The content digest of each product as it is now (None for one that is missing or does not parse)."""
        out: dict[str, str | None] = {}
        for p in self.products:
            try:
                out[p] = content_digest(self.out_dir, p)
            except ValueError:
                out[p] = None
        return out

    def record(self) -> None:
        """Write the manifest: the task finished with this key, these outputs and products."""
        problem = self.outputs_valid()
        if problem:
            raise ValueError(f"{self.name}: finished without its outputs: {problem}")
        write_json({"notebook": self.notebook, "key": self.key(), "config": self.config, "inputs": self.inputs(),
                    "outputs": {name: self.integrity(name) for name in self.outputs},
                    "products": self.product_digests()}, self.manifest_path)

    def integrity(self, name: str) -> str:
        """An output's digest: its content for a product (stable when regenerated), else its bytes."""
        path = self.out_dir / name
        return content_digest(self.out_dir, name) if name in self.products or path.is_dir() else sha256_file(path)


def data_checksums_if_present(data_dir: str | None) -> dict:
    """The benchmark files' checksums where they are on disk (none downloaded for this)."""
    from .data import SOURCES, DataError, data_file
    out = {}
    for name in ("mlqa", "xquad-r", "mlqa-r", "tydi-dev"):
        for lang in SOURCES[name].languages:
            try:
                out[SOURCES[name].relpath(lang)] = sha256_file(data_file(name, lang, data_dir or None, download=False))
            except (DataError, FileNotFoundError, OSError):
                return {}
    return out


def run_config(profile: Profile, strategy: Strategy, seed: int) -> dict:
    """What a training run's weights depend on: the strategy, the seed and the training fields of the
    profile as the strategy's options set them (``Profile.trained_with``)."""
    return {"strategy": str(strategy), "seed": seed, **profile.trained_with(strategy).stage("train")}


def evaluated_runs(profile: Profile) -> list[tuple[Strategy, int]]:
    """Every (strategy, seed) the profile evaluates, in execution order: a trained strategy under each of its
    seeds (``Profile.seeds_of``), an untrained one (zero-shot, BM25: deterministic) once, under the first seed."""
    return [(s, seed) for seed in profile.all_seeds for s in profile.strategies
            if seed in profile.seeds_of(s) and (s.trains or seed == profile.seeds[0])]


def tasks(profile: Profile, runs_dir: Path, profile_file: Path, notebooks: Path, data_dir: str = "") -> list[Task]:
    """The grid of a profile, in execution order. Paths handed to notebooks are relative to ``notebooks``
    (where they execute), so the executed notebooks hold no path of the machine that ran them."""
    root = runs_dir / profile.name
    rel = lambda p: os.path.relpath(p, notebooks)  # noqa: E731
    data = root / "data"
    task = lambda stage, out_dir, params, config, upstream=(), needs=(): Task(  # noqa: E731
        stage.notebook, out_dir, stage.arguments(**params), stage.outputs, stage.products, config, list(upstream), needs)
    first = task(DATA, data, {"profile": rel(profile_file), "data_dir": data_dir, "out_dir": rel(data), "seed": 0},
                 {**profile.stage("data"),
                  "data_sha256": data_checksums_if_present(str(notebooks / data_dir) if data_dir else "")})
    out, evaluated = [first], []
    for strategy, seed in evaluated_runs(profile):
        run = root / strategy.run_name(seed)
        params = {"profile": rel(profile_file), "data_out": rel(data), "run_dir": rel(run),
                  "strategy": str(strategy), "seed": seed}
        upstream = [first]
        if strategy.trains:
            out.append(task(TRAIN, run, params, run_config(profile, strategy, seed), [first]))
            upstream.append(out[-1])
        evaluate = task(EVALUATE, run, {**params, "data_dir": data_dir},
                        {"strategy": str(strategy), "seed": seed, **profile.stage("eval")}, upstream,
                        needs=(RunDir.MODEL,) if strategy.trains else ())
        out.append(evaluate)
        evaluated.append(evaluate)
    return out + analysis_tasks(root, notebooks, evaluated)


def analysis_tasks(root: Path, notebooks: Path, evaluated: list[Task]) -> list[Task]:
    """Notebooks 04-06 over the runs of ``evaluated`` (evaluation tasks; their trainings come along): all of
    a profile's, or those finished so far (an interim answer, whose key changes as more runs land)."""
    trained = [u for t in evaluated for u in t.upstream if u.notebook == TRAIN.notebook]
    bench = {p.name: sha256_file(p) for p in sorted(BENCHMARKS.glob("*.json"))} if BENCHMARKS.is_dir() else {}
    out = []
    for stage in SUMMARIES:
        runs = [t.out_dir.name for t in evaluated]
        params: dict = {"profile_dir": os.path.relpath(root, notebooks), "runs": runs}
        config: dict = {"runs": runs}
        if stage.notebook == "06_performance.ipynb":
            params["benchmarks"] = os.path.relpath(BENCHMARKS, notebooks)
            config["benchmarks"] = bench
        upstream = evaluated + (trained if stage.notebook != "04_language_bias.ipynb" else [])
        out.append(Task(stage.notebook, root, stage.arguments(**params), stage.outputs, (), config, upstream))
    return out


def read_entries(path: Path) -> list[dict]:
    """The log's entries; a torn last line (a kill mid-write) is dropped, a bad line elsewhere is an error."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    entries = []
    for i, line in enumerate(lines):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                log.warning("%s: dropped a torn last line (line %d)", path, i + 1)
                break
            raise TrainingError(f"{path}: line {i + 1} is not JSON ({line[:60]!r})") from None
    return entries


class StepLog:
    """A run's per-step log, one JSON line a step, flushed as written. Resuming at ``step`` keeps the lines up
    to it (the checkpoint's) and rewrites the rest; 0 starts a new log."""

    def __init__(self, path: Path, step: int = 0):
        kept = [e for e in read_entries(path) if e["step"] <= step] if step else []
        atomic_write_text(path, "".join(json.dumps(e) + "\n" for e in kept))
        self.file = open(path, "a")

    def write(self, entry: dict) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_log(run_dir: str | os.PathLike) -> pd.DataFrame:
    """The per-step training log of a run as a table."""
    path = RunDir(run_dir).train_log
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training log (has the run been trained?)")
    return pd.DataFrame(read_entries(path))


def trained(run_dir: str | os.PathLike, config: dict) -> dict | None:
    """The summary of a training run finished with ``config``; None when unfinished. A run finished with
    other settings is an error: its results would be reported under settings that did not produce them. A
    finished run whose log lost steps is an error too: its curves could not be redrawn."""
    run = RunDir(run_dir)
    if not run.train_summary.is_file():
        return None
    try:
        summary = json.loads(run.train_summary.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TrainingError(f"{run.train_summary}: unreadable ({e}); delete it to train the run again") from None
    old = summary.get("config", {})
    diff = [f"{k}: finished with {old[k]!r}, now {v!r}" for k, v in config.items() if k in old and old[k] != v]
    if diff:
        raise ConfigError(f"{run.path}: this run finished with other settings ({'; '.join(diff)}); "
                          "use another run directory, or delete this one to train again")
    if not run.model.is_dir():
        return None
    steps = sorted({e.get("step", 0) for e in read_entries(run.train_log)})
    if steps != list(range(1, summary["steps"] + 1)):
        raise TrainingError(f"{run.train_log}: holds {len(steps)} of the finished run's {summary['steps']} steps "
                            f"(last {steps[-1] if steps else 'none'}): lost or damaged; its curves cannot be "
                            "redrawn without training again: delete the run directory to do so")
    return summary


def adopt(task: Task) -> bool:
    """Record a task whose outputs are all there but which has no manifest (finished before the run layer
    kept manifests) as done with the current key; True when recorded."""
    if task.manifest_path.exists() or task.outputs_valid() is not None:
        return False
    if any(u.check() is not None for u in task.upstream):
        return False
    task.record()
    return True

