"""Keep every cluster in use and every assignment confident (the mutual-information pair of terms)."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

import torch
from pydantic import Field

from mcekit.losses.base import Loss, LossConfig, LossContext, LossResult, ramp
from mcekit.registry import losses


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    return -(p * p.clamp_min(1e-10).log()).sum(dim)


class BalanceLoss(Loss):
    def __init__(self, config: ClusterBalanceConfig) -> None:
        super().__init__("cluster_balance", config.weight)
        self.c = config

    @property
    def settled_epoch(self) -> float:
        return self.c.start_epoch + self.c.warmup_epochs

    def __call__(self, ctx: LossContext) -> LossResult:
        prior = ctx.model.cluster_prior
        gamma = prior.responsibilities(ctx.out.posteriors["cluster"], ctx.out.samples.get("cluster"))
        marginal = math.log(gamma.shape[1]) - entropy(gamma.mean(0))   # ≥ 0; 0 when all clusters are used equally
        conditional = entropy(gamma).mean()                            # 0 when every assignment is certain
        factor = ramp(ctx.epoch, self.c.warmup_epochs, self.c.start_epoch)
        value = self.c.marginal * marginal + self.c.conditional * conditional
        return LossResult(self.weight * factor * value, {"marginal_gap": marginal, "cond_entropy": conditional})


@losses.register
class ClusterBalanceConfig(LossConfig):
    """Marginal-entropy gap (all clusters used) plus conditional entropy (confident assignments)."""

    type: Literal["cluster_balance"] = "cluster_balance"
    needs_cluster_prior: ClassVar[bool] = True
    marginal: float = Field(10.0, ge=0, description="weight of log K − H(mean responsibilities)")
    conditional: float = Field(1.0, ge=0, description="weight of mean per-image responsibility entropy")
    start_epoch: float = Field(0.0, ge=0, description="epoch at which the term switches on")
    warmup_epochs: float = Field(0.0, ge=0)

    def build(self) -> Loss:
        return BalanceLoss(self)
