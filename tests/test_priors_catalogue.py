"""The prior catalogue: Bessel functions, the vMF sampler and KL, Gumbel-softmax, the vMF mixture,
and the reusable ``check_prior`` over every registered prior."""

from __future__ import annotations

import math

import geoopt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate, special, stats

from mcekit import registry
from mcekit.priors.base import Posterior
from mcekit.priors.bessel import bessel_ratio, log_bessel_iv
from mcekit.priors.gumbel import GumbelConfig, GumbelSoftmaxPrior
from mcekit.priors.vmf import (
    VMFConfig,
    VonMisesFisherPrior,
    implicit_dtheta_dkappa,
    log_sphere_area,
    vmf_kl_uniform,
    vmf_log_prob,
    vmf_rsample,
)
from mcekit.priors.vmf_mixture import VMFMixtureConfig, spherical_kmeans
from mcekit.testing import check_prior

F64 = torch.float64
ORDERS = [m / 2 - 1 for m in range(2, 65)]  # ν = m/2 − 1 for S^{m−1}, m = 2 … 64
KAPPAS = np.unique(np.concatenate([
    np.logspace(-3, 4, 600),
    [49.999, 50.0, 50.001],  # series / large-argument switch
    # the Debye / Hankel switch at κ = ν²
    [nu * nu for nu in ORDERS if nu >= 7] + [nu * nu * (1 + 1e-9) for nu in ORDERS if nu >= 7],
]))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unit(m: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(1, m, generator=_gen(seed), dtype=F64), dim=-1)


def _vmf_mean_length(m: int, kappa: float) -> float:
    return float(special.ive(m / 2, kappa) / special.ive(m / 2 - 1, kappa))


# -- Bessel functions -------------------------------------------------------------------------------
def test_log_bessel_matches_scipy_over_the_vmf_range():
    k = torch.tensor(KAPPAS, dtype=F64)
    worst = 0.0
    for nu in ORDERS:
        ours = log_bessel_iv(nu, k).numpy() - KAPPAS  # log ive
        rel = np.abs(np.expm1(ours - np.log(special.ive(nu, KAPPAS))))
        worst = max(worst, float(rel.max()))
    assert worst < 1e-10, worst  # required: 1e-6; the three expansions give ~1e-13


def test_bessel_ratio_matches_scipy():
    k = torch.tensor(KAPPAS, dtype=F64)
    for nu in ORDERS[::3]:
        ref = special.ive(nu + 1, KAPPAS) / special.ive(nu, KAPPAS)
        np.testing.assert_allclose(bessel_ratio(nu, k).numpy(), ref, rtol=1e-10)


@pytest.mark.parametrize("nu", [0.0, 0.5, 1.0, 3.5, 12.0, 20.5, 31.0, 0.3])
def test_log_bessel_gradient_matches_finite_differences(nu):
    kappa = torch.tensor([1e-3, 0.05, 0.7, 3.0, 20.0, 49.99, 50.01, 120.0, 300.0, 961.5, 5e3, 1e4], dtype=F64)
    k = kappa.clone().requires_grad_(True)
    log_bessel_iv(nu, k).sum().backward()
    h = 1e-5 * kappa
    fd = (log_bessel_iv(nu, kappa + h) - log_bessel_iv(nu, kappa - h)) / (2 * h)
    torch.testing.assert_close(k.grad, fd, rtol=1e-6, atol=0.0)
    # the derivative is I_{ν+1}/I_ν + ν/κ
    ref = special.ive(nu + 1, kappa.numpy()) / special.ive(nu, kappa.numpy()) + nu / kappa.numpy()
    np.testing.assert_allclose(k.grad.numpy(), ref, rtol=1e-10)


def test_bessel_second_derivatives_and_dtypes():
    k = torch.tensor([0.3, 8.0, 70.0, 400.0, 3000.0], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: log_bessel_iv(4.5, x), (k,))
    assert torch.autograd.gradgradcheck(lambda x: log_bessel_iv(4.5, x), (k,))
    assert torch.autograd.gradcheck(lambda x: bessel_ratio(15.0, x), (k,))
    k32 = torch.tensor([1e-3, 1.0, 1e4])
    out = log_bessel_iv(2.0, k32)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    assert log_bessel_iv(0.0, torch.zeros(1)).item() == 0.0  # I_0(0) = 1
    with pytest.raises(ValueError):
        log_bessel_iv(-1.0, k32)


