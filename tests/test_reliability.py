"""Faults while writing results: nothing half-written, errors that name the path."""
import errno
import math
import os

import pandas as pd
import pytest

from hybridlib import store
from hybridlib.paths import atomic_write_bytes
from hybridlib.trainer import CollapseCheck, CollapseError


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


# The first 20 losses of the 2-layer smoke model at batch 8 (chance ln 8 = 2.079), measured: at lr 1.0 the model
# collapses after one step; at 1e-3 it learns, and one step in 20 comes within 1% of chance by itself.
COLLAPSED = [1.713, 2.078, 2.081, 2.075, 2.074, 2.076, 2.078, 2.083, 2.081, 2.08, 2.078, 2.078, 2.074, 2.085, 2.075,
             2.078, 2.081, 2.083, 2.07, 2.081]
LEARNING = [1.713, 1.567, 1.122, 1.922, 1.024, 1.36, 1.312, 1.105, 0.589, 0.534, 1.709, 0.966, 1.848, 0.923, 1.726,
            1.445, 0.735, 2.073, 1.254, 1.271]


def test_collapse_check_by_hand():

    def fresh(n):
        return CollapseCheck(n, batch=8, lr=3e-5)

    t = fresh(20)
    for loss in LEARNING:
        t(1, loss, 1.0)
    t = fresh(20)
    with pytest.raises(CollapseError, match=r"step 1: .* within 1% of chance \(ln\(8\) = 2.0794\) on 19 of the last "
                                            r"20 steps, the largest gradient norm was 1.00e\+00; lower lr \(now 3e-05\)"):
        for loss in COLLAPSED:
            t(1, loss, 1.0)
    t = fresh(4)
    for loss in (2.079, 1.5, 1.5, 2.079, 2.085):  # 3 in 4 needed: 2 at chance in 4 goes on
        t(1, loss, 1.0)
    with pytest.raises(CollapseError, match=r"on 3 of the last 4 steps"):
        t(1, 2.076, 1.0)  # 1.5, 2.079, 2.085, 2.076: one step that dips does not hide it
    t = fresh(3)
    for _ in range(2):
        t(1, 0.5, 1e-9)
    with pytest.raises(CollapseError, match=r"on 0 of the last 3 steps, the largest gradient norm was 1.00e-09"):
        t(1, 0.5, 1e-9)  # a vanishing gradient throughout
    off = fresh(0)
    for _ in range(10):
        off(1, math.log(8), 0.0)  # 0 turns the check off
