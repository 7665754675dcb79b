"""Built-in encoders."""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, field_validator
from torch import nn

from mcekit.nets.base import Encoder, EncoderConfig, ImageShape
from mcekit.registry import encoders


def sizes_within(values: list[int] | tuple[int, ...], low: int, high: int, what: str) -> list[int] | tuple[int, ...]:
    """Generous bounds on layer sizes: a typo such as 3000000 fails on load instead of exhausting memory in build."""
    bad = [v for v in values if not low <= v <= high]
    if bad:
        raise ValueError(f"{what} must lie in {low}..{high}, got {bad[0]}")
    return values


class PaperCNNEncoder(Encoder):
    """Two 5×5 convolutions with 2× pooling to 16 maps at H/4×W/4 (784 features at 28 px, as MCE-VAE),
    then a dense hidden layer."""

    def __init__(self, image_shape: ImageShape, channels: tuple[int, int], hidden: int) -> None:
        super().__init__(image_shape, hidden)
        c, h, w = image_shape
        if h < 4 or w < 4:
            raise ValueError(f"paper_cnn encoder needs image sides of at least 4 (it pools twice by 2), got {h}×{w}")
        self.conv = nn.Sequential(
            nn.Conv2d(c, channels[0], 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(channels[0], channels[1], 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        )
        flat = channels[1] * (h // 4) * (w // 4)
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.conv(x))


@encoders.register
class PaperCNNConfig(EncoderConfig):
    """The MCE-VAE paper's convolutional encoder (conv stack to 16×7×7 at 28 px, 300-unit dense layer)."""

    type: Literal["paper_cnn"] = "paper_cnn"
    channels: tuple[int, int] = Field((32, 16), description="channels of the two convolutions")
    hidden: int = Field(300, ge=1, le=16384, description="size of the dense feature layer")

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: tuple[int, int]) -> tuple[int, int]:
        return sizes_within(value, 1, 1024, "channel counts")  # type: ignore[return-value]

    def build(self, image_shape: ImageShape) -> PaperCNNEncoder:
        return PaperCNNEncoder(image_shape, self.channels, self.hidden)


class MLPEncoder(Encoder):
    def __init__(self, image_shape: ImageShape, hidden: list[int]) -> None:
        super().__init__(image_shape, hidden[-1])
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(image_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@encoders.register
class MLPEncoderConfig(EncoderConfig):
    """Fully connected encoder (VaDE's 500-500-2000 by default)."""

    type: Literal["mlp"] = "mlp"
    hidden: list[int] = Field([500, 500, 2000], min_length=1, max_length=64, description="hidden layer sizes")

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, value: list[int]) -> list[int]:
        return sizes_within(value, 1, 16384, "layer sizes")  # type: ignore[return-value]

    def build(self, image_shape: ImageShape) -> MLPEncoder:
        return MLPEncoder(image_shape, self.hidden)
