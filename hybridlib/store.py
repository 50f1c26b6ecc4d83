"""Result files: tables (Parquet) and JSON, written atomically (temporary file, then rename)."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

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


def read_json(path: str | Path):
    return json.loads(Path(path).read_text())
