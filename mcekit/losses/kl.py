"""Per-block KL terms with a linear β warm-up."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from mcekit.losses.base import Loss, LossConfig, LossContext, LossResult, ramp
from mcekit.registry import losses


class KLLoss(Loss):
    def __init__(self, weight: float, beta: float, warmup_epochs: float, blocks: dict[str, float]) -> None:
        super().__init__("kl", weight)
        self.beta, self.warmup_epochs, self.blocks = beta, warmup_epochs, blocks

    @property
    def settled_epoch(self) -> float:
        return self.warmup_epochs

    def beta_at(self, epoch: float) -> float:
        return self.beta * ramp(epoch, self.warmup_epochs)

    def __call__(self, ctx: LossContext) -> LossResult:
        beta = self.beta_at(ctx.epoch)
        total = torch.zeros((), device=ctx.images.device)
        parts: dict[str, torch.Tensor] = {}
        for block, post in ctx.out.posteriors.items():
            kl = ctx.model.priors[block].kl(post, ctx.out.samples[block]).mean()
            parts[f"kl_{block}"] = kl
            total = total + self.blocks.get(block, 1.0) * kl
        return LossResult(self.weight * beta * total, parts)


@losses.register
class KLConfig(LossConfig):
    """Σ_blocks β_block·KL(q‖p), β ramped linearly from 0 over ``warmup_epochs``."""

    type: Literal["kl"] = "kl"
    beta: float = Field(1.0, ge=0, description="β after warm-up")
    warmup_epochs: float = Field(5.0, ge=0, description="epochs of linear β warm-up from 0")
    blocks: dict[str, float] = Field(default_factory=dict,
                                     description="per-block multipliers, e.g. {cluster: 1.0, pose: 0.1}")

    def build(self) -> Loss:
        return KLLoss(self.weight, self.beta, self.warmup_epochs, self.blocks)
