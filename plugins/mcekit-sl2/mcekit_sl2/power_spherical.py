"""Uniform prior on the sphere with a power spherical posterior (De Cao & Aziz 2020).

The power spherical distribution on S^{m−1} (m = ``dim``) with mean direction μ and concentration κ ≥ 0:

    p(x; μ, κ) = (1 + μᵀx)^κ / N(κ, m),   N(κ, m) = 2^{α+β} π^β Γ(α) / Γ(α + β),
    β = (m − 1)/2,  α = β + κ.

It is a drop-in alternative to von Mises–Fisher: no Bessel functions and no rejection sampling.

Sampling (reparameterised): t = μᵀx satisfies (1 + t)/2 ~ Beta(α, β). We draw the complement
ε = (1 − t)/2 ~ Beta(β, α) with ``torch.distributions.Beta.rsample`` (its pathwise gradient w.r.t. κ
is exact), so that 1 − t = 2ε and √(1 − t²) = 2√(ε(1 − ε)) keep full precision for large κ. Then
v uniform on S^{m−2}, y = (t, √(1 − t²) v), and x = Q y for an orthogonal Q with Q e₁ = μ (a Householder
reflection, flipped to the better-conditioned of ±(e₁ ∓ μ)).

Moments: E[x] = μ (α − β)/(α + β) = μ κ/(κ + m − 1), so the mean resultant length is κ/(κ + m − 1).

Entropy: H = log N − κ (log 2 + ψ(α) − ψ(α + β)), hence

    KL(PS(μ, κ) ‖ Uniform(S^{m−1})) = −H + log |S^{m−1}|
        = κ (log 2 + ψ(α) − ψ(α + β)) − log N(κ, m) + log |S^{m−1}|,

a function of κ only, computed in float64.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from mcekit.priors.base import LatentPrior, Posterior, PriorConfig
from pydantic import Field

_LOG2 = math.log(2.0)


def log_sphere_area(m: int) -> float:
    """log |S^{m−1}| = log 2 + (m/2) log π − log Γ(m/2)."""
    return _LOG2 + 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m)


def ps_posterior(params: torch.Tensor, dim: int, kappa_floor: float) -> Posterior:
    """Encoder outputs (B, dim + 1) → PS(μ, κ): μ = first ``dim`` normalised, κ = softplus + floor."""
    direction = F.normalize(params[:, :dim], dim=-1, eps=1e-12)
    kappa = F.softplus(params[:, dim]) + kappa_floor
    return Posterior(mean=direction, params={"kappa": kappa})


def _float64(kappa: torch.Tensor) -> torch.Tensor:
    return kappa.double() if kappa.device.type != "mps" else kappa


def ps_log_normalizer(kappa: torch.Tensor, m: int) -> torch.Tensor:
    """log N(κ, m) = (α + β) log 2 + β log π + log Γ(α) − log Γ(α + β), in float64, returned in κ's dtype."""
    beta = 0.5 * (m - 1)
    k = _float64(kappa)
    alpha = beta + k
    out = (alpha + beta) * _LOG2 + beta * math.log(math.pi) + torch.lgamma(alpha) - torch.lgamma(alpha + beta)
    return out.to(kappa.dtype)


