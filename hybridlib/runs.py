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
import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import Profile
from .paths import NOTEBOOKS, REPO_ROOT, atomic_write_text
from .store import write_json

log = logging.getLogger(__name__)
SUMMARIES = ("04_language_bias.ipynb", "05_compare.ipynb", "06_performance.ipynb")
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
        out = {}
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


NOISE = re.compile(r"Warning|DEBUG:|^\s*warnings\.warn|from \.autonotebook import", re.M)


COLAB_BADGE = re.compile(r"(colab\.research\.google\.com/github/[^/]+/[^/]+/blob/[^/]+/)notebooks/[\w.-]+\.ipynb")
REMOVED = ("parameters", "injected-parameters")  # tags of the cells the book leaves out


def _setup_cell(name: str) -> list[str] | None:
    """The Colab setup cell's source in the source notebook ``name``."""
    from .paths import NOTEBOOKS
    try:
        cells = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return None
    return next((c["source"] for c in cells if c["cell_type"] == "code" and "google.colab" in "".join(c["source"])),
                None)


def _relocated(params: dict, root: Path | None) -> dict[str, str]:
    """Path parameters of a notebook that ran from another checkout's notebooks/ (a long study run from a
    pinned worktree into the main checkout's runs): each value -> the same path seen from ``root``'s
    notebooks/, where a reader re-runs it."""
    if root is None:
        return {}
    moved = {}
    for value in params.values():
        if isinstance(value, str) and value and not os.path.isabs(value):
            target = (NOTEBOOKS / value).resolve()
            if target.exists() and target.is_relative_to(root):
                moved[value] = os.path.relpath(target, root / "notebooks")
    return moved