# -- von Mises–Fisher: sampler ----------------------------------------------------------------------
@pytest.mark.parametrize("m,kappa", [(2, 0.5), (3, 5.0), (5, 2000.0), (10, 20.0), (64, 100.0)])
def test_vmf_mean_resultant_length(m, kappa):
    n = 100_000
    mu = _unit(m, m).expand(n, m)
    z = vmf_rsample(mu, torch.full((n,), kappa, dtype=F64), _gen(1))
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(n, dtype=F64), rtol=0, atol=1e-12)
    a = _vmf_mean_length(m, kappa)
    var_w = 1 - a * a - (m - 1) * a / kappa  # Var(zᵀμ) = A′(κ)
    se = math.sqrt(var_w / n)
    w = z @ mu[0]
    assert abs(w.mean().item() - a) < 3 * se, (w.mean().item(), a, se)
    # ‖z̄‖ also carries the perpendicular noise, E‖z̄⊥‖² = (1 − E w²)/n: allow for that bias
    resultant = z.mean(0).norm().item()
    bias = (1 - (var_w + a * a)) / (n * a)
    assert abs(resultant - a) < 3 * se + bias, (resultant, a, se, bias)


def test_vmf_samples_stay_on_the_sphere_float32_and_extreme_kappa():
    for m in (2, 3, 16):
        mu = F.normalize(torch.randn(6, m, generator=_gen(m)), dim=-1)
        mu[0] = -F.one_hot(torch.tensor(0), m).float()  # μ = −e₁ and μ = e₁: both sides of the reflection
        mu[1] = F.one_hot(torch.tensor(0), m).float()
        kappa = torch.tensor([1e-3, 0.1, 1.0, 1e2, 1e4, 1e6])
        z = vmf_rsample(mu, kappa, _gen(0))
        assert z.dtype == torch.float32 and torch.isfinite(z).all()
        torch.testing.assert_close(z.norm(dim=-1), torch.ones(6), rtol=0, atol=1e-5)
        assert (z[3:] * mu[3:]).sum(-1).min() > 0.9  # concentrated around μ
    a = vmf_rsample(mu, kappa, _gen(5))
    b = vmf_rsample(mu, kappa, _gen(5))
    assert torch.equal(a, b)


def test_vmf_mu_gradient_through_the_reflection():
    # E[aᵀz] = A(κ) aᵀμ, μ = r/‖r‖: its gradient w.r.t. r is A (I − μμᵀ) a / ‖r‖
    m, kappa, n = 4, 3.0, 20_000
    r0 = torch.tensor([[0.3, -1.2, 0.5, 0.9]], dtype=F64)
    r = r0.expand(n, m).clone().requires_grad_(True)
    a = torch.tensor([0.5, 0.1, -0.7, 0.4], dtype=F64)
    z = vmf_rsample(F.normalize(r, dim=-1), torch.full((n,), kappa, dtype=F64), _gen(2))
    (z @ a).sum().backward()
    per_sample = r.grad
    mu = F.normalize(r0, dim=-1)[0]
    expected = _vmf_mean_length(m, kappa) * (a - mu * (mu @ a)) / r0.norm()
    se = per_sample.std(0) / math.sqrt(n)
    assert ((per_sample.mean(0) - expected).abs() < 4 * se + 1e-12).all(), (per_sample.mean(0), expected)


@pytest.mark.parametrize("m,kappa", [(2, 1.0), (3, 5.0), (10, 20.0), (64, 100.0), (3, 3000.0)])
def test_vmf_kappa_gradient_is_unbiased(m, kappa):
    # implicit reparameterisation: E[∂(zᵀμ)/∂κ] = ∂A/∂κ
    n = 20_000
    k = torch.full((n,), kappa, dtype=F64, requires_grad=True)
    mu = _unit(m, 3).expand(n, m)
    z = vmf_rsample(mu, k, _gen(4))
    (z @ mu[0]).sum().backward()
    kk = torch.tensor(kappa, dtype=F64, requires_grad=True)
    bessel_ratio(m / 2 - 1, kk).backward()
    se = k.grad.std().item() / math.sqrt(n)
    assert abs(k.grad.mean().item() - kk.grad.item()) < 4 * se, (k.grad.mean().item(), kk.grad.item(), se)


