"""Reconstruction terms between the input x and the model's x̂ = act(x̃, g), summed over pixels."""

from __future__ import annotations

from typing import Literal

import torch

from mcekit.losses.base import Loss, LossConfig, LossContext, LossResult
from mcekit.registry import losses


def bernoulli_nll(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image BCE summed over pixels (B,). Written out rather than F.binary_cross_entropy, which raises on NaN
    input: a NaN must reach the trainer as a non-finite loss (train.nonfinite), not as a crash."""
    p = probs.clamp(1e-6, 1 - 1e-6)
    return -(target * p.log() + (1 - target) * (1 - p).log()).flatten(1).sum(1)


def squared_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).pow(2).flatten(1).sum(1)


class Reconstruction(Loss):
    def __init__(self, name: str, weight: float, per_image) -> None:
        super().__init__(name, weight)
        self.per_image = per_image

    def __call__(self, ctx: LossContext) -> LossResult:
        value = self.per_image(ctx.out.recon, ctx.images).mean()
        return LossResult(self.weight * value, {self.name: value})


@losses.register
class BCEConfig(LossConfig):
    """Bernoulli reconstruction: binary cross-entropy of x̂ against x, summed over pixels."""

    type: Literal["bce"] = "bce"

    def build(self) -> Loss:
        return Reconstruction("bce", self.weight, bernoulli_nll)


@losses.register
class MSEConfig(LossConfig):
    """Gaussian reconstruction: squared error of x̂ against x, summed over pixels."""

    type: Literal["mse"] = "mse"

    def build(self) -> Loss:
        return Reconstruction("mse", self.weight, squared_error)
