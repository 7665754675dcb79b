"""The latent prior interface.

A prior owns its learnable parameters (mixture means, weights, concentrations), says how many encoder
outputs its posterior needs, turns those outputs into a :class:`Posterior`, samples from it with the
reparameterisation trick and gives the per-sample KL term. Cluster priors also give responsibilities,
an assignment and an optional initialisation from encoded means.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import nn

from mcekit.registry import Component


@dataclass
class Posterior:
    """q(z|x) for one latent block.

    ``mean`` is the point estimate used for clustering, latent maps and consistency terms; ``params``
    holds whatever the prior needs (e.g. ``logvar``, ``kappa``, ``logits``).
    """

    mean: torch.Tensor
    params: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.params[key]


class LatentPrior(nn.Module, ABC):
    """Prior p(z) and posterior family q(z|x) of one latent block of size ``dim``."""

    #: True for priors whose latent defines clusters (mixtures, categorical)
    is_cluster: bool = False

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    @property
    @abstractmethod
    def n_params(self) -> int:
        """How many encoder outputs the posterior needs."""

    @abstractmethod
    def posterior(self, params: torch.Tensor) -> Posterior:
        """Encoder outputs (B, n_params) → q(z|x)."""

    @abstractmethod
    def rsample(self, post: Posterior, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised sample (B, dim)."""

    @abstractmethod
    def kl(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        """Per-sample KL term (B,): closed form where it exists, else a one-sample estimate at z."""

    @property
    def decoder_dim(self) -> int:
        """Size of what the decoder receives from this block."""
        return self.dim

    def decoder_input(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        return z

    def point(self, post: Posterior) -> torch.Tensor:
        """Deterministic decoder input (evaluation, reconstructions)."""
        return self.decoder_input(post, post.mean)

    def consistency(self, a: Posterior, b: Posterior) -> torch.Tensor:
        """Per-sample divergence (B,) between two posteriors of images that differ only by pose."""
        return (a.mean - b.mean).pow(2).sum(-1)

    def on_step(self, step: int) -> None:
        """Schedules that follow the optimisation step (e.g. a Gumbel temperature)."""

    # -- cluster priors ---------------------------------------------------------------------------
    @property
    def n_clusters(self) -> int:
        return 0

    def responsibilities(self, post: Posterior, z: torch.Tensor | None = None) -> torch.Tensor:
        """q(c|x) (B, K), rows summing to one."""
        raise TypeError(f"{type(self).__name__} is not a cluster prior")

    def assign(self, post: Posterior) -> torch.Tensor:
        return self.responsibilities(post).argmax(-1)

    def initialize(self, means: torch.Tensor, seed: int = 0) -> None:
        """Fit the prior to encoded means after a warm-up (mixtures); default: nothing to fit."""

    @property
    def is_fitted(self) -> bool:
        """Whether responsibilities mean anything yet: mixtures only after ``initialize``."""
        return True

    def prototypes(self) -> torch.Tensor | None:
        """One decoder input per cluster (K, decoder_dim), for prototype figures; None if not a cluster prior."""
        return None


class PriorConfig(Component):
    """Base of prior config classes; ``build(dim)`` returns a :class:`LatentPrior`."""

    @abstractmethod
    def build(self, dim: int) -> LatentPrior:
        ...


def symmetric_kl(p: torch.Tensor, q: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Symmetrised KL between rows of two probability tables (B, K) → (B,)."""
    lp, lq = (p + eps).log(), (q + eps).log()
    return 0.5 * ((p * (lp - lq)).sum(-1) + (q * (lq - lp)).sum(-1))
