"""Neighbour readout: an image's cluster is the one most of its nearest training images got from the mixture.

The cluster prior's diagonal Gaussians cut the cluster block's space with quadratic boundaries, while the
contrastive term shapes it into curved, unevenly spread clusters; near a boundary the mixture errs where the
training images around a point mostly agree. Fitted once after training, on the training images' cluster
means and their mixture clusters; no label is involved.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class NeighbourReadout(nn.Module):
    def __init__(self, neighbours: int) -> None:
        super().__init__()
        self.neighbours = neighbours
        # sized by fit(): empty until then (and in a model built before its checkpoint is loaded)
        self.register_buffer("bank", torch.empty(0, 0))
        self.register_buffer("bank_clusters", torch.empty(0, dtype=torch.long))

    @property
    def is_fitted(self) -> bool:
        return self.bank_clusters.numel() > 0

    def fit(self, means: torch.Tensor, clusters: torch.Tensor) -> None:
        """``means`` (N, d): the training images' cluster-block means; ``clusters`` (N,): the mixture's clusters."""
        if means.shape[0] != clusters.shape[0] or means.shape[0] == 0:
            raise ValueError(f"readout: {means.shape[0]} means for {clusters.shape[0]} clusters")
        self.bank = means.detach().to(self.bank.device, torch.float32).clone()
        self.bank_clusters = clusters.detach().to(self.bank.device, torch.long).clone()

    @torch.no_grad()
    def votes(self, means: torch.Tensor, chunk: int = 1000, skip_nearest: int = 0) -> torch.Tensor:
        """Each row's votes per cluster (N, clusters) from its nearest bank entries: 1 each, plus a rank bonus
        too small to outweigh a whole vote, which only breaks ties in favour of the nearer votes.
        ``skip_nearest``: leave out that many nearest entries (a bank entry itself, when voting for the bank)."""
        k = min(self.neighbours, self.bank.shape[0] - skip_nearest)
        n_clusters = int(self.bank_clusters.max()) + 1
        weight = 1 + torch.arange(k, 0, -1, device=self.bank.device, dtype=torch.float32) / (k * k + 1)
        out = []
        for query in means.to(self.bank).split(chunk):
            # sorted nearest first
            nearest = torch.cdist(query, self.bank).topk(k + skip_nearest, largest=False).indices[:, skip_nearest:]
            out.append((F.one_hot(self.bank_clusters[nearest], n_clusters) * weight[None, :, None]).sum(1))
        return torch.cat(out).to(means.device)

    def assign(self, means: torch.Tensor, chunk: int = 1000) -> torch.Tensor:
        """The majority cluster among each row's nearest bank entries (N,); a tie goes to the nearer votes."""
        return self.votes(means, chunk).argmax(1)

    def bank_agreement(self) -> tuple[torch.Tensor, torch.Tensor]:
        """For each bank entry, the majority cluster of its nearest other entries and that cluster's share of
        their votes (N,), (N,): how sure the readout is of the training images it was fitted to."""
        votes = self.votes(self.bank, skip_nearest=1)
        cluster = votes.argmax(1)
        whole = votes.floor()  # one whole vote per neighbour, without the tie-breaking bonus
        return cluster, whole.gather(1, cluster[:, None])[:, 0] / whole.sum(1)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # the bank's size is the training set's: take it from the checkpoint instead of failing on the shape
        for name in ("bank", "bank_clusters"):
            saved = state_dict.get(prefix + name)
            if saved is not None:
                setattr(self, name, torch.empty_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
