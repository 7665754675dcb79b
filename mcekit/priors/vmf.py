"""Hyperspherical prior: uniform on S^{m−1} with a von Mises–Fisher posterior (Davidson et al. 2018).

Sampling z ~ vMF(μ, κ) on S^{m−1} (m = ``dim``) follows Wood (1994):

1. w = zᵀμ by rejection: ε ~ Beta((m−1)/2, (m−1)/2), w = (1 − (1+b)ε)/(1 − (1−b)ε),
   b = (m−1)/(2κ + √(4κ² + (m−1)²)), accepted when
   κw + (m−1) log(1 − x₀w) − c ≥ log u (x₀ = (1−b)/(1+b), c = κx₀ + (m−1) log(1−x₀²), u ~ U(0,1)).
   Every quantity is rewritten in terms of ε, 1−ε and b so that nothing cancels for large κ
   (1 − w = 2bε/D, 1 + w = 2(1−ε)/D, D = (1−ε) + bε); the sample is kept as the angle
   θ = arccos w = 2 atan(√(bε/(1−ε))). ε comes from g ~ N(0, I_m) as ε = (1 + g₁/‖g‖)/2, which needs
   only normal draws (so a ``torch.Generator`` controls everything). Proposals are drawn in
   vectorised rounds (``proposals`` per still-pending sample and round, at most ``max_rounds``
   rounds); there is no Python loop over samples.
2. v uniform on the tangent sphere S^{m−2} (a normalised Gaussian), x = (cos θ, sin θ · v).
3. an orthogonal map taking e₁ to μ (a Householder reflection, flipped to the better-conditioned
   of ±(e₁ ∓ μ) so that ‖u‖² ≥ 2 and the gradient w.r.t. μ never divides by ~0).

Gradients. μ: exact pathwise gradient through the reflection. κ (``kappa_grad``):

* ``"implicit"`` (default): the exact reparameterisation gradient of the angle, dθ/dκ at a fixed
  value of its CDF (implicit reparameterisation, Figurnov et al. 2018), computed by a short
  quadrature (:func:`implicit_dtheta_dkappa`). Unbiased: E[∂z/∂κ] = ∂E[z]/∂κ = A_m′(κ) μ.
* ``"rep"``: Davidson et al.'s g_rep, as in their released code: the accepted ε is held fixed and
  w depends on κ through b(κ). Their correction term g_cor (a score-function term that needs the
  downstream loss value) is omitted there, so this gradient is biased — by up to ~40 % for m = 2–3
  and κ ≈ 1 (see the tests), less for large κ or large m.

The KL's own gradient w.r.t. κ is exact either way: the KL is in closed form.
"""
from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from mcekit.priors.base import LatentPrior, Posterior, PriorConfig
from mcekit.priors.bessel import bessel_ratio, log_bessel_iv
from mcekit.registry import priors

#: cap on the number of float64 numbers drawn at once by the rejection sampler (rows are chunked)
_MAX_DRAW = 1 << 22
#: quadrature of the implicit κ gradient: Gauss–Legendre nodes per panel, panels, bisection steps,
#: and the log-density ratio at which the integrand is cut off
GL_NODES = 12
GL_PANELS = 3
GL_BISECTIONS = 14
CUT = -40.0

KappaGrad = Literal["implicit", "rep"]


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
        # they keep ε = 1/2, i.e. w = (1−b)/(1+b) = x₀, the mode of Wood's envelope
        warnings.warn(
            f"vMF sampler: {pending.numel()} sample(s) not accepted after {max_rounds} rounds; "
            "using the mode of w for them",
            RuntimeWarning,
            stacklevel=2,
        )
    return eps.reshape(kappa.shape), eps_c.reshape(kappa.shape)


