"""How long the tasks still to run will take, scaled from the notebook times a finished profile measured."""
from __future__ import annotations

import json
from pathlib import Path

from .stages import RunDir


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
    summary = {r: json.loads(RunDir(reference / r).train_summary.read_text()) for r in times.run[train]}
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


def estimate_seconds(todo: list, times) -> tuple[float | None, int]:
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
