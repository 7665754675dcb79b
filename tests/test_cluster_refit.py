"""Refitting the cluster prior to the latent during training: when it happens and what it does."""

from __future__ import annotations

import pytest
import torch

from mcekit.config import TrainConfig, load_config
from mcekit.data.transformed import prepare
from mcekit.priors.gmm import fit_mixture
from mcekit.train import Trainer, cluster_fit_epochs


@pytest.mark.parametrize(("init", "every", "epochs", "expected"), [
    (40, 0, 80, [40]),                 # one fit, no refits
    (40, 10, 80, [40, 50, 60, 70, 80]),  # the last refit lands on the last epoch
    (40, 15, 80, [40, 55, 70]),
    (5, 3, 10, [5, 8]),
    (0, 10, 80, []),                   # never fitted: nothing to refit
    (90, 10, 80, []),                  # fit scheduled after the end
])
def test_fit_epochs(init, every, epochs, expected):
    train = TrainConfig(epochs=epochs, cluster_init_epoch=init, cluster_refit_every=every)
    assert cluster_fit_epochs(train) == expected


def test_a_run_refits_at_those_epochs_and_selects_its_checkpoint_after_the_last(tmp_path, monkeypatch):
    overrides = ["data.split.train=200", "data.split.test=50", "train.batch_size=50", "train.epochs=4",
                 "train.cluster_init_epoch=1", "train.cluster_refit_every=2", "train.figures=false",
                 "losses.1.warmup_epochs=0", "losses.2.start_epoch=0", "losses.3.start_epoch=0"]
    config = load_config("configs/se2_gmm.yaml", overrides)
    trainer = Trainer(config, tmp_path / "run", quiet=True, data=prepare(config.data, config.seed))
    fits: list[tuple[int, torch.Tensor]] = []
    original = Trainer.initialize_cluster_prior

    def recording(self: Trainer) -> None:
        original(self)
        prior = self.model.cluster_prior
        latent = self.encoded_posterior(self.data.train.images).mean.double().numpy()
        centres, variances, _ = fit_mixture(latent, prior.components, prior.init, prior.restarts, config.seed)
        # the mixture is the fit to the latent as it is at this epoch
        assert torch.allclose(prior.means.detach().double(), torch.as_tensor(centres), atol=1e-5)
        assert torch.allclose(prior.logvars.detach().double().exp(), torch.as_tensor(variances), rtol=1e-4)
        fits.append((self.epoch, prior.means.detach().clone()))

    monkeypatch.setattr(Trainer, "initialize_cluster_prior", recording)
    metrics = trainer.fit()
    assert [epoch for epoch, _ in fits] == [1, 3]
    assert trainer.stationary_epoch() == 3 and metrics["best_epoch"] >= 3
    # the latent moved between the fits, and the second fit followed it
    assert not torch.allclose(fits[0][1], fits[1][1])
