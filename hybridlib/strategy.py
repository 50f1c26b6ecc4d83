"""A strategy, parsed once from its name: how a run is trained, or that it is not.

Three families:

- ``untrained``: ``zero-shot`` (the initial weights) and ``bm25`` (a lexical baseline);
- ``sampled``: one batch per step from a batch sampler, ``xx``, ``xy``, ``ml`` or ``hybrid(alpha)``
  (monolingual with probability alpha, arXiv 2408.10536);
- ``mixed``: a monolingual and a cross-lingual batch per step, their gradients combined by ``sum``,
  ``pcgrad``, ``gradvac``, ``cagrad`` or ``mgda``. ``sum(alpha)`` weighs them (alpha, 1 - alpha): the
  like-for-like mixing baseline of ``hybrid(alpha)``. Combiner hyper-parameters may be given by name:
  ``cagrad(c=0.2)``, ``gradvac(beta=0.05)``; otherwise the profile's values apply.

Any trained strategy may also change its run's budget and optimisation, which is how a profile holds
matched arms and sweeps: ``budget=2`` sees twice the profile's pairs (a mixing method at ``budget=2``
takes as many optimizer steps as a sampler: the equal-steps arm), ``lr=1e-4`` sets the learning rate,
``frozen=0`` trains the word embeddings too. ``hybrid(0.5, lr=1e-4)`` combines them.

The names and their numbers come from the registered classes: a sampler (:mod:`hybridlib.samplers`) or
combiner (:mod:`hybridlib.combiners`) declares its ``params`` once, and parsing, validation, the profile's
defaults and the error messages follow from them; adding one is one class in its module. Text becomes a
:class:`Strategy` at the edges (a profile file, a notebook parameter, a stored table); everything else
receives the object.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .combiners import COMBINERS, Combiner
from .errors import ConfigError
from .registry import Param
from .samplers import SAMPLERS, PairSampler

UNTRAINED = ("zero-shot", "bm25")
UNTRAINED_DOCS = {"zero-shot": "The initial weights, untrained", "bm25": "BM25, a lexical baseline"}
# The numbers any trained strategy may carry, the arms of a sweep (see Profile.trained_with).
RUN_PARAMS = {
    "budget": Param(0, 1000, lo_open=True, doc="times the profile's budget_pairs"),
    "lr": Param(0, 1, lo_open=True, doc="the learning rate"),
    "frozen": Param(choices=(0, 1), doc="1 freezes the word embeddings, 0 trains them"),
}


class StrategyError(ConfigError):
    """A strategy name that does not parse; the message lists what is allowed."""


def registered(name: str) -> type | None:
    """The sampler or combiner class a trained strategy name stands for (None for an untrained one)."""
    sampler = SAMPLERS.get(name)
    return sampler if sampler is not None and sampler.is_strategy else COMBINERS.get(name)


def names() -> tuple[str, ...]:
    """Every strategy name in display order: untrained, samplers, combiners (as registered)."""
    return (*UNTRAINED, *(n for n, c in SAMPLERS.items() if c.is_strategy), *COMBINERS)


def allowed() -> str:
    """What a strategy name may be, from the registered classes' declared parameters."""
    forms, ranges = [], {}
    for name in names():
        params = getattr(registered(name), "params", {})
        for key, p in params.items():
            form = f"({key})" if p.positional else f"({key}=...)"
            forms.append(f"{name}{form}" if p.required else f"{name}[{form}]")
            ranges[key] = p.allowed
        if not params:
            forms.append(name)
    run = ", ".join(f"{k}={p.allowed}" for k, p in RUN_PARAMS.items())
    return (f"{', '.join(forms)}; {', '.join(f'{k} in {r}' for k, r in ranges.items())}; "
            f"a trained one may add {run}")


def reference() -> list[dict[str, str]]:
    """Every strategy name and the numbers it takes, from the registered classes: what ``python -m hybridlib
    strategies`` prints. One row per name, then one per number (its range, where its default comes from and
    what it means); the run options close the table."""
    rows = []
    for name in names():
        cls = registered(name)
        family = Strategy(name).family
        doc = re.split(r"(?<!et al)[.;:](?:\s|$)", " ".join((cls.__doc__ or "").split()))[0].replace("``", "") \
            if cls else UNTRAINED_DOCS[name]
        rows.append({"strategy": name, "family": family, "number": "", "range": "", "default": "", "meaning": doc})
        for key, p in getattr(cls, "params", {}).items():
            default = "required" if p.required else f"profile field {p.profile_field}" if p.profile_field else "none"
            rows.append({"strategy": "", "family": "", "number": key + (" (positional)" if p.positional else ""),
                         "range": p.allowed, "default": default, "meaning": p.doc})
    for key, p in RUN_PARAMS.items():
        rows.append({"strategy": "any trained", "family": "", "number": key, "range": p.allowed,
                     "default": "the profile's", "meaning": p.doc})
    return rows


