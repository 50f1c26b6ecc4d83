"""Result files: tables (Parquet) and JSON, written atomically (temporary file, then rename)."""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
from pathlib import Path

import pandas as pd

from . import __version__
from .data import SOURCES, data_file
from .paths import atomic_write_bytes, atomic_write_text


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return atomic_write_bytes(path, buf.getvalue())


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing result table")
    return pd.read_parquet(path)


def write_json(obj, path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def code_version() -> str:
    """The git commit of the checkout (with ``+dirty`` when it has changes), else the package version."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5)
        if head.returncode == 0:
            return head.stdout.strip()[:12] + ("+dirty" if dirty.stdout.strip() else "")
    except OSError:
        pass
    return __version__


def data_checksums(datasets, data_dir=None) -> dict[str, str]:
    """SHA-256 (first 16 hex digits) of every benchmark file of ``datasets``, by path relative to the data dir."""
    out = {}
    for name in datasets:
        for lang in SOURCES[name].languages:
            path = data_file(name, lang, data_dir)
            out[SOURCES[name].relpath(lang)] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return out


def provenance(encoder, profile, seed, datasets, data_dir=None) -> dict:
    """What a results file needs to be traced back: code, model and its weights, data, profile, seed."""
    import dataclasses
    return {"code_version": code_version(), "model": encoder.name, "weights_sha256": encoder.weights_hash(),
            "data_sha256": data_checksums(datasets, data_dir), "profile": dataclasses.asdict(profile), "seed": seed}
