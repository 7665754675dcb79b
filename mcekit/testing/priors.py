"""Property checks for any :class:`~mcekit.priors.base.LatentPrior` (built-in or from a plugin).

    from mcekit.testing import check_prior
    check_prior(MyPriorConfig().build(dim=4))

Every failure raises ``AssertionError`` with a message naming the prior and the property. The prior
passed in is not modified (the checks run on a deep copy). What is checked:

* shapes: ``posterior(params).mean`` (B, dim); ``rsample`` (B, dim), finite and reproducible with a
  ``torch.Generator``; ``decoder_input`` and ``point`` (B, decoder_dim); ``kl`` (B,), finite;
* the KL is non-negative (averaged over posterior samples when it is a one-sample estimate);
* if the prior defines ``log_q(post, z)`` and ``log_p(z)``, the KL averaged over many samples matches
  the Monte Carlo estimate of E_q[log q(z) − log p(z)];
* gradients reach the encoder through the sample (reparameterisation) and through the KL, and the
  prior's own learnable parameters get finite gradients;
* schedule state set by ``on_step`` survives a ``state_dict`` round trip (i.e. lives in buffers);
* cluster priors: responsibilities (B, K) with rows summing to one, ``assign`` in [0, K),
  ``prototypes`` (K, decoder_dim), ``consistency`` (B,) ≥ 0 and zero for identical posteriors,
  ``initialize`` on encoded means leaves a working prior.
"""

from __future__ import annotations

import copy
import math

import torch

from mcekit.priors.base import LatentPrior, Posterior

BATCH = 8
FEATURES = 16
MC_SAMPLES = 2048
#: rows of the test batch get encoder outputs of different sizes (e.g. low and high concentrations)
ROW_SCALES = (0.5, 1.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0)


