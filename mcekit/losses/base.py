"""The loss interface: called with the batch and the model's named output, returns a scalar and parts."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from pydantic import Field

from mcekit.registry import Component


@dataclass
class LossContext:
    """Everything a loss may look at. ``batch`` holds images only (and, for supervised losses, canonical
    images); labels never reach a loss."""

    images: torch.Tensor
    out: Any                      # MCEOutput
    model: Any                    # MCEVAE
    epoch: float                  # fractional epoch, for schedules
    canonical: torch.Tensor | None = None
    generator: torch.Generator | None = None
    index: torch.Tensor | None = None   # the batch's rows in the training set (None outside training)


@dataclass
class LossResult:
    value: torch.Tensor
    parts: dict[str, torch.Tensor] = field(default_factory=dict)


class Loss(ABC):
    def __init__(self, name: str, weight: float) -> None:
        self.name = name
        self.weight = weight

    @abstractmethod
    def __call__(self, ctx: LossContext) -> LossResult:
        ...

    @property
    def settled_epoch(self) -> float:
        """Epoch from which the term's schedule no longer changes (checkpoint selection waits for it)."""
        return 0.0

    def on_cluster_fit(self, posterior: Any, prior: Any) -> None:
        """Called after every mixture fit with the cluster-block posterior of all training images."""
        return None  # most terms keep no state

    def state_dict(self) -> dict[str, Any]:
        """What a term keeps between steps, saved in checkpoints for an exact resume."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        return None


class LossConfig(Component):
    #: the term reads cluster responsibilities, so model.latents.cluster needs a cluster prior (checked on load)
    needs_cluster_prior: ClassVar[bool] = False
    #: a model config field the term works on, which must not be null (checked on load)
    needs_model_field: ClassVar[str | None] = None

    weight: float = Field(1.0, ge=0, description="multiplies the whole term")

    @abstractmethod
    def build(self) -> Loss:
        ...


def ramp(epoch: float, warmup_epochs: float, start_epoch: float = 0.0) -> float:
    """Linear warm-up factor in [0,1] from ``start_epoch`` over ``warmup_epochs``."""
    if epoch < start_epoch:
        return 0.0
    if warmup_epochs <= 0:
        return 1.0
    return min(1.0, (epoch - start_epoch) / warmup_epochs)
