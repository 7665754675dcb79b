"""Supervised invariance: the canonical image x̃ must match the dataset's canonical image."""

from __future__ import annotations

from typing import Literal

from mcekit.losses.base import Loss, LossConfig, LossContext, LossResult
from mcekit.losses.reconstruction import bernoulli_nll
from mcekit.registry import losses


class CanonicalLoss(Loss):
    def __call__(self, ctx: LossContext) -> LossResult:
        if ctx.canonical is None:
            raise ValueError("the 'canonical' loss needs a dataset with canonical images (data.transform set)")
        value = bernoulli_nll(ctx.out.canonical, ctx.canonical).mean()
        return LossResult(self.weight * value, {"canonical": value})


@losses.register
class CanonicalConfig(LossConfig):
    """Supervised mode: BCE between the decoded canonical x̃ and the true canonical image (no labels)."""

    type: Literal["canonical"] = "canonical"

    def build(self) -> Loss:
        return CanonicalLoss("canonical", self.weight)
