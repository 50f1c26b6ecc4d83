"""Families of strategies are registered by name: a string in a profile or notebook maps to a class, and
each class declares its hyper-parameters once (:class:`Param`), the single source of their validation and
of what an error message says is allowed."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ConfigError


def registrar(table: dict):
    """A class decorator factory that records ``cls`` in ``table`` under ``name`` and sets ``cls.name``."""
    def register(name: str):
        def deco(cls):
            table[name] = cls
            cls.name = name
            return cls
        return deco
    return register


@dataclass(frozen=True)
class Param:
    """A number a registered class takes: its range (``lo`` excluded when ``lo_open``; only ``choices`` when
    given), whether a strategy name may give it without its name (``hybrid(0.5)``) or must give it, and the
    profile field that supplies it when the name does not."""
    lo: float = 0.0
    hi: float = math.inf
    lo_open: bool = False
    choices: tuple[float, ...] = ()
    positional: bool = False
    required: bool = False
    profile_field: str | None = None
    doc: str = ""

    @property
    def allowed(self) -> str:
        if self.choices:
            return "{" + ", ".join(f"{c:g}" for c in self.choices) + "}"
        return f"{'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}]"

    def check(self, value, what: str) -> float:
        """``value`` as a float, or a ``ConfigError`` saying ``what={value} is outside`` the range."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
            value in self.choices if self.choices else
            (self.lo < value if self.lo_open else self.lo <= value) and value <= self.hi)
        if not ok:
            shown = f"{value:g}" if isinstance(value, float) else repr(value)
            raise ConfigError(f"{what}={shown} is outside {self.allowed}")
        return float(value)


def check_params(cls, values: dict) -> None:
    """Check keyword arguments of a registered class against its declared ``params`` (None: not given)."""
    for key, value in values.items():
        if value is not None:
            cls.params[key].check(value, f"{cls.name}: {key}")
