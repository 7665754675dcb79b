"""Built-in losses; importing this package registers every one of them."""

from mcekit.losses import balance, canonical, invariance, kl, paper_invariance, reconstruction  # noqa: F401  (registration)
from mcekit.losses.base import Loss, LossConfig, LossContext, LossResult

__all__ = ["Loss", "LossConfig", "LossContext", "LossResult"]
