"""Gradient-cosine probes: is there conflict between the monolingual and the cross-lingual objective, beyond
the disagreement of two batches of one kind?

Each probe draws two independent (monolingual, cross-lingual) pairs of batches from a stream of its own and
compares their gradients: mono vs cross, and beside it the noise floor, mono vs mono and cross vs cross. Two
batches of one kind are not perfectly aligned either; a mono/cross cosine is only evidence of conflict when it
is below that floor.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from .samplers import Stream

Gradient = Callable[[list[int], str], tuple[torch.Tensor, float, float]]  # rows, objective -> (flat, loss, norm)


class Probe:
    def __init__(self, stream: Stream):
        self.stream = stream  # of paired batches: a monolingual half, then a cross-lingual half

    def cosines(self, gradient: Gradient) -> dict[str, float]:
        """Measurement only: the random stream training draws from is left as it was."""
        rng, grads = torch.get_rng_state(), []
        for _ in range(2):
            rows = self.stream.next()
            half = len(rows) // 2
            grads.append((gradient(rows[:half], "probe mono"), gradient(rows[half:], "probe cross")))
        torch.set_rng_state(rng)
        cos = lambda x, y: float(x[0] @ y[0]) / (x[2] * y[2] + 1e-12)  # noqa: E731
        (m1, c1), (m2, c2) = grads
        return {"probe_cosine": cos(m1, c1), "cosine_mono_mono": cos(m1, m2), "cosine_cross_cross": cos(c1, c2)}

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)