def orthogonal_from_e1(mu: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Apply an orthogonal map sending e₁ to μ (rows of unit vectors) to x.

    σ = +1 if μ₁ > 0 else −1, u = e₁ + σμ, Hx = x − 2(uᵀx)u/‖u‖², result −σHx.
    For σ = −1 this is the Householder reflection of Davidson et al.; for σ = +1 its negative, which
    also sends e₁ to μ. ‖u‖² = 2(1 + |μ₁|) ≥ 2, so the map and its gradient are well conditioned.
    """
    sigma = torch.where(mu[:, :1] > 0, 1.0, -1.0).to(mu.dtype)
    u = sigma * mu
    u = torch.cat([u[:, :1] + 1, u[:, 1:]], dim=-1)
    hx = x - 2 * (u * x).sum(-1, keepdim=True) / (u * u).sum(-1, keepdim=True) * u
    return -sigma * hx


@lru_cache(maxsize=8)
def _panel_rule(nodes: int, panels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite Gauss–Legendre on [0, 1] with panels [0, 2^{1−P}], …, [1/4, 1/2], [1/2, 1].

    The integrands below peak at 0 and decay (exponentially or like a Gaussian) towards 1; the panels
    halve towards the peak so that every scale of the decay is resolved.
    """
    x, w = np.polynomial.legendre.leggauss(nodes)
    edges = [0.0] + [2.0 ** -j for j in range(panels - 1, -1, -1)]
    xs, ws = [], []
    for left, right in zip(edges[:-1], edges[1:], strict=True):
        xs.append(left + (right - left) * (x + 1) / 2)
        ws.append((right - left) / 2 * w)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ws))


def implicit_dtheta_dkappa(theta: torch.Tensor, kappa: torch.Tensor, m: int) -> torch.Tensor:
    """Exact dθ/dκ for the angle θ = arccos(zᵀμ) of a vMF sample, its CDF value held fixed.

    This is implicit reparameterisation (Figurnov et al. 2018). θ has density
    q(θ) ∝ e^{κ cos θ} sin^{m−2} θ on [0, π] and ∂_κ q = (cos θ − A_m(κ)) q, so fixing P(Θ ≥ θ) gives
    dθ/dκ = ∫_θ^π (cos s − A) q(s)/q(θ) ds = −∫_0^θ (cos s − A) q(s)/q(θ) ds. We integrate on the side
    away from the mode θ* (κ sin²θ* = (m−2) cos θ*), where log q(s)/q(θ) is monotone and ≤ 0:
    bisection finds where it falls to −40, then composite Gauss–Legendre. Float64 (B,) in and out.
    """
    theta = theta.clamp(1e-150, math.pi - 1e-15).unsqueeze(-1)  # (B, 1)
    k = kappa.unsqueeze(-1)
    a = bessel_ratio(0.5 * m - 1, kappa).unsqueeze(-1)
    cos_star = 2 * k / ((m - 2) + torch.sqrt((m - 2) ** 2 + 4 * k * k))
    # (python-scalar torch.where would round π to float32, past π)
    far = torch.where(theta >= torch.arccos(cos_star.clamp(-1, 1)), torch.full_like(theta, math.pi), 0.0)
    log_sin_theta = torch.log(torch.sin(theta))

    def log_ratio(s: torch.Tensor) -> torch.Tensor:  # log q(s)/q(θ), s (B, n)
        out = -2 * k * torch.sin(0.5 * (s + theta)) * torch.sin(0.5 * (s - theta))  # κ (cos s − cos θ)
        if m > 2:
            out = out + (m - 2) * (torch.log(torch.sin(s)) - log_sin_theta)
        return out

    # bisect on log(distance from θ) for where log q(s)/q(θ) reaches CUT: the end is then within a
    # few per cent of the width the integrand needs, however narrow that is
    cut = CUT
    span = (far - theta).abs()
    direction = torch.sign(far - theta)
    lo, hi = torch.full_like(theta, -40.0), torch.log(span.clamp_min(1e-300))
    for _ in range(GL_BISECTIONS):
        mid = 0.5 * (lo + hi)
        above = log_ratio(theta + direction * mid.exp()) >= cut
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    end = torch.where(log_ratio(far) < cut, theta + direction * hi.exp(), far)  # else go all the way
    x, w = _panel_rule(GL_NODES, GL_PANELS)
    length = end - theta
    s = theta + length * x
    integrand = (torch.cos(s) - a) * torch.exp(log_ratio(s))
    return (length * w * integrand).sum(-1)