def test_davidson_rep_gradient_is_biased_at_small_kappa():
    # why "implicit" is the default: g_rep alone (their released code) misses ~40 % here
    n, m, kappa = 20_000, 2, 1.0
    k = torch.full((n,), kappa, dtype=F64, requires_grad=True)
    mu = _unit(m, 3).expand(n, m)
    (vmf_rsample(mu, k, _gen(4), kappa_grad="rep") @ mu[0]).sum().backward()
    kk = torch.tensor(kappa, dtype=F64, requires_grad=True)
    bessel_ratio(m / 2 - 1, kk).backward()
    assert k.grad.mean().item() < 0.8 * kk.grad.item()


@pytest.mark.parametrize("m", [2, 3, 10, 64])
def test_implicit_angle_gradient_matches_quadrature(m):
    kappa = np.array([0.05, 1.0, 15.0, 400.0, 1e4])
    nu = m / 2 - 1
    for kap in kappa:
        mu = _unit(m, 0).expand(4, m)
        z = vmf_rsample(mu, torch.full((4,), kap, dtype=F64), _gen(int(kap) + m))
        theta = torch.arccos((z @ mu[0]).clamp(-1, 1))
        ours = implicit_dtheta_dkappa(theta, torch.full((4,), kap, dtype=F64), m).numpy()
        a = special.ive(nu + 1, kap) / special.ive(nu, kap)
        for t, o in zip(theta.tolist(), ours, strict=True):
            def f(s, t=t, kap=kap, a=a):
                log_ratio = kap * (np.cos(s) - np.cos(t)) + (m - 2) * (np.log(np.sin(s)) - np.log(np.sin(t)))
                return (np.cos(s) - a) * np.exp(log_ratio)
            ref = integrate.quad(f, t, np.pi, epsabs=0, epsrel=1e-11, limit=200)[0]
            assert abs(o - ref) <= 1e-7 * abs(ref) + 1e-14, (m, kap, t, o, ref)


# -- von Mises–Fisher: KL ---------------------------------------------------------------------------
@pytest.mark.parametrize("m,kappa", [(2, 0.3), (3, 4.0), (10, 50.0), (64, 500.0)])
def test_vmf_kl_matches_monte_carlo(m, kappa):
    n = 20_000
    mu = _unit(m, 7).expand(n, m)
    k = torch.full((n,), kappa, dtype=F64)
    z = vmf_rsample(mu, k, _gen(8))
    samples = vmf_log_prob(z, mu, k) + log_sphere_area(m)
    kl = vmf_kl_uniform(k[:1], m).item()
    assert abs(samples.mean().item() - kl) < 4 * samples.std().item() / math.sqrt(n), (samples.mean(), kl)


def test_vmf_kl_limits_and_sign():
    for m in (2, 3, 10, 64):
        k = torch.tensor([1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4], dtype=F64)
        kl = vmf_kl_uniform(k, m)
        assert (kl >= 0).all() and (kl.diff() > 0).all()
        assert kl[0] < 1e-6  # KL → κ²/(2m) as κ → 0
        assert abs(kl[0].item() - 1e-6 / (2 * m)) < 1e-9
        # large κ: KL ≈ (m−1)/2 · log(κ/(2π e)) + log |S^{m−1}| (Gaussian limit on the tangent space)
        approx = (m - 1) / 2 * math.log(1e4 / (2 * math.pi * math.e)) + log_sphere_area(m)
        assert abs(kl[-1].item() - approx) < 0.05 * m


