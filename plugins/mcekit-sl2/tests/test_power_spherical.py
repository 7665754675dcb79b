"""The power spherical prior: check_prior, moments, normaliser, KL and the reparameterised gradient."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from mcekit.testing import check_prior
from scipy import integrate

from mcekit_sl2.power_spherical import (
    PowerSphericalConfig,
    PowerSphericalPrior,
    log_sphere_area,
    ps_kl_uniform,
    ps_log_normalizer,
    ps_log_prob,
    ps_mean_resultant_length,
    ps_rsample,
)

F64 = torch.float64


def directions(n: int, m: int, seed: int) -> torch.Tensor:
    mu = F.normalize(torch.randn(1, m, generator=torch.Generator().manual_seed(seed), dtype=F64), dim=-1)
    return mu.expand(n, m)


@pytest.mark.parametrize("dim", [2, 3, 10])
def test_check_prior(dim):
    check_prior(PowerSphericalConfig().build(dim))


def test_dim_one_is_refused():
    with pytest.raises(ValueError, match="dim >= 2"):
        PowerSphericalConfig().build(1)


@pytest.mark.parametrize("m", [2, 3, 10])
@pytest.mark.parametrize("kappa", [0.0, 0.5, 5.0, 80.0, 1e4])
def test_mean_resultant_length_matches_closed_form(m, kappa):
    """E[μᵀz] = κ/(κ + m − 1) (De Cao & Aziz 2020), within 5 standard errors of 50,000 samples."""
    n = 50_000
    mu = directions(n, m, seed=m)
    z = ps_rsample(mu, torch.full((n,), kappa, dtype=F64), torch.Generator().manual_seed(int(kappa) + m))
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(n, dtype=F64), atol=1e-12, rtol=0)
    w = (z * mu).sum(-1)
    expected = ps_mean_resultant_length(torch.tensor(kappa, dtype=F64), m)
    assert abs(float(w.mean() - expected)) <= 5 * float(w.std()) / math.sqrt(n) + 1e-12


def test_samples_are_symmetric_about_the_mean_direction():
    n, m = 50_000, 4
    mu = directions(n, m, seed=0)
    z = ps_rsample(mu, torch.full((n,), 3.0, dtype=F64), torch.Generator().manual_seed(5))
    tangent = z - (z * mu).sum(-1, keepdim=True) * mu
    assert float(tangent.mean(0).norm()) < 5 * math.sqrt(float(tangent.pow(2).sum(-1).mean()) / n)


@pytest.mark.parametrize("m", [2, 3, 7])
@pytest.mark.parametrize("kappa", [0.3, 4.0, 40.0])
def test_normaliser_against_quadrature(m, kappa):
    """N(κ, m) = |S^{m−2}| ∫₋₁¹ (1 + t)^κ (1 − t²)^{(m−3)/2} dt."""
    value, _ = integrate.quad(lambda t: (1 + t) ** kappa * (1 - t * t) ** ((m - 3) / 2), -1, 1, limit=200)
    expected = math.log(value) + log_sphere_area(m - 1)
    assert float(ps_log_normalizer(torch.tensor(kappa, dtype=F64), m)) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("m", [3, 10])
@pytest.mark.parametrize("kappa", [0.5, 5.0, 200.0])
def test_kl_matches_monte_carlo(m, kappa):
    """Closed-form KL to the uniform distribution vs the mean of log q(z) − log p(z) over 50,000 samples."""
    n = 50_000
    mu = directions(n, m, seed=7)
    kap = torch.full((n,), kappa, dtype=F64)
    z = ps_rsample(mu, kap, torch.Generator().manual_seed(11 + m))
    prior = PowerSphericalPrior(m, kappa_floor=1e-2)
    post_kl = ps_kl_uniform(kap[:1], m)
    estimate = ps_log_prob(z, mu, kap) + log_sphere_area(m)  # log q − log p
    torch.testing.assert_close(prior.log_p(z), torch.full((n,), -log_sphere_area(m), dtype=F64))
    assert abs(float(estimate.mean() - post_kl)) <= 5 * float(estimate.std()) / math.sqrt(n)


def test_kl_is_zero_for_the_uniform_limit_and_grows_with_kappa():
    kappa = torch.tensor([0.0, 0.1, 1.0, 10.0, 100.0], dtype=F64)
    kl = ps_kl_uniform(kappa, 5)
    assert abs(float(kl[0])) < 1e-12
    assert bool((kl[1:] > kl[:-1]).all())


def test_kappa_gradient_of_the_sampler_is_unbiased():
    """d/dκ E[μᵀz] = (m − 1)/(κ + m − 1)² must match the mean pathwise gradient of μᵀz (Beta.rsample)."""
    n, m, kappa = 50_000, 4, 3.0
    mu = directions(n, m, seed=3)
    kap = torch.full((n,), kappa, dtype=F64, requires_grad=True)
    w = (ps_rsample(mu, kap, torch.Generator().manual_seed(9)) * mu).sum(-1)
    (grad,) = torch.autograd.grad(w.sum(), kap)
    expected = (m - 1) / (kappa + m - 1) ** 2
    assert abs(float(grad.mean()) - expected) <= 5 * float(grad.std()) / math.sqrt(n)


def test_generator_reproducible_and_global_rng_untouched():
    mu, kap = directions(16, 3, seed=1), torch.full((16,), 2.0, dtype=F64)
    state = torch.get_rng_state()
    a = ps_rsample(mu, kap, torch.Generator().manual_seed(0))
    b = ps_rsample(mu, kap, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)
