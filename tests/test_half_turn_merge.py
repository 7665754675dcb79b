"""Joining clusters that are each other's half turns, and splitting the cluster that merged two kinds."""

import math

import pytest
import torch

from mcekit.config import ConfigError, HalfTurnMergeConfig, load_config
from mcekit.half_turn_merge import half_turn_shares, repair_half_turn_splits, split_in_two
from mcekit.model import build_model
from mcekit.orientation import half_turn


def test_shares_are_the_geometric_mean_of_both_directions():
    # cluster 0: 4 images, all land in 1 when turned; cluster 1: 2 images, one lands in 0; cluster 2 in itself
    clusters = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    turned = torch.tensor([1, 1, 1, 1, 0, 1, 2, 2])
    shares = half_turn_shares(clusters, turned, 4)
    assert shares[0, 1] == pytest.approx(math.sqrt(1.0 * 0.5)) and shares[1, 0] == shares[0, 1]
    assert shares.diagonal().abs().sum() == 0 and shares[2].abs().sum() == 0 and shares[3].abs().sum() == 0


def test_two_modes_are_told_apart():
    generator = torch.Generator().manual_seed(0)
    means = torch.cat([torch.randn(50, 3, generator=generator) - 4, torch.randn(70, 3, generator=generator) + 4])
    second = split_in_two(means, seed=0)
    assert second[:50].unique().numel() == 1 and second[50:].unique().numel() == 1 and second[0] != second[-1]


def kinds_split_and_merged() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Three kinds of 40 images in a 3-cluster partition gone wrong: kind A split by its half turn into clusters 0
    (upright) and 1 (upside down), kinds B and C merged in cluster 2, two well separated modes of the latent."""
    generator = torch.Generator().manual_seed(1)
    kind = torch.arange(3).repeat_interleave(40)
    centres = torch.tensor([[0.0, 8.0], [-8.0, -4.0], [8.0, -4.0]])
    means = centres[kind] + 0.5 * torch.randn(120, 2, generator=generator)
    upside_down = torch.arange(120) % 2 == 1
    clusters = torch.where(kind == 0, upside_down.long(), torch.full_like(kind, 2))
    turned = torch.where(kind == 0, 1 - clusters, clusters)  # an A's half turn lands in the other half
    return clusters, turned, means, kind


def test_a_kind_split_by_its_half_turn_is_joined_and_the_merged_cluster_split():
    clusters, turned, means, kind = kinds_split_and_merged()
    repaired, repairs = repair_half_turn_splits(clusters, turned, means, 3, min_share=0.6, min_excess=1.5,
                                                max_repairs=3)
    assert len(repairs) == 1 and repairs[0].joined == (0, 1) and repairs[0].split == 2
    assert repairs[0].share == pytest.approx(1.0)
    assert torch.equal(clusters, kinds_split_and_merged()[0])  # the input is left alone
    # one cluster per kind
    assert all(repaired[kind == k].unique().numel() == 1 for k in range(3))
    assert repaired.unique().numel() == 3


def test_nothing_is_repaired_where_no_two_clusters_are_half_turns_enough():
    clusters, turned, means, _ = kinds_split_and_merged()
    turned = torch.where(torch.arange(120) % 4 < 2, clusters, turned)  # half of each half's turns stay home
    repaired, repairs = repair_half_turn_splits(clusters, turned, means, 3, 0.6, 1.5, max_repairs=3)
    assert repairs == [] and torch.equal(repaired, clusters)
    assert len(repair_half_turn_splits(clusters, turned, means, 3, 0.5, 1.5, max_repairs=3)[1]) == 1


def test_nothing_is_repaired_where_no_cluster_holds_more_than_its_share():
    _, _, means, kind = kinds_split_and_merged()
    turned = torch.tensor([1, 0, 2])[kind]  # clusters 0 and 1 wholly each other's half turns, but 40 / 40 / 40
    repaired, repairs = repair_half_turn_splits(kind, turned, means, 3, 0.6, 1.5, max_repairs=3)
    assert repairs == [] and torch.equal(repaired, kind)


def test_the_largest_cluster_is_never_one_of_the_halves_joined():
    clusters = torch.tensor([0] * 6 + [1] * 2 + [2] * 2)
    turned = torch.tensor([1] * 6 + [0] * 2 + [2] * 2)
    repaired, repairs = repair_half_turn_splits(clusters, turned, torch.randn(10, 2), 3, 0.5, 1.2, max_repairs=1)
    assert repairs == [] and torch.equal(repaired, clusters)


def test_the_readout_votes_with_the_repaired_clusters(monkeypatch):
    """fit_readout hands the repair each image's cluster and where its half turn lands by the same vote, and the
    bank then holds the repaired clusters."""
    config = load_config("configs/se2_gmm.yaml", ["model.readout.classifier=null", "model.upright=null"])
    model = build_model(config.model, (1, 28, 28))
    torch.manual_seed(0)
    model.cluster_prior.initialize(torch.randn(60, 10))
    images = torch.rand(40, 1, 28, 28)
    assert model.fit_readout(images) == []
    seen = {}

    def repair(clusters, turned, means, k, *settings):
        seen.update(clusters=clusters.clone(), turned=turned.clone(), means=means, k=k, settings=settings)
        return (clusters + 1) % k, ["a repair"]

    monkeypatch.setattr("mcekit.model.repair_half_turn_splits", repair)
    settings = HalfTurnMergeConfig(min_share=0.7, min_excess=1.8, max_repairs=2)
    assert model.fit_readout(images, half_turn_merge=settings, seed=3) == ["a repair"]
    with torch.no_grad():
        posterior = model.encoded_posterior(images)
        aligned = model.encode(images).aligned
        turned_means = model.posteriors_of_aligned(half_turn(aligned))["cluster"].mean
        mixture = model.cluster_prior.assign(posterior)
    assert torch.equal(seen["clusters"], mixture) and seen["k"] == 10 and seen["settings"] == (0.7, 1.8, 2, 3)
    assert torch.allclose(seen["means"], posterior.mean)
    model.readout.fit(posterior.mean, mixture)
    assert torch.equal(seen["turned"], model.readout.assign(turned_means))
    model.fit_readout(images, half_turn_merge=settings, seed=3)
    assert torch.equal(model.readout.bank_clusters, (mixture + 1) % 10)


@pytest.mark.parametrize("change, message", [
    (["model.upright={}"], "half_turn_merge: applies without model.upright"),
    (["model.upright=null", "model.group={type: translation}"], "'translation' has no rotation"),
])
def test_half_turn_merge_where_it_cannot_work_is_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/se2_gmm.yaml", [*change, "model.readout.half_turn_merge={}"])


def test_half_turn_merge_without_an_upright_is_accepted():
    config = load_config("configs/so2_gmm.yaml", ["model.upright=null", "model.pose_init=moments_skew",
                                                  "model.readout.half_turn_merge={min_share: 0.7}"])
    assert config.model.readout.half_turn_merge.min_share == 0.7
