"""Profiles: every parameter of a study in one validated dataclass, read from YAML, checked before any work.

Each field says which stage of the study it changes (``data``, ``train``, ``eval``): the run layer
(:mod:`hybridlib.runs`) keys a stage's outputs on exactly those fields, so changing the learning rate
re-trains and re-evaluates, and changing the evaluation batch re-evaluates only.
"""
from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from .combiners import COMBINERS
from .errors import ConfigError
from .paths import PROFILE_DIR, builtin_profiles
from .strategy import RUN_PARAMS, Strategy

COLLECTIONS = ("xquad-r", "mlqa-r", "tydi")
EMBEDDED_LAYERS = {"embedded:multilingual-e5-small": 12}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a profile name is a directory name under the runs dir


def stage(default, *stages: str):
    return field(default=default, metadata={"stages": stages})


@dataclass(frozen=True)
class Profile:
    """One study's settings. Budgets are training pairs seen; every strategy gets the same budget."""
    name: str
    model: str = stage("embedded:multilingual-e5-small", "train", "eval")
    num_layers: int | None = stage(None, "train", "eval")  # keep the first k layers (smoke tests); None = all
    seeds: tuple[int, ...] = (0,)
    strategies: tuple[Strategy, ...] = (Strategy("zero-shot"),)  # names in a file, parsed when it is read
    # more seeds for some trained strategies only (those a verdict needs more seeds for); every seed a pair of
    # strategies shares is used by the analysis
    extra_seeds: tuple[int, ...] = ()
    extra_seed_strategies: tuple[Strategy, ...] = ()
    # data (notebook 01)
    heldout_fraction: float = stage(0.2, "data")
    hard_negatives: bool = stage(False, "data", "train")
    tydi_train: bool = stage(False, "train")
    # training (notebook 02)
    batch_size: int = stage(32, "train")
    budget_pairs: int = stage(4096, "train")
    max_query_length: int = stage(64, "train", "eval")
    max_passage_length: int = stage(128, "train", "eval")
    length_chunks: int = stage(4, "train")  # batch sides encoded as length-sorted groups, each padded to its longest
    lr: float = stage(3e-5, "train")
    warmup: float = stage(0.1, "train")  # share of the steps with a linearly rising learning rate
    weight_decay: float = stage(0.01, "train")
    max_grad_norm: float = stage(1.0, "train")
    temperature: float = stage(0.05, "train")
    symmetric: bool = stage(False, "train")  # add the passage->query InfoNCE term
    freeze_embeddings: bool = stage(True, "train")  # the word embeddings: most parameters, most optimizer time
    gradient_checkpointing: bool = stage(False, "train")
    dropout: float | None = stage(None, "train")  # None keeps the model's
    bf16: bool = stage(True, "train", "eval")  # bfloat16 autocast where faster: CUDA; on an AMX CPU, encoding only
    cagrad_c: float = stage(0.5, "train")
    gradvac_beta: float = stage(0.01, "train")
    probe_every: int = stage(10, "train")  # gradient-cosine probes (mono vs cross, and the noise floor) every N steps; 0 = off
    checkpoint_every: int = 50
    keep_models: bool = True  # False: a trained model is deleted once its evaluation is recorded (disk)
    collapse_steps: int = 20  # stop when the loss sits at chance or the gradient vanishes this many steps running
    # evaluation (notebook 03)
    eval_collections: tuple[str, ...] = stage(COLLECTIONS, "eval")
    eval_max_queries_per_language: int | None = stage(None, "eval")  # None = every query
    encode_batch_size: int = stage(128, "eval")
    # analysis (notebooks 04-06): "the same" may only be said within these margins (two one-sided tests)
    equivalence_map: float = 0.01  # for mAP, MRR@10 and the other scores in [0, 1]: a third of the smallest gain the paper reports
    equivalence_rank_distance: float = 30.0

    def __post_init__(self):
        where = f"profile {self.name!r}"
        if not isinstance(self.name, str) or not NAME.fullmatch(self.name):
            raise ConfigError(f"{where}: field name={self.name!r} must be letters, digits, '.', '_' or '-' "
                              "(it names a directory under the runs directory)")
        ranges = {"heldout_fraction": (0, 0.9), "batch_size": (2, None), "budget_pairs": (1, None),
                  "max_query_length": (1, None), "max_passage_length": (1, None), "length_chunks": (1, None),
                  "warmup": (0, 0.99), "weight_decay": (0, None),
                  "probe_every": (0, None), "checkpoint_every": (1, None), "collapse_steps": (0, None),
                  "encode_batch_size": (1, None), "num_layers": (1, EMBEDDED_LAYERS.get(self.model, 48)),
                  "eval_max_queries_per_language": (1, None)}
        for name, (lo, hi) in ranges.items():
            check_range(where, name, getattr(self, name), lo, hi)
        declared = [(p.profile_field, p) for c in COMBINERS.values() for p in c.params.values() if p.profile_field]
        for name, param in [("lr", RUN_PARAMS["lr"]), *declared]:  # ranges the strategies' classes declare
            param.check(getattr(self, name), f"{where}: field {name}")
        positive = {"temperature": None, "max_grad_norm": None}  # > 0, and at most the bound
        for name, hi in positive.items():
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0) or (hi is not None and v > hi):
                raise ConfigError(f"{where}: field {name}={v!r} must be > 0{f' and <= {hi}' if hi else ''}")
        for name in ("equivalence_map", "equivalence_rank_distance"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{where}: field {name}={getattr(self, name)!r} must be > 0")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ConfigError(f"{where}: field dropout={self.dropout!r} must be in [0, 1)")
        if self.model.startswith("embedded:") and self.model not in EMBEDDED_LAYERS:
            raise ConfigError(f"{where}: field model={self.model!r} is not an embedded model; "
                              f"embedded: {', '.join(EMBEDDED_LAYERS)}, or a Hugging Face hub id")
        self._check_runs(where)
        bad = [c for c in self.eval_collections if c not in COLLECTIONS]
        if bad:
            raise ConfigError(f"{where}: field eval_collections has unknown {bad}; allowed: {', '.join(COLLECTIONS)}")
        for s in self.strategies:
            budget = round(self.budget_pairs * s.run_options.get("budget", 1))  # as trained_with sets it
            if s.trains and s.pairs_per_step(self.batch_size) > budget:
                raise ConfigError(f"{where}: field budget_pairs={self.budget_pairs} is smaller than one step of "
                                  f"{s} ({s.pairs_per_step(self.batch_size)} pairs at batch_size {self.batch_size})")

    def _check_runs(self, where: str) -> None:
        """Parse the strategies; check the seeds and strategies (lists without repeats, extra seeds apart)."""
        for name in ("strategies", "extra_seed_strategies"):
            try:
                object.__setattr__(self, name, tuple(Strategy.parse(s) for s in getattr(self, name)))
            except ConfigError as e:
                raise ConfigError(f"{where}: field {name}: {e}") from None
        for name in ("seeds", "strategies", "eval_collections", "extra_seeds", "extra_seed_strategies"):
            values = getattr(self, name)
            required = not name.startswith("extra")
            if (required and not values) or len(set(values)) != len(values):
                shown = [v if isinstance(v, int) else str(v) for v in values]
                raise ConfigError(f"{where}: field {name}={shown!r} must be a {'non-empty ' * required}list without repeats")
        for name in ("seeds", "extra_seeds"):
            if getattr(self, name) and min(getattr(self, name)) < 0:
                raise ConfigError(f"{where}: field {name}={list(getattr(self, name))!r}: seeds are integers >= 0")
        if set(self.seeds) & set(self.extra_seeds):
            raise ConfigError(f"{where}: field extra_seeds={list(self.extra_seeds)!r} repeats some of seeds "
                              f"{list(self.seeds)!r}")
        odd = [str(s) for s in self.extra_seed_strategies if s not in self.strategies or not s.trains]
        if odd or bool(self.extra_seeds) != bool(self.extra_seed_strategies):
            raise ConfigError(f"{where}: field extra_seed_strategies: {odd or 'both or neither of extra_seeds and it'} "
                              "must be trained strategies of field strategies, given with extra_seeds")

    @property
    def all_seeds(self) -> tuple[int, ...]:
        return self.seeds + self.extra_seeds

    def seeds_of(self, strategy: Strategy) -> tuple[int, ...]:
        """The seeds a strategy runs under: every seed for those of ``extra_seed_strategies``."""
        return self.all_seeds if strategy in self.extra_seed_strategies else self.seeds

    def trained_with(self, strategy: Strategy) -> Profile:
        """The profile a strategy's run trains under: its ``budget``, ``lr`` and ``frozen`` options replace
        the profile's fields (the profile itself when it has none)."""
        o = strategy.run_options
        changes = {"budget_pairs": round(self.budget_pairs * o["budget"]) if "budget" in o else None,
                   "lr": o.get("lr"), "freeze_embeddings": bool(o["frozen"]) if "frozen" in o else None}
        changes = {k: v for k, v in changes.items() if v is not None}
        return override(self, **changes) if changes else self

    @property
    def margins(self) -> dict[str, float]:
        """The equivalence margin of every metric."""
        from .metrics import METRICS
        return {**{m: self.equivalence_map for m in METRICS}, "rank_distance": self.equivalence_rank_distance}

    def stage(self, name: str) -> dict:
        """The fields that change stage ``name`` (``data``, ``train``, ``eval``) and their values."""
        return {f.name: getattr(self, f.name) for f in fields(self) if name in f.metadata.get("stages", ())}

    def steps(self, strategy: Strategy) -> int:
        """Optimizer steps of a training run: its budget in pairs over the pairs one step sees."""
        return self.trained_with(strategy).budget_pairs // strategy.pairs_per_step(self.batch_size)

    def fields(self) -> dict:
        """Every field and its value (strategies as objects; ``dataclasses.asdict`` would unpack them)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_yaml(self) -> str:
        data = {k: [x if isinstance(x, int) else str(x) for x in v] if isinstance(v, tuple) else v
                for k, v in self.fields().items()}
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def check_range(where: str, name: str, v, lo, hi) -> None:
    if v is None and name in ("num_layers", "eval_max_queries_per_language"):
        return
    if (lo is not None and v < lo) or (hi is not None and v > hi) or (isinstance(v, float) and math.isnan(v)):
        raise ConfigError(f"{where}: field {name}={v!r} outside [{lo}, {hi if hi is not None else 'inf'}]")


def _coerce(cls, data: dict, where: str):
    """Build dataclass ``cls`` from ``data``, checking names and types (tuples from lists, ints as floats)."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    out = {}
    for k, v in data.items():
        t = hints[k]
        allowed = typing.get_args(t) if typing.get_origin(t) in (typing.Union, types.UnionType) else (t,)
        ok = False
        for a in allowed:
            origin = typing.get_origin(a)
            if a is type(None) and v is None:
                ok = True
            elif origin is tuple and isinstance(v, (list, tuple)):
                item = typing.get_args(a)[0]
                if item is Strategy and all(isinstance(x, (str, Strategy)) for x in v):
                    v, ok = tuple(v), True  # parsed by the profile, which names the field in an error
                elif all(isinstance(x, item) and not (item is int and isinstance(x, bool)) for x in v):
                    v, ok = tuple(v), True
            elif a is float and isinstance(v, (int, float)) and not isinstance(v, bool):
                v, ok = float(v), True
            elif a is float and isinstance(v, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", v.strip()):
                v, ok = float(v), True  # YAML 1.1 reads 1e-4 (no dot) as a string
            elif a in (int, str, bool) and isinstance(v, a) and not (a is int and isinstance(v, bool)):
                ok = True
        if not ok:
            raise ConfigError(f"{where}: field {k}={v!r} has type {type(v).__name__}; expected {t}")
        out[k] = v
    try:
        return cls(**out)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None
    except ConfigError as e:  # a range or consistency check: say which file it came from
        raise ConfigError(f"{where}: {e}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives one key twice (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"field {key} is given twice (lines {seen[key]} and {key_node.start_mark.line + 1})")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_profile(name_or_path) -> Profile:
    """A built-in profile by name (``smoke``, ``cpu``, ``study``, ``paper``) or a YAML file by path. A name is
    only ever a built-in one; anything with a suffix or a slash is a path (so ``./smoke.yaml`` is that file)."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    text = str(name_or_path)
    is_path = "/" in text or Path(text).suffix
    path = Path(text) if is_path else PROFILE_DIR / f"{text}.yaml"
    if not path.is_file():
        what = f"profile file {text!r} does not exist" if is_path else f"unknown profile {text!r}"
        raise ConfigError(f"{what}; built-in profiles: {', '.join(builtin_profiles())}, or a YAML file path")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    if "name" not in data:
        if not NAME.fullmatch(path.stem):
            raise ConfigError(f"{path}: the file name gives the profile name {path.stem!r}, which names a directory "
                              "under the runs directory and must be letters, digits, '.', '_' or '-': rename the "
                              "file or give the profile a field name")
        data["name"] = path.stem
    return _coerce(Profile, data, str(path))


def override(profile: Profile, **changes) -> Profile:
    """The profile with some fields replaced, validated like the file."""
    return _coerce(Profile, {**profile.fields(), **changes}, f"profile {profile.name} + overrides")


def parse_overrides(items: list[str]) -> dict:
    """``["lr=1e-4", "seeds=[0, 1]"]`` -> {"lr": 0.0001, "seeds": [0, 1]} (values are YAML)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE")
        if key.strip() in out:
            raise ConfigError(f"--set {item!r}: field {key.strip()} is set twice")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    return out


# ---- notebook parameters -------------------------------------------------------------------------------
def _directory(name, v):
    if not isinstance(v, str) or not Path(v).is_dir():
        raise ConfigError(f"parameter {name}={v!r}: no such directory")


def require_data(data_out, profile: str = "PROFILE", name: str = "DATA_OUT") -> None:
    """Notebook 01's output, or exactly what to run to make it (it is not committed: a fresh clone or runtime
    has only the collections). Said the same by the notebooks' checks, the trainer and the collection loader,
    so a notebook executed with older code says it too."""
    path = Path(data_out) if isinstance(data_out, (str, Path)) else None
    if path is None or not (path / "train_pairs.parquet").is_file():
        where = "no such directory" if path is None or not path.is_dir() else "no train_pairs.parquet there"
        raise ConfigError(f"parameter {name}={str(data_out)!r}: {where}; notebook 01 writes it. "
                          f"{data_command(data_out, profile)}")


def data_command(data_out, profile: str = "PROFILE") -> str:
    """What to run, from a notebook's folder, to make notebook 01's output ``data_out`` (RUNS/PROFILE/data)."""
    runs = Path(data_out).parent.parent if isinstance(data_out, (str, Path)) else "RUNS"
    return (f"Run it first, from this notebook's folder: python -m hybridlib run --profile {profile} --runs-dir {runs} "
            "--until 01_data")


def _seed(name, v):
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ConfigError(f"parameter {name}={v!r}: expected an integer >= 0")


def _strategy(name, v):
    Strategy.parse(v)


def _output(name, v):
    if not isinstance(v, str) or not v.strip() or Path(v).is_file():
        raise ConfigError(f"parameter {name}={v!r}: expected a directory path")


def _data_dir(name, v):
    if not isinstance(v, str):
        raise ConfigError(f"parameter {name}={v!r}: expected a path, or '' for the default data directory")
    if v:
        _directory(name, v)


def _profile(name, v):
    if not isinstance(v, str):
        raise ConfigError(f"parameter {name}={v!r}: expected a profile name or a YAML file path")


def _runs(name, v):
    if v is not None and not (isinstance(v, list) and all(isinstance(r, str) and r for r in v)):
        raise ConfigError(f"parameter {name}={v!r}: expected a list of run directory names, or None for all")


CHECKS = {  # notebook parameter -> its check
    "PROFILE": _profile, "SEED": _seed, "STRATEGY": _strategy,
    "DATA_DIR": _data_dir, "OUT_DIR": _output, "RUN_DIR": _output,
    "DATA_OUT": None,  # require_data, which names the profile in the command it gives
    "PROFILE_DIR": _directory, "RUNS": _runs, "BENCHMARKS": _output,
}


def check_parameters(**params) -> Profile | None:
    """Validate a notebook's papermill parameters before any work: types, ranges, paths and strategy names;
    returns the profile named by ``PROFILE`` (when given). Raises ``ConfigError`` naming the parameter."""
    unknown = sorted(set(params) - set(CHECKS))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}; allowed: {sorted(CHECKS)}")
    for name, value in params.items():
        check = CHECKS[name]
        if check is None:
            require_data(value, params.get("PROFILE", "PROFILE"))
        else:
            check(name, value)
    return load_profile(params["PROFILE"]) if "PROFILE" in params else None