def clean_notebook(path: Path) -> bool:
    """Prepare an executed notebook for readers. Dropped: stderr lines that are warnings or debug logging,
    and the machine's own paths (the repository's parent, the home directory, papermill's absolute input
    and output paths; path parameters are given as seen from the checkout the run lives in). Left out of
    the book (tag ``remove-cell``): the parameters cells and the Colab setup cell. The Colab badge opens
    this very notebook, as the book's launch button does, and its setup cell is the source notebook's.
    Returns whether anything changed; written atomically."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    roots = sorted({str(REPO_ROOT.parent), str(Path.home())}, key=len, reverse=True)
    final = path.with_name(re.sub(r"^\.(.+)\.running\.ipynb$", r"\1.ipynb", path.name))
    root = next((d for d in final.resolve().parents if (d / "pyproject.toml").is_file() and (d / "notebooks").is_dir()), None)
    here = os.path.relpath(final.resolve(), root) if root else None  # the checkout the runs live in, not the code's
    setup = _setup_cell(final.name)
    params = nb.get("metadata", {}).get("papermill", {}).get("parameters", {})
    moved = _relocated(params, root)
    # the title names the run's strategy, or the profile an analysis notebook read
    named = params.get("STRATEGY") or (Path(params["PROFILE_DIR"]).name if params.get("PROFILE_DIR") else None)
    before = json.dumps(nb, sort_keys=True)
    params.update({k: moved.get(v, v) for k, v in params.items() if isinstance(v, str)})
    for i, cell in enumerate(nb.get("cells", [])):
        if i == 0 and named and cell["cell_type"] == "markdown" and cell["source"]:
            title = "".join(cell["source"]).split("\n", 1)
            if title[0].startswith("# ") and not title[0].endswith(f" ({named})"):
                cell["source"] = [f"{title[0]} ({named})\n", *title[1:]]
        source = "".join(cell.get("source", ""))
        tags = cell.get("metadata", {}).get("tags", [])
        colab = cell["cell_type"] == "code" and "google.colab" in source
        if colab and setup is not None and "".join(setup) != source:
            cell["source"] = setup
        if "injected-parameters" in tags and moved:
            for a, b in moved.items():
                source = source.replace(json.dumps(a), json.dumps(b))
            cell["source"] = source.splitlines(keepends=True)
        if (colab or set(tags) & set(REMOVED)) and "remove-cell" not in tags:
            cell.setdefault("metadata", {})["tags"] = [*tags, "remove-cell"]
        badge = COLAB_BADGE.sub(lambda m: m.group(1) + here, source) if cell["cell_type"] == "markdown" and here else source
        if badge != source:
            cell["source"] = badge.splitlines(keepends=True)
    changed = json.dumps(nb, sort_keys=True) != before
    for cell in [c for c in nb.get("cells", []) if "outputs" in c]:
        kept = []
        for out in cell["outputs"]:
            if out.get("output_type") == "stream":
                text = "".join(out["text"]) if isinstance(out["text"], list) else out["text"]
                lines = [l for l in text.splitlines(keepends=True) if not (out.get("name") == "stderr" and NOISE.search(l))]
                clean = "".join(lines)
                for root in roots:
                    clean = clean.replace(root + "/", "")
                for a in sorted(moved, key=len, reverse=True):
                    clean = clean.replace(a, moved[a])
                if clean != text:
                    changed = True
                if not clean:
                    continue
                out["text"] = clean
            kept.append(out)
        cell["outputs"] = kept
    meta = nb.get("metadata", {}).get("papermill", {})
    # papermill records absolute paths: the source notebook's is kept relative to the code's checkout, the
    # executed one's to the checkout it lives in
    paths = {"output_path": here} if here and "output_path" in meta else {}
    for key in ("input_path", "output_path"):
        value = meta.get(key)
        if isinstance(value, str) and os.path.isabs(value):
            paths.setdefault(key, re.sub(r"\.([^/]+)\.running\.ipynb$", r"\1.ipynb", os.path.relpath(value, REPO_ROOT)))
    changed |= any(meta[k] != v for k, v in paths.items())
    meta.update(paths)
    if changed:
        atomic_write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


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


def tasks(profile: Profile, runs_dir: Path, profile_file: Path, notebooks: Path, data_dir: str = "") -> list[Task]:
    """The grid of a profile, in execution order. Paths handed to notebooks are relative to ``notebooks``
    (where they execute), so the executed notebooks hold no path of the machine that ran them."""
    root = runs_dir / profile.name
    rel = lambda p: os.path.relpath(p, notebooks)  # noqa: E731
    data = root / "data"
    first = Task("01_data.ipynb", data, {"PROFILE": rel(profile_file), "DATA_DIR": data_dir, "OUT_DIR": rel(data)},
                 outputs=("01_data.ipynb", "train_pairs.parquet", "heldout_pairs.parquet", "data_summary.json",
                          "collections"),
                 products=("train_pairs.parquet", "heldout_pairs.parquet", "collections"),
                 config={**profile.stage("data"), "data_sha256": data_checksums_if_present(str(notebooks / data_dir) if data_dir else "")})
    out, evaluated = [first], []
    for seed in profile.seeds:
        for strategy in profile.strategy_list:
            if not strategy.trains and seed != profile.seeds[0]:
                continue  # zero-shot and BM25 are deterministic: evaluated once, paired with every seed
            run = root / strategy.run_name(seed)
            params = {"PROFILE": rel(profile_file), "DATA_OUT": rel(data), "RUN_DIR": rel(run),
                      "STRATEGY": str(strategy), "SEED": seed}
            upstream = [first]
            if strategy.trains:
                from .trainer import run_config
                train = Task("02_train.ipynb", run, params, ("02_train.ipynb", "train_summary.json", "train_log.jsonl"),
                             ("train_summary.json#weights_sha256", "train_log.jsonl"),
                             run_config(profile, strategy, seed), [first])
                out.append(train)
                upstream = [first, train]
            evaluate = Task("03_evaluate.ipynb", run, {**params, "DATA_DIR": data_dir},
                            ("03_evaluate.ipynb", "results.parquet", "per_query.parquet", "preference.parquet",
                             "eval_meta.json"), ("results.parquet", "per_query.parquet", "preference.parquet"),
                            {"strategy": str(strategy), "seed": seed, **profile.stage("eval")}, upstream,
                            needs=("model",) if strategy.trains else ())
            out.append(evaluate)
            evaluated.append(evaluate)
    return out + analysis_tasks(root, notebooks, evaluated)


def analysis_tasks(root: Path, notebooks: Path, evaluated: list[Task]) -> list[Task]:
    """Notebooks 04-06 over the runs of ``evaluated`` (evaluation tasks; their trainings come along): all of
    a profile's, or those finished so far (an interim answer, whose key changes as more runs land)."""
    trained = [u for t in evaluated for u in t.upstream if u.notebook == "02_train.ipynb"]
    bench = {p.name: sha256_file(p) for p in sorted(BENCHMARKS.glob("*.json"))} if BENCHMARKS.is_dir() else {}
    out = []
    for nb in SUMMARIES:
        config, upstream = {"runs": [t.out_dir.name for t in evaluated]}, list(evaluated)
        params = {"PROFILE_DIR": os.path.relpath(root, notebooks), "RUNS": config["runs"]}
        if nb != "04_language_bias.ipynb":
            upstream += trained
        if nb == "06_performance.ipynb":
            params["BENCHMARKS"] = os.path.relpath(BENCHMARKS, notebooks)
            config["benchmarks"] = bench
        out.append(Task(nb, root, params, (nb,), (), config, upstream))
    return out


