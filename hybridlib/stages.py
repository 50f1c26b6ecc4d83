"""The stages of a study, one contract each: a notebook, the dataclass of its parameters, and what it writes.

A notebook's parameters cell (papermill) assigns exactly the fields of its dataclass, upper-cased; the
notebook hands them to :meth:`Stage.check`, which validates each (``config.CHECKS``) before
any work and returns the dataclass with the profile loaded and the strategy parsed: the one parse of the
run's strategy name. The pipeline builds the same parameters with :meth:`Stage.arguments`, so a name
spelled wrong on either side fails at once (and a test compares every notebook with its dataclass).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from .config import Profile, check_parameters
from .errors import ConfigError
from .strategy import Strategy


@dataclass(frozen=True)
class DataParameters:
    """01_data: the profile's training pairs and evaluation collections into ``out_dir``."""
    profile: Profile
    data_dir: str  # '' for the default data directory
    out_dir: Path
    seed: int


@dataclass(frozen=True)
class TrainParameters:
    """02_train: one (strategy, seed) of the profile, on notebook 01's ``data_out``, into ``run_dir``."""
    profile: Profile
    strategy: Strategy
    seed: int
    data_out: Path
    run_dir: Path


@dataclass(frozen=True)
class EvaluateParameters(TrainParameters):
    """03_evaluate: the run's encoder (or baseline) on every collection the profile evaluates on."""
    data_dir: str


@dataclass(frozen=True)
class SummaryParameters:
    """04_language_bias and 05_compare: the runs ``runs`` (None: all) of ``profile_dir``."""
    profile_dir: Path
    runs: tuple[str, ...] | None


@dataclass(frozen=True)
class PerformanceParameters(SummaryParameters):
    """06_performance: also the benchmark results in ``benchmarks``."""
    benchmarks: Path


class RunDir:
    """The files of one run directory (``runs/<profile>/<strategy>-s<seed>``), each named here once."""
    TRAIN_SUMMARY, TRAIN_LOG, MODEL = "train_summary.json", "train_log.jsonl", "model"
    RESULTS, PER_QUERY, PREFERENCE, EVAL_META = "results.parquet", "per_query.parquet", "preference.parquet", "eval_meta.json"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def train_summary(self) -> Path:
        return self.path / self.TRAIN_SUMMARY

    @property
    def train_log(self) -> Path:
        return self.path / self.TRAIN_LOG

    @property
    def model(self) -> Path:
        return self.path / self.MODEL

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint" / "state.pt"

    @property
    def lock(self) -> Path:
        return self.path / ".train.lock"


class DataDir:
    """The files notebook 01 writes (``runs/<profile>/data``)."""
    TRAIN_PAIRS, HELDOUT_PAIRS, SUMMARY, COLLECTIONS = ("train_pairs.parquet", "heldout_pairs.parquet",
                                                        "data_summary.json", "collections")


CONVERT: dict[str, Callable] = {"STRATEGY": Strategy.parse, "SEED": int, "DATA_DIR": str, "RUNS": tuple}  # else Path


@dataclass(frozen=True)
class Stage:
    notebook: str
    parameters: type
    outputs: tuple[str, ...]  # files (or directories of tables) it writes, relative to its directory
    products: tuple[str, ...] = ()  # what downstream stages read (see runs.content_digest)

    @property
    def names(self) -> list[str]:
        """The notebook's parameter names, in the dataclass's order."""
        return [f.name.upper() for f in fields(self.parameters)]

    def check(self, **params):
        """The notebook's parameters, validated before any work, as its dataclass (``ConfigError`` naming
        the parameter and value otherwise)."""
        if sorted(params) != sorted(self.names):
            raise ConfigError(f"{self.notebook} takes parameters {self.names}, got {sorted(params)}")
        profile = check_parameters(**{k: v for k, v in params.items() if k != "STRATEGY"})
        named = {str(s): s for s in profile.strategies} if profile else {}  # parsed when the profile was read
        values = {k: profile if k == "PROFILE" else named[v] if k == "STRATEGY" and v in named else
                  None if v is None else CONVERT.get(k, Path)(v) for k, v in params.items()}  # a new name: parsed
        return self.parameters(**{k.lower(): v for k, v in values.items()})

    def arguments(self, **values) -> dict:
        """The papermill parameters of one task: the dataclass's fields (lower case) -> the notebook's names."""
        if sorted(values) != sorted(f.name for f in fields(self.parameters)):
            raise ValueError(f"{self.notebook}: parameters {sorted(values)} are not "
                             f"{sorted(f.name for f in fields(self.parameters))}")
        return {k.upper(): v for k, v in values.items()}


DATA = Stage("01_data.ipynb", DataParameters,
             ("01_data.ipynb", DataDir.TRAIN_PAIRS, DataDir.HELDOUT_PAIRS, DataDir.SUMMARY, DataDir.COLLECTIONS),
             (DataDir.TRAIN_PAIRS, DataDir.HELDOUT_PAIRS, DataDir.COLLECTIONS))
TRAIN = Stage("02_train.ipynb", TrainParameters, ("02_train.ipynb", RunDir.TRAIN_SUMMARY, RunDir.TRAIN_LOG),
              (f"{RunDir.TRAIN_SUMMARY}#weights_sha256", RunDir.TRAIN_LOG))
EVALUATE = Stage("03_evaluate.ipynb", EvaluateParameters,
                 ("03_evaluate.ipynb", RunDir.RESULTS, RunDir.PER_QUERY, RunDir.PREFERENCE, RunDir.EVAL_META),
                 (RunDir.RESULTS, RunDir.PER_QUERY, RunDir.PREFERENCE))
BIAS = Stage("04_language_bias.ipynb", SummaryParameters, ("04_language_bias.ipynb",))
COMPARE = Stage("05_compare.ipynb", SummaryParameters, ("05_compare.ipynb",))
PERFORMANCE = Stage("06_performance.ipynb", PerformanceParameters, ("06_performance.ipynb",))
STAGES = {s.notebook: s for s in (DATA, TRAIN, EVALUATE, BIAS, COMPARE, PERFORMANCE)}
SUMMARIES = (BIAS, COMPARE, PERFORMANCE)
