"""Hyperspherical prior: uniform on S^{m−1} with a von Mises–Fisher posterior (Davidson et al. 2018).

Sampling z ~ vMF(μ, κ) on S^{m−1} (m = ``dim``) follows Wood (1994):

1. w = zᵀμ by rejection: ε ~ Beta((m−1)/2, (m−1)/2), w = (1 − (1+b)ε)/(1 − (1−b)ε),
   b = (m−1)/(2κ + √(4κ² + (m−1)²)), accepted when
   κw + (m−1) log(1 − x₀w) − c ≥ log u (x₀ = (1−b)/(1+b), c = κx₀ + (m−1) log(1−x₀²), u ~ U(0,1)).
   Every quantity is rewritten in terms of ε, 1−ε and b so that nothing cancels for large κ
   (1 − w = 2bε/D, 1 + w = 2(1−ε)/D, D = (1−ε) + bε). ε comes from g ~ N(0, I_m) as
   ε = (1 + g₁/‖g‖)/2, which needs only normal draws (so a ``torch.Generator`` controls everything).
   Proposals are drawn in vectorised rounds (``proposals`` per still-pending sample and round,
   at most ``max_rounds`` rounds); there is no Python loop over samples.
2. v uniform on the tangent sphere S^{m−2} (a normalised Gaussian), x = (w, √(1−w²) v).
3. an orthogonal map taking e₁ to μ (a Householder reflection, flipped to the better-conditioned
   of ±(e₁ ∓ μ) so that ‖u‖² ≥ 2 and the gradient w.r.t. μ never divides by ~0).

Gradients. μ: exact pathwise gradient through the reflection. κ: the pathwise part ("g_rep" of
Davidson et al. 2018, as in their released code): the accepted ε is held fixed and w depends on κ
through b(κ). Their correction term g_cor (a score-function term E[f(z) ∇_κ log(q/r)]) needs the
value of the downstream loss and is omitted, as in their implementation; the KL term's gradient
w.r.t. κ is exact because the KL is in closed form.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from mcekit.priors.base import LatentPrior, Posterior, PriorConfig
from mcekit.priors.bessel import bessel_ratio, log_bessel_iv
from mcekit.registry import priors

#: cap on the number of float64 numbers drawn at once by the rejection sampler (rows are chunked)
_MAX_DRAW = 1 << 22


def vmf_posterior(params: torch.Tensor, dim: int, kappa_floor: float) -> Posterior:
    """Encoder outputs (B, dim + 1) → vMF(μ, κ): μ = first ``dim`` normalised, κ = softplus + floor."""
    direction = F.normalize(params[:, :dim], dim=-1, eps=1e-12)
    kappa = F.softplus(params[:, dim]) + kappa_floor
    return Posterior(mean=direction, params={"kappa": kappa})


def log_sphere_area(m: int) -> float:
    """log |S^{m−1}| = log 2 + (m/2) log π − log Γ(m/2)."""
    return math.log(2.0) + 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m)


def vmf_log_normalizer(kappa: torch.Tensor, m: int) -> torch.Tensor:
    """log C_m(κ) = (m/2 − 1) log κ − (m/2) log 2π − log I_{m/2−1}(κ), computed in float64."""
    nu = 0.5 * m - 1
    k = kappa.double() if kappa.device.type != "mps" else kappa
    out = nu * torch.log(k) - 0.5 * m * math.log(2 * math.pi) - log_bessel_iv(nu, k)
    return out.to(kappa.dtype)


def vmf_log_prob(z: torch.Tensor, mu: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
    """log vMF(z; μ, κ) = κ μᵀz + log C_m(κ); broadcasts over leading dimensions (kappa has no last dim)."""
    return kappa * (mu * z).sum(-1) + vmf_log_normalizer(kappa, z.shape[-1])


def vmf_kl_uniform(kappa: torch.Tensor, m: int) -> torch.Tensor:
    """KL(vMF(μ, κ) ‖ Uniform(S^{m−1})) = κ A_m(κ) + log C_m(κ) + log |S^{m−1}| (METHOD §2)."""
    k = kappa.double() if kappa.device.type != "mps" else kappa
    kl = k * bessel_ratio(0.5 * m - 1, k) + vmf_log_normalizer(k, m) + log_sphere_area(m)
    return kl.to(kappa.dtype)


def wood_b(kappa: torch.Tensor, m: int) -> torch.Tensor:
    """Wood's b = (−2κ + √(4κ² + (m−1)²))/(m−1), written without cancellation."""
    return (m - 1) / (2 * kappa + torch.sqrt(4 * kappa * kappa + (m - 1) ** 2))


