"""Faults while writing results: nothing half-written, errors that name the path."""
import errno
import os

import pandas as pd
import pytest

from hybridlib import store
from hybridlib.paths import atomic_write_bytes


def test_interrupted_write_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.parquet"
    store.write_table(pd.DataFrame({"a": [1, 2]}), target)
    real = os.fsync

    def crash(fd):
        raise KeyboardInterrupt  # what SIGINT does in the middle of a write

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_table(pd.DataFrame({"a": [3]}), target)
    monkeypatch.setattr(os, "fsync", real)
    assert pd.read_parquet(target)["a"].tolist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.parquet"]


def test_disk_full_is_reported_with_the_path(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=f"could not write {tmp_path / 'x.json'}: No space left on device"):
        store.write_json({"a": 1}, tmp_path / "x.json")
    assert not list(tmp_path.iterdir())


def test_unwritable_directory_is_reported_with_the_path(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(OSError, match=f"could not write {blocker / 'sub' / 'x.bin'}"):
        atomic_write_bytes(blocker / "sub" / "x.bin", b"data")


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
     r"train_pairs.parquet: unreadable table \(.*\); it is a pipeline output: delete it and run the notebook"),
    (lambda path: pd.read_parquet(path).drop(columns="question").to_parquet(path),
     r"train_pairs.parquet: no column \['question'\]"),
    (lambda path: pd.read_parquet(path).assign(question=lambda d: d.question.where(d.index != 3, None)).to_parquet(path),
     r"train_pairs.parquet: row 3: field 'question' is empty \(1 row\(s\) in all\)"),
])
def test_damaged_training_pairs_are_named_in_one_line(tmp_path, damage, message):
    from hybridlib.store import TableError, read_table
    path = tmp_path / "train_pairs.parquet"
    pd.DataFrame({"qid": ["a", "b", "c", "d"], "question": ["q1", "q2", "q3", "q4"], "passage": ["p"] * 4,
                  "qlang": ["en"] * 4, "plang": ["de"] * 4}).to_parquet(path)
    damage(path)
    with pytest.raises(TableError, match=message):
        read_table(path, required=("qid", "question", "passage", "qlang", "plang"))
