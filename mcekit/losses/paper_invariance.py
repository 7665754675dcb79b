"""The published code's unsupervised invariance: a Python loop of K no-grad passes on moved copies.

Kept as a reference protocol (the ``paper_mcevae`` benchmark baseline and the speed benchmark's setting (c)).
Per copy, the whole batch is moved by fresh group elements and encoded and decoded without gradients;
the copy's cluster and style samples and its canonical image are then targets for the batch's own (squared
differences, summed over coordinates and pixels, averaged over copies and images). The batched
``invariance`` loss is what mcekit trains with.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from mcekit.groups.base import act
from mcekit.losses.base import Loss, LossConfig, LossContext, LossResult
from mcekit.registry import losses

TARGET_BLOCKS = ("cluster", "style")


class PaperInvarianceLoss(Loss):
    def __init__(self, config: PaperInvarianceConfig) -> None:
        super().__init__("paper_invariance", config.weight)
        self.samples = config.samples

    def __call__(self, ctx: LossContext) -> LossResult:
        model, x, out = ctx.model, ctx.images, ctx.out
        blocks = [block for block in TARGET_BLOCKS if block in out.samples]
        total = torch.zeros((), device=x.device)
        for _ in range(self.samples):
            with torch.no_grad():
                h = model.group.sample(x.shape[0], ctx.generator, dtype=x.dtype, device=x.device)
                other = model(act(x, h, model.padding))
            for block in blocks:
                total = total + (out.samples[block] - other.samples[block]).pow(2).sum()
            total = total + (out.canonical - other.canonical).pow(2).sum()
        value = total / (self.samples * x.shape[0])
        return LossResult(self.weight * value, {"paper_invariance": value})


@losses.register
class PaperInvarianceConfig(LossConfig):
    """The published unsupervised mode: K sequential no-grad passes on moved copies as targets (reference)."""

    type: Literal["paper_invariance"] = "paper_invariance"
    samples: int = Field(25, ge=1, le=64, description="moved copies per batch, one no-grad pass each (the paper: 25)")

    def build(self) -> Loss:
        return PaperInvarianceLoss(self)