def sample_wood_eps(
    kappa: torch.Tensor,
    m: int,
    generator: torch.Generator | None = None,
    proposals: int = 2,
    max_rounds: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accepted ε ~ Beta((m−1)/2, (m−1)/2) of Wood's sampler and 1 − ε, float64 on the CPU, shape (B,).

    ``kappa`` is used without gradient; the caller maps ε to w differentiably.
    """
    k = kappa.detach().double().cpu().reshape(-1)
    n = k.shape[0]
    b = wood_b(k, m)
    eps = torch.full((n,), 0.5, dtype=torch.float64)
    eps_c = torch.full((n,), 0.5, dtype=torch.float64)
    pending = torch.arange(n)
    for _ in range(max_rounds):
        if pending.numel() == 0:
            break
        still = []
        chunk = max(1, _MAX_DRAW // (proposals * (m + 1)))
        for rows in pending.split(chunk):
            g = torch.randn(rows.numel(), proposals, m, generator=generator, dtype=torch.float64)
            u = torch.rand(rows.numel(), proposals, generator=generator, dtype=torch.float64)
            norm = g.norm(dim=-1)
            g1 = g[..., 0]
            # ε = (1 + g₁/‖g‖)/2; the smaller of ε, 1−ε is ‖g_{2:}‖² / (2‖g‖(‖g‖ + |g₁|)) (no cancellation)
            small = g[..., 1:].pow(2).sum(-1) / (2 * norm * (norm + g1.abs()))
            e = torch.where(g1 < 0, small, 1 - small)
            ec = torch.where(g1 < 0, 1 - small, small)
            br, kr = b[rows].unsqueeze(-1), k[rows].unsqueeze(-1)
            d = ec + br * e
            log_accept = 2 * kr * br * (1 / (1 + br) - e / d) + (m - 1) * torch.log((1 + br) / (2 * d))
            accept = log_accept >= torch.log(u)
            done = accept.any(-1)
            first = accept.to(torch.int8).argmax(-1)
            idx = torch.arange(rows.numel())
            eps[rows[done]] = e[idx, first][done]
            eps_c[rows[done]] = ec[idx, first][done]
            still.append(rows[~done])
        pending = torch.cat(still)
    if pending.numel():
        warnings.warn(
            f"vMF sampler: {pending.numel()} sample(s) not accepted after {max_rounds} rounds; "
            "using the mode of w for them",
            RuntimeWarning,
            stacklevel=2,
        )
        # ε at the mode w = x₀: (1 − (1+b)ε)/(1 − (1−b)ε) = (1−b)/(1+b) ⇔ ε = 1/2
    return eps.reshape(kappa.shape), eps_c.reshape(kappa.shape)


def orthogonal_from_e1(mu: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply an orthogonal map sending e₁ to μ (rows of unit vectors) to x.

    σ = sign(μ₁) (+1 at 0 excluded), u = e₁ + σμ, Hx = x − 2(uᵀx)u/‖u‖², result −σHx.
    For σ = −1 this is the Householder reflection of Davidson et al.; for σ = +1 its negative, which
    also sends e₁ to μ. ‖u‖² = 2(1 + |μ₁|) ≥ 2, so the map and its gradient are well conditioned.
    """
    sigma = torch.where(mu[:, :1] > 0, 1.0, -1.0).to(mu.dtype)
    u = sigma * mu
    u = torch.cat([u[:, :1] + 1, u[:, 1:]], dim=-1)
    hx = x - 2 * (u * x).sum(-1, keepdim=True) / (u * u).sum(-1, keepdim=True) * u
    return -sigma * hx


def vmf_rsample(
    mu: torch.Tensor,
    kappa: torch.Tensor,
    generator: torch.Generator | None = None,
    proposals: int = 2,
    max_rounds: int = 64,
) -> torch.Tensor:
    """Reparameterised z ~ vMF(μ, κ): μ (B, m) unit rows, κ (B,) → (B, m)."""
    m = mu.shape[-1]
    eps, eps_c = sample_wood_eps(kappa, m, generator, proposals, max_rounds)
    v = torch.randn(mu.shape[0], m - 1, generator=generator, dtype=torch.float64)
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    eps, eps_c, v = (t.to(device=mu.device, dtype=mu.dtype) for t in (eps, eps_c, v))
    b = wood_b(kappa, m)  # differentiable in κ: the pathwise part of the gradient
    d = eps_c + b * eps
    w = (eps_c - b * eps) / d
    radial = 2 * torch.sqrt(b * eps * eps_c) / d  # √(1 − w²) without cancellation
    x = torch.cat([w.unsqueeze(-1), radial.unsqueeze(-1) * v], dim=-1)
    return orthogonal_from_e1(mu, x)


class VonMisesFisherPrior(LatentPrior):
    """p(z) = Uniform(S^{m−1}); q(z|x) = vMF(μ, κ); KL in closed form (not a cluster prior)."""

    def __init__(self, dim: int, kappa_floor: float, proposals: int, max_rounds: int) -> None:
        if dim < 2:
            raise ValueError(f"vmf prior needs dim >= 2 (a sphere S^(dim-1)), got {dim}")
        super().__init__(dim)
        self.kappa_floor = kappa_floor
        self.proposals = proposals
        self.max_rounds = max_rounds

    @property
    def n_params(self) -> int:
        return self.dim + 1

    def posterior(self, params: torch.Tensor) -> Posterior:
        return vmf_posterior(params, self.dim, self.kappa_floor)

    def rsample(self, post: Posterior, generator: torch.Generator | None = None) -> torch.Tensor:
        return vmf_rsample(post.mean, post["kappa"], generator, self.proposals, self.max_rounds)

    def kl(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        return vmf_kl_uniform(post["kappa"], self.dim)

    def log_q(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) (B,)."""
        return vmf_log_prob(z, post.mean, post["kappa"])

    def log_p(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = −log |S^{m−1}| (B,)."""
        return torch.full(z.shape[:-1], -log_sphere_area(self.dim), dtype=z.dtype, device=z.device)


@priors.register
class VMFConfig(PriorConfig):
    """Uniform prior on the sphere S^(dim−1) with a von Mises–Fisher posterior (hyperspherical VAE)."""

    type: Literal["vmf"] = "vmf"
    kappa_floor: float = Field(1e-2, gt=0, description="floor added to softplus for the posterior κ")
    proposals: int = Field(2, ge=1, description="rejection-sampler proposals per pending sample and round")
    max_rounds: int = Field(64, ge=1, description="cap on rejection-sampler rounds (leftovers take the mode)")

    def build(self, dim: int) -> VonMisesFisherPrior:
        return VonMisesFisherPrior(dim, self.kappa_floor, self.proposals, self.max_rounds)


__all__ = [
    "VMFConfig",
    "VonMisesFisherPrior",
    "log_sphere_area",
    "orthogonal_from_e1",
    "sample_wood_eps",
    "vmf_kl_uniform",
    "vmf_log_normalizer",
    "vmf_log_prob",
    "vmf_posterior",
    "vmf_rsample",
    "wood_b",
]
