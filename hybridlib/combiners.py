"""Gradient combiners: T per-objective gradients (T x P) -> one update and the weights it used.

Every method here acts on the Gram matrix G = g g^T (T x T) and returns weights w with
update = w @ g: the projections of PCGrad and GradVac are tracked as coefficient vectors over the
original gradients, so no projected copy of a P-sized gradient is ever made. The P-sized arithmetic
(G and the update) runs on the gradients' device and in their dtype; the rules themselves run on a
float64 CPU copy of G, T x T numbers moved explicitly, once a step.
"""
from __future__ import annotations

import math

import torch

from .registry import Param, check_params, registrar

COMBINERS: dict[str, type[Combiner]] = {}
EPS = 1e-12


register = registrar(COMBINERS)


class Combiner:
    """Base class: subclasses implement ``weights(gram)`` and declare the numbers they take in ``params``."""
    name = "base"
    params: dict[str, Param] = {}

    def weights(self, gram: torch.Tensor) -> torch.Tensor:
        """The weights (T,) for a Gram matrix (T, T), both float64 on the CPU."""
        raise NotImplementedError

    def __call__(self, grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``grads`` (T, P) -> (update (P,), weights (T,)) with update = weights @ grads, both on the
        gradients' device and in their dtype. Non-finite gradients (an fp16 overflow, whose step is skipped)
        give their plain sum and NaN weights, leaving the rule's state as it was."""
        gram = (grads @ grads.T).to("cpu", torch.float64)
        if not torch.isfinite(gram).all():
            return grads.sum(0), torch.full((len(grads),), math.nan, dtype=grads.dtype, device=grads.device)
        w = self.weights(gram).to(grads.device, grads.dtype)
        return w @ grads, w

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


@register("sum")
class Sum(Combiner):
    """The plain sum, or with ``alpha`` the weighted sum (alpha, 1 - alpha) of two gradients (mono, cross):
    the like-for-like mixing baseline of ``hybrid(alpha)``."""
    params = {"alpha": Param(0, 1, positional=True, doc="weight of the first (monolingual) gradient")}

    def __init__(self, alpha: float | None = None):
        check_params(type(self), {"alpha": alpha})
        self.alpha = alpha

    def weights(self, gram):
        if self.alpha is None:
            return torch.ones(len(gram), dtype=torch.float64)
        if len(gram) != 2:
            raise ValueError(f"sum({self.alpha:g}) weighs two gradients, got {len(gram)}")
        return torch.tensor([self.alpha, 1 - self.alpha], dtype=torch.float64)


@register("pcgrad")
class PCGrad(Combiner):
    """PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning"): each g_i, against every other
    original g_j in random order, drops its component along g_j when g_i . g_j < 0; the update is the sum."""

    def __init__(self, seed: int = 0):
        self.generator = torch.Generator().manual_seed(seed)

    def weights(self, gram):
        return self.coefficients(gram).sum(0)

    def coefficients(self, gram: torch.Tensor) -> torch.Tensor:
        """C (T x T): projected g_i = C[i] @ g."""
        T = len(gram)
        C = torch.eye(T, dtype=torch.float64)
        for i in range(T):
            for j in torch.randperm(T, generator=self.generator).tolist():
                if j == i:
                    continue
                dot = C[i] @ gram[:, j]
                if dot < 0 and gram[j, j] > EPS:
                    C[i, j] -= dot / gram[j, j]
        return C

    def state_dict(self):
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.generator.set_state(state["generator"])


@register("gradvac")
class GradVac(Combiner):
    """Gradient Vaccine (Wang et al. 2021): for each pair (i, j) with an EMA target cosine phi_hat
    (start 0, rate ``beta``), when cos(g_i, g_j) = phi < phi_hat, add
    ||g_i|| (phi_hat sqrt(1 - phi^2) - phi sqrt(1 - phi_hat^2)) / (||g_j|| sqrt(1 - phi_hat^2)) * g_j to g_i,
    then phi_hat <- (1 - beta) phi_hat + beta phi. The update is the sum."""
    params = {"beta": Param(0, 1, lo_open=True, profile_field="gradvac_beta", doc="EMA rate of the target cosine")}

    def __init__(self, beta: float = 0.01, seed: int = 0):
        check_params(type(self), {"beta": beta})
        self.beta, self.generator = beta, torch.Generator().manual_seed(seed)
        self.target: torch.Tensor | None = None

    def weights(self, gram):
        return self.coefficients(gram).sum(0)

    def coefficients(self, gram: torch.Tensor) -> torch.Tensor:
        """C (T x T): adjusted g_i = C[i] @ g; updates the EMA targets."""
        T = len(gram)
        if self.target is None:
            self.target = torch.zeros(T, T, dtype=torch.float64)
        C = torch.eye(T, dtype=torch.float64)
        for i in range(T):
            for j in torch.randperm(T, generator=self.generator).tolist():
                if j == i:
                    continue
                norm_i = (C[i] @ gram @ C[i]).clamp(min=0).sqrt()
                norm_j = gram[j, j].clamp(min=0).sqrt()
                if norm_i < EPS or norm_j < EPS:
                    continue
                phi = ((C[i] @ gram[:, j]) / (norm_i * norm_j)).clamp(-1, 1)
                hat = self.target[i, j]
                if phi < hat:
                    C[i, j] += norm_i * (hat * (1 - phi ** 2).sqrt() - phi * (1 - hat ** 2).sqrt()) / (
                        norm_j * (1 - hat ** 2).clamp(min=EPS).sqrt())
                self.target[i, j] = (1 - self.beta) * hat + self.beta * phi
        return C

    def state_dict(self):
        return {"target": self.target, "generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.target = state["target"]
        self.generator.set_state(state["generator"])


@register("cagrad")
class CAGrad(Combiner):
    """Conflict-Averse Gradient descent (Liu et al. 2021): with g0 the average gradient and
    w* = argmin over the simplex of g_w . g0 + c ||g0|| ||g_w||, the update is
    (g0 + c ||g0|| / ||g_w*|| g_w*) / (1 + c^2), as the authors' code rescales it."""
    params = {"c": Param(0, profile_field="cagrad_c", doc="radius of the ball around the average gradient")}

    def __init__(self, c: float = 0.5):
        check_params(type(self), {"c": c})
        self.c = c

    def weights(self, gram):
        T = len(gram)
        b = torch.full((T,), 1 / T, dtype=torch.float64)
        scale = self.c * math.sqrt(max(float(b @ gram @ b), 0.0))  # c ||g0||
        if T == 2:  # a convex function of one variable t, x = (t, 1 - t): golden-section search on [0, 1]
            (a, ab), (_, bb) = gram.tolist()
            def f(t):
                return (t * (a + ab) + (1 - t) * (ab + bb)) / 2 + scale * math.sqrt(
                    max(t * t * a + 2 * t * (1 - t) * ab + (1 - t) ** 2 * bb, 0.0) + EPS)
            lo, hi = 0.0, 1.0
            for _ in range(100):
                m1, m2 = lo + (hi - lo) * 0.381966, hi - (hi - lo) * 0.381966
                lo, hi = (lo, m2) if f(m1) <= f(m2) else (m1, hi)
            x = torch.tensor([(lo + hi) / 2, 1 - (lo + hi) / 2], dtype=torch.float64)
        else:
            from scipy.optimize import minimize
            A, b0 = gram.numpy(), b.numpy()  # gram is the CPU copy made for the rules
            objective = lambda x: x @ A @ b0 + scale * math.sqrt(max(x @ A @ x, 0.0) + EPS)  # noqa: E731
            x = torch.from_numpy(minimize(objective, b0, bounds=[(0, 1)] * T,
                                          constraints={"type": "eq", "fun": lambda x: 1 - x.sum()}).x)
        lam = scale / (math.sqrt(max(float(x @ gram @ x), 0.0)) + 1e-8)
        return (b + lam * x) / (1 + self.c ** 2)


@register("mgda")
class MGDA(Combiner):
    """MGDA (Sener and Koltun 2018): the min-norm point of the convex hull of the gradients. Two objectives
    have the closed form gamma = clip((g2 - g1) . g2 / ||g1 - g2||^2, 0, 1), d = gamma g1 + (1 - gamma) g2;
    more use Frank-Wolfe on the Gram matrix."""

    def __init__(self, iterations: int = 250):
        self.iterations = iterations

    def weights(self, gram):
        T = len(gram)
        if T == 2:
            diff = gram[0, 0] - 2 * gram[0, 1] + gram[1, 1]
            gamma = 0.5 if diff < EPS else float(((gram[1, 1] - gram[0, 1]) / diff).clamp(0, 1))
            return torch.tensor([gamma, 1 - gamma], dtype=torch.float64)
        w = torch.full((T,), 1 / T, dtype=torch.float64)
        for _ in range(self.iterations):
            t = int(torch.argmin(gram @ w))
            e = torch.zeros(T, dtype=torch.float64)
            e[t] = 1
            d = e - w
            denom = d @ gram @ d
            if denom < EPS:
                break
            step = float((-(w @ gram @ d) / denom).clamp(0, 1))
            if step < 1e-10:
                break
            w = w + step * d
        return w


def make_combiner(name: str, **kwargs) -> Combiner:
    if name not in COMBINERS:
        raise ValueError(f"unknown combiner {name!r}; valid: {', '.join(COMBINERS)}")
    return COMBINERS[name](**kwargs)
