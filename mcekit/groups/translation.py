"""T(2), translations of the image plane (2 parameters).

τ = (u₁, u₂) in normalised coordinates (x right, y down; 0.5 = a quarter of the width);
exp(τ) = [[I, u], [0, 1]], log(g) = the shift of g.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from mcekit.groups.affine import check_coordinates, check_elements
from mcekit.groups.base import GroupConfig, LieGroup, homogeneous, uniform
from mcekit.registry import groups


def _eye(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(2, dtype=like.dtype, device=like.device).expand(n, 2, 2)


class TranslationGroup(LieGroup):
    """T(2): shifts; exp and log are the identity map on the shift."""

    name: ClassVar[str] = "translation"
    dim: ClassVar[int] = 2
    coordinates: ClassVar[tuple[str, ...]] = (
        "u1: shift along x (normalised units, right)",
        "u2: shift along y (normalised units, down)",
    )
    has_translation: ClassVar[bool] = True

    def __init__(self, max_translation: float = 0.5) -> None:
        self.max_translation = float(max_translation)

    def exp(self, tau: torch.Tensor) -> torch.Tensor:
        check_coordinates(tau, self.dim, self.name)
        return homogeneous(_eye(tau.shape[0], tau), tau)

    def log(self, g: torch.Tensor) -> torch.Tensor:
        check_elements(g, self.name)
        return g[:, :2, 2].clone()

    def compose(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        shift = g[:, :2, 2] + h[:, :2, 2]
        return homogeneous(_eye(shift.shape[0], shift), shift)

    def inverse(self, g: torch.Tensor) -> torch.Tensor:
        return homogeneous(_eye(g.shape[0], g), -g[:, :2, 2])

    def sample_tau(self, n: int, generator: torch.Generator | None = None, *,
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """u₁ then u₂, each uniform in [−max_translation, max_translation]."""
        m = self.max_translation
        return torch.stack([uniform(n, -m, m, generator, dtype=dtype, device=device),
                            uniform(n, -m, m, generator, dtype=dtype, device=device)], -1)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_translation": self.max_translation,
                "sampling": "shift uniform per axis in [-max_translation, max_translation]"}


@groups.register
class TranslationConfig(GroupConfig):
    """T(2): translations of the image (2 parameters: the shift along x and y)."""

    type: Literal["translation"] = "translation"
    max_translation: float = Field(0.5, ge=0, le=2, description="shift uniform per axis in [-max, max], "
                                   "normalised coordinates (0.5 = 25% of the width)")

    def build(self) -> TranslationGroup:
        return TranslationGroup(self.max_translation)
