"""Half-turn detection: which way up an image aligned by its moment axis should be read.

The moment axis has no arrow, so the half-plane estimate turns a digit whose axis lies near the wrap
(a nearly horizontal axis in the input) upside down about half the time, while a digit whose axis is
near upright is almost never turned wrongly (on ±90°-rotated digits: 2.5 % of those within 40° of
upright, 47 % of those 80–90° away). Those reliable images teach a small network what the right way up
looks like — the image against its own half turn, no label — and the network then decides for the rest.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mcekit.groups.base import pose_components


def half_turn(images: torch.Tensor) -> torch.Tensor:
    """Rotate (B,C,H,W) images by 180° about their centre."""
    return torch.flip(images, dims=(-2, -1))


def axis_offset(pose_init: torch.Tensor) -> torch.Tensor:
    """How far (radians, in [0, π/2]) the half-plane moment estimate turned each image: its axis's distance
    from upright in the input."""
    angle = pose_components(pose_init)["angle"]
    return (angle - math.pi * torch.round(angle / math.pi)).abs()


class HalfTurnDetector(nn.Module):
    """A small CNN scoring how likely an aligned image is upside down; used once ``active`` is set."""

    def __init__(self, channels: int, reliable_within_deg: float, margin: float) -> None:
        super().__init__()
        self.reliable_within = math.radians(reliable_within_deg)
        self.margin = margin
        self.net = nn.Sequential(
            nn.Conv2d(channels, 16, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(16, 32, 5, stride=2, padding=2), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 16, 1),
        )
        self.register_buffer("active", torch.tensor(False))

    def upside_down_logit(self, aligned: torch.Tensor) -> torch.Tensor:
        return self.net(aligned).squeeze(-1)

    def score(self, aligned: torch.Tensor) -> torch.Tensor:
        """Log-odds that the image rather than its half turn is the upside-down one (B,)."""
        n = aligned.shape[0]
        logits = self.upside_down_logit(torch.cat([aligned, half_turn(aligned)]))  # one pass for both
        return logits[:n] - logits[n:]

    @torch.no_grad()
    def should_turn(self, aligned: torch.Tensor) -> torch.Tensor:
        """Which images to turn by 180° (B,) bool: none until active, then those scored beyond the margin."""
        if not bool(self.active):
            return torch.zeros(aligned.shape[0], dtype=torch.bool, device=aligned.device)
        return self.score(aligned) > self.margin

    def training_loss(self, aligned: torch.Tensor, pose_init: torch.Tensor) -> tuple[torch.Tensor, int]:
        """BCE of 'upright' for the reliable images and 'upside down' for their half turns; and how many."""
        reliable = axis_offset(pose_init) < self.reliable_within
        images = aligned[reliable]
        if images.shape[0] == 0:
            return aligned.sum() * 0.0, 0
        logits = self.upside_down_logit(torch.cat([images, half_turn(images)]))
        target = torch.cat([torch.zeros(images.shape[0]), torch.ones(images.shape[0])]).to(logits)
        return F.binary_cross_entropy_with_logits(logits, target), images.shape[0]