def on_this_machine(times):
    """Which rows of :func:`~hybridlib.analysis.notebook_durations`' table were measured on this machine, as
    the run records it (older runs record none). This machine means every field of
    :func:`~hybridlib.store.machine` equal (CPU, vector instructions, cores, threads, Python, torch, GPU): a
    change to any of them counts as another machine."""
    from .store import machine
    here = machine()
    return times.machine.map(lambda m: m == here).astype(bool)


def measured_times(reference: Path):
    """The notebook times an estimate scales from: :func:`~hybridlib.analysis.notebook_durations`' table for a
    finished profile directory (``reference``), only this machine's rows for a notebook that has some (a study
    may run on machines 2.8x apart), with ``here``, and for a training its ``pairs`` and ``frozen`` (word
    embeddings frozen) from its ``train_summary.json``; None without any."""
    from .analysis import notebook_durations
    times = notebook_durations(reference) if reference.is_dir() else None
    if times is None or times.empty:
        return None
    here = on_this_machine(times)
    times = times.assign(here=here)[here | ~here.groupby(times.notebook).transform("any")]
    train = times.notebook == "02 train"
    summary = {r: json.loads((reference / r / "train_summary.json").read_text()) for r in times.run[train]}
    return times.assign(pairs=times.run.map(lambda r: summary.get(r, {}).get("pairs_seen")).where(train),
                        frozen=times.run.map(lambda r: summary.get(r, {}).get("config", {}).get("freeze_embeddings"))
                        .where(train))


def measured_ranges(times) -> str:
    """'02 train, 3,072 pairs 5.5-8.5 min (18); ...': the range of every kind of notebook time in
    :func:`measured_times`' table, a training's kind being its pairs and whether the embeddings were trained."""
    def kind(r):
        if r.notebook != "02 train":
            return r.notebook
        return f"{r.notebook}, {int(r.pairs):,} pairs" + (", frozen=0" if r.frozen in (False,) else "")
    minutes = (times.seconds / 60).groupby(times.apply(kind, axis=1)).agg(["min", "max", "count"])
    return "; ".join(f"{k} {m['min']:.1f}-{m['max']:.1f} min ({m['count']:.0f})" for k, m in minutes.iterrows())


def estimate_seconds(todo: list[Task], times) -> tuple[float | None, int]:
    """Wall time of ``todo`` scaled from :func:`measured_times`' table: training by training pairs, at the
    median speed of the trainings that froze the word embeddings as it does (training them too halves the
    speed) or of all where none did; every other notebook by its median; None without a table. Also returns
    how many of the times were measured on this machine."""
    if times is None:
        return None, 0
    median = times.groupby("notebook")["seconds"].median()
    train = times[times.notebook == "02 train"]
    per_pair = train.seconds / train.pairs
    total = 0.0
    for t in todo:
        if t.notebook == "02_train.ipynb":
            same = per_pair[train.frozen == t.config.get("freeze_embeddings")]
            speeds = sorted(same if len(same) else per_pair)
            total += speeds[len(speeds) // 2] * t.config["budget_pairs"]
        else:
            total += float(median.get(Path(t.notebook).stem.replace("_", " ", 1), 0.0))
    return total, int(times.here.sum())


def adopt(task: Task) -> bool:
    """Record a task whose outputs are all there but which has no manifest (finished before the run layer
    kept manifests) as done with the current key; True when recorded."""
    if task.manifest_path.exists() or task.outputs_valid() is not None:
        return False
    if any(u.check() is not None for u in task.upstream):
        return False
    task.record()
    return True

