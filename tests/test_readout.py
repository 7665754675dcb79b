"""The neighbour readout: a vote of the nearest training images, fitted after training and kept in the checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from mcekit.config import ConfigError, load_config
from mcekit.data.transformed import prepare
from mcekit.half_turn_merge import HalfTurnRepair
from mcekit.model import build_model
from mcekit.readout import NeighbourReadout
from mcekit.train import Trainer, evaluate_run, load_checkpoint


def test_an_image_takes_the_majority_cluster_of_its_nearest_bank_entries():
    readout = NeighbourReadout(neighbours=3)
    bank = torch.tensor([[0.0, 0.0], [0.1, 0.0], [0.0, 0.1], [5.0, 5.0], [5.1, 5.0], [5.0, 5.1]])
    # one entry near the origin carries the far group's cluster: outvoted by its two neighbours
    readout.fit(bank, torch.tensor([0, 0, 2, 2, 2, 2]))
    assigned = readout.assign(torch.tensor([[0.02, 0.01], [4.9, 5.0], [0.05, 0.05]]))
    assert assigned.tolist() == [0, 2, 0]


def test_a_tie_goes_to_the_nearer_votes():
    readout = NeighbourReadout(neighbours=2)
    readout.fit(torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([4, 1, 0]))
    # two neighbours, one vote each: the nearer one decides, from either side
    assert readout.assign(torch.tensor([[0.4], [0.6], [2.2]])).tolist() == [4, 1, 0]


def test_it_votes_in_chunks_as_in_one_go():
    torch.manual_seed(0)
    readout = NeighbourReadout(neighbours=7)
    readout.fit(torch.randn(300, 4), torch.randint(0, 5, (300,)))
    query = torch.randn(250, 4)
    assert torch.equal(readout.assign(query, chunk=64), readout.assign(query))


def test_fitting_refuses_mismatched_or_empty_inputs():
    readout = NeighbourReadout(neighbours=3)
    with pytest.raises(ValueError, match="5 means for 4 clusters"):
        readout.fit(torch.zeros(5, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError):
        readout.fit(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


def test_a_fitted_bank_survives_the_state_dict_into_a_fresh_model():
    config = load_config("configs/se2_gmm.yaml", ["model.readout.classifier=null"])
    model = build_model(config.model, (1, 28, 28))
    assert model.readout is not None and not model.readout.is_fitted
    model.cluster_prior.initialize(torch.randn(60, 10))
    model.fit_readout(torch.rand(40, 1, 28, 28))
    fresh = build_model(config.model, (1, 28, 28))
    fresh.load_state_dict(model.state_dict())
    assert fresh.readout.is_fitted
    assert torch.equal(fresh.readout.bank, model.readout.bank) and fresh.readout.bank.shape == (40, 10)
    # the bank holds the training images' own mixture clusters, and the model now assigns by it
    x = torch.rand(40, 1, 28, 28)
    post = fresh.encode(x).posteriors["cluster"]
    assert torch.equal(fresh.assign(post), fresh.readout.assign(post.mean))


def test_a_readout_needs_a_cluster_prior():
    with pytest.raises(ConfigError, match="model.readout: needs a cluster prior"):
        load_config("configs/se2_gmm.yaml", ["model.latents.cluster.prior={type: normal}", "losses=[{type: bce}]"])


def test_a_run_fits_it_after_training_and_reports_the_earlier_stages_accuracies_beside_it(tmp_path):
    overrides = ["data.split.train=200", "data.split.test=50", "train.batch_size=50", "train.epochs=2",
                 "train.cluster_init_epoch=1", "train.cluster_refit_every=0", "train.figures=false",
                 "model.upright.epochs=1", "losses.1.warmup_epochs=0", "losses.2.start_epoch=0",
                 "losses.3.start_epoch=0"]
    config = load_config("configs/se2_gmm.yaml", overrides)
    metrics = Trainer(config, tmp_path / "run", quiet=True, data=prepare(config.data, config.seed)).fit()
    assert {"acc", "acc_prior", "acc_neighbours"} <= metrics.keys() and "half_turn_repairs" not in metrics
    saved = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["model"]
    assert saved["readout.bank"].shape == (200, 10) and saved["readout.bank_clusters"].shape == (200,)
    assert bool(saved["classifier.fitted"]) and {"classifier.nets.aligned.0.0.weight",
                                                 "classifier.nets.centred.0.0.weight"} <= saved.keys()
    again = evaluate_run(tmp_path / "run", device="cpu").metrics
    assert all(again[k] == metrics[k] for k in ("acc", "acc_prior", "acc_neighbours"))


def test_a_run_with_the_half_turn_repair_records_how_many_repairs_it_made(tmp_path, monkeypatch):
    def one_repair(clusters, turned, means, k, *settings):
        return clusters, [HalfTurnRepair((0, 1), 0.9, 2)]

    monkeypatch.setattr("mcekit.model.repair_half_turn_splits", one_repair)
    overrides = ["data.split.train=200", "data.split.test=50", "train.batch_size=50", "train.epochs=2",
                 "train.cluster_init_epoch=1", "train.cluster_refit_every=0", "train.figures=false",
                 "model.upright=null", "model.readout.classifier=null", "model.readout.half_turn_merge={}",
                 "losses.1.warmup_epochs=0", "losses.2.start_epoch=0", "losses.3.start_epoch=0"]
    config = load_config("configs/so2_gmm.yaml", overrides)
    metrics = Trainer(config, tmp_path / "run", quiet=True, data=prepare(config.data, config.seed)).fit()
    assert metrics["half_turn_repairs"] == 1
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["half_turn_repairs"] == 1
