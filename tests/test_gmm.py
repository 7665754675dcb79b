"""Gaussian mixture prior: the VaDE KL term against Monte Carlo, responsibilities, initialisation."""

from __future__ import annotations

import math

import torch

from mcekit.priors.gmm import GMMConfig


def fitted_prior(dim=3, k=4, seed=0):
    torch.manual_seed(seed)
    prior = GMMConfig(components=k, learn_weights=True).build(dim).double()
    with torch.no_grad():
        prior.means.normal_(0, 2)
        prior.logvars.uniform_(-1, 0.5)
        prior.logits.normal_()
        prior.fitted.fill_(True)
    return prior


@torch.no_grad()
def test_kl_matches_monte_carlo_elbo_terms():
    """VaDE's term equals E_q(z)[log q(z|x) − log p(z|c)] − E[log p(c) − log q(c|x)] with q(c|x) = γ.

    With γ fixed (evaluated at a fixed z, as the term is defined), draw many z ~ q and estimate
    E_q[log q(z)] − Σ_c γ_c E_q[log p(z|c)] + Σ_c γ_c log(γ_c/π_c).
    """
    prior = fitted_prior()
    mu = torch.tensor([[0.3, -1.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[-0.5, 0.2, -1.0]], dtype=torch.float64)
    post = prior.posterior(torch.cat([mu, logvar], 1))
    z0 = mu.clone()
    closed = prior.kl(post, z0)
    gamma = prior.responsibilities(post, z0)
    n = 400_000
    gen = torch.Generator().manual_seed(1)
    z = mu + torch.randn(n, 3, generator=gen, dtype=torch.float64) * (0.5 * logvar).exp()
    log_q = (-0.5 * (math.log(2 * math.pi) + logvar + (z - mu) ** 2 / logvar.exp())).sum(1)
    log_pzc = prior.component_log_density(z)  # (n, K)
    samples = log_q - (gamma * log_pzc).sum(1)
    estimate = samples.mean() + (gamma * (gamma.log() - prior.log_weights())).sum()
    stderr = samples.std() / math.sqrt(n)
    assert abs(float(closed) - float(estimate)) < 4 * float(stderr) + 1e-6


def test_responsibilities_sum_to_one_and_follow_the_nearest_component():
    prior = fitted_prior()
    z = prior.means.detach().clone()
    gamma = prior.responsibilities(prior.posterior(torch.cat([z, torch.zeros_like(z)], 1)))
    assert torch.allclose(gamma.sum(1), torch.ones(4, dtype=torch.float64))
    assert gamma.shape == (4, 4)


def test_unfitted_mixture_uses_standard_normal_kl():
    prior = GMMConfig(components=3).build(2)
    params = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    post = prior.posterior(params)
    assert torch.allclose(prior.kl(post, post.mean), torch.tensor([0.5]))


def test_initialize_recovers_separated_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[-5.0, 0.0], [5.0, 0.0], [0.0, 6.0]])
    data = torch.cat([c + 0.3 * torch.randn(200, 2) for c in centres])
    prior = GMMConfig(components=3).build(2)
    prior.initialize(data, seed=0)
    assert bool(prior.fitted)
    found = prior.means.detach()
    for c in centres:
        assert (found - c).norm(dim=1).min() < 0.2
    assert torch.allclose(prior.logits.detach(), torch.zeros(3))  # fixed weights stay uniform
