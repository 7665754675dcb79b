"""Gaussian mixture prior for the cluster block (VaDE, Jiang et al. 2017)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from pydantic import Field
from torch import nn

from mcekit.priors.base import LatentPrior, Posterior, PriorConfig, symmetric_kl
from mcekit.priors.normal import diagonal_gaussian, gaussian_rsample
from mcekit.registry import priors

LOG_2PI = math.log(2 * math.pi)


class GaussianMixturePrior(LatentPrior):
    """p(c) = π_c, p(z|c) = N(μ_c, diag σ_c²); q(z|x) = N(μ, diag σ²); q(c|x) ≈ p(c|z)."""

    is_cluster = True

    def __init__(self, dim: int, components: int, learn_weights: bool, restarts: int, init: str = "kmeans") -> None:
        super().__init__(dim)
        self.components = components
        self.restarts = restarts
        self.init = init
        # Fixed uniform weights by default: learnable weights let the mixture empty its components.
        self.logits = nn.Parameter(torch.zeros(components), requires_grad=learn_weights)
        self.means = nn.Parameter(torch.randn(components, dim))
        self.logvars = nn.Parameter(torch.zeros(components, dim))
        # Until fitted to encoded means the mixture is arbitrary: the KL is then taken against N(0, I)
        # (VaDE's autoencoder warm-up) so random component means do not shape the latent.
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def n_params(self) -> int:
        return 2 * self.dim

    @property
    def n_clusters(self) -> int:
        return self.components

    def posterior(self, params: torch.Tensor) -> Posterior:
        return diagonal_gaussian(params, self.dim)

    def rsample(self, post: Posterior, generator: torch.Generator | None = None) -> torch.Tensor:
        return gaussian_rsample(post, generator)

    def log_weights(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, dim=0)

    def component_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; μ_c, σ_c²) for every component: (B, K)."""
        diff = z.unsqueeze(1) - self.means.unsqueeze(0)
        return -0.5 * (LOG_2PI + self.logvars + diff.pow(2) / self.logvars.exp()).sum(-1)

    def responsibilities(self, post: Posterior, z: torch.Tensor | None = None) -> torch.Tensor:
        point = post.mean if z is None else z
        return torch.softmax(self.log_weights() + self.component_log_density(point), dim=-1)

    def kl(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        if not bool(self.fitted):
            logvar = post["logvar"]
            return 0.5 * (post.mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)
        gamma = self.responsibilities(post, z)
        mu, logvar = post.mean, post["logvar"]
        var_c = self.logvars.exp().unsqueeze(0)  # (1,K,D)
        per_component = 0.5 * (
            self.logvars.unsqueeze(0) + logvar.exp().unsqueeze(1) / var_c
            + (mu.unsqueeze(1) - self.means.unsqueeze(0)).pow(2) / var_c
        ).sum(-1)  # (B,K)
        cat = (gamma * (gamma.clamp_min(1e-10).log() - self.log_weights())).sum(-1)
        return (gamma * per_component).sum(-1) + cat - 0.5 * (1 + logvar).sum(-1)

    def consistency(self, a: Posterior, b: Posterior) -> torch.Tensor:
        return symmetric_kl(self.responsibilities(a), self.responsibilities(b))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def initialize(self, means: torch.Tensor, seed: int = 0) -> None:
        data = means.detach().double().cpu().numpy()
        centres, variances, weights = fit_mixture(data, self.components, self.init, self.restarts, seed)
        with torch.no_grad():
            self.means.copy_(torch.as_tensor(centres, dtype=self.means.dtype))
            self.logvars.copy_(torch.as_tensor(np.log(variances), dtype=self.logvars.dtype))
            if self.logits.requires_grad:
                self.logits.copy_(torch.as_tensor(np.log(weights), dtype=self.logits.dtype))
            self.fitted.fill_(True)

    def prototypes(self) -> torch.Tensor:
        return self.means.detach()


def fit_mixture(data: np.ndarray, k: int, method: str, restarts: int, seed: int,
                reg: float = 1e-4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Component means, diagonal variances and weights fitted to points (N, d).

    'kmeans': hard k-means partition, then each part's mean and variance — on encoded means after a
    warm-up this starts the mixture far closer to the classes than EM does (EM lets broad components
    swallow their neighbours). 'gmm': scikit-learn's diagonal GaussianMixture (EM).
    """
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        fit = GaussianMixture(k, covariance_type="diag", n_init=restarts, reg_covar=reg, random_state=seed).fit(data)
        return fit.means_, fit.covariances_, fit.weights_
    from sklearn.cluster import KMeans

    labels = KMeans(k, n_init=max(restarts, 10), random_state=seed).fit_predict(data)
    centres = np.stack([data[labels == c].mean(0) for c in range(k)])
    variances = np.stack([data[labels == c].var(0) + reg for c in range(k)])
    weights = np.bincount(labels, minlength=k) / len(labels)
    return centres, variances, weights


@priors.register
class GMMConfig(PriorConfig):
    """Gaussian mixture (VaDE): K diagonal components, initialised from a GaussianMixture fit after warm-up."""

    type: Literal["gmm"] = "gmm"
    components: int = Field(10, ge=2, le=1024, description="number of mixture components (clusters)")
    learn_weights: bool = Field(False, description="learn the mixture weights (risk: components empty out)")
    init: Literal["kmeans", "gmm"] = Field(
        "kmeans", description="fit to encoded means: k-means parts (robust) or EM GaussianMixture")
    init_restarts: int = Field(3, ge=1, description="restarts of the fit when initialising from encoded means")

    def build(self, dim: int) -> GaussianMixturePrior:
        return GaussianMixturePrior(dim, self.components, self.learn_weights, self.init_restarts, self.init)
