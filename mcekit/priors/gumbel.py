"""Categorical cluster prior with a Gumbel-softmax (Concrete) relaxation (Jang et al. 2017; JointVAE).

The block's ``dim`` is the number of categories K. The encoder gives logits ℓ(x) ∈ R^K,
q(c|x) = softmax(ℓ); the decoder receives the relaxed one-hot y = softmax((ℓ + g)/t),
g ~ Gumbel(0, 1), with the temperature t annealed by :meth:`GumbelSoftmaxPrior.on_step`.
The KL is the categorical one, KL(q(c|x) ‖ p(c)) = Σ q log q + log K for a uniform p(c), or
Σ q (log q − log π) for a learned p(c) = softmax(prior logits).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcekit.priors.base import LatentPrior, Posterior, PriorConfig, symmetric_kl
from mcekit.registry import priors


def straight_through_one_hot(probs: torch.Tensor) -> torch.Tensor:
    """One-hot of the row argmax in the forward pass, the gradient of ``probs`` in the backward pass."""
    hard = F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype)
    return hard - probs.detach() + probs


def temperature_at(step: int, start: float, end: float, steps: int, schedule: str) -> float:
    """Annealed temperature: t_start → t_end over ``steps`` steps, then constant.

    exponential: t = t_start (t_end/t_start)^{min(step/steps, 1)} (a constant rate per step);
    linear: t = t_start + (t_end − t_start) min(step/steps, 1).
    """
    frac = min(max(step, 0) / steps, 1.0) if steps > 0 else 1.0
    if schedule == "linear":
        return start + (end - start) * frac
    return start * (end / start) ** frac


class GumbelSoftmaxPrior(LatentPrior):
    """p(c) = Uniform(K) (or learned); q(c|x) = Cat(softmax ℓ); decoder gets the Gumbel-softmax relaxation."""

    is_cluster = True

    def __init__(
        self,
        dim: int,
        temperature_start: float,
        temperature_end: float,
        anneal_steps: int,
        schedule: str,
        hard: bool,
        learn_prior: bool,
    ) -> None:
        if dim < 2:
            raise ValueError(f"gumbel prior needs dim (number of categories) >= 2, got {dim}")
        super().__init__(dim)
        self.temperature_start = temperature_start
        self.temperature_end = temperature_end
        self.anneal_steps = anneal_steps
        self.schedule = schedule
        self.hard = hard
        self.learn_prior = learn_prior
        # Schedule state lives in buffers so that it is saved in and restored from checkpoints.
        self.register_buffer("schedule_step", torch.zeros((), dtype=torch.long))
        self.register_buffer("temperature", torch.tensor(float(temperature_start)))
        # Prior logits (uniform and frozen unless learn_prior); always present so state dicts match.
        self.prior_logits = nn.Parameter(torch.zeros(dim), requires_grad=learn_prior)

    @property
    def n_params(self) -> int:
        return self.dim

    @property
    def n_clusters(self) -> int:
        return self.dim

    def on_step(self, step: int) -> None:
        t = temperature_at(
            step, self.temperature_start, self.temperature_end, self.anneal_steps, self.schedule
        )
        self.schedule_step.fill_(int(step))
        self.temperature.fill_(t)

    def posterior(self, params: torch.Tensor) -> Posterior:
        logits = torch.log_softmax(params, dim=-1)
        return Posterior(mean=logits.exp(), params={"logits": logits})

    def rsample(self, post: Posterior, generator: torch.Generator | None = None) -> torch.Tensor:
        logits = post["logits"]
        # Gumbel(0,1) = −log E with E ~ Exp(1); drawn on the CPU so that the generator controls it
        e = torch.empty(logits.shape, dtype=torch.float64).exponential_(generator=generator)
        gumbel = -e.clamp_min(1e-300).log()
        gumbel = gumbel.to(device=logits.device, dtype=logits.dtype)
        y = torch.softmax((logits + gumbel) / self.temperature.to(logits.dtype), dim=-1)
        return straight_through_one_hot(y) if self.hard else y

    def log_prior(self) -> torch.Tensor:
        """log p(c) (K,)."""
        return torch.log_softmax(self.prior_logits, dim=0)

    def kl(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        logq = post["logits"]
        if self.learn_prior:
            return (logq.exp() * (logq - self.log_prior().to(logq.dtype))).sum(-1)
        return (logq.exp() * logq).sum(-1) + math.log(self.dim)

    def log_q(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        """log q(c|x) of the category c = argmax z of a sample (B,).

        By the Gumbel-max trick argmax(ℓ + g) ~ Cat(softmax ℓ) at every temperature, so
        E[log_q − log_p] over samples is exactly the categorical KL returned by :meth:`kl`.
        """
        return post["logits"].gather(-1, z.argmax(-1, keepdim=True)).squeeze(-1)

    def log_p(self, z: torch.Tensor) -> torch.Tensor:
        """log p(c) of the category c = argmax z (B,)."""
        return self.log_prior().to(z.dtype)[z.argmax(-1)]

    def decoder_input(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        return z

    def point(self, post: Posterior) -> torch.Tensor:
        """One-hot of argmax ℓ (what the decoder sees as t → 0), with a straight-through gradient."""
        return straight_through_one_hot(post.mean)

    def responsibilities(self, post: Posterior, z: torch.Tensor | None = None) -> torch.Tensor:
        return post.mean

    def assign(self, post: Posterior) -> torch.Tensor:
        return post["logits"].argmax(-1)

    def consistency(self, a: Posterior, b: Posterior) -> torch.Tensor:
        return symmetric_kl(a.mean, b.mean)

    def prototypes(self) -> torch.Tensor:
        return torch.eye(self.dim, dtype=self.temperature.dtype, device=self.temperature.device)


@priors.register
class GumbelConfig(PriorConfig):
    """Categorical cluster latent (dim = number of categories), Gumbel-softmax relaxed with annealing."""

    type: Literal["gumbel"] = "gumbel"
    temperature_start: float = Field(1.0, ge=1e-3, description="relaxation temperature at step 0")
    temperature_end: float = Field(0.5, ge=1e-3, description="temperature after anneal_steps (then constant)")
    anneal_steps: int = Field(10000, ge=0, description="optimisation steps of the annealing")
    schedule: Literal["exponential", "linear"] = Field(
        "exponential", description="exponential (constant rate per step) or linear decay of the temperature"
    )
    hard: bool = Field(False, description="straight-through: one-hot forward, relaxed gradient backward")
    learn_prior: bool = Field(False, description="learn p(c) instead of a fixed uniform one")

    def build(self, dim: int) -> GumbelSoftmaxPrior:
        return GumbelSoftmaxPrior(
            dim, self.temperature_start, self.temperature_end, self.anneal_steps, self.schedule,
            self.hard, self.learn_prior,
        )


__all__ = ["GumbelConfig", "GumbelSoftmaxPrior", "straight_through_one_hot", "temperature_at"]