def vmf_rsample(
    mu: torch.Tensor,
    kappa: torch.Tensor,
    generator: torch.Generator | None = None,
    proposals: int = 2,
    max_rounds: int = 64,
    kappa_grad: KappaGrad = "implicit",
) -> torch.Tensor:
    """Reparameterised z ~ vMF(μ, κ): μ (B, m) unit rows, κ (B,) → (B, m).

    ``kappa_grad``: "implicit" (exact gradient w.r.t. κ by implicit reparameterisation of the
    angle) or "rep" (Davidson et al.'s g_rep: the accepted ε held fixed, w depends on κ through b).
    """
    m = mu.shape[-1]
    eps, eps_c = sample_wood_eps(kappa, m, generator, proposals, max_rounds)
    v = torch.randn(mu.shape[0], m - 1, generator=generator, dtype=torch.float64)
    v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)
    k64 = kappa.detach().double().cpu()
    # angle to μ: tan(θ/2) = √((1−w)/(1+w)) = √(bε/(1−ε)), exact for any κ
    theta = 2 * torch.atan2(torch.sqrt(wood_b(k64, m) * eps), torch.sqrt(eps_c))
    slope = None
    if kappa.requires_grad and kappa_grad == "implicit":
        slope = implicit_dtheta_dkappa(theta, k64, m).to(device=mu.device, dtype=mu.dtype)
    eps, eps_c, v, theta = (t.to(device=mu.device, dtype=mu.dtype) for t in (eps, eps_c, v, theta))
    if slope is not None:
        theta = theta + (kappa - kappa.detach()) * slope
    elif kappa.requires_grad:
        if kappa_grad != "rep":
            raise ValueError(f"kappa_grad must be 'implicit' or 'rep', got {kappa_grad!r}")
        theta = 2 * torch.atan2(torch.sqrt(wood_b(kappa, m) * eps), torch.sqrt(eps_c))
    x = torch.cat([torch.cos(theta).unsqueeze(-1), torch.sin(theta).unsqueeze(-1) * v], dim=-1)
    return orthogonal_from_e1(mu, x)


class VonMisesFisherPrior(LatentPrior):
    """p(z) = Uniform(S^{m−1}); q(z|x) = vMF(μ, κ); KL in closed form (not a cluster prior)."""

    def __init__(
        self,
        dim: int,
        kappa_floor: float = 1e-2,
        proposals: int = 2,
        max_rounds: int = 64,
        kappa_grad: KappaGrad = "implicit",
    ) -> None:
        if dim < 2:
            raise ValueError(f"{type(self).__name__} needs dim >= 2 (a sphere S^(dim-1)), got {dim}")
        super().__init__(dim)
        self.kappa_floor = kappa_floor
        self.proposals = proposals
        self.max_rounds = max_rounds
        self.kappa_grad = kappa_grad

    @property
    def n_params(self) -> int:
        return self.dim + 1

    def posterior(self, params: torch.Tensor) -> Posterior:
        return vmf_posterior(params, self.dim, self.kappa_floor)

    def rsample(self, post: Posterior, generator: torch.Generator | None = None) -> torch.Tensor:
        kappa = post["kappa"]
        return vmf_rsample(post.mean, kappa, generator, self.proposals, self.max_rounds, self.kappa_grad)

    def kl(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        return vmf_kl_uniform(post["kappa"], self.dim)

    def log_q(self, post: Posterior, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) (B,)."""
        return vmf_log_prob(z, post.mean, post["kappa"])

    def log_p(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) = −log |S^{m−1}| (B,)."""
        return torch.full(z.shape[:-1], -log_sphere_area(self.dim), dtype=z.dtype, device=z.device)


class VMFPosteriorFields(PriorConfig):
    """Settings of the vMF posterior and its sampler, shared by ``vmf`` and ``vmf_mixture``."""

    kappa_floor: float = Field(1e-2, gt=0, description="floor added to softplus for the posterior κ")
    proposals: int = Field(2, ge=1, le=1024, description="rejection-sampler proposals per pending sample and round")
    max_rounds: int = Field(64, ge=1, description="cap on rejection-sampler rounds (leftovers take the mode)")
    kappa_grad: KappaGrad = Field(
        "implicit", description="κ gradient of samples: exact (implicit reparam.) or Davidson's g_rep"
    )


@priors.register
class VMFConfig(VMFPosteriorFields):
    """Uniform prior on the sphere S^(dim−1) with a von Mises–Fisher posterior (hyperspherical VAE)."""

    type: Literal["vmf"] = "vmf"

    def build(self, dim: int) -> VonMisesFisherPrior:
        return VonMisesFisherPrior(dim, self.kappa_floor, self.proposals, self.max_rounds, self.kappa_grad)


__all__ = [
    "VMFConfig",
    "VMFPosteriorFields",
    "VonMisesFisherPrior",
    "log_sphere_area",
    "orthogonal_from_e1",
    "sample_wood_eps",
    "vmf_kl_uniform",
    "vmf_log_normalizer",
    "vmf_log_prob",
    "vmf_posterior",
    "vmf_rsample",
    "implicit_dtheta_dkappa",
    "wood_b",
]