def _ensure(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise AssertionError(f"check_prior({name}): {message}")


def _shape(t: object, shape: tuple[int, ...], name: str, what: str) -> None:
    _ensure(isinstance(t, torch.Tensor), name, f"{what} should be a tensor, got {type(t).__name__}")
    assert isinstance(t, torch.Tensor)
    _ensure(tuple(t.shape) == shape, name, f"{what} has shape {tuple(t.shape)}, expected {shape}")


def _finite(t: torch.Tensor, name: str, what: str) -> None:
    if not bool(torch.isfinite(t).all()):
        _ensure(False, name, f"{what} has non-finite values: {t}")


def _dtype(prior: LatentPrior) -> torch.dtype:
    for tensor in list(prior.parameters()) + list(prior.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


class _Encoder:
    """A linear map from fixed random features to the prior's encoder outputs (what a head would be)."""

    def __init__(self, n_params: int, dtype: torch.dtype, generator: torch.Generator) -> None:
        self.weight = torch.randn(n_params, FEATURES, generator=generator, dtype=dtype) / math.sqrt(FEATURES)
        self.bias = 0.1 * torch.randn(n_params, generator=generator, dtype=dtype)
        self.weight.requires_grad_(True)
        self.bias.requires_grad_(True)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = x @ self.weight.T + self.bias
        if x.shape[0] == BATCH:
            out = out * torch.tensor(ROW_SCALES, dtype=out.dtype).unsqueeze(-1)
        return out

    def zero_grad(self) -> None:
        self.weight.grad = None
        self.bias.grad = None

    def grads(self) -> torch.Tensor:
        parts = [p.grad if p.grad is not None else torch.zeros_like(p) for p in (self.weight, self.bias)]
        return torch.cat([g.flatten() for g in parts])


def check_prior(prior: LatentPrior, *, seed: int = 0) -> None:
    """Run every property check on ``prior``; raise AssertionError on the first failure."""
    name = type(prior).__name__
    _ensure(isinstance(prior, LatentPrior), name, "is not a LatentPrior")
    prior = copy.deepcopy(prior)
    dtype = _dtype(prior)
    gen = torch.Generator().manual_seed(seed)
    tol = 1e-6 if dtype == torch.float64 else 1e-4

    dim, n_params, decoder_dim = prior.dim, prior.n_params, prior.decoder_dim
    for what, value in (("dim", dim), ("n_params", n_params), ("decoder_dim", decoder_dim)):
        _ensure(isinstance(value, int) and value > 0, name, f"{what} should be a positive int, got {value!r}")

    encoder = _Encoder(n_params, dtype, gen)
    x = torch.randn(BATCH, FEATURES, generator=gen, dtype=dtype)
    x2 = torch.randn(BATCH, FEATURES, generator=gen, dtype=dtype)

    # -- shapes and values -------------------------------------------------------------------------
    post = prior.posterior(encoder(x))
    _ensure(isinstance(post, Posterior), name, f"posterior() returned {type(post).__name__}, not a Posterior")
    _shape(post.mean, (BATCH, dim), name, "posterior mean")
    _finite(post.mean, name, "posterior mean")
    z = prior.rsample(post, generator=torch.Generator().manual_seed(seed + 1))
    _shape(z, (BATCH, dim), name, "rsample()")
    _finite(z, name, "rsample()")
    z_again = prior.rsample(post, generator=torch.Generator().manual_seed(seed + 1))
    _ensure(torch.equal(z, z_again), name, "rsample() with equally seeded generators gave different samples")
    _shape(prior.decoder_input(post, z), (BATCH, decoder_dim), name, "decoder_input()")
    _finite(prior.decoder_input(post, z), name, "decoder_input()")
    _shape(prior.point(post), (BATCH, decoder_dim), name, "point()")
    _finite(prior.point(post), name, "point()")
    kl = prior.kl(post, z)
    _shape(kl, (BATCH,), name, "kl()")
    _finite(kl, name, "kl()")

    # -- KL: sign and agreement with Monte Carlo -----------------------------------------------------
    with torch.no_grad():
        rep = prior.posterior(encoder(x).repeat_interleave(MC_SAMPLES, dim=0))
        zs = prior.rsample(rep, generator=torch.Generator().manual_seed(seed + 2))
        kls = prior.kl(rep, zs).reshape(BATCH, MC_SAMPLES).double()
        _finite(kls, name, "kl() over posterior samples")
        kl_mean, kl_se = kls.mean(1), kls.std(1) / math.sqrt(MC_SAMPLES)
        floor = -tol * (1 + kl_mean.abs()) - 4 * kl_se
        _ensure(bool((kl_mean >= floor).all()), name, f"KL is negative (sample average): {kl_mean.tolist()}")
        if callable(getattr(prior, "log_q", None)) and callable(getattr(prior, "log_p", None)):
            mc = (prior.log_q(rep, zs) - prior.log_p(zs)).reshape(BATCH, MC_SAMPLES).double()  # type: ignore[attr-defined]
            _finite(mc, name, "log_q(post, z) - log_p(z)")
            diff = kls - mc  # paired: zero variance for one-sample estimators, MC noise otherwise
            # 5 standard errors, plus 2 % for what a finite sample cannot see (rare categories)
            bound = 5 * diff.std(1) / math.sqrt(MC_SAMPLES) + 0.02 * (1 + kl_mean.abs())
            gap = (diff.mean(1)).abs()
            _ensure(
                bool((gap <= bound).all()), name,
                f"KL disagrees with the Monte Carlo estimate of E_q[log q - log p]: kl {kl_mean.tolist()}, "
                f"MC {mc.mean(1).tolist()}, allowed gap {bound.tolist()}",
            )

    # -- gradients ---------------------------------------------------------------------------------
    probe = torch.randn(BATCH, decoder_dim, generator=gen, dtype=dtype)
    encoder.zero_grad()
    post = prior.posterior(encoder(x))
    z = prior.rsample(post, generator=torch.Generator().manual_seed(seed + 3))
    (prior.decoder_input(post, z) * probe).sum().backward()
    g = encoder.grads()
    _finite(g, name, "encoder gradient through rsample()")
    _ensure(bool(g.abs().sum() > 0), name, "no gradient reaches the encoder through rsample()")

    encoder.zero_grad()
    prior.zero_grad(set_to_none=True)
    post = prior.posterior(encoder(x))
    z = prior.rsample(post, generator=torch.Generator().manual_seed(seed + 3))
    prior.kl(post, z).sum().backward()
    g = encoder.grads()
    _finite(g, name, "encoder gradient of kl()")
    _ensure(bool(g.abs().sum() > 0), name, "no gradient reaches the encoder through kl()")
    for pname, p in prior.named_parameters():
        if p.requires_grad and p.grad is not None:
            _finite(p.grad, name, f"gradient of kl() w.r.t. prior parameter {pname!r}")

    # -- consistency ---------------------------------------------------------------------------------
    with torch.no_grad():
        post = prior.posterior(encoder(x))
        other = prior.posterior(encoder(x2))
        cons = prior.consistency(post, other)
        _shape(cons, (BATCH,), name, "consistency()")
        _finite(cons, name, "consistency()")
        _ensure(bool((cons >= -tol).all()), name, f"consistency() is negative: {cons.tolist()}")
        same = prior.consistency(post, post)
        _ensure(bool((same.abs() <= tol).all()), name, f"consistency(a, a) should be 0, got {same.tolist()}")

    # -- cluster priors ------------------------------------------------------------------------------
    if prior.is_cluster:
        _check_cluster(prior, encoder, x, gen, seed, name, tol)
    else:
        _ensure(prior.n_clusters == 0, name, f"not a cluster prior but n_clusters = {prior.n_clusters}")

    # -- schedule state survives a checkpoint --------------------------------------------------------
    with torch.no_grad():
        prior.on_step(0)
        prior.on_step(12_345)
        state = copy.deepcopy(prior.state_dict())
        restored = copy.deepcopy(prior)
        restored.on_step(0)
        restored.load_state_dict(state)
        post = prior.posterior(encoder(x))
        a = prior.rsample(post, generator=torch.Generator().manual_seed(seed + 4))
        b = restored.rsample(post, generator=torch.Generator().manual_seed(seed + 4))
        _ensure(
            torch.allclose(a, b) and torch.allclose(prior.kl(post, a), restored.kl(post, a)), name,
            "state set by on_step() is lost in a state_dict round trip (keep schedule state in buffers)",
        )


def _check_cluster(
    prior: LatentPrior, encoder: _Encoder, x: torch.Tensor, gen: torch.Generator, seed: int, name: str,
    tol: float,
) -> None:
    k = prior.n_clusters
    _ensure(isinstance(k, int) and k >= 1, name, f"n_clusters should be a positive int, got {k!r}")

    def check_tables(tag: str) -> None:
        with torch.no_grad():
            post = prior.posterior(encoder(x))
            z = prior.rsample(post, generator=torch.Generator().manual_seed(seed + 5))
            for what, resp in (("responsibilities(post)", prior.responsibilities(post)),
                               ("responsibilities(post, z)", prior.responsibilities(post, z))):
                what = f"{what}{tag}"
                _shape(resp, (BATCH, k), name, what)
                _finite(resp, name, what)
                _ensure(bool((resp >= 0).all()), name, f"{what} has negative entries")
                sums = resp.sum(-1)
                _ensure(bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-4)), name,
                        f"{what} rows sum to {sums.tolist()}, not 1")
            labels = prior.assign(post)
            _shape(labels, (BATCH,), name, f"assign(){tag}")
            _ensure(not labels.is_floating_point() and not labels.is_complex(), name,
                    f"assign(){tag} should give integer labels, got {labels.dtype}")
            _ensure(bool(((labels >= 0) & (labels < k)).all()), name,
                    f"assign(){tag} gave labels outside [0, {k}): {labels.tolist()}")
            protos = prior.prototypes()
            if protos is not None:
                _shape(protos, (k, prior.decoder_dim), name, f"prototypes(){tag}")
                _finite(protos, name, f"prototypes(){tag}")
            kl = prior.kl(post, z)
            _finite(kl, name, f"kl(){tag}")

    check_tables("")
    n = max(64, 8 * k)
    with torch.no_grad():
        means = prior.posterior(encoder(torch.randn(n, FEATURES, generator=gen, dtype=x.dtype))).mean
    prior.initialize(means, seed=seed)
    check_tables(" after initialize()")


__all__ = ["check_prior"]
