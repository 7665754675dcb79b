"""What the model needs from an encoder and a decoder."""

from __future__ import annotations

from abc import abstractmethod

import torch
from torch import nn

from mcekit.registry import Component

ImageShape = tuple[int, int, int]


class Encoder(nn.Module):
    """Image batch (B,C,H,W) → features (B, feature_dim); the model adds one head per latent block."""

    def __init__(self, image_shape: ImageShape, feature_dim: int) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.feature_dim = feature_dim


class Decoder(nn.Module):
    """Latent (B, input_dim) → canonical-image logits (B,C,H,W)."""

    def __init__(self, input_dim: int, image_shape: ImageShape) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.image_shape = tuple(image_shape)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - subclasses define it
        return self.decode(z)

    @abstractmethod
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        ...


class EncoderConfig(Component):
    @abstractmethod
    def build(self, image_shape: ImageShape) -> Encoder:
        ...


class DecoderConfig(Component):
    @abstractmethod
    def build(self, input_dim: int, image_shape: ImageShape) -> Decoder:
        ...
