"""Built-in decoders: latent → canonical-image logits."""

from __future__ import annotations

import math
from typing import Literal

import torch
from einops import rearrange
from pydantic import Field
from torch import nn

from mcekit.nets.base import Decoder, DecoderConfig, ImageShape
from mcekit.registry import decoders


class GatedDense(nn.Module):
    """h = W₁x ⊙ σ(W₂x) (Dauphin et al.), the MCE-VAE decoder's layer."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.value = nn.Linear(n_in, n_out)
        self.gate = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value(x) * torch.sigmoid(self.gate(x))


class GatedMLPDecoder(Decoder):
    def __init__(self, input_dim: int, image_shape: ImageShape, hidden: int, layers: int) -> None:
        super().__init__(input_dim, image_shape)
        blocks: list[nn.Module] = []
        width = input_dim
        for _ in range(layers):
            blocks.append(GatedDense(width, hidden))
            width = hidden
        blocks.append(nn.Linear(width, math.prod(image_shape)))
        self.net = nn.Sequential(*blocks)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        c, h, w = self.image_shape
        return rearrange(self.net(z), "b (c h w) -> b c h w", c=c, h=h, w=w)


@decoders.register
class GatedMLPConfig(DecoderConfig):
    """The MCE-VAE paper's decoder: gated dense layers (300 units) to pixel logits."""

    type: Literal["gated_mlp"] = "gated_mlp"
    hidden: int = Field(300, ge=1, le=16384, description="units per gated layer")
    layers: int = Field(2, ge=1, le=64, description="number of gated layers")

    def build(self, input_dim: int, image_shape: ImageShape) -> GatedMLPDecoder:
        return GatedMLPDecoder(input_dim, image_shape, self.hidden, self.layers)


class DeconvDecoder(Decoder):
    def __init__(self, input_dim: int, image_shape: ImageShape, channels: int) -> None:
        super().__init__(input_dim, image_shape)
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"deconv decoder needs image sides divisible by 4, got {h}×{w}")
        self.start = (channels, h // 4, w // 4)
        self.fc = nn.Sequential(nn.Linear(input_dim, channels * (h // 4) * (w // 4)), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(channels, channels // 2, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(channels // 2, c, 4, stride=2, padding=1),
        )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        ch, h, w = self.start
        return self.net(rearrange(self.fc(z), "b (c h w) -> b c h w", c=ch, h=h, w=w))


@decoders.register
class DeconvConfig(DecoderConfig):
    """Dense layer to C×H/4×W/4 maps, then two stride-2 transposed convolutions."""

    type: Literal["deconv"] = "deconv"
    channels: int = Field(64, ge=2, le=1024, description="channels of the first feature map")

    def build(self, input_dim: int, image_shape: ImageShape) -> DeconvDecoder:
        return DeconvDecoder(input_dim, image_shape, self.channels)
