"""Train the half-turn detector (``model.half_turns``) and switch it on once it has learned."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import Field

from mcekit.losses.base import Loss, LossConfig, LossContext, LossResult
from mcekit.orientation import half_turn
from mcekit.registry import losses


class HalfTurnLoss(Loss):
    def __init__(self, config: HalfTurnConfig) -> None:
        super().__init__("half_turn", config.weight)
        self.c = config

    @property
    def settled_epoch(self) -> float:
        return self.c.use_from_epoch

    def __call__(self, ctx: LossContext) -> LossResult:
        detector, out = ctx.model.half_turns, ctx.out
        if ctx.epoch >= self.c.use_from_epoch:
            detector.active.fill_(True)
        # the detector learns on the half-plane estimate, before any turn it chose itself
        aligned = torch.where(out.turned[:, None, None, None], half_turn(out.aligned), out.aligned).detach()
        value, reliable = detector.training_loss(aligned, out.pose_init.detach())
        parts = {"half_turn_bce": value.detach(), "turned_share": out.turned.float().mean(),
                 "reliable_share": torch.tensor(reliable / max(1, aligned.shape[0]))}
        return LossResult(self.weight * value, parts)


@losses.register
class HalfTurnConfig(LossConfig):
    """Teach model.half_turns which way up an aligned image goes, from the images whose axis was near upright."""

    type: Literal["half_turn"] = "half_turn"
    needs_model_field: ClassVar[str | None] = "half_turns"
    use_from_epoch: float = Field(10.0, ge=0, description="epoch from which the detector turns images")

    def build(self) -> Loss:
        return HalfTurnLoss(self)
