"""Dilations about the image centre (1 parameter).

τ = (s,), the log of the scale factor; exp(τ) = [[eˢ I, 0], [0, 1]], log(g) = log of the factor.
s > 0 enlarges the content.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator

from mcekit.groups.affine import check_coordinates, check_elements
from mcekit.groups.base import GroupConfig, LieGroup, homogeneous, uniform
from mcekit.registry import groups


def _dilation(factor: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(2, dtype=factor.dtype, device=factor.device)
    return homogeneous(factor[:, None, None] * eye, factor.new_zeros(factor.shape[0], 2))


class ScaleGroup(LieGroup):
    """Uniform scaling about the image centre, parameterised by the log of the factor."""

    name: ClassVar[str] = "scale"
    dim: ClassVar[int] = 1
    coordinates: ClassVar[tuple[str, ...]] = ("s: log of the scale factor (s > 0 enlarges the content)",)
    has_scale: ClassVar[bool] = True

    def __init__(self, min_scale: float = 0.8, max_scale: float = 1.2) -> None:
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)

    def exp(self, tau: torch.Tensor) -> torch.Tensor:
        check_coordinates(tau, self.dim, self.name)
        return _dilation(tau[:, 0].exp())

    def log(self, g: torch.Tensor) -> torch.Tensor:
        check_elements(g, self.name)
        return torch.log((g[:, 0, 0] + g[:, 1, 1]) / 2)[:, None]

    def compose(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return _dilation(g[:, 0, 0] * h[:, 0, 0])

    def inverse(self, g: torch.Tensor) -> torch.Tensor:
        return _dilation(1 / g[:, 0, 0])

    def sample_tau(self, n: int, generator: torch.Generator | None = None, *,
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """s uniform in [log min_scale, log max_scale]."""
        return uniform(n, math.log(self.min_scale), math.log(self.max_scale), generator,
                       dtype=dtype, device=device)[:, None]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "min_scale": self.min_scale, "max_scale": self.max_scale,
                "sampling": "s = log factor uniform in [log min_scale, log max_scale]"}


@groups.register
class ScaleConfig(GroupConfig):
    """Dilations about the image centre (1 parameter: s, the log of the scale factor)."""

    type: Literal["scale"] = "scale"
    min_scale: float = Field(0.8, ge=0.01, le=100, description="smallest scale factor; s uniform in [log min, log max]")
    max_scale: float = Field(1.2, ge=0.01, le=100, description="largest scale factor; s uniform in [log min, log max]")

    @model_validator(mode="after")
    def _scale_order(self) -> ScaleConfig:
        if self.min_scale > self.max_scale:
            raise ValueError(f"min_scale ({self.min_scale}) must not exceed max_scale ({self.max_scale})")
        return self

    def build(self) -> ScaleGroup:
        return ScaleGroup(self.min_scale, self.max_scale)
