"""The Lie group interface and the one image action every group shares.

Coordinates are PyTorch's normalised image coordinates p ∈ [-1, 1]² (``align_corners=False``):
x to the right, y *down*, so a positive angle turns content clockwise on screen. Elements are
(B, 3, 3) homogeneous matrices. The action is (g·x)(p) = x(g⁻¹p): content at p moves to g·p, which
gives act(act(x, g), h) = act(x, h∘g).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from mcekit.registry import Component

PaddingMode = Literal["zeros", "border", "reflection"]


class LieGroup(ABC):
    """A matrix Lie group acting on images. Pure tensor functions: batched, differentiable, any dtype/device.

    Subclasses give ``dim``, ``exp``, ``log`` and ``sample``; ``compose`` and ``inverse`` default to
    matrix product and a generic inverse and should be overridden with closed forms where they exist.
    """

    name: ClassVar[str] = "group"
    dim: ClassVar[int] = 0
    #: meaning of each Lie-algebra coordinate, in order (shown by ``mcekit info groups NAME``)
    coordinates: ClassVar[tuple[str, ...]] = ()
    has_rotation: ClassVar[bool] = False
    has_translation: ClassVar[bool] = False
    has_scale: ClassVar[bool] = False

    @abstractmethod
    def exp(self, tau: torch.Tensor) -> torch.Tensor:
        """Lie algebra coordinates (B, dim) → group elements (B, 3, 3)."""

    @abstractmethod
    def log(self, g: torch.Tensor) -> torch.Tensor:
        """Group elements (B, 3, 3) → coordinates (B, dim) on the principal branch."""

    @abstractmethod
    def sample_tau(self, n: int, generator: torch.Generator | None = None, *,
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """Coordinates (n, dim) of random elements over the configured range."""

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """Random elements (n, 3, 3) over the configured range."""
        return self.exp(self.sample_tau(n, generator, dtype=dtype, device=device))

    def compose(self, g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """g ∘ h (apply h first, then g); every element is affine, so the closed form serves all groups."""
        return affine_compose(g, h)

    def inverse(self, g: torch.Tensor) -> torch.Tensor:
        return affine_inverse(g)

    def identity(self, n: int, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.eye(3, dtype=dtype, device=device).expand(n, 3, 3).clone()

    def describe(self) -> dict[str, Any]:
        """Human-readable summary: parameters, ranges, coordinate meanings."""
        return {"name": self.name, "dim": self.dim, "coordinates": list(self.coordinates)}


class GroupConfig(Component):
    """Base of group config classes; ``build()`` returns a :class:`LieGroup`."""

    @abstractmethod
    def build(self) -> LieGroup:
        ...


def uniform(n: int, low: float, high: float, generator: torch.Generator | None, *,
            dtype: torch.dtype, device: torch.device | str) -> torch.Tensor:
    """Uniform samples drawn on the CPU generator (reproducible across devices), then moved."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return (low + (high - low) * u).to(dtype=dtype, device=device)


def act(images: torch.Tensor, g: torch.Tensor, padding_mode: PaddingMode = "zeros") -> torch.Tensor:
    """Move images by group elements: (g·x)(p) = x(g⁻¹p). images (B,C,H,W), g (B,3,3)."""
    if g.shape[0] != images.shape[0] and g.shape[0] == 1:
        g = g.expand(images.shape[0], 3, 3)
    # inv_ex does not raise on a singular g (a pose that blew up): such images come out NaN, so the
    # trainer's non-finite guard names the epoch, step and term instead of a linear-algebra traceback
    inverse, info = torch.linalg.inv_ex(g.to(images.dtype))
    theta = torch.where((info == 0)[:, None, None], inverse, torch.nan)[:, :2, :]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def pose_components(g: torch.Tensor) -> dict[str, torch.Tensor]:
    """Split any orientation-preserving affine element into rotation angle (rad), log-scale and translation.

    Uses the polar decomposition A = R·S of the linear part: angle from R, log-scale as ½ log det A.
    """
    a = g[..., :2, :2]
    angle = torch.atan2(a[..., 1, 0] - a[..., 0, 1], a[..., 0, 0] + a[..., 1, 1])
    log_scale = 0.5 * torch.log(torch.linalg.det(a).clamp_min(1e-12))
    return {"angle": angle, "log_scale": log_scale, "translation": g[..., :2, 2]}


def wrap_angle(theta: torch.Tensor) -> torch.Tensor:
    """Wrap to (-π, π]."""
    return theta - 2 * math.pi * torch.ceil((theta - math.pi) / (2 * math.pi))


def homogeneous(linear: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """(B,2,2) linear part and (B,2) translation → (B,3,3)."""
    bottom = torch.zeros(linear.shape[0], 1, 3, dtype=linear.dtype, device=linear.device)
    bottom[:, 0, 2] = 1
    return torch.cat([torch.cat([linear, shift.unsqueeze(-1)], dim=2), bottom], dim=1)


def rotation_matrix(theta: torch.Tensor) -> torch.Tensor:
    """(B,) → (B,2,2)."""
    c, s = torch.cos(theta), torch.sin(theta)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def inverse_2x2(a: torch.Tensor) -> torch.Tensor:
    """Closed-form inverse of (B, 2, 2) matrices (adjugate over determinant)."""
    p, q, r, s = a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1]
    det = p * s - q * r
    adj = torch.stack([torch.stack([s, -q], -1), torch.stack([-r, p], -1)], -2)
    return adj / det[:, None, None]


def affine_compose(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """g ∘ h for affine elements: [[A_g A_h, A_g t_h + t_g], [0, 1]] (batch dims broadcast)."""
    a = g[:, :2, :2]
    linear = a @ h[:, :2, :2]
    shift = (a @ h[:, :2, 2:]).squeeze(-1) + g[:, :2, 2]
    return homogeneous(linear, shift)


def affine_inverse(g: torch.Tensor) -> torch.Tensor:
    """[[A, t], [0, 1]]⁻¹ = [[A⁻¹, −A⁻¹t], [0, 1]] with the closed-form 2×2 inverse."""
    inv = inverse_2x2(g[:, :2, :2])
    return homogeneous(inv, -(inv @ g[:, :2, 2:]).squeeze(-1))
