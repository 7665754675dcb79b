"""Sim(2), rotation, uniform scaling and translation of the image plane (4 parameters).

τ = (θ, s, u₁, u₂). With λ = s + iθ and points written as complex numbers z = x + iy,
exp(τ) acts as z ↦ e^λ z + W u, where W multiplies u = u₁ + iu₂ by (e^λ − 1)/λ:

    exp(τ) = [[eˢ R(θ), W u], [0, 1]].

log: θ = atan2 on the principal branch (−π, π], s = log of the scale, u = t / ((e^λ − 1)/λ)
(complex division). (e^λ − 1)/λ = Σ λᵏ/(k+1)! is evaluated by its series for |λ| < 0.1 (the
``torch.where`` trick with safe inputs, so gradients are finite at τ = 0) and as
((eˢ − 1)cos θ − 2 sin²(θ/2) + i eˢ sin θ)·(s − iθ)/|λ|² elsewhere.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator

from mcekit.groups.affine import check_coordinates, check_elements
from mcekit.groups.base import GroupConfig, LieGroup, homogeneous, rotation_matrix, uniform
from mcekit.groups.se2 import SERIES_THRESHOLD, rotation_angle
from mcekit.registry import groups

_SERIES_TERMS = 11  # Σ_{k<11} λᵏ/(k+1)!: truncation < 3e-18 for |λ| < 0.1


def _series(s: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ λᵏ/(k+1)! by Horner's rule in real arithmetic; returns (real, imaginary)."""
    re = torch.full_like(s, 1 / math.factorial(_SERIES_TERMS))
    im = torch.zeros_like(s)
    for k in range(_SERIES_TERMS - 1, 0, -1):
        re, im = re * s - im * theta + 1 / math.factorial(k), re * theta + im * s
    return re, im


def _direct(s: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e^λ − 1)/λ from its closed form (λ ≠ 0), avoiding cancellation in e^λ − 1."""
    num_re = torch.expm1(s) * torch.cos(theta) - 2 * torch.sin(theta / 2) ** 2
    num_im = torch.exp(s) * torch.sin(theta)
    r2 = s * s + theta * theta
    return (num_re * s + num_im * theta) / r2, (num_im * s - num_re * theta) / r2


def expm1_over(s: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e^λ − 1)/λ for λ = s + iθ as (real, imaginary), finite with finite gradients at λ = 0."""
    small = s * s + theta * theta < SERIES_THRESHOLD ** 2
    zero, one = torch.zeros_like(s), torch.ones_like(s)
    sr, si = _series(torch.where(small, s, zero), torch.where(small, theta, zero))
    dr, di = _direct(torch.where(small, one, s), torch.where(small, zero, theta))
    return torch.where(small, sr, dr), torch.where(small, si, di)


class Sim2Group(LieGroup):
    """Sim(2): rotation and uniform scaling about the image centre, then translation."""

    name: ClassVar[str] = "sim2"
    dim: ClassVar[int] = 4
    coordinates: ClassVar[tuple[str, ...]] = (
        "theta: rotation angle in radians (positive = clockwise on screen, y down)",
        "s: log of the scale factor (s > 0 enlarges the content)",
        "u1: translation generator, x (normalised units; the matrix shift is W u)",
        "u2: translation generator, y (normalised units, down)",
    )
    has_rotation: ClassVar[bool] = True
    has_translation: ClassVar[bool] = True
    has_scale: ClassVar[bool] = True

    def __init__(self, max_angle_deg: float = 90.0, min_scale: float = 0.8, max_scale: float = 1.2,
                 max_translation: float = 0.5) -> None:
        self.max_angle_deg = float(max_angle_deg)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.max_translation = float(max_translation)

    def exp(self, tau: torch.Tensor) -> torch.Tensor:
        check_coordinates(tau, self.dim, self.name)
        theta, s, u1, u2 = tau.unbind(-1)
        wr, wi = expm1_over(s, theta)
        shift = torch.stack([wr * u1 - wi * u2, wi * u1 + wr * u2], -1)
        return homogeneous(s.exp()[:, None, None] * rotation_matrix(theta), shift)

    def log(self, g: torch.Tensor) -> torch.Tensor:
        check_elements(g, self.name)
        theta = rotation_angle(g)
        c, d = g[:, 0, 0] + g[:, 1, 1], g[:, 1, 0] - g[:, 0, 1]  # 2eˢcos θ, 2eˢsin θ
        s = 0.5 * torch.log(c * c + d * d) - math.log(2.0)
        wr, wi = expm1_over(s, theta)
        t1, t2 = g[:, 0, 2], g[:, 1, 2]
        w2 = wr * wr + wi * wi
        return torch.stack([theta, s, (t1 * wr + t2 * wi) / w2, (t2 * wr - t1 * wi) / w2], -1)

    def sample_tau(self, n: int, generator: torch.Generator | None = None, *,
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """θ, log-scale s, then the *matrix* translation t₁, t₂, each uniform in its range; τ = log.

        Draw order (float64, CPU generator): θ, s, t₁, t₂.
        """
        kw: dict[str, Any] = {"dtype": torch.float64, "device": "cpu"}
        amax = math.radians(self.max_angle_deg)
        theta = uniform(n, -amax, amax, generator, **kw)
        s = uniform(n, math.log(self.min_scale), math.log(self.max_scale), generator, **kw)
        t1 = uniform(n, -self.max_translation, self.max_translation, generator, **kw)
        t2 = uniform(n, -self.max_translation, self.max_translation, generator, **kw)
        g = homogeneous(s.exp()[:, None, None] * rotation_matrix(theta), torch.stack([t1, t2], -1))
        return self.log(g).to(dtype=dtype, device=device)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_angle_deg": self.max_angle_deg, "min_scale": self.min_scale,
                "max_scale": self.max_scale, "max_translation": self.max_translation,
                "sampling": "theta uniform in [-max_angle, max_angle], s uniform in [log min_scale, "
                            "log max_scale], matrix translation uniform per axis; tau = log"}


@groups.register
class Sim2Config(GroupConfig):
    """Sim(2): rotation and uniform scaling about the image centre, then translation (4 parameters)."""

    type: Literal["sim2"] = "sim2"
    max_angle_deg: float = Field(90.0, ge=0, le=180, description="rotation uniform in [-max, max] degrees "
                                 "(180 = the whole circle)")
    min_scale: float = Field(0.8, ge=0.01, le=100, description="smallest scale factor; s uniform in [log min, log max]")
    max_scale: float = Field(1.2, ge=0.01, le=100, description="largest scale factor; s uniform in [log min, log max]")
    max_translation: float = Field(0.5, ge=0, le=2, description="translation of the sampled matrix uniform "
                                   "per axis in [-max, max], normalised coordinates (0.5 = 25% of the width)")

    @model_validator(mode="after")
    def _scale_order(self) -> Sim2Config:
        if self.min_scale > self.max_scale:
            raise ValueError(f"min_scale ({self.min_scale}) must not exceed max_scale ({self.max_scale})")
        return self

    def build(self) -> Sim2Group:
        return Sim2Group(self.max_angle_deg, self.min_scale, self.max_scale, self.max_translation)