# -- Gumbel-softmax ---------------------------------------------------------------------------------
def test_gumbel_low_temperature_samples_are_one_hot_with_softmax_frequencies():
    prior = GumbelConfig(temperature_start=1.0, temperature_end=1e-3, anneal_steps=100).build(5)
    logits = torch.tensor([[1.0, 0.0, -1.0, 0.5, 2.0]])
    n = 50_000
    post = prior.posterior(logits.expand(n, 5))
    peaks = []
    for step in (0, 50, 75, 100):  # t = 1, 0.03, 0.006, 0.001
        prior.on_step(step)
        peaks.append(prior.rsample(post, _gen(0)).max(-1).values.mean().item())
    assert prior.temperature.item() == pytest.approx(1e-3)
    assert peaks == sorted(peaks) and peaks[-1] > 0.998, peaks
    y = prior.rsample(post, _gen(0))
    assert (y.max(-1).values > 0.99).float().mean() > 0.99
    counts = torch.bincount(y.argmax(-1), minlength=5).double().numpy()
    expected = n * torch.softmax(logits[0].double(), 0).numpy()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < stats.chi2.ppf(0.999, df=4), (counts, expected)
    np.testing.assert_allclose(y.mean(0).double().numpy(), expected / n, atol=0.01)


def test_gumbel_schedule_kl_and_checkpoint_state():
    cfg = GumbelConfig(temperature_start=1.0, temperature_end=0.5, anneal_steps=1000)
    prior = cfg.build(4)
    assert isinstance(prior, GumbelSoftmaxPrior) and prior.n_params == 4 and prior.n_clusters == 4
    prior.on_step(500)
    assert prior.temperature.item() == pytest.approx(math.sqrt(0.5))  # exponential: half-way = geometric mean
    prior.on_step(5000)
    assert prior.temperature.item() == pytest.approx(0.5)
    linear = GumbelConfig(schedule="linear", anneal_steps=1000).build(4)
    linear.on_step(500)
    assert linear.temperature.item() == pytest.approx(0.75)
    fresh = cfg.build(4)
    fresh.load_state_dict(prior.state_dict())
    assert fresh.temperature.item() == pytest.approx(0.5) and int(fresh.schedule_step) == 5000
    # KL to uniform, and the categorical parts
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [3.0, -1.0, 0.0, 1.0]])
    post = prior.posterior(logits)
    q = torch.softmax(logits, -1)
    torch.testing.assert_close(prior.kl(post, prior.rsample(post)), (q * q.log()).sum(-1) + math.log(4))
    assert prior.kl(post, q)[0].abs() < 1e-6
    torch.testing.assert_close(prior.responsibilities(post), q)
    assert prior.assign(post).tolist() == [0, 0]
    torch.testing.assert_close(prior.prototypes(), torch.eye(4))
    torch.testing.assert_close(prior.point(post)[1], torch.tensor([1.0, 0.0, 0.0, 0.0]))


