"""A learned upright: which rotation brings an image to the way its kind of image stands.

The moment axis fixes an image's angle only up to quarter turns that differ within a digit: its arrow is
a guess (6 and 9, 2 and 5 look alike upside down), and a roundish digit's axis (0, 4) may lie anywhere.
The data themselves say which way is up when their angles spread symmetrically about upright (±90° data):
a CNN that sees each centred training image (its centre of mass moved to the centre, not turned) turned by
a random angle α over the whole circle and regresses (cos α, sin α) cannot tell the data's own angle from
α, so its best guess for an image is the image's whole rotation from the upright of its kind. No label and
no pose are used. (Fitted on moment-aligned images instead, it would read α off the axis, which always
lies along α there, and learn only the arrow.)

The guess is read from several views (the image turned by known angles, the turns taken back) and trusted
only where it is confident: a guess near a quarter turn of the moment axis snaps to it (the axis is the
more precise angle), and an image whose guess has no clear direction (a 1 looks alike both ways up)
keeps its moment angle.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcekit.groups.base import act, homogeneous, rotation_matrix, wrap_angle


def rotations(angle: torch.Tensor) -> torch.Tensor:
    """Rotations about the image centre (B,3,3) by ``angle`` (B,) radians."""
    return homogeneous(rotation_matrix(angle), torch.zeros(angle.shape[0], 2, dtype=angle.dtype,
                                                               device=angle.device))


def translations(shift: torch.Tensor) -> torch.Tensor:
    """Translations (B,3,3) by ``shift`` (B,2), normalised coordinates."""
    return homogeneous(torch.eye(2, dtype=shift.dtype, device=shift.device).expand(shift.shape[0], 2, 2), shift)


def turned(images: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """The images turned by ``angle`` (B,) about their centre."""
    return act(images, rotations(angle), "zeros")


class UprightRegressor(nn.Module):
    """A CNN guessing a centred image's rotation from upright; fitted once, before the model trains."""

    def __init__(self, channels: int, width: int, views: int, min_confidence: float, snap_deg: float,
                 copies_from_original: bool = True) -> None:
        super().__init__()
        self.copies_from_original = copies_from_original  # read by the invariance loss
        self.views = views
        self.min_confidence = min_confidence
        self.snap = math.radians(snap_deg)
        self.net = nn.Sequential(  # strided, no pooling: it runs on every image the model encodes
            nn.Conv2d(channels, width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(7), nn.Flatten(),
            nn.Linear(2 * width * 49, 128), nn.ReLU(), nn.Linear(128, 2),
        )
        self.register_buffer("fitted", torch.tensor(False))
        self.requires_grad_(False)  # frozen inside the model: only fit() trains it

    def fit(self, centred: torch.Tensor, epochs: int, batch_size: int, lr: float, seed: int,
            progress: bool = True) -> list[float]:
        """Train on the centred training images turned by random whole-circle angles; the mean loss per epoch."""
        generator = torch.Generator().manual_seed(seed)
        self.requires_grad_(True)
        optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        losses = []
        for _ in tqdm(range(epochs), desc="upright", unit="epoch", disable=not progress, leave=False):
            total = 0.0
            for index in torch.randperm(centred.shape[0], generator=generator).split(batch_size):
                alpha = ((torch.rand(index.shape[0], generator=generator) * 2 - 1) * math.pi).to(centred)
                guess = self.net(turned(centred[index.to(centred.device)], alpha))
                loss = F.mse_loss(guess, torch.stack([alpha.cos(), alpha.sin()], 1))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * index.shape[0]
            losses.append(total / centred.shape[0])
        optimizer.zero_grad(set_to_none=True)  # no stale gradient may reach the model's gradient clipping
        self.requires_grad_(False)
        self.fitted.fill_(True)
        return losses

    @torch.no_grad()
    def guess(self, centred: torch.Tensor) -> torch.Tensor:
        """The mean over views of the regressed (cos, sin) of each image's rotation from upright (B,2); its
        length is the confidence (near 0 when the image looks alike at several angles)."""
        n = centred.shape[0]
        beta = torch.arange(self.views, dtype=centred.dtype, device=centred.device) * (2 * math.pi / self.views)
        beta = beta.repeat_interleave(n)
        views = turned(centred.repeat(self.views, 1, 1, 1), beta)
        out = self.net(views)
        angle = torch.atan2(out[:, 1], out[:, 0]) - beta  # the view's known turn taken back
        vectors = out.norm(dim=1, keepdim=True) * torch.stack([angle.cos(), angle.sin()], 1)
        return vectors.view(self.views, n, 2).mean(0)

    def unsure(self, centred: torch.Tensor, vector: torch.Tensor | None = None) -> torch.Tensor:
        """Which images (B,) bool keep their moment angle for want of a confident guess (all until fitted);
        ``vector``: their ``guess``, where already made."""
        if not bool(self.fitted):
            return torch.ones(centred.shape[0], dtype=torch.bool, device=centred.device)
        vector = self.guess(centred) if vector is None else vector
        return vector.norm(dim=1) < self.min_confidence

    def unsureness(self, centred: torch.Tensor, ramp: float) -> torch.Tensor:
        """How unsure each image's upright is (B,) in [0, 1]: 1 below ``min_confidence`` (and until fitted), falling
        linearly to 0 as the confidence rises to ``min_confidence + ramp``; ``ramp`` 0: ``unsure`` as 0 or 1."""
        if ramp == 0 or not bool(self.fitted):
            return self.unsure(centred).to(centred.dtype)
        return (1 - (self.guess(centred).norm(dim=1) - self.min_confidence) / ramp).clamp(0, 1)

    def correction(self, centred: torch.Tensor, axis_angle: torch.Tensor) -> torch.Tensor:
        """The rotation (B,) to add to the moment angle ``axis_angle`` so that each image turns upright: 0 until
        fitted and where unsure; a whole number of quarter turns where the guess lies within the snap angle of
        one of the axis's quarter turns."""
        if not bool(self.fitted):
            return torch.zeros(centred.shape[0], dtype=centred.dtype, device=centred.device)
        vector = self.guess(centred)
        offset = wrap_angle(torch.atan2(vector[:, 1], vector[:, 0]) - axis_angle)
        quarter = torch.round(offset / (math.pi / 2)) * (math.pi / 2)
        offset = torch.where(wrap_angle(offset - quarter).abs() <= self.snap, quarter, offset)
        return torch.where(self.unsure(centred, vector), torch.zeros_like(offset), wrap_angle(offset))
