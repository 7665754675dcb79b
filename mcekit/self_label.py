"""Self-labelling: CNNs taught by the clusters the model is surest of, then assigning every image's cluster.

After training, the neighbour readout gives each training image the majority cluster of its nearest training
images; where that majority is large, the cluster is nearly always right. Small CNNs trained on those images,
with their clusters as labels and random turns, scalings and shifts as augmentation, generalise past the latent's
boundaries: they learn from the pixels what the clusters share. Two views help each other: the encoder's
input (turned upright), and the image mass-centred in its own orientation, which keeps the data's own
angles: on data turned by at most ±90° a 6 and a 9 lying on their sides look alike once turned "upright"
either way, but not in the orientation they came in. In each later round, the latest round's CNNs assign every
training image and fresh CNNs learn from those clusters, the images the vote was unsure of included, each
cluster given an equal share of the images (the cluster prior's equal weights; a merge is undone rather than
taught again); the rounds' CNNs are kept and assign the final clusters together. No label is used: the
teaching labels are the model's own clusters. Where the learned upright is unsure, the image keeps its
moment angle, upright only up to a quarter turn: the final assignment averages the aligned CNNs'
probabilities over its four quarter turns, and teaches it that way too: the aligned CNN's loss on it is that of
the averaged probabilities, so the CNN has to know it at one of its turns. Just above the upright's confidence
threshold the final assignment mixes the two readings, so that an image's reading does not jump where its
confidence crosses the threshold. Without a learned upright, a start frame that is right only up to a half turn
(the third moment's arrow, for shapes with little skew) can have every image read and taught both ways up. On
data with shifts, cuts by a straight edge in the augmentation stand for the frame's crops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mcekit.groups.base import act, homogeneous, rotation_matrix
from mcekit.moments import mass_centred, moment_pose, pixel_centres


@dataclass(frozen=True)
class Augmentation:
    """Random similarity moves about the image centre: turns up to ``max_turn_deg``, scales within
    1 ± ``max_scale``, shifts up to ``max_shift_px`` pixels in each direction. Before the move, a ``cut_share`` of
    the images lose what lies beyond a straight edge at a random angle, ``cut_distance`` (a range, in image
    half-widths) from their centre of mass, and are mass-centred again: what the frame does to a digit shifted
    partly out of it, which the views then re-centre."""
    max_turn_deg: float = 30.0
    max_scale: float = 0.1
    max_shift_px: float = 1.5
    cut_share: float = 0.0
    cut_distance: tuple[float, float] = (0.25, 0.8)

    def draw(self, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` moves (n,3,3) for images ``size`` pixels wide (normalised coordinates span 2)."""
        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator) * 2 - 1

        angle = uniform(n) * math.radians(self.max_turn_deg)
        scale = 1 + uniform(n) * self.max_scale
        shift = uniform(n, 2) * (self.max_shift_px * 2 / size)
        return homogeneous(rotation_matrix(angle) * scale[:, None, None], shift)

    def cut(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``images`` (N,C,H,W), a ``cut_share`` of them cut and re-centred (no draws at all without cuts)."""
        if self.cut_share == 0:
            return images
        n, _, h, w = images.shape
        chosen = (torch.rand(n, generator=generator) < self.cut_share).to(images.device)
        angle = torch.rand(n, generator=generator).to(images) * (2 * math.pi)
        low, high = self.cut_distance
        distance = (low + (high - low) * torch.rand(n, generator=generator)).to(images)
        centre = moment_pose(images)[:, :2, 2]
        ys, xs = pixel_centres(h, w, images)
        along = ((xs.view(1, 1, w) - centre[:, 0, None, None]) * angle.cos()[:, None, None]
                 + (ys.view(1, h, 1) - centre[:, 1, None, None]) * angle.sin()[:, None, None])
        kept = images * (along < distance[:, None, None])[:, None]
        recentred = mass_centred(kept)
        return torch.where(chosen[:, None, None, None], recentred, images)


def classifier_net(channels: int, height: int, width: int, clusters: int, base: int) -> nn.Sequential:
    """Two blocks of two 3×3 convolutions, each block halving the size, then a hidden layer with dropout."""
    return nn.Sequential(
        nn.Conv2d(channels, base, 3, padding=1), nn.ReLU(), nn.Conv2d(base, base, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(base, 2 * base, 3, padding=1), nn.ReLU(), nn.Conv2d(2 * base, 2 * base, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(2 * base * (height // 4) * (width // 4), 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, clusters),
    )


def pixels_last(images: torch.Tensor) -> torch.Tensor:
    """``images`` (N,C,H,W) stored channels-last, the layout the classifiers' weights use: their convolutions run
    about a fifth faster on CPU that way; the values are the same."""
    return images.contiguous(memory_format=torch.channels_last)


def equipartition(log_probs: torch.Tensor, iterations: int = 100) -> torch.Tensor:
    """Each row's cluster (N,) when every cluster must take an equal share of the rows: the argmax of the
    probabilities scaled by Sinkhorn-Knopp iterations to equal column sums and unit row sums (self-labelling
    by optimal transport). Without it, a cluster that has swallowed part of another passes the merge on to
    every later round."""
    n, k = log_probs.shape
    scaled = log_probs.double()
    for _ in range(iterations):
        scaled = scaled - scaled.logsumexp(0, keepdim=True) + math.log(n / k)
        scaled = scaled - scaled.logsumexp(1, keepdim=True)
    return scaled.argmax(1)


class SelfLabelClassifier(nn.Module):
    """``members`` CNNs per view and kept round, each its own initialisation and augmentation draws; an image's
    cluster is the argmax of the views' summed, CNNs' averaged log-probabilities. ``kept_rounds`` rounds of
    CNNs are kept (the oldest overwritten by the next round), and all of them read an image."""

    def __init__(self, image_shape: tuple[int, int, int], clusters: int, views: list[str], width: int,
                 members: int = 1, unsure_turns: int = 1, kept_rounds: int = 1, unsure_ramp: float = 0.0,
                 frame_turns: int = 1) -> None:
        super().__init__()
        c, h, w = image_shape
        for name, turns in (("unsure_turns", unsure_turns), ("frame_turns", frame_turns)):
            if turns not in (1, 2, 4) or (turns == 4 and h != w):
                raise ValueError(f"{name}: {turns} is not one of 1, 2, 4 (4 needs square images, got {h}×{w})")
        self.views = list(views)
        self.members = members
        self.kept_rounds = kept_rounds
        self.unsure_turns = unsure_turns
        self.frame_turns = frame_turns
        self.unsure_ramp = unsure_ramp  # read by the model: how its upright's confidence becomes unsureness
        self.nets = nn.ModuleDict({view: nn.ModuleList([classifier_net(c, h, w, clusters, width)
                                                        for _ in range(members * kept_rounds)])
                                   for view in self.views})
        self.nets.to(memory_format=torch.channels_last)  # kept by re-initialisation and by moves between devices
        self.register_buffer("fitted", torch.tensor(0))  # rounds fitted so far
        self.requires_grad_(False)  # frozen inside the model: only fit() trains it

    @property
    def is_fitted(self) -> bool:
        return int(self.fitted) > 0

    def round_nets(self, view: str, round_: int) -> list[nn.Module]:
        """The CNNs of one view that round ``round_`` (0-based) trains: its slot among the kept rounds."""
        slot = round_ % self.kept_rounds
        return list(self.nets[view])[slot * self.members:(slot + 1) * self.members]

    def reading_nets(self, view: str, latest: bool = False) -> list[nn.Module]:
        """The CNNs that read a view: every kept round's fitted so far, or the ``latest`` round's only (the first
        round's before any fit)."""
        rounds = max(int(self.fitted), 1)
        if latest:
            return self.round_nets(view, rounds - 1)
        return list(self.nets[view])[:min(rounds, self.kept_rounds) * self.members]

    def fit(self, inputs: dict[str, torch.Tensor], labels: torch.Tensor, epochs: int, batch_size: int, lr: float,
            augment: Augmentation, seed: int, progress: bool = True, round_: int = 0,
            unsure: torch.Tensor | None = None) -> list[float]:
        """Train round ``round_``'s CNNs of each view on ``inputs[view]`` (N,C,H,W) with ``labels`` (N,), each image
        moved at random every epoch; the mean loss per epoch (summed over views, averaged over members).
        ``unsure`` (N,) bool: images whose upright is a guess, taught in the aligned view by the reading they
        are scored with (see ``teaching_logits``); None: no upright, every image's frame as ``turned`` says."""
        n = labels.shape[0]
        if n == 0 or any(inputs[view].shape[0] != n for view in self.views):
            sizes = [inputs[view].shape[0] for view in self.views]
            raise ValueError(f"self-labelling: {n} labels for views of {sizes} images")
        for view in self.views:  # from the global generator's state: the caller seeds it
            for net in self.round_nets(view, round_):
                for module in net.modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
        losses = [0.0] * epochs
        self.requires_grad_(True)
        self.train()
        for view in self.views:
            generator = torch.Generator().manual_seed(seed)  # each member continues it: its own draws
            images = inputs[view]
            flagged, turns = self.turned(unsure, n, images.device) if view == "aligned" else (None, 1)
            for member, net in enumerate(self.round_nets(view, round_)):
                optimizer = torch.optim.Adam(net.parameters(), lr=lr)
                for epoch in tqdm(range(epochs), desc=f"self-labelling ({view} {member + 1}/{self.members})",
                                  unit="epoch", disable=not progress, leave=False):
                    for index in torch.randperm(n, generator=generator).split(batch_size):
                        moves = augment.draw(index.shape[0], images.shape[-1], generator).to(images)
                        index = index.to(images.device)
                        moved = act(augment.cut(images[index], generator), moves)
                        where = None if flagged is None else flagged[index]
                        # label smoothing: the teaching labels are the model's clusters, a few of them wrong
                        loss = F.cross_entropy(self.teaching_logits(net, moved, where, turns), labels[index],
                                               label_smoothing=0.1)
                        optimizer.zero_grad()
                        loss.backward()
                        optimizer.step()
                        losses[epoch] += float(loss.detach()) * index.shape[0] / (n * self.members)
                optimizer.zero_grad(set_to_none=True)
        self.requires_grad_(False)
        self.eval()
        self.fitted.fill_(round_ + 1)
        return losses

    def turned(self, unsure: torch.Tensor | None, n: int, device: torch.device) -> tuple[torch.Tensor | None, int]:
        """Which of ``n`` images the aligned view reads at several turns (N,), and at how many: the unsure uprights
        at ``unsure_turns``; without a learned upright (``unsure`` None), every image at ``frame_turns`` (its start
        frame is right only up to those turns; 1: none)."""
        if unsure is not None:
            return unsure.to(device), self.unsure_turns
        return (None, 1) if self.frame_turns == 1 else (torch.ones(n, device=device), self.frame_turns)

    def teaching_logits(self, net: nn.Module, images: torch.Tensor, where: torch.Tensor | None = None,
                        turns: int | None = None) -> torch.Tensor:
        """What one CNN's training loss reads (N, clusters): its logits, or for the ``where`` images the
        log of their probabilities averaged over ``turns`` (default ``unsure_turns``) turns, as ``reading`` scores
        them. The CNN then has to recognise an unsure image at one of its turns, not at whichever its moment
        angle gave."""
        turns = self.unsure_turns if turns is None else turns
        if where is None or turns == 1 or not bool(where.any()):
            return net(pixels_last(images))
        return self.reading(net, images, where, turns)

    @torch.no_grad()
    def log_probs(self, inputs: dict[str, torch.Tensor], unsure: torch.Tensor | None = None,
                  chunk: int = 500, latest: bool = False) -> torch.Tensor:
        """The views' summed, CNNs' averaged log-probabilities of each cluster (N, clusters), ``chunk`` images at
        a time; ``latest``: the latest round's CNNs only. ``unsure`` (N,), bool or in [0, 1]: how much each
        image's upright is a guess; each CNN reads an unsure image's aligned view at ``unsure_turns`` evenly spaced
        turns (exact quarter or half turns of the pixel grid), its probabilities averaged, so that the reading
        does not depend on which of those turns it came in (see ``reading``); None: no upright, every image's
        frame as ``turned`` says."""
        n = inputs[self.views[0]].shape[0]
        flagged, turns = self.turned(unsure, n, inputs[self.views[0]].device)
        parts = []
        for i in range(0, n, chunk):
            total = 0
            for view in self.views:
                images = inputs[view][i:i + chunk]
                where = None if flagged is None or view != "aligned" else flagged[i:i + chunk]
                total = total + torch.stack([self.reading(net, images, where, turns)
                                             for net in self.reading_nets(view, latest)]).mean(0)
            parts.append(total)
        return torch.cat(parts)

    def reading(self, net: nn.Module, images: torch.Tensor, unsure: torch.Tensor | None = None,
                turns: int | None = None) -> torch.Tensor:
        """One CNN's log-probabilities (N, clusters). ``unsure`` (N,), bool or in [0, 1]: the images with a true or
        positive value are also read at ``turns`` (default ``unsure_turns``) turns in one pass, their probabilities
        averaged; a value u between 0 and 1 mixes the two readings, u·(turns' average) + (1 − u)·(as it is)."""
        images = pixels_last(images)
        turns = self.unsure_turns if turns is None else turns
        where = None if unsure is None else unsure > 0
        if where is None or turns == 1 or not bool(where.any()):
            return net(images).log_softmax(1)
        chosen = images[where]
        step = 4 // turns
        out = net(pixels_last(torch.cat([images] + [torch.rot90(chosen, k * step, dims=(-2, -1))
                                                    for k in range(1, turns)]))).log_softmax(1)
        n = images.shape[0]
        readings = torch.stack([out[:n][where]] + list(out[n:].split(chosen.shape[0])))
        averaged = readings.logsumexp(0) - math.log(turns)
        share = unsure[where].to(out)[:, None]
        if bool((share < 1).any()):
            mixed = torch.logaddexp(share.log() + averaged, (1 - share).log() + readings[0])
            averaged = torch.where(share < 1, mixed, averaged)
        return out[:n].masked_scatter(where[:, None], averaged)

    def assign(self, inputs: dict[str, torch.Tensor], unsure: torch.Tensor | None = None,
               latest: bool = False) -> torch.Tensor:
        return self.log_probs(inputs, unsure, latest=latest).argmax(1)
