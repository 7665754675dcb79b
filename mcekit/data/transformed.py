"""Seeded split and group transformation of a source; keeps the canonical image and the true pose."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mcekit.data.sources import DataError, ImageSet
from mcekit.groups.base import LieGroup, act


@dataclass
class Split:
    """One split: transformed images, their canonical originals, true poses (N,3,3) and labels."""

    images: torch.Tensor
    canonical: torch.Tensor
    pose: torch.Tensor
    labels: torch.Tensor | None

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor) -> Split:
        labels = None if self.labels is None else self.labels[index]
        return Split(self.images[index], self.canonical[index], self.pose[index], labels)


@dataclass
class PreparedData:
    train: Split
    test: Split
    image_shape: tuple[int, int, int]
    #: the group that moved the data (None: untransformed); evaluation draws fresh elements from it
    group: LieGroup | None
    padding: str = "zeros"


def transform_images(images: torch.Tensor, group: LieGroup | None, generator: torch.Generator,
                     padding: str = "zeros", chunk: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each image by one random element drawn from the group's range (deterministic per generator)."""
    n = images.shape[0]
    if group is None:
        return images.clone(), torch.eye(3).expand(n, 3, 3).clone()
    pose = group.sample(n, generator, dtype=torch.float32)
    moved = torch.cat([act(images[i:i + chunk], pose[i:i + chunk], padding)  # type: ignore[arg-type]
                       for i in range(0, n, chunk)])
    return moved.clamp(0.0, 1.0), pose


def prepare(data_config: Any, seed: int) -> PreparedData:
    """Build the source, take a seeded train/test split and transform both splits by the data group."""
    source: ImageSet = data_config.source.build()
    n_train, n_test = data_config.split.train, data_config.split.test
    n = source.images.shape[0]
    if n_train + n_test > n:
        raise DataError(f"data.split: train {n_train} + test {n_test} exceeds the {n} images of {source.name}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    group = data_config.transform.group.build() if data_config.transform is not None else None
    padding = data_config.transform.padding if data_config.transform is not None else "zeros"
    splits = []
    for index in (order[:n_train], order[n_train:n_train + n_test]):
        canonical = source.images[index]
        moved, pose = transform_images(canonical, group, generator, padding)
        labels = None if source.labels is None else source.labels[index]
        splits.append(Split(moved, canonical, pose, labels))
    return PreparedData(splits[0], splits[1], tuple(source.images.shape[1:]), group, padding)
