"""Standard normal prior with a diagonal Gaussian posterior (style and pose blocks)."""

from __future__ import annotations

from typing import Literal

import torch

from mcekit.priors.base import LatentPrior, Posterior, PriorConfig
from mcekit.registry import priors


def diagonal_gaussian(params: torch.Tensor, dim: int, min_logvar: float = -12.0) -> Posterior:
    mean, logvar = params[:, :dim], params[:, dim:].clamp(min=min_logvar, max=8.0)
    return Posterior(mean=mean, params={"logvar": logvar})


def gaussian_rsample(post: Posterior, generator: torch.Generator | None = None) -> torch.Tensor:
    eps = torch.randn(post.mean.shape, generator=generator, dtype=post.mean.dtype, device="cpu")
    return post.mean + eps.to(post.mean.device) * (0.5 * post["logvar"]).exp()


class NormalPrior(LatentPrior):
    """p(z) = N(0, I); q(z|x) = N(μ, diag σ²); KL in closed form."""

    @property
    def n_params(self) -> int:
        return 2 * self.dim

    def posterior(self, params: torch.Tensor) -> Posterior:
        return diagonal_gaussian(params, self.dim)

    def rsample(self, post: Posterior, generator: torch.Generator | None = None) -> torch.Tensor:
        return gaussian_rsample(post, generator)

    def kl(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        logvar = post["logvar"]
        return 0.5 * (post.mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


@priors.register
class NormalConfig(PriorConfig):
    """Standard normal N(0, I) with a diagonal Gaussian posterior; the usual style and pose prior."""

    type: Literal["normal"] = "normal"

    def build(self, dim: int) -> NormalPrior:
        return NormalPrior(dim)


__all__ = ["NormalConfig", "NormalPrior", "diagonal_gaussian", "gaussian_rsample"]