def test_gumbel_hard_straight_through():
    prior = GumbelConfig(hard=True).build(3)
    logits = torch.randn(6, 3, generator=_gen(0), requires_grad=True)
    y = prior.rsample(prior.posterior(logits), _gen(1))
    assert ((y == 0) | (y == 1)).all() and (y.sum(-1) == 1).all()
    (y * torch.arange(3.0)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


# -- vMF mixture ------------------------------------------------------------------------------------
def _mixture_batch(m: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n points from 3 well-separated vMF clusters (κ = 50): points, labels, true directions."""
    directions = torch.eye(m, dtype=F64)[:3]
    labels = torch.arange(n) % 3
    z = vmf_rsample(directions[labels], torch.full((n,), 50.0, dtype=F64), _gen(seed))
    return z, labels, directions


def test_vmf_mixture_responsibilities_and_initialize():
    prior = VMFMixtureConfig(components=3).build(5).double()
    z, labels, directions = _mixture_batch(5, 600, 0)
    prior.initialize(z, seed=0)
    post = Posterior(mean=z, params={"kappa": torch.full((600,), 20.0, dtype=F64)})
    resp = prior.responsibilities(post)
    torch.testing.assert_close(resp.sum(-1), torch.ones(600, dtype=F64))
    assert resp.shape == (600, 3) and (resp >= 0).all()
    assign = prior.assign(post)
    # the clusters are recovered up to a permutation, with their directions and concentrations
    mapping = {int(assign[labels == c].mode().values): c for c in range(3)}
    assert len(mapping) == 3
    assert (torch.tensor([mapping[int(a)] for a in assign]) == labels).float().mean() > 0.99
    sims = prior.prototypes() @ directions.T
    assert (sims.max(-1).values > 0.98).all()
    assert ((prior.kappas() / 50.0) - 1).abs().max() < 0.2  # Banerjee estimate of κ = 50
    torch.testing.assert_close(prior.prototypes().norm(dim=-1), torch.ones(3, dtype=F64))


def test_spherical_kmeans_handles_duplicates_and_too_few_points():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [-1.0, 0.0]])
    centroids, labels = spherical_kmeans(x, 3, restarts=3, seed=1)
    assert sorted(torch.bincount(labels, minlength=3).tolist()) == [1, 2, 2]
    torch.testing.assert_close(centroids.norm(dim=-1), torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="at least k=3"):
        spherical_kmeans(x[:2], 3)


def test_riemannian_adam_keeps_mixture_means_on_the_sphere():
    torch.manual_seed(0)
    prior = VMFMixtureConfig(components=4, init_kappa=2.0).build(5)
    prior.fitted.fill_(True)  # optimise the mixture itself (unfitted, its KL is to the uniform sphere)
    assert isinstance(prior.means, geoopt.ManifoldParameter)
    z, _, _ = _mixture_batch(5, 240, 3)
    params = torch.cat([z.float() * 5.0, torch.full((240, 1), 3.0)], dim=-1)  # encoder outputs, fixed
    post = prior.posterior(params)
    samples = prior.rsample(post, _gen(9))  # fixed posterior samples: only the prior is optimised
    optimizer = geoopt.optim.RiemannianAdam(prior.parameters(), lr=0.05)
    losses = []
    for _ in range(200):
        loss = prior.kl(post, samples).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert (prior.means.detach().norm(dim=-1) - 1).abs().max() < 1e-5
    assert losses[-1] < 0.8 * losses[0], (losses[0], losses[-1])


# -- configs and the generic checks -----------------------------------------------------------------
def test_configs_validate_through_the_registry():
    prior = registry.priors.build({"type": "vmf", "kappa_grad": "rep", "kappa_floor": 0.1}, 6)
    assert isinstance(prior, VonMisesFisherPrior) and prior.n_params == 7 and prior.kappa_grad == "rep"
    assert not prior.is_cluster
    mixture = registry.priors.build({"type": "vmf_mixture", "components": 7}, 4)
    assert mixture.is_cluster and mixture.n_clusters == 7 and mixture.prototypes().shape == (7, 4)
    with pytest.raises(ValueError):
        VMFConfig(kappa_grad="score")
    with pytest.raises(ValueError):
        GumbelConfig(temperature_end=0.0)
    with pytest.raises(ValueError, match="dim >= 2"):
        VMFConfig().build(1)


@pytest.mark.parametrize("name", registry.priors.names())
@pytest.mark.parametrize("dim", [2, 6])
def test_check_prior_passes_for_every_registered_prior(name, dim):
    check_prior(registry.priors.get(name)().build(dim), seed=dim)


@pytest.mark.parametrize("cfg", [
    GumbelConfig(hard=True, learn_prior=True, schedule="linear"),
    VMFMixtureConfig(components=3, learn_weights=True, kappa_grad="rep"),
    VMFConfig(kappa_grad="rep"),
])
def test_check_prior_passes_for_non_default_settings(cfg):
    check_prior(cfg.build(4))
    check_prior(cfg.build(3).double(), seed=1)


def test_check_prior_catches_broken_priors():
    class WrongKL(VonMisesFisherPrior):
        def kl(self, post, z):
            return super().kl(post, z) + 0.3

    class ForgetfulSchedule(GumbelSoftmaxPrior):
        def on_step(self, step):  # keeps the temperature outside the state dict
            self.current = 0.1 if step else 1.0

        def rsample(self, post, generator=None):
            self.temperature.fill_(getattr(self, "current", 1.0))
            return super().rsample(post, generator)

    with pytest.raises(AssertionError, match="Monte Carlo"):
        check_prior(WrongKL(5))
    with pytest.raises(AssertionError, match="state_dict"):
        check_prior(ForgetfulSchedule(4, 1.0, 0.5, 100, "exponential", False, False))
