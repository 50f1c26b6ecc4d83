"""Profiles: every parameter of a study, as a YAML file, validated before any work starts."""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

PROFILE_DIR = Path(__file__).parent / "profiles"


class ConfigError(ValueError):
    """A profile or notebook parameter with a wrong type, range or name; the message names field and allowed values."""


@dataclass(frozen=True)
class Profile:
    """One study's settings. Budgets are training pairs seen; every strategy gets the same budget."""
    name: str
    model: str = "embedded:multilingual-e5-small"
    num_layers: int | None = None  # keep the first k layers (smoke tests); None = all
    seeds: tuple[int, ...] = (0,)
    heldout_fraction: float = 0.2
    hard_negatives: bool = False
    tydi_train: bool = False
    strategies: tuple[str, ...] = ("zero-shot",)
    batch_size: int = 32
    budget_pairs: int = 4096
    max_query_length: int = 64
    max_passage_length: int = 128
    length_chunks: int = 4  # training batches encoded as length-sorted groups, each padded to its own longest
    lr: float = 3e-5
    temperature: float = 0.05
    freeze_embeddings: bool = True
    dropout: float | None = None
    bf16: bool = True  # bfloat16 autocast where it is faster: CUDA; on a CPU with AMX, encoding only
    checkpoint_every: int = 50
    probe_every: int = 10
    eval_collections: tuple[str, ...] = ("xquad-r", "mlqa-r", "tydi")
    eval_max_queries_per_language: int | None = None  # None = every query
    encode_batch_size: int = 128

    def __post_init__(self):
        check_range(self, "heldout_fraction", 0, 0.9)
        for f in ("batch_size", "budget_pairs", "max_query_length", "max_passage_length", "encode_batch_size",
                  "length_chunks", "checkpoint_every"):
            check_range(self, f, 1, None)
        if self.num_layers is not None:
            check_range(self, "num_layers", 1, 48)
        if self.eval_max_queries_per_language is not None:
            check_range(self, "eval_max_queries_per_language", 1, None)
        for strategy in self.strategies:
            check_strategy(f"profile {self.name}: strategies", strategy)
        bad = [c for c in self.eval_collections if c not in ("xquad-r", "mlqa-r", "tydi")]
        if bad:
            raise ConfigError(f"profile {self.name}: eval_collections has unknown {bad}; allowed: xquad-r, mlqa-r, tydi")


def check_strategy(where: str, strategy: str) -> None:
    """A strategy is ``zero-shot``, ``bm25``, a batch sampler (``xx``, ``xy``, ``ml``, ``hybrid(alpha)``) or a
    gradient combiner; ``where`` names the field in the error."""
    from .combiners import COMBINERS
    from .samplers import SamplerError, parse
    if strategy in ("zero-shot", "bm25") or strategy in COMBINERS:
        return
    try:
        name, args = parse(strategy)
    except SamplerError:
        name, args = None, {}
    if name in (None, "paired") or not 0 <= args.get("alpha", 0) <= 1:
        raise ConfigError(f"{where}: unknown strategy {strategy!r}; allowed: zero-shot, bm25, xx, xy, ml, "
                          f"hybrid(alpha) with alpha in [0, 1], {', '.join(COMBINERS)}")


def check_range(obj, name: str, lo, hi) -> None:
    v = getattr(obj, name)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ConfigError(f"{type(obj).__name__} {getattr(obj, 'name', '')}: field {name}={v!r} outside "
                          f"[{lo}, {hi if hi is not None else 'inf'}]")


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
                if all(isinstance(x, item) and not (item is int and isinstance(x, bool)) for x in v):
                    v, ok = tuple(v), True
            elif a is float and isinstance(v, (int, float)) and not isinstance(v, bool):
                v, ok = float(v), True
            elif a in (int, str, bool) and isinstance(v, a) and not (a is int and isinstance(v, bool)):
                ok = True
        if not ok:
            raise ConfigError(f"{where}: field {k}={v!r} has type {type(v).__name__}; expected {t}")
        out[k] = v
    try:
        return cls(**out)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def load_profile(name_or_path: str) -> Profile:
    """A profile by name (``smoke``, ``cpu``, ``paper``) or from a YAML file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown profile {name_or_path!r}; valid: {', '.join(names)} or a YAML file path")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    return _coerce(Profile, data, str(path))


def override(profile: Profile, **changes) -> Profile:
    """The profile with some fields replaced (notebook parameters), validated like the file."""
    changes = {k: v for k, v in changes.items() if v is not None}
    return _coerce(Profile, {**dataclasses.asdict(profile), **changes}, f"profile {profile.name} + parameters")


def _directory(name, v, must_hold=None):
    if not Path(v).is_dir():
        raise ConfigError(f"parameter {name}={v!r}: no such directory")
    if must_hold and not (Path(v) / must_hold).is_file():
        raise ConfigError(f"parameter {name}={v!r}: no {must_hold} there (run notebook 01 first)")


def _seed(name, v):
    if not isinstance(v, int) or isinstance(v, bool) or v < 0:
        raise ConfigError(f"parameter {name}={v!r}: expected an integer >= 0")


def _strategy(name, v, family=None):
    if not isinstance(v, str):
        raise ConfigError(f"parameter {name}={v!r}: expected a strategy name such as 'hybrid(0.5)'")
    check_strategy(f"parameter {name}", v)
    if family and not v.startswith(family + "("):
        raise ConfigError(f"parameter {name}={v!r}: expected {family}(alpha), e.g. {family}(0.5)")


def _output(name, v):
    if not isinstance(v, str) or not v.strip() or Path(v).is_file():
        raise ConfigError(f"parameter {name}={v!r}: expected a directory path")


def _data_dir(name, v):
    if not isinstance(v, str):
        raise ConfigError(f"parameter {name}={v!r}: expected a path, or '' for the default data directory")
    if v:
        _directory(name, v)


PARAMETERS = {  # notebook parameter -> its check
    "SEED": _seed, "STRATEGY": _strategy, "HYBRID": lambda n, v: _strategy(n, v, "hybrid"),
    "DATA_DIR": _data_dir, "OUT_DIR": _output, "RUN_DIR": _output,
    "DATA_OUT": lambda n, v: _directory(n, v, "train_pairs.parquet"),
    "PROFILE_DIR": _directory, "BENCHMARKS": _output,
}


def check_parameters(**params) -> Profile | None:
    """Validate a notebook's papermill parameters before any work: names, types, ranges, paths and strategy
    names; returns the profile named by ``PROFILE`` (when given). Raises :class:`ConfigError` naming the
    parameter and what is allowed."""
    unknown = sorted(set(params) - set(PARAMETERS) - {"PROFILE"})
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown}; allowed: {sorted([*PARAMETERS, 'PROFILE'])}")
    for name, value in params.items():
        if name != "PROFILE":
            PARAMETERS[name](name, value)
    if "PROFILE" not in params:
        return None
    if not isinstance(params["PROFILE"], str):
        raise ConfigError(f"parameter PROFILE={params['PROFILE']!r}: expected a profile name (smoke, cpu, paper) or a YAML path")
    return load_profile(params["PROFILE"])
