"""Self-labelling: CNNs taught by the clusters the model is surest of, then assigning every image's cluster.

After training, the neighbour readout gives each training image the majority cluster of its nearest training
images; where that majority is large, the cluster is nearly always right. Small CNNs trained on those images,
with their clusters as labels and random turns, scalings and shifts as augmentation, generalise past the latent's
boundaries: they learn from the pixels what the clusters share. Two views help each other: the encoder's
input (turned upright), and the image mass-centred in its own orientation, which keeps the data's own
angles: on data turned by at most ±90° a 6 and a 9 lying on their sides look alike once turned "upright"
either way, but not in the orientation they came in. In a second round, the first round's CNNs assign every
training image and fresh CNNs learn from those clusters, the images the vote was unsure of included. No label
is used: the teaching labels are the model's own clusters. Where the learned upright is unsure, the image
keeps its moment angle, upright only up to a quarter turn: the final assignment averages the aligned CNNs'
probabilities over its four quarter turns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcekit.groups.base import act, homogeneous, rotation_matrix


@dataclass(frozen=True)
class Augmentation:
    """Random similarity moves about the image centre: turns up to ``max_turn_deg``, scales within
    1 ± ``max_scale``, shifts up to ``max_shift_px`` pixels in each direction."""
    max_turn_deg: float = 30.0
    max_scale: float = 0.1
    max_shift_px: float = 1.5

    def draw(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` moves (n,3,3) for images ``size`` pixels wide (normalised coordinates span 2)."""
        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator) * 2 - 1

        angle = uniform(n) * math.radians(self.max_turn_deg)
        scale = 1 + uniform(n) * self.max_scale
        shift = uniform(n, 2) * (self.max_shift_px * 2 / size)
        return homogeneous(rotation_matrix(angle) * scale[:, None, None], shift)


def classifier_net(channels: int, height: int, width: int, clusters: int, base: int) -> nn.Sequential:
    """Two blocks of two 3×3 convolutions, each block halving the size, then a hidden layer with dropout."""
    return nn.Sequential(
        nn.Conv2d(channels, base, 3, padding=1), nn.ReLU(), nn.Conv2d(base, base, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(base, 2 * base, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * base, 2 * base, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(2 * base * (height // 4) * (width // 4), 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, clusters),
    )


class SelfLabelClassifier(nn.Module):
    """``members`` CNNs per view, each its own initialisation and augmentation draws; an image's cluster is the
    argmax of the views' summed, members' averaged log-probabilities."""

    def __init__(self, image_shape: tuple[int, int, int], clusters: int, views: list[str], width: int,
                 members: int = 1, unsure_turns: int = 1) -> None:
        super().__init__()
        c, h, w = image_shape
        if unsure_turns not in (1, 2, 4) or (unsure_turns == 4 and h != w):
            raise ValueError(f"unsure_turns: {unsure_turns} is not one of 1, 2, 4 (4 needs square images, got {h}×{w})")
        self.views = list(views)
        self.unsure_turns = unsure_turns
        self.nets = nn.ModuleDict({view: nn.ModuleList([classifier_net(c, h, w, clusters, width)
                                                        for _ in range(members)]) for view in self.views})
        self.register_buffer("fitted", torch.tensor(False))
        self.requires_grad_(False)  # frozen inside the model: only fit() trains it

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    def fit(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor, epochs: int, batch_size: int, lr: float,
            augment: Augmentation, seed: int, progress: bool = True) -> list[float]:
        """Train each view's CNNs on ``inputs[view]`` (N,C,H,W) with ``labels`` (N,), each image moved at random
        every epoch; the mean loss per epoch (summed over views, averaged over members)."""
        n = labels.shape[0]
        if n == 0 or any(inputs[view].shape[0] != n for view in self.views):
            sizes = [inputs[view].shape[0] for view in self.views]
            raise ValueError(f"self-labelling: {n} labels for views of {sizes} images")
        for module in self.modules():  # from the global generator's state: the caller seeds it
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        losses = [0.0] * epochs
        self.requires_grad_(True)
        self.train()
        for view, members in self.nets.items():
            generator = torch.Generator().manual_seed(seed)  # each member continues it: its own draws
            images = inputs[view]
            for member, net in enumerate(members):
                optimizer = torch.optim.Adam(net.parameters(), lr=lr)
                for epoch in tqdm(range(epochs), desc=f"self-labelling ({view} {member + 1}/{len(members)})",
                                  unit="epoch", disable=not progress, leave=False):
                    for index in torch.randperm(n, generator=generator).split(batch_size):
                        moves = augment.draw(index.shape[0], images.shape[-1], generator).to(images)
                        index = index.to(images.device)
                        # label smoothing: the teaching labels are the model's clusters, a few of them wrong
                        loss = F.cross_entropy(net(act(images[index], moves)), labels[index], label_smoothing=0.1)
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                        losses[epoch] += float(loss.detach()) * index.shape[0] / (n * len(members))
                optimizer.zero_grad(set_to_none=True)
        self.requires_grad_(False)
        self.eval()
        self.fitted.fill_(True)
        return losses

    @torch.no_grad()
    def log_probs(self, inputs: dict[str, torch.Tensor], unsure: torch.Tensor | None = None,
                  chunk: int = 500) -> torch.Tensor:
        """The views' summed, members' averaged log-probabilities of each cluster (N, clusters), ``chunk``
        images at a time. ``unsure`` (N,) bool: images whose upright is a guess; their aligned view is read at
        ``unsure_turns`` evenly spaced turns (exact quarter or half turns of the pixel grid) and the
        probabilities averaged, so that their reading does not depend on which of those turns they came in."""
        n = inputs[self.views[0]].shape[0]
        parts = []
        for i in range(0, n, chunk):
            total = 0
            for view, members in self.nets.items():
                images = inputs[view][i:i + chunk]
                reading = self.members_log_probs(members, images)
                where = None if unsure is None or view != "aligned" else unsure[i:i + chunk].to(images.device)
                if where is not None and self.unsure_turns > 1 and bool(where.any()):
                    step = 4 // self.unsure_turns
                    turns = torch.stack([reading[where]] + [
                        self.members_log_probs(members, torch.rot90(images[where], k * step, dims=(-2, -1)))
                        for k in range(1, self.unsure_turns)])
                    reading = reading.clone()
                    reading[where] = turns.logsumexp(0) - math.log(self.unsure_turns)
                total = total + reading
            parts.append(total)
        return torch.cat(parts)

    @staticmethod
    def members_log_probs(members: nn.ModuleList, images: torch.Tensor) -> torch.Tensor:
        """One view's CNNs: their log-probabilities averaged (N, clusters)."""
        return torch.stack([net(images).log_softmax(1) for net in members]).mean(0)

    def assign(self, inputs: dict[str, torch.Tensor], unsure: torch.Tensor | None = None) -> torch.Tensor:
        return self.log_probs(inputs, unsure).argmax(1)