def ps_log_prob(z: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """log PS(z; μ, κ) = κ log(1 + μᵀz) − log N(κ, m); broadcasts over leading dimensions."""
    one_plus = (1 + (mu * z).sum(-1)).clamp_min(torch.finfo(z.dtype).tiny)
    return kappa * torch.log(one_plus) - ps_log_normalizer(kappa, z.shape[-1])


def ps_entropy(kappa: torch.Tensor, m: int) -> torch.Tensor:
    """H = log N − κ (log 2 + ψ(α) − ψ(α + β)) (De Cao & Aziz 2020)."""
    beta = 0.5 * (m - 1)
    k = _float64(kappa)
    alpha = beta + k
    h = ps_log_normalizer(k, m) - k * (_LOG2 + torch.digamma(alpha) - torch.digamma(alpha + beta))
    return h.to(kappa.dtype)


def ps_kl_uniform(kappa: torch.Tensor, m: int) -> torch.Tensor:
    """KL(PS(μ, κ) ‖ Uniform(S^{m−1})) = log |S^{m−1}| − H(κ), ≥ 0 and 0 at κ = 0."""
    return (log_sphere_area(m) - ps_entropy(_float64(kappa), m)).to(kappa.dtype)


def ps_mean_resultant_length(kappa: torch.Tensor, m: int) -> torch.Tensor:
    """E[μᵀx] = (α − β)/(α + β) = κ/(κ + m − 1)."""
    return kappa / (kappa + (m - 1))


def orthogonal_from_e1(mu: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply an orthogonal map sending e₁ to μ (rows of unit vectors) to x.

    σ = sign(μ₁), u = e₁ + σμ, Hx = x − 2(uᵀx)u/‖u‖², result −σHx. ‖u‖² = 2(1 + |μ₁|) ≥ 2, so the map
    and its gradient never divide by ~0 (the paper's u = e₁ − μ does when μ ≈ e₁).
    """
    sigma = torch.where(mu[:, :1] > 0, 1.0, -1.0).to(mu.dtype)
    u = sigma * mu
    u = torch.cat([u[:, :1] + 1, u[:, 1:]], dim=-1)
    hx = x - 2 * (u * x).sum(-1, keepdim=True) / (u * u).sum(-1, keepdim=True) * u
    return -sigma * hx


def _beta_rsample(c1: torch.Tensor, c0: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """``Beta(c1, c0).rsample()`` on the CPU; with a generator, reproducible from it.

    ``Beta.rsample`` only draws from the global generator, so with an explicit generator we draw a seed
    from it, run the sampler on a freshly seeded global CPU generator and restore the global state.
    """
    dist = torch.distributions.Beta(c1, c0)
    if generator is None:
        return dist.rsample()
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    state = torch.get_rng_state()
    try:
        torch.default_generator.manual_seed(seed)
        return dist.rsample()
    finally:
        torch.set_rng_state(state)


def ps_rsample(mu: torch.Tensor, kappa: torch.Tensor,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Reparameterised x ~ PS(μ, κ): μ (B, m) unit rows, κ (B,) → (B, m), differentiable in μ and κ.

    Random numbers are drawn on the CPU in float64 (the generator must be a CPU generator), then moved.
    """
    m = mu.shape[-1]
    beta = 0.5 * (m - 1)
    k = kappa.to(device="cpu", dtype=torch.float64)
    eps = _beta_rsample(torch.full_like(k, beta), beta + k, generator)  # (1 − t)/2 ~ Beta(β, α)
    v = torch.randn(mu.shape[0], m - 1, generator=generator, dtype=torch.float64)
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    t = 1 - 2 * eps
    radial = 2 * torch.sqrt(eps * (1 - eps))
    y = torch.cat([t.unsqueeze(-1), radial.unsqueeze(-1) * v], dim=-1).to(device=mu.device, dtype=mu.dtype)
    return orthogonal_from_e1(mu, y)


class PowerSphericalPrior(LatentPrior):
    """p(z) = Uniform(S^{m−1}); q(z|x) = PowerSpherical(μ, κ); KL in closed form (not a cluster prior)."""

    def __init__(self, dim: int, kappa_floor: float) -> None:
        if dim < 2:
            raise ValueError(f"sl2lab.power_spherical needs dim >= 2 (a sphere S^(dim-1)), got {dim}")
        super().__init__(dim)
        self.kappa_floor = kappa_floor

    @property
    def n_params(self) -> int:
        return self.dim + 1

    def posterior(self, params: torch.Tensor) -> Posterior:
        return ps_posterior(params, self.dim, self.kappa_floor)

    def rsample(self, post: Posterior, generator: torch.Generator | None = None) -> torch.Tensor:
        return ps_rsample(post.mean, post["kappa"], generator)

    def kl(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        return ps_kl_uniform(post["kappa"], self.dim)

    def log_q(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) (B,)."""
        return ps_log_prob(z, post.mean, post["kappa"])

    def log_p(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = −log |S^{m−1}| (B,)."""
        return torch.full(z.shape[:-1], -log_sphere_area(self.dim), dtype=z.dtype, device=z.device)


class PowerSphericalConfig(PriorConfig):
    """Uniform prior on the sphere S^(dim−1) with a power spherical posterior (no rejection, no Bessel)."""

    type: Literal["sl2lab.power_spherical"] = "sl2lab.power_spherical"
    kappa_floor: float = Field(1e-2, gt=0, description="floor added to softplus for the posterior κ")

    def build(self, dim: int) -> PowerSphericalPrior:
        return PowerSphericalPrior(dim, self.kappa_floor)


__all__ = [
    "PowerSphericalConfig",
    "PowerSphericalPrior",
    "log_sphere_area",
    "orthogonal_from_e1",
    "ps_entropy",
    "ps_kl_uniform",
    "ps_log_normalizer",
    "ps_log_prob",
    "ps_mean_resultant_length",
    "ps_posterior",
    "ps_rsample",
]
