"""A training run's resumable state in one file, written atomically: the trainable parameters, every stateful
part (optimizer, scheduler, samplers, combiner, loss scaler: anything with ``state_dict``), the random
streams and a few counters, with the settings it was trained under so a run never resumes from another's."""
from __future__ import annotations

import io
from pathlib import Path

import torch

from .errors import TrainingError
from .paths import atomic_write_bytes


class Checkpoint:
    """The state of ``params`` (trainable tensors by name) and ``parts`` (name -> object with ``state_dict``,
    or None) at ``path``, for a run of ``config`` on ``model``."""

    def __init__(self, path: Path, config: dict, model: str, params: dict[str, torch.Tensor], parts: dict):
        self.path, self.config, self.model, self.params, self.parts = Path(path), config, model, params, parts
        self.step = 0  # the step of the last checkpoint saved or restored; 0: none

    def save(self, step: int, **counters) -> None:
        """Write the state at ``step`` (a kill or a full disk mid-save keeps the previous checkpoint)."""
        state = {"step": step, **counters, "params": {n: p.detach().cpu().clone() for n, p in self.params.items()},
                 **{name: part.state_dict() if part is not None else None for name, part in self.parts.items()},
                 "rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                 "config": self.config, "model": self.model}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(self.path, buf.getvalue())
        self.step = step

    def restore(self) -> dict | None:
        """Load the saved state into the parameters, the parts and the random streams; returns its counters
        (step and the rest), or None without a checkpoint. One saved under other settings is an error."""
        params, parts = self.params, self.parts
        if not self.path.is_file():
            return None
        try:
            s = torch.load(self.path, weights_only=False, map_location="cpu")
        except Exception as e:
            raise TrainingError(f"{self.path}: unreadable checkpoint ({type(e).__name__}: {e}); delete it to "
                                "start over") from None
        old = s.get("config", {})
        diff = {k: (old.get(k), v) for k, v in self.config.items() if old.get(k) != v}
        if s.get("model") != self.model:
            diff["model"] = (s.get("model"), self.model)
        if diff or set(s.get("params", {})) != set(params):
            what = "; ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise TrainingError(f"{self.path}: checkpoint does not match this run ({what or 'different trainable parameters'}); "
                                "use another run directory or delete the checkpoint")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(s["params"][n])
        for name, part in parts.items():
            if part is not None and s.get(name) is not None:
                part.load_state_dict(s[name])
        torch.set_rng_state(s["rng"])
        if s["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(s["cuda_rng"])
        self.step = s["step"]
        known = {"params", "rng", "cuda_rng", "config", "model", *parts}
        return {k: v for k, v in s.items() if k not in known}
