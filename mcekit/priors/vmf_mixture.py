"""Mixture of von Mises–Fisher distributions for the cluster block (clustering on the sphere).

p(z) = Σ_k π_k vMF(z; m_k, κ_k) on S^{m−1}, with mean directions m_k kept on the sphere as a
``geoopt.ManifoldParameter`` (optimise with ``geoopt.optim.RiemannianAdam``), learnable log κ_k and
weights π = softmax(logits) (fixed uniform unless ``learn_weights``). The posterior is
vMF(μ(x), κ(x)) sampled as in :mod:`mcekit.priors.vmf`. There is no closed-form KL between a vMF
and a vMF mixture, so the KL term is the one-sample estimate log q(z|x) − log p(z) at the
reparameterised sample z (unbiased for the KL; gradients reach μ, κ, the m_k, κ_k and π).
"""

from __future__ import annotations

import math
from typing import Literal

import geoopt
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcekit.priors.base import Posterior, symmetric_kl
from mcekit.priors.vmf import KappaGrad, VMFPosteriorFields, VonMisesFisherPrior, vmf_log_normalizer
from mcekit.registry import priors

KAPPA_INIT_RANGE = (1e-2, 1e4)


def _kmeans_pp(x: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k-means++ seeding with the cosine dissimilarity 1 − xᵀc: k row indices of x."""
    n = x.shape[0]
    chosen = [int(torch.randint(n, (1,), generator=generator))]
    best_sim = x @ x[chosen[0]]
    for _ in range(1, k):
        dist = (1 - best_sim).clamp_min(0)
        total = float(dist.sum())
        if total <= 0:  # every point coincides with a chosen centre: pick uniformly
            probs = torch.ones(n, dtype=x.dtype)
        else:
            probs = dist / total
        idx = int(torch.multinomial(probs, 1, generator=generator))
        chosen.append(idx)
        best_sim = torch.maximum(best_sim, x @ x[idx])
    return torch.tensor(chosen)


def spherical_kmeans(
    x: torch.Tensor, k: int, restarts: int = 5, seed: int = 0, max_iter: int = 100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine k-means on the unit sphere with k-means++ seeding; the best of ``restarts`` runs.

    ``x`` (N, d) is normalised first. Returns unit centroids (k, d) and labels (N,).
    Empty clusters are re-seeded with the point farthest from its centroid.
    """
    x = F.normalize(x.detach().double().cpu(), dim=-1, eps=1e-12)
    n = x.shape[0]
    if n < k:
        raise ValueError(f"spherical k-means needs at least k={k} points, got {n}")
    generator = torch.Generator().manual_seed(seed)
    best: tuple[float, torch.Tensor, torch.Tensor] | None = None
    for _ in range(restarts):
        centroids = x[_kmeans_pp(x, k, generator)].clone()
        labels = torch.full((n,), -1, dtype=torch.long)
        for _ in range(max_iter):
            sims = x @ centroids.T
            new_labels = sims.argmax(-1)
            counts = torch.bincount(new_labels, minlength=k)
            for empty in torch.nonzero(counts == 0).flatten().tolist():
                worst = int(sims.max(-1).values.argmin())
                new_labels[worst] = empty
                sims[worst] = -2.0  # do not hand the same point to two empty clusters
                sims[worst, empty] = 1.0
            sums = F.one_hot(new_labels, k).to(x.dtype).T @ x
            centroids = F.normalize(sums, dim=-1, eps=1e-12)
            if torch.equal(new_labels, labels):
                break
            labels = new_labels
        score = float((x * centroids[labels]).sum())
        if best is None or score > best[0]:
            best = (score, centroids, labels)
    assert best is not None
    return best[1], best[2]


def banerjee_kappa(resultant: torch.Tensor, m: int) -> torch.Tensor:
    """Banerjee et al. (2005) approximation κ ≈ R̄(m − R̄²)/(1 − R̄²) from the mean resultant length R̄."""
    r = resultant.clamp(1e-6, 1 - 1e-9)
    return r * (m - r * r) / (1 - r * r)


class VMFMixturePrior(VonMisesFisherPrior):
    """p(z) = Σ_k π_k vMF(z; m_k, κ_k); q(z|x) = vMF(μ, κ); KL = log q(z|x) − log p(z) at the sample.

    Posterior, sampling and ``log_q`` are those of :class:`~mcekit.priors.vmf.VonMisesFisherPrior`.
    """

    is_cluster = True

    def __init__(
        self,
        dim: int,
        components: int,
        learn_weights: bool,
        init_kappa: float,
        restarts: int,
        kappa_floor: float = 1e-2,
        proposals: int = 2,
        max_rounds: int = 64,
        kappa_grad: KappaGrad = "implicit",
    ) -> None:
        super().__init__(dim, kappa_floor, proposals, max_rounds, kappa_grad)
        self.components = components
        self.restarts = restarts
        # Fixed uniform weights by default, as for the Gaussian mixture.
        self.logits = nn.Parameter(torch.zeros(components), requires_grad=learn_weights)
        self.means = geoopt.ManifoldParameter(
            F.normalize(torch.randn(components, dim), dim=-1), manifold=geoopt.Sphere()
        )
        self.log_kappas = nn.Parameter(torch.full((components,), math.log(init_kappa)))
        # Until fitted to encoded means the mixture is arbitrary: the KL is taken against the uniform
        # distribution on the sphere meanwhile, so random directions do not shape the latent.
        self.register_buffer("fitted", torch.tensor(False))

    @property
    def n_clusters(self) -> int:
        return self.components

    # -- densities ------------------------------------------------------------------------------
    def log_weights(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, dim=0)

    def directions(self) -> torch.Tensor:
        """Unit mean directions (K, dim), renormalised in case a plain optimiser moved them off the sphere."""
        return F.normalize(self.means, dim=-1, eps=1e-12)

    def kappas(self) -> torch.Tensor:
        return self.log_kappas.exp()

    def component_log_density(self, z: torch.Tensor) -> torch.Tensor:
        """log vMF(z; m_k, κ_k) for every component: (B, K)."""
        kappa = self.kappas().to(z.dtype)
        return kappa * (z @ self.directions().to(z.dtype).T) + vmf_log_normalizer(kappa, self.dim)

    def log_p(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = logsumexp_k(log π_k + log vMF(z; m_k, κ_k)) (B,); uniform on the sphere until fitted."""
        if not bool(self.fitted):
            return super().log_p(z)
        return torch.logsumexp(self.log_weights().to(z.dtype) + self.component_log_density(z), dim=-1)

    def kl(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        if not bool(self.fitted):
            return super().kl(post, z)  # closed form against the uniform distribution
        return self.log_q(post, z) - self.log_p(z)

    # -- clusters -------------------------------------------------------------------------------
    def responsibilities(self, post: Posterior, z: torch.Tensor | None = None) -> torch.Tensor:
        point = post.mean if z is None else z
        return torch.softmax(self.log_weights().to(point.dtype) + self.component_log_density(point), dim=-1)

    def consistency(self, a: Posterior, b: Posterior) -> torch.Tensor:
        return symmetric_kl(self.responsibilities(a), self.responsibilities(b))

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def initialize(self, means: torch.Tensor, seed: int = 0) -> None:
        """Spherical k-means on the encoded mean directions; κ_k from each cluster's spread (Banerjee)."""
        centroids, labels = spherical_kmeans(means, self.components, self.restarts, seed)
        x = F.normalize(means.detach().double().cpu(), dim=-1, eps=1e-12)
        counts = torch.bincount(labels, minlength=self.components).double()
        resultant = (F.one_hot(labels, self.components).to(x.dtype).T @ x).norm(dim=-1) / counts.clamp_min(1)
        kappa = banerjee_kappa(resultant, self.dim).clamp(*KAPPA_INIT_RANGE)
        with torch.no_grad():
            self.means.copy_(centroids.to(self.means))
            self.log_kappas.copy_(kappa.log().to(self.log_kappas))
            if self.logits.requires_grad:
                self.logits.copy_((counts / counts.sum()).clamp_min(1e-6).log().to(self.logits))
            self.fitted.fill_(True)

    def prototypes(self) -> torch.Tensor:
        return self.directions().detach()


@priors.register
class VMFMixtureConfig(VMFPosteriorFields):
    """Mixture of K von Mises–Fisher components on the sphere S^(dim−1), initialised by spherical k-means."""

    type: Literal["vmf_mixture"] = "vmf_mixture"
    components: int = Field(10, ge=2, le=1024, description="number of mixture components (clusters)")
    learn_weights: bool = Field(False, description="learn the mixture weights (risk: components empty out)")
    init_kappa: float = Field(10.0, gt=0, description="initial concentration κ_k of every component")
    init_restarts: int = Field(5, ge=1, description="spherical k-means restarts in initialize()")

    def build(self, dim: int) -> VMFMixturePrior:
        return VMFMixturePrior(
            dim, self.components, self.learn_weights, self.init_kappa, self.init_restarts,
            self.kappa_floor, self.proposals, self.max_rounds, self.kappa_grad,
        )


__all__ = ["VMFMixtureConfig", "VMFMixturePrior", "banerjee_kappa", "spherical_kmeans"]
