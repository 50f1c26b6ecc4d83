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

Everything else reads the :class:`Strategy`; nothing else parses its text.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import ConfigError

UNTRAINED = ("zero-shot", "bm25")
SAMPLED = ("xx", "xy", "ml", "hybrid")
MIXED = ("sum", "pcgrad", "gradvac", "cagrad", "mgda")
OPTIONS = {"cagrad": ("c",), "gradvac": ("beta",)}  # combiner hyper-parameters a name may carry
RUN_OPTIONS = ("budget", "lr", "frozen")  # any trained strategy: the arms of a sweep (see Strategy.apply)
TAKES_ALPHA = ("hybrid", "sum")
ORDER = (*UNTRAINED, "xx", "xy", "ml", "hybrid", *MIXED)


class StrategyError(ConfigError):
    """A strategy name that does not parse; the message lists what is allowed."""


ALLOWED = ("zero-shot, bm25, xx, xy, ml, hybrid(alpha), sum, sum(alpha), pcgrad, gradvac, gradvac(beta=b), "
           "cagrad, cagrad(c=c), mgda; alpha in [0, 1]; a trained one may add budget=k, lr=x, frozen=0|1")


@dataclass(frozen=True)
class Strategy:
    name: str
    alpha: float | None = None  # hybrid: share of monolingual batches; sum: weight of the monolingual gradient
    options: tuple[tuple[str, float], ...] = ()  # combiner hyper-parameters given in the name

    @classmethod
    def parse(cls, text) -> Strategy:
        """``"hybrid(0.25)"`` -> Strategy("hybrid", 0.25); raises ``StrategyError`` naming the text."""
        if isinstance(text, Strategy):
            return text
        m = re.fullmatch(r"\s*([a-z][a-z0-9-]*)\s*(?:\((.*)\))?\s*", text) if isinstance(text, str) else None
        if not m or m.group(1) not in ORDER:
            raise StrategyError(f"unknown strategy {text!r}; allowed: {ALLOWED}")
        name, inside = m.group(1), m.group(2)
        alpha, options, given = None, {}, {}
        for arg in [a.strip() for a in inside.split(",")] if inside is not None else []:
            key, _, value = arg.rpartition("=")
            key = key.strip() or ("alpha" if name in TAKES_ALPHA else "")
            allowed = (*OPTIONS.get(name, ()), *(RUN_OPTIONS if name not in UNTRAINED else ()))
            if key != "alpha" and key not in allowed:
                raise StrategyError(f"strategy {text!r}: {name} takes no argument {arg!r}; allowed: {ALLOWED}")
            if key in given:
                raise StrategyError(f"strategy {text!r}: {key} is given twice ({given[key]!r} and {arg!r})")
            given[key] = arg
            try:
                number = float(value)
            except ValueError:
                raise StrategyError(f"strategy {text!r}: {arg!r} is not a number") from None
            lo, hi = {"alpha": (0, 1), "frozen": (0, 1), "lr": (1e-12, 1), "budget": (1e-6, 1000)}.get(key, (0, math.inf))
            if not math.isfinite(number) or not lo <= number <= hi or (key == "frozen" and number not in (0, 1)):
                raise StrategyError(f"strategy {text!r}: {key}={value.strip()} is outside "
                                    f"{'{0, 1}' if key == 'frozen' else f'[{lo:g}, {hi:g}]'}")
            if key == "alpha":
                alpha = number
            else:
                options[key] = number
        if name == "hybrid" and alpha is None:
            raise StrategyError(f"strategy {text!r}: hybrid needs alpha, e.g. 'hybrid(0.5)'")
        return cls(name, alpha, tuple(sorted(options.items())))

    @property
    def family(self) -> str:
        return "untrained" if self.name in UNTRAINED else "sampled" if self.name in SAMPLED else "mixed"

    @property
    def trains(self) -> bool:
        return self.family != "untrained"

    @property
    def mixing(self) -> bool:
        return self.family == "mixed"

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
        return ORDER.index(self.name), self.alpha if self.alpha is not None else -1, self.options

    def apply(self, profile):
        """The profile this strategy's run trains under: its ``budget``, ``lr`` and ``frozen`` options
        replace the profile's fields (the profile itself when it has none)."""
        o = dict(self.options)
        changes = {"budget_pairs": round(profile.budget_pairs * o["budget"]) if "budget" in o else None,
                   "lr": o.get("lr"), "freeze_embeddings": bool(o["frozen"]) if "frozen" in o else None}
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            return profile
        from .config import override
        return override(profile, **changes)

    def pairs_per_step(self, batch_size: int) -> int:
        return batch_size * (2 if self.mixing else 1)

    def sampler(self) -> tuple[str, dict]:
        """The batch sampler's registered name and arguments (mixing draws a mono and a cross batch)."""
        if not self.trains:
            raise StrategyError(f"strategy {self} does not train")
        if self.mixing:
            return "paired", {}
        return self.name, {"alpha": self.alpha} if self.alpha is not None else {}

    def combiner(self, cagrad_c: float, gradvac_beta: float) -> tuple[str, dict]:
        """The gradient combiner's registered name and arguments; values in the name beat the profile's."""
        defaults = {"cagrad": {"c": cagrad_c}, "gradvac": {"beta": gradvac_beta},
                    "sum": {} if self.alpha is None else {"weights": (self.alpha, 1 - self.alpha)}}
        return self.name, {**defaults.get(self.name, {}),
                           **{k: v for k, v in self.options if k in OPTIONS.get(self.name, ())}}


def family_label(strategy) -> str:
    """How tables and plots group strategies."""
    return {"untrained": "no training", "sampled": "batch sampling", "mixed": "gradient mixing"}[
        Strategy.parse(strategy).family]


def sort(strategies) -> list[str]:
    """Strategy names in display order."""
    return sorted(strategies, key=lambda s: Strategy.parse(s).order)
