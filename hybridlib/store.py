"""Result files: tables (Parquet) and JSON, written atomically (temporary file, then rename), each carrying
its provenance (code version, model and weights hash, data checksums, profile, seed): a Parquet table in
its file metadata (:func:`read_meta`), a JSON file as fields."""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
from pathlib import Path

import pandas as pd

from . import __version__
from .data import SOURCES, data_file
from .errors import HybridError
from .paths import atomic_write_bytes, atomic_write_text

META_KEY = b"hybridlib"


def write_table(df: pd.DataFrame, path: str | Path, meta: dict | None = None) -> Path:
    """Write ``df`` as Parquet, with ``meta`` (provenance) stored in the file's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    table = pa.Table.from_pandas(df, preserve_index=False)
    if meta is not None:
        table = table.replace_schema_metadata({**table.schema.metadata, META_KEY: json.dumps(meta, default=str)})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return atomic_write_bytes(path, buf.getvalue())


def read_meta(path: str | Path) -> dict:
    """The provenance stored in a table written by :func:`write_table` ({} when none)."""
    import pyarrow.parquet as pq
    raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
    return json.loads(raw) if raw else {}


class TableError(HybridError, ValueError):
    """A table that cannot be read, or lacks what its reader needs; the message names the file."""


def read_table(path: str | Path, required: tuple[str, ...] = ()) -> pd.DataFrame:
    """A parquet table; one that does not parse (truncated, overwritten) or whose ``required`` columns are
    missing or hold empty values is a TableError naming the file, the column and the first bad row."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing result table")
    try:
        table = pd.read_parquet(path)
    except Exception as e:  # pyarrow reports a damaged file in many types, none of them naming it
        raise TableError(f"{path}: unreadable table ({type(e).__name__}: {str(e)[:200]}); it is a pipeline "
                         "output: delete it and run the notebook that writes it again") from None
    missing = [c for c in required if c not in table]
    if missing:
        raise TableError(f"{path}: no column {missing} (columns: {list(table.columns)})")
    for c in required:
        bad = table[c].isna()
        if pd.api.types.is_string_dtype(table[c]):
            bad |= table[c].astype(str).str.strip() == ""
        if bad.any():
            raise TableError(f"{path}: row {int(bad.to_numpy().argmax())}: field {c!r} is empty "
                             f"({int(bad.sum())} row(s) in all)")
    return table


def write_json(obj, path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def code_version() -> str:
    """The git commit of the checkout (with ``+dirty`` when its code has changes; results under ``runs/`` and
    ``benchmarks/results/`` are outputs, not code), else the package version."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)runs",
                                ":(exclude)benchmarks/results"], cwd=root, capture_output=True, text=True, timeout=5)
        if head.returncode == 0:
            return head.stdout.strip()[:12] + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        pass
    return __version__


def machine() -> dict:
    """Where a result was computed, which its timings depend on: the CPU and the vector instructions torch
    uses on it (the study's runs took 2.5-3x as long on a 2-core AVX2-only CPU as on the one before), threads,
    GPU."""
    import platform

    import torch
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count(),
            "threads": torch.get_num_threads(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def data_checksums(datasets, data_dir=None) -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of every benchmark file of ``datasets``, by path relative to the data dir."""
    out = {}
    for name in datasets:
        for lang in SOURCES[name].languages:
            path = data_file(name, lang, data_dir)
            out[SOURCES[name].relpath(lang)] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return out


def provenance(encoder, profile, seed, datasets, data_dir=None) -> dict:
    """What a results file needs to be traced back: code, model and its weights (none before a model is
    involved), data, profile, seed, and the machine that computed it."""
    import dataclasses
    model = {} if encoder is None else {"model": encoder.name, "weights_sha256": encoder.weights_hash()}
    return {"code_version": code_version(), **model, "data_sha256": data_checksums(datasets, data_dir),
            "profile": dataclasses.asdict(profile), "seed": seed, "machine": machine()}
