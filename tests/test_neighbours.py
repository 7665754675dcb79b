"""Neighbour consistency: mining as brute force, the term as its formula, the bank, and an exact resume."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from mcekit.config import load_config
from mcekit.data.transformed import prepare
from mcekit.losses.base import LossContext
from mcekit.losses.neighbours import NeighboursConfig, nearest_neighbours
from mcekit.priors.base import Posterior
from mcekit.priors.gmm import GMMConfig
from mcekit.train import Trainer


def test_neighbours_are_the_most_cosine_similar_other_points_in_any_chunking():
    torch.manual_seed(0)
    points = torch.randn(300, 6)
    unit = torch.nn.functional.normalize(points, dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-2.0)
    expected = similarity.argsort(dim=1, descending=True)[:, :4]
    for chunk in (7, 64, 1000):
        found = nearest_neighbours(points, 4, chunk=chunk)
        assert torch.equal(found, expected)
    assert not (found == torch.arange(300)[:, None]).any()
    # scale does not matter, direction does
    assert torch.equal(nearest_neighbours(points * torch.rand(300, 1) * 5 + 0, 4), expected)
    with pytest.raises(ValueError, match="more than k = 4"):
        nearest_neighbours(points[:4], 4)


def fitted_prior(points: torch.Tensor, components: int = 3):
    prior = GMMConfig(components=components).build(points.shape[1])
    prior.initialize(points, seed=0)
    return prior


def context(posterior: Posterior, prior, index: torch.Tensor | None) -> LossContext:
    return LossContext(images=torch.zeros(posterior.mean.shape[0], 1, 4, 4),
                       out=SimpleNamespace(posteriors={"cluster": posterior}),
                       model=SimpleNamespace(cluster_prior=prior), epoch=5.0, index=index)


def blobs(n_per: int = 40, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    return torch.cat([c + 0.8 * torch.randn(n_per, 2, generator=generator) for c in centres])


def test_the_term_is_the_disagreement_with_the_neighbours_vote_and_fills_the_bank():
    points = blobs()
    prior = fitted_prior(points)
    posterior = Posterior(points, {"logvar": torch.zeros_like(points)})
    loss = NeighboursConfig(k=5, weight=2.0).build()
    index = torch.tensor([3, 50, 99, 101])
    assert float(loss(context(Posterior(points[index]), prior, index)).value) == 0.0  # before any fit
    loss.on_cluster_fit(posterior, prior)
    assert loss.neighbours.shape == (120, 5)
    assert torch.allclose(loss.bank, prior.responsibilities(posterior))
    moved = points[index] + torch.tensor([1.0, -1.0])   # the batch's current means differ from the bank's
    batch = Posterior(moved, {"logvar": torch.zeros_like(moved)})
    target = loss.bank[loss.neighbours[index]].mean(1)
    result = loss(context(batch, prior, index))
    gamma = prior.responsibilities(batch)
    expected = -(gamma * target).sum(1).log().mean()
    assert torch.allclose(result.value, 2.0 * expected)
    assert torch.allclose(loss.bank[index], gamma)                   # the bank now holds this step's view
    untouched = torch.ones(120, dtype=torch.bool)
    untouched[index] = False
    assert torch.allclose(loss.bank[untouched], prior.responsibilities(posterior)[untouched])
    assert float(loss(context(batch, prior, None)).value) == 0.0     # evaluation: no training rows


def test_descending_the_term_moves_a_stray_point_to_its_neighbours_cluster():
    points = blobs()
    prior = fitted_prior(points)
    loss = NeighboursConfig(k=5).build()
    loss.on_cluster_fit(Posterior(points, {"logvar": torch.zeros_like(points)}), prior)
    home = int(loss.bank[0].argmax())                       # point 0 sits in the first blob, and so do its neighbours
    stray = torch.tensor([[0.3, 0.3]], requires_grad=True)  # between the blobs, but its neighbours are point 0's
    optimizer = torch.optim.SGD([stray], lr=0.5)
    with torch.no_grad():
        before = float(prior.responsibilities(Posterior(stray))[0, home])
    for _ in range(30):
        optimizer.zero_grad()
        loss(context(Posterior(stray), prior, torch.tensor([0]))).value.backward()
        optimizer.step()
    with torch.no_grad():
        after = float(prior.responsibilities(Posterior(stray))[0, home])
    assert before < 0.5 < 0.99 < after


TINY = ["data.split.train=200", "data.split.test=50", "train.batch_size=50", "train.epochs=4",
        "train.cluster_init_epoch=1", "train.cluster_refit_every=2", "train.figures=false",
        "losses.1.warmup_epochs=0", "losses.2.start_epoch=0", "losses.3.start_epoch=0",
        "losses.4={type: neighbours, weight: 40.0, k: 3}"]   # in place of the contrastive term: a quick run


def tiny_trainer(run_dir, overrides=()) -> Trainer:
    config = load_config("configs/se2_gmm.yaml", [*TINY, *overrides])
    return Trainer(config, run_dir, quiet=True, data=prepare(config.data, config.seed))


def test_a_run_uses_the_term_after_each_fit_and_resumes_exactly(tmp_path, monkeypatch):
    whole = tiny_trainer(tmp_path / "whole")
    metrics = whole.fit()
    history = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert "train_neighbour_disagreement" not in history[0]          # epoch 1 ran before the fit
    assert all(h["train_neighbours"] > 0 for h in history[1:])
    assert whole.losses[4].bank.shape == (200, 10)

    original = Trainer.train_epoch

    def crash_in_epoch_3(self: Trainer) -> None:
        if self.epoch == 2:
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(Trainer, "train_epoch", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        tiny_trainer(tmp_path / "cut").fit()
    monkeypatch.setattr(Trainer, "train_epoch", original)
    resumed = tiny_trainer(tmp_path / "cut")
    resumed.resume()
    assert torch.equal(resumed.losses[4].neighbours, torch.load(tmp_path / "cut" / "checkpoints" / "last.pt",
                                                                weights_only=False)["losses"][4]["neighbours"])
    again = resumed.fit()
    drop = ("train_seconds",)
    assert {k: v for k, v in again.items() if k not in drop} == {k: v for k, v in metrics.items() if k not in drop}
