"""Built-in latent priors; importing this package registers every one of them."""

from mcekit.priors import gmm, gumbel, normal, vmf, vmf_mixture  # noqa: F401  (registration)
from mcekit.priors.base import LatentPrior, Posterior, PriorConfig

__all__ = ["LatentPrior", "Posterior", "PriorConfig"]
