"""Built-in losses; importing this package registers every one of them."""

from mcekit.losses import (  # noqa: F401  (registration)
    balance,
    canonical,
    contrastive,
    half_turn,
    invariance,
    kl,
    neighbours,
    paper_invariance,
    reconstruction,
)
from mcekit.losses.base import Loss, LossConfig, LossContext, LossResult

__all__ = ["Loss", "LossConfig", "LossContext", "LossResult"]
