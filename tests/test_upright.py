"""The learned upright: how a guess becomes a correction, that the model turns its start pose by it, that it
learns the upright of a shape from angles spread symmetrically about upright, and the settings it refuses."""

from __future__ import annotations

import math

import pytest
import torch
from test_orientation import letter_t
from torch import nn

from mcekit.config import ConfigError, load_config
from mcekit.groups.base import act, pose_components, wrap_angle
from mcekit.groups.so2 import SO2Config
from mcekit.model import build_model
from mcekit.upright import UprightRegressor, rotations, turned


class FixedGuess(nn.Module):
    """Stands in for the CNN: the given (cos, sin) vector for every image."""

    def __init__(self, vectors: torch.Tensor) -> None:
        super().__init__()
        self.vectors = vectors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vectors[: x.shape[0]]


def regressor(views: int = 1, **kw: float) -> UprightRegressor:
    settings = {"min_confidence": 0.3, "snap_deg": 25.0} | kw
    return UprightRegressor(1, 4, views, settings["min_confidence"], settings["snap_deg"])


def test_correction_is_zero_until_fitted_then_snaps_to_quarter_turns_and_skips_unsure_guesses():
    up = regressor()
    degrees = torch.tensor([80.0, 60.0, -170.0, 10.0, 30.0])
    lengths = torch.tensor([0.9, 0.9, 0.5, 0.6, 0.2])
    rad = torch.deg2rad(degrees)
    up.net = FixedGuess(lengths[:, None] * torch.stack([rad.cos(), rad.sin()], 1))
    x = torch.rand(5, 1, 28, 28)
    axis = torch.deg2rad(torch.tensor([0.0, 0.0, 0.0, 0.0, 70.0]))  # the moment angle the guess is measured from
    assert torch.equal(up.correction(x, axis), torch.zeros(5))
    up.fitted.fill_(True)
    expected = torch.deg2rad(torch.tensor([90.0, 60.0, 180.0, 0.0, 0.0]))
    assert torch.allclose(wrap_angle(up.correction(x, axis) - expected), torch.zeros(5), atol=1e-5)
    # the snap is to the axis's quarter turns: a guess 30° from the axis stays as it is
    up.net = FixedGuess(torch.tensor([[math.cos(1.0), math.sin(1.0)]]))
    offset = up.correction(x[:1], torch.tensor([1.0 - math.radians(30)]))
    assert torch.allclose(offset, torch.tensor([math.radians(30)]), atol=1e-5)


def test_views_take_back_their_known_turn():
    """A net that reads each view's angle exactly (the image's angle plus the view's turn) gives the image's
    angle at full length; one that ignores the image gives views pointing four ways, which cancel."""
    up = regressor(views=4)
    x = letter_t(3)
    angles = torch.tensor([0.3, -2.0, 1.5])
    seen = torch.cat([angles + k * math.pi / 2 for k in range(4)])
    up.net = FixedGuess(torch.stack([seen.cos(), seen.sin()], 1))
    assert torch.allclose(up.guess(x), torch.stack([angles.cos(), angles.sin()], 1), atol=1e-5)
    up.net = FixedGuess(torch.tensor([[1.0, 0.0]]).expand(12, 2))
    assert torch.allclose(up.guess(x), torch.zeros(3, 2), atol=1e-6)


def test_it_learns_the_upright_of_a_shape_from_angles_spread_symmetrically_about_upright():
    """T's turned by up to ±90° (their own upright never shown): after fitting, the correction brings each one
    back to within a few degrees of upright, including those the moment axis would put upside down."""
    so2 = SO2Config(max_angle_deg=90).build()
    generator = torch.Generator().manual_seed(0)
    upright_t = letter_t()
    train_angles = so2.sample_tau(400, generator)[:, 0]
    up = regressor(views=4, min_confidence=0.0, snap_deg=0.0)
    torch.manual_seed(0)
    up.fit(turned(upright_t.expand(400, 1, 28, 28), train_angles), epochs=12, batch_size=50, lr=2e-3, seed=0,
           progress=False)
    test_angles = so2.sample_tau(100, generator)[:, 0]
    error = wrap_angle(up.correction(turned(upright_t.expand(100, 1, 28, 28), test_angles), torch.zeros(100))
                       - test_angles)
    assert error.abs().median() < math.radians(8)
    assert (error.abs() < math.radians(30)).float().mean() > 0.95


def test_model_turns_the_start_pose_by_the_correction_and_aligns_with_it():
    torch.manual_seed(0)
    config = load_config("configs/se2_gmm.yaml", ["model.upright={views: 2, snap_deg: 0.0, min_confidence: 0.0}"])
    model = build_model(config.model, (1, 28, 28))
    x = act(letter_t(6), SO2Config(max_angle_deg=90).build().sample(6, torch.Generator().manual_seed(1)))
    before = model(x, sample=False)  # not fitted yet: the moment alignment
    g0, aligned = model.moment_aligned(x)
    assert torch.allclose(before.pose_init, g0) and torch.allclose(before.aligned, aligned)
    model.upright.fitted.fill_(True)
    _, angle, centred = model.upright_inputs(x)
    assert torch.allclose(angle, pose_components(g0)["angle"])
    # what the regressor reads: x moved back by g₀ without its rotation, i.e. the aligned image turned back
    inner = (slice(None), slice(None), slice(8, 20), slice(8, 20))
    assert (centred - turned(aligned, angle))[inner].abs().max() < 0.15
    correction = model.upright.correction(centred, angle)
    after = model(x, sample=False)
    assert torch.allclose(after.pose_init, g0 @ rotations(correction), atol=1e-6)
    gap = pose_components(after.pose_init)["angle"] - pose_components(g0)["angle"]
    assert torch.allclose(wrap_angle(gap - correction), torch.zeros(6), atol=1e-5)
    # the encoder sees the moment-aligned image turned back by the correction (away from the border)
    assert (after.aligned - turned(aligned, -correction))[inner].abs().max() < 0.15
    assert torch.allclose(after.recon, act(after.canonical, after.pose), atol=1e-6)
    assert not any(p.requires_grad for p in model.upright.parameters())
    # the training step looks the corrections of the training images up instead of recomputing them
    known = model.upright_corrections(x)
    assert torch.allclose(known, correction, atol=1e-6)
    assert torch.allclose(model(x, sample=False, correction=known).recon, after.recon, atol=1e-6)
    turned_more = model(x, sample=False, correction=known + 0.5)
    assert torch.allclose(turned_more.pose_init, g0 @ rotations(known + 0.5), atol=1e-6)


@pytest.mark.parametrize("change, message", [
    (["model.pose_init=none"], "model.upright: needs a moment pose_init"),
    (["model.group={type: translation}"], "has no rotation to turn by"),
    (["model.half_turns={}", "losses=[{type: bce}, {type: half_turn}]"], "set model.half_turns to null"),
])
def test_upright_settings_that_cannot_work_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/se2_gmm.yaml", ["model.upright={}", *change])
