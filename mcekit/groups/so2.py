"""SO(2), rotations of the image about its centre (1 parameter).

τ = (θ,); exp(τ) = [[R(θ), 0], [0, 1]] with R(θ) = [[cos θ, −sin θ], [sin θ, cos θ]]; log is
atan2 on the principal branch (−π, π]. With y pointing down, positive θ turns content clockwise
on screen.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from mcekit.groups.affine import check_coordinates, check_elements
from mcekit.groups.base import GroupConfig, LieGroup, homogeneous, rotation_matrix, uniform
from mcekit.groups.se2 import rotation_angle
from mcekit.registry import groups


class SO2Group(LieGroup):
    """SO(2): rotations about the image centre."""

    name: ClassVar[str] = "so2"
    dim: ClassVar[int] = 1
    coordinates: ClassVar[tuple[str, ...]] = (
        "theta: rotation angle in radians (positive = clockwise on screen, y down)",
    )
    has_rotation: ClassVar[bool] = True

    def __init__(self, max_angle_deg: float = 90.0) -> None:
        self.max_angle_deg = float(max_angle_deg)

    def exp(self, tau: torch.Tensor) -> torch.Tensor:
        check_coordinates(tau, self.dim, self.name)
        return homogeneous(rotation_matrix(tau[:, 0]), tau.new_zeros(tau.shape[0], 2))

    def log(self, g: torch.Tensor) -> torch.Tensor:
        check_elements(g, self.name)
        return rotation_angle(g)[:, None]

    def compose(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        linear = g[:, :2, :2] @ h[:, :2, :2]
        return homogeneous(linear, linear.new_zeros(linear.shape[0], 2))

    def inverse(self, g: torch.Tensor) -> torch.Tensor:
        return homogeneous(g[:, :2, :2].transpose(1, 2), g.new_zeros(g.shape[0], 2))

    def sample_tau(self, n: int, generator: torch.Generator | None = None, *,
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """θ uniform in [−max_angle, max_angle] (radians)."""
        amax = math.radians(self.max_angle_deg)
        return uniform(n, -amax, amax, generator, dtype=dtype, device=device)[:, None]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_angle_deg": self.max_angle_deg,
                "sampling": "theta uniform in [-max_angle, max_angle]"}


@groups.register
class SO2Config(GroupConfig):
    """SO(2): rotations of the image about its centre (1 parameter: the angle θ)."""

    type: Literal["so2"] = "so2"
    max_angle_deg: float = Field(90.0, ge=0, le=180, description="rotation uniform in [-max, max] degrees "
                                 "(180 = the whole circle)")

    def build(self) -> SO2Group:
        return SO2Group(self.max_angle_deg)
