"""Clusters that are each other's half turns: one kind of image whose frame's arrow follows its style.

On data turned by any angle the start frame (the third moment's arrow, ``pose_init: moments_skew``) is right
only up to a half turn, and for a shape with little skew the arrow's sign follows the style: a kind of digit
then splits into two clusters, its images upright in one and upside down in the other, and the cluster this
takes from the others merges two kinds elsewhere (on any-angle digits, 6 and 9: one shape up to a half turn,
told apart by style alone). The split shows in the latent: the half turns of one cluster's images land in
the other cluster, and the other's in the first. The repair, after training and before the neighbour vote
teaches anything: join the two clusters that are most each other's half turns, and split the largest cluster
in two along its own latent's two modes (a two-component, full-covariance Gaussian mixture on its means).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class HalfTurnRepair:
    """One repair: ``joined`` (the cluster kept, the cluster folded into it), their half-turn ``share`` (the
    geometric mean of the two shares of images landing in the other when turned), and the ``split`` cluster
    whose second mode takes the freed cluster's index."""
    joined: tuple[int, int]
    share: float
    split: int


def half_turn_shares(clusters: torch.Tensor, turned_clusters: torch.Tensor, k: int) -> torch.Tensor:
    """(k, k): for each pair of clusters a ≠ b, the geometric mean of the share of a's images whose half turn
    lands in b and the share of b's images whose half turn lands in a (0 on the diagonal and for empty ones)."""
    landing = torch.zeros(k, k, dtype=torch.float64)
    landing.index_put_((clusters.cpu(), turned_clusters.cpu()), torch.ones(clusters.shape[0], dtype=torch.float64),
                       accumulate=True)
    landing = landing / landing.sum(1, keepdim=True).clamp_min(1)
    mutual = (landing * landing.T).sqrt()
    mutual.fill_diagonal_(0)
    return mutual


def split_in_two(means: torch.Tensor, seed: int) -> torch.Tensor:
    """Which rows (N,) bool belong to the second of the two modes of ``means`` (N, d) that a full-covariance,
    two-component Gaussian mixture finds."""
    from sklearn.mixture import GaussianMixture

    data = means.detach().double().cpu().numpy()
    parts = GaussianMixture(2, covariance_type="full", n_init=3, random_state=seed).fit(data).predict(data)
    return torch.from_numpy(np.asarray(parts) == 1).to(means.device)


def repair_half_turn_splits(clusters: torch.Tensor, turned_clusters: torch.Tensor, means: torch.Tensor, k: int,
                            min_share: float, min_excess: float, max_repairs: int, seed: int = 0,
                            ) -> tuple[torch.Tensor, list[HalfTurnRepair]]:
    """The training images' clusters (N,) with up to ``max_repairs`` repairs, and the repairs made. A repair is
    made while the largest cluster holds at least ``min_excess`` times the mean cluster size (something has
    merged) and two clusters are each other's half turns by a share of at least ``min_share`` (something has
    split); ``turned_clusters`` (N,): where each image's half turn lands, read by the same vote before any
    repair; ``means`` (N, d): the cluster-block means the split is drawn in."""
    clusters = clusters.clone()
    turned_clusters = turned_clusters.clone()
    repairs: list[HalfTurnRepair] = []
    for _ in range(max_repairs):
        sizes = torch.bincount(clusters, minlength=k)
        largest = int(sizes.argmax())
        if float(sizes[largest]) < min_excess * clusters.shape[0] / k:
            break
        mutual = half_turn_shares(clusters, turned_clusters, k)
        kept, folded = (int(i) for i in np.unravel_index(int(mutual.argmax()), (k, k)))
        share = float(mutual[kept, folded])
        if share < min_share or largest in (kept, folded):
            break
        kept, folded = min(kept, folded), max(kept, folded)
        clusters[clusters == folded] = kept
        turned_clusters[turned_clusters == folded] = kept
        members = (clusters == largest).nonzero().squeeze(1)
        second = members[split_in_two(means[members], seed)]
        clusters[second] = folded
        repairs.append(HalfTurnRepair((kept, folded), share, largest))
    return clusters, repairs
