"""SE(2), rotations and translations of the image plane (3 parameters).

τ = (θ, u₁, u₂); exp(τ) = [[R(θ), V(θ)u], [0, 1]] with
V(θ) = (1/θ)[[sin θ, −(1 − cos θ)], [1 − cos θ, sin θ]], and
log(g) = (θ, V(θ)⁻¹t) with θ = atan2 on the principal branch (−π, π] and
V(θ)⁻¹ = [[c, θ/2], [−θ/2, c]], c = (θ/2)·cot(θ/2).

The small-angle functions below switch to Taylor series for |θ| < 0.1 with the ``torch.where``
trick (each branch is fed a safe input), so values and gradients are finite at exactly θ = 0 in
float32 and float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from mcekit.groups.affine import check_coordinates, check_elements
from mcekit.groups.base import GroupConfig, LieGroup, homogeneous, rotation_matrix, uniform
from mcekit.registry import groups

#: below this |θ| the series are used; their truncation error there is < 1e-17
SERIES_THRESHOLD = 0.1


def series_where(x: torch.Tensor, series: Callable[[torch.Tensor], torch.Tensor],
                 direct: Callable[[torch.Tensor], torch.Tensor],
                 threshold: float = SERIES_THRESHOLD) -> torch.Tensor:
    """``series(x)`` where |x| < threshold, else ``direct(x)``, with finite gradients everywhere.

    Each branch only ever sees inputs where it is well behaved (0 for the series, 1 for the direct
    formula), so the branch that ``torch.where`` discards cannot inject inf/NaN into the gradient.
    """
    small = x.abs() < threshold
    x_series = torch.where(small, x, torch.zeros_like(x))
    x_direct = torch.where(small, torch.ones_like(x), x)
    return torch.where(small, series(x_series), direct(x_direct))


def _poly(x2: torch.Tensor, coefficients: tuple[float, ...]) -> torch.Tensor:
    """Σ cₖ x2ᵏ by Horner's rule."""
    out = torch.full_like(x2, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = out * x2 + c
    return out


def sin_over(theta: torch.Tensor) -> torch.Tensor:
    """sin θ / θ (1 at θ = 0)."""
    return series_where(theta, lambda t: _poly(t * t, (1.0, -1 / 6, 1 / 120, -1 / 5040, 1 / 362880)),
                        lambda t: torch.sin(t) / t)


def one_minus_cos_over(theta: torch.Tensor) -> torch.Tensor:
    """(1 − cos θ) / θ = 2 sin²(θ/2) / θ (0 at θ = 0)."""
    return series_where(theta, lambda t: t * _poly(t * t, (1 / 2, -1 / 24, 1 / 720, -1 / 40320, 1 / 3628800)),
                        lambda t: 2 * torch.sin(t / 2) ** 2 / t)


def half_cot(theta: torch.Tensor) -> torch.Tensor:
    """(θ/2)·cot(θ/2) (1 at θ = 0; 0 at θ = ±π)."""
    return series_where(theta, lambda t: _poly(t * t, (1.0, -1 / 12, -1 / 720, -1 / 30240, -1 / 1209600)),
                        lambda t: (t / 2) * torch.cos(t / 2) / torch.sin(t / 2))


def rotation_angle(g: torch.Tensor) -> torch.Tensor:
    """Angle of the rotation nearest to the linear part of a rotation or similarity, in (−π, π]."""
    return torch.atan2(g[:, 1, 0] - g[:, 0, 1], g[:, 0, 0] + g[:, 1, 1])


def rotation_inverse(g: torch.Tensor) -> torch.Tensor:
    """[[R, t], [0, 1]]⁻¹ = [[Rᵀ, −Rᵀt], [0, 1]]."""
    rt = g[:, :2, :2].transpose(1, 2)
    return homogeneous(rt, -(rt @ g[:, :2, 2:]).squeeze(-1))


class SE2Group(LieGroup):
    """SE(2): rotation about the image centre, then translation."""

    name: ClassVar[str] = "se2"
    dim: ClassVar[int] = 3
    coordinates: ClassVar[tuple[str, ...]] = (
        "theta: rotation angle in radians (positive = clockwise on screen, y down)",
        "u1: translation generator, x (normalised units; the matrix shift is V(theta) u)",
        "u2: translation generator, y (normalised units, down)",
    )
    has_rotation: ClassVar[bool] = True
    has_translation: ClassVar[bool] = True

    def __init__(self, max_angle_deg: float = 90.0, max_translation: float = 0.5) -> None:
        self.max_angle_deg = float(max_angle_deg)
        self.max_translation = float(max_translation)

    def exp(self, tau: torch.Tensor) -> torch.Tensor:
        check_coordinates(tau, self.dim, self.name)
        theta, u1, u2 = tau.unbind(-1)
        a, b = sin_over(theta), one_minus_cos_over(theta)
        shift = torch.stack([a * u1 - b * u2, b * u1 + a * u2], -1)
        return homogeneous(rotation_matrix(theta), shift)

    def log(self, g: torch.Tensor) -> torch.Tensor:
        check_elements(g, self.name)
        theta = rotation_angle(g)
        c, h = half_cot(theta), theta / 2
        t1, t2 = g[:, 0, 2], g[:, 1, 2]
        return torch.stack([theta, c * t1 + h * t2, -h * t1 + c * t2], -1)

    def inverse(self, g: torch.Tensor) -> torch.Tensor:
        return rotation_inverse(g)

    def sample_tau(self, n: int, generator: torch.Generator | None = None, *,
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """θ uniform in ±max_angle, then the *matrix* translation t uniform per axis; τ = log of that element.

        Draw order (float64, CPU generator): θ, t₁, t₂.
        """
        kw: dict[str, Any] = {"dtype": torch.float64, "device": "cpu"}
        amax = math.radians(self.max_angle_deg)
        theta = uniform(n, -amax, amax, generator, **kw)
        t1 = uniform(n, -self.max_translation, self.max_translation, generator, **kw)
        t2 = uniform(n, -self.max_translation, self.max_translation, generator, **kw)
        g = homogeneous(rotation_matrix(theta), torch.stack([t1, t2], -1))
        return self.log(g).to(dtype=dtype, device=device)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_angle_deg": self.max_angle_deg,
                "max_translation": self.max_translation,
                "sampling": "theta uniform in [-max_angle, max_angle], matrix translation uniform per axis "
                            "in [-max_translation, max_translation]; tau = log"}


@groups.register
class SE2Config(GroupConfig):
    """SE(2): rotations about the image centre followed by translations (3 parameters: θ, u₁, u₂)."""

    type: Literal["se2"] = "se2"
    max_angle_deg: float = Field(90.0, ge=0, le=180, description="rotation uniform in [-max, max] degrees "
                                 "(180 = the whole circle)")
    max_translation: float = Field(0.5, ge=0, le=2, description="translation of the sampled matrix uniform "
                                   "per axis in [-max, max], normalised coordinates (0.5 = 25% of the width)")

    def build(self) -> SE2Group:
        return SE2Group(self.max_angle_deg, self.max_translation)
