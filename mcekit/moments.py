"""Analytic pose estimate from image moments: centre of mass and principal axis.

The estimate g₀ = T(c)·R(φ) says where a canonical image (centre of mass at the centre, principal axis
vertical) was moved to: x ≈ act(x_canonical, g₀). The axis has no arrow, so φ is only known modulo
180°. Two ways to give it one:

- ``half_plane``: φ wrapped to (-90°, 90°], i.e. the canonical is never turned by more than a quarter
  turn. Right for data rotated by less than about ±90°, but a digit whose axis crosses the wrap lands
  upside down (13 % of the digits rotated by up to ±90°, half of those rotated by any angle).
- ``skew``: the arrow points along the third central moment on the axis (the heavier tail down in the
  canonical). This is equivariant under any rotation: the same shape gets the same canonical however it
  is turned, so it suits data rotated by any angle. The price: shapes that are half-turns of each other
  (6 and 9) get the same canonical, and a shape with a near-zero third moment may land either way.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from mcekit.groups.base import LieGroup, PaddingMode, act, homogeneous, rotation_matrix, wrap_angle
from mcekit.upright import translations

Arrow = Literal["half_plane", "skew"]


def pixel_centres(h: int, w: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The normalised coordinates (ys (H,), xs (W,)) of the pixel centres, spanning (-1, 1) as ``act`` reads them
    (align_corners=False), in ``like``'s dtype and device."""
    def axis(n: int) -> torch.Tensor:
        return (torch.arange(n, dtype=like.dtype, device=like.device) * 2 + 1) / n - 1

    return axis(h), axis(w)


def moment_pose(images: torch.Tensor, group: LieGroup | None = None, eps: float = 1e-6,
                arrow: Arrow = "half_plane") -> torch.Tensor:
    """(B,C,H,W) → (B,3,3) moment pose, restricted to the parts the group has (rotation, translation)."""
    b, _, h, w = images.shape
    mass = images.detach().sum(1)  # (B,H,W)
    ys, xs = pixel_centres(h, w, images)
    total = mass.sum((1, 2)).clamp_min(eps)
    cx = (mass.sum(1) * xs).sum(1) / total
    cy = (mass.sum(2) * ys).sum(1) / total
    dx = xs.view(1, 1, w) - cx.view(b, 1, 1)
    dy = ys.view(1, h, 1) - cy.view(b, 1, 1)
    mu20 = (mass * dx * dx).sum((1, 2)) / total
    mu02 = (mass * dy * dy).sum((1, 2)) / total
    mu11 = (mass * dx * dy).sum((1, 2)) / total
    axis = 0.5 * torch.atan2(2 * mu11, mu20 - mu02)  # major-axis angle from the x axis (y down)
    phi = axis - math.pi / 2
    phi = phi - math.pi * torch.ceil((phi - math.pi / 2) / math.pi)  # wrap to (-π/2, π/2]
    if arrow == "skew":
        # canonical y of each pixel is the second row of R(φ)ᵀ(p − c); a negative third moment along it
        # means the heavier tail points up: turn by π so that it points down
        along = -torch.sin(phi).view(b, 1, 1) * dx + torch.cos(phi).view(b, 1, 1) * dy
        skew = (mass * along.pow(3)).sum((1, 2))
        phi = torch.where(skew < 0, phi + math.pi, phi)
        phi = wrap_angle(phi)
    rotate = group is None or group.has_rotation
    shift = group is None or group.has_translation
    linear = rotation_matrix(phi) if rotate else torch.eye(2, dtype=images.dtype, device=images.device).expand(b, 2, 2)
    centre = torch.stack([cx, cy], -1) if shift else torch.zeros(b, 2, dtype=images.dtype, device=images.device)
    return homogeneous(linear, centre)


def mass_centred(images: torch.Tensor, padding: PaddingMode = "zeros") -> torch.Tensor:
    """(B,C,H,W) moved so that each image's centre of mass lies at the image centre, not turned."""
    return act(images, translations(-moment_pose(images)[:, :2, 2]), padding)
