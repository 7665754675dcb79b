"""Deformations that keep a digit's identity but change its look: stroke width and smooth elastic warps.

Used by contrastive terms: what survives them is what a cluster should depend on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _uniform(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator).to(device)  # drawn on CPU: the same draws on every device


def vary_stroke_width(images: torch.Tensor, probability: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """With ``probability``, thicken (3×3 dilation) or thin (3×3 erosion) each image, each half the time."""
    if probability <= 0:
        return images
    u = _uniform(images.shape[0], generator, images.device)[:, None, None, None]
    thick = max_filter3(images)
    thin = -max_filter3(-images)
    return torch.where(u < probability / 2, thick, torch.where(u > 1 - probability / 2, thin, images))


def max_filter3(images: torch.Tensor) -> torch.Tensor:
    """3×3 maximum filter (what ``max_pool2d(x, 3, stride=1, padding=1)`` gives), as two separable passes of
    shifted maxima: on CPU about twenty times faster than the pooling kernel on small images."""
    h, w = images.shape[-2:]
    padded = F.pad(images, (1, 1, 1, 1), value=float("-inf"))
    rows = torch.maximum(torch.maximum(padded[..., :, :w], padded[..., :, 1:w + 1]), padded[..., :, 2:])
    return torch.maximum(torch.maximum(rows[..., :h, :], rows[..., 1:h + 1, :]), rows[..., 2:, :])


def elastic_warp(images: torch.Tensor, pixels: float, generator: torch.Generator | None = None,
                 control_points: int = 4) -> torch.Tensor:
    """Move every pixel by a smooth random field: Gaussian displacements of standard deviation ``pixels``
    on a ``control_points``² grid, bicubically interpolated to the image."""
    if pixels <= 0:
        return images
    n, _, h, w = images.shape
    coarse = torch.randn(n, 2, control_points, control_points, generator=generator).to(images)
    # grid_sample coordinates span 2 over the image: one pixel is 2/size
    scale = torch.tensor([2.0 * pixels / w, 2.0 * pixels / h], dtype=images.dtype, device=images.device)
    field = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True).permute(0, 2, 3, 1) * scale
    identity = torch.eye(2, 3, dtype=images.dtype, device=images.device).expand(n, 2, 3)
    grid = F.affine_grid(identity, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid + field, mode="bilinear", padding_mode="zeros", align_corners=False)
