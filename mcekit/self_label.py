"""Self-labelling: CNNs taught by the clusters the model is surest of, then assigning every image's cluster.

After training, the neighbour readout gives each training image the majority cluster of its nearest training
images; where that majority is large, the cluster is nearly always right. Small CNNs trained on those images,
with their clusters as labels and random turns, scalings and shifts as augmentation, generalise past the latent's
boundaries: they learn from the pixels what the clusters share. Two views help each other: the encoder's
input (turned upright), and the image mass-centred in its own orientation, which keeps the data's own
angles: on data turned by at most ±90° a 6 and a 9 lying on their sides look alike once turned "upright"
either way, but not in the orientation they came in. In a second round, the first round's CNNs assign every
training image and fresh CNNs learn from those clusters, the images the vote was unsure of included. No label
is used: the teaching labels are the model's own clusters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcekit.augment import elastic_warp, vary_stroke_width
from mcekit.groups.base import act, homogeneous, rotation_matrix


@dataclass(frozen=True)
class Augmentation:
    """Random similarity moves about the image centre: turns up to ``max_turn_deg``, scales within
    1 ± ``max_scale``, shifts up to ``max_shift_px`` pixels in each direction; then, with ``stroke``, a
    stroke-width change and an elastic warp of ``elastic_px`` (the contrastive term's deformations)."""
    max_turn_deg: float = 30.0
    max_scale: float = 0.1
    max_shift_px: float = 1.5
    stroke: float = 0.0
    elastic_px: float = 0.0

    def draw(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` moves (n,3,3) for images ``size`` pixels wide (normalised coordinates span 2)."""
        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator) * 2 - 1

        angle = uniform(n) * math.radians(self.max_turn_deg)
        scale = 1 + uniform(n) * self.max_scale
        shift = uniform(n, 2) * (self.max_shift_px * 2 / size)
        return homogeneous(rotation_matrix(angle) * scale[:, None, None], shift)

    def apply(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``images`` (N,C,H,W) moved, and deformed, at random."""
        moved = act(images, self.draw(images.shape[0], images.shape[-1], generator).to(images))
        return elastic_warp(vary_stroke_width(moved, self.stroke, generator), self.elastic_px, generator)


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
                 members: int = 1) -> None:
        super().__init__()
        c, h, w = image_shape
        self.views = list(views)
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
                        index = index.to(images.device)
                        # label smoothing: the teaching labels are the model's clusters, a few of them wrong
                        loss = F.cross_entropy(net(augment.apply(images[index], generator)), labels[index],
                                               label_smoothing=0.1)
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
    def log_probs(self, inputs: dict[str, torch.Tensor], chunk: int = 500) -> torch.Tensor:
        """The views' summed, members' averaged log-probabilities of each cluster (N, clusters), ``chunk``
        images at a time."""
        n = inputs[self.views[0]].shape[0]
        return torch.cat([
            sum(torch.stack([net(inputs[view][i:i + chunk]).log_softmax(1) for net in members]).mean(0)
                for view, members in self.nets.items())  # type: ignore[misc]
            for i in range(0, n, chunk)])

    def assign(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.log_probs(inputs).argmax(1)
