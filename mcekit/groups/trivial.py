"""The trivial group {I} (0 parameters): no pose at all, the plain VAE baseline."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

from mcekit.groups.affine import check_coordinates, check_elements
from mcekit.groups.base import GroupConfig, LieGroup
from mcekit.registry import groups


class TrivialGroup(LieGroup):
    """{I}: exp of the empty coordinate vector is the identity; log of anything is empty."""

    name: ClassVar[str] = "trivial"
    dim: ClassVar[int] = 0
    coordinates: ClassVar[tuple[str, ...]] = ()

    def exp(self, tau: torch.Tensor) -> torch.Tensor:
        check_coordinates(tau, self.dim, self.name)
        # + the (exactly zero) sum over the empty coordinate axis keeps the output on tau's graph
        return self.identity(tau.shape[0], dtype=tau.dtype, device=tau.device) + tau.sum(1)[:, None, None]

    def log(self, g: torch.Tensor) -> torch.Tensor:
        check_elements(g, self.name)
        return g.new_zeros(g.shape[0], 0)

    def sample_tau(self, n: int, generator: torch.Generator | None = None, *,
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """(n, 0): there is nothing to draw (the generator is not advanced)."""
        return torch.zeros(n, 0, dtype=dtype, device=device)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "sampling": "always the identity"}


@groups.register
class TrivialConfig(GroupConfig):
    """The trivial group: images are never moved (dim 0; the plain VAE baseline)."""

    type: Literal["trivial"] = "trivial"

    def build(self) -> TrivialGroup:
        return TrivialGroup()