@dataclass(frozen=True)
class Strategy:
    name: str
    alpha: float | None = None  # the positional number (whatever its class calls it): hybrid's share of mono
    # batches, sum's mono weight
    options: tuple[tuple[str, float], ...] = ()  # numbers given by name, sorted

    @classmethod
    def parse(cls, text) -> Strategy:
        """``"hybrid(0.25)"`` -> Strategy("hybrid", 0.25); raises ``StrategyError`` naming the text. Each
        number is checked against the range its class declares (``params``) or ``RUN_PARAMS``."""
        if isinstance(text, Strategy):
            return text
        m = re.fullmatch(r"\s*([a-z][a-z0-9-]*)\s*(?:\((.*)\))?\s*", text) if isinstance(text, str) else None
        if not m or m.group(1) not in names():
            raise StrategyError(f"unknown strategy {text!r}; allowed: {allowed()}")
        name, inside = m.group(1), m.group(2)
        params: dict[str, Param] = {**getattr(registered(name), "params", {}),
                                    **(RUN_PARAMS if name not in UNTRAINED else {})}
        positional = next((k for k, p in params.items() if p.positional), "")
        values: dict[str, float] = {}
        given: dict[str, str] = {}
        for arg in [a.strip() for a in inside.split(",")] if inside is not None else []:
            key, _, value = arg.rpartition("=")
            key = key.strip() or positional
            if key not in params:
                raise StrategyError(f"strategy {text!r}: {name} takes no argument {arg!r}; allowed: {allowed()}")
            if key in given:
                raise StrategyError(f"strategy {text!r}: {key} is given twice ({given[key]!r} and {arg!r})")
            given[key] = arg
            try:
                number = float(value)
            except ValueError:
                raise StrategyError(f"strategy {text!r}: {arg!r} is not a number") from None
            try:
                values[key] = params[key].check(number, key)
            except ConfigError as e:
                raise StrategyError(f"strategy {text!r}: {e}") from None
        missing = [k for k, p in params.items() if p.required and k not in values]
        if missing:
            raise StrategyError(f"strategy {text!r}: {name} needs {missing[0]}, e.g. '{name}(0.5)'")
        alpha = values.pop(positional) if positional in values else None
        return cls(name, alpha, tuple(sorted(values.items())))

    @property
    def family(self) -> str:
        return "untrained" if self.name in UNTRAINED else "sampled" if self.name in SAMPLERS else "mixed"

    @property
    def trains(self) -> bool:
        return self.family != "untrained"

    @property
    def mixing(self) -> bool:
        return self.family == "mixed"

    @property
    def run_options(self) -> dict[str, float]:
        """The options that change the run (``RUN_PARAMS``), not the sampler or combiner."""
        return {k: v for k, v in self.options if k in RUN_PARAMS}

    def __str__(self) -> str:
        args = ([f"{self.alpha:g}"] if self.alpha is not None else []) + [f"{k}={v:g}" for k, v in self.options]
        return f"{self.name}({', '.join(args)})" if args else self.name

    def run_name(self, seed: int) -> str:
        """A directory name without characters paths and URLs dislike: hybrid(0.5), seed 0 -> hybrid-0.5-s0."""
        text = str(self).replace(", ", "-").replace("=", "").replace("(", "-").replace(")", "")
        return f"{text}-s{seed}"

    @property
    def order(self) -> tuple:
        """Sort key of tables, untrained first, then samplers (hybrid by alpha), then mixing methods."""
        return names().index(self.name), self.alpha if self.alpha is not None else -1, self.options

    def pairs_per_step(self, batch_size: int) -> int:
        return batch_size * (2 if self.mixing else 1)

    def _arguments(self, cls, profile=None) -> dict:
        """The class's keyword arguments: the numbers in the name, else the profile fields it names."""
        positional = next((k for k, p in cls.params.items() if p.positional), None)
        given = {**dict(self.options), **({positional: self.alpha} if positional and self.alpha is not None else {})}
        return {k: given[k] if k in given else getattr(profile, p.profile_field)
                for k, p in cls.params.items() if k in given or (p.profile_field and profile is not None)}

    def sampler(self, pairs, batch_size: int, **kw) -> PairSampler:
        """The batch sampler this strategy trains with (mixing draws a mono and a cross batch per step)."""
        if not self.trains:
            raise StrategyError(f"strategy {self} does not train")
        cls = SAMPLERS["paired"] if self.mixing else SAMPLERS[self.name]
        return cls(pairs, batch_size, **self._arguments(cls), **kw)

    def combiner(self, profile) -> Combiner:
        """The gradient combiner of a mixing strategy; numbers in the name beat the profile's fields."""
        if not self.mixing:
            raise StrategyError(f"strategy {self} does not mix gradients")
        cls = COMBINERS[self.name]
        return cls(**self._arguments(cls, profile))


def family_label(strategy) -> str:
    """How tables and plots group strategies."""
    return {"untrained": "no training", "sampled": "batch sampling", "mixed": "gradient mixing"}[
        Strategy.parse(strategy).family]


def sort(strategies) -> list[str]:
    """Strategy names in display order."""
    return sorted(strategies, key=lambda s: Strategy.parse(s).order)
