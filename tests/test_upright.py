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
from mcekit.moments import moment_pose
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


def test_unsureness_falls_linearly_from_the_threshold_over_the_ramp():
    up = regressor(min_confidence=0.3)
    lengths = torch.tensor([0.1, 0.3, 0.325, 0.35, 0.4, 0.9])
    up.net = FixedGuess(lengths[:, None] * torch.tensor([[0.6, 0.8]]))
    x = torch.rand(6, 1, 28, 28)
    assert torch.equal(up.unsureness(x, 0.1), torch.ones(6))  # unfitted: every upright is a guess
    up.fitted.fill_(True)
    assert torch.allclose(up.unsureness(x, 0.1), torch.tensor([1.0, 1.0, 0.75, 0.5, 0.0, 0.0]), atol=1e-5)
    assert torch.equal(up.unsureness(x, 0.0), up.unsure(x).float())  # no ramp: the hard threshold


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
    # what the regressor reads: x mass-centred, i.e. (for a centred T) the aligned image turned back
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
    # the training step looks the start-pose angles of the training images up instead of recomputing them
    known = model.upright_angles(x)
    assert torch.allclose(wrap_angle(known - pose_components(after.pose_init)["angle"]), torch.zeros(6), atol=1e-5)
    assert torch.allclose(model(x, sample=False, upright_angle=known).recon, after.recon, atol=1e-5)
    turned_more = model(x, sample=False, upright_angle=known + 0.5)
    assert torch.allclose(turned_more.pose_init, g0 @ rotations(correction + 0.5), atol=1e-5)


def test_invariance_copies_take_their_start_pose_from_the_original_turned_by_h_without_running_the_regressor(
        monkeypatch):
    """upright.copies='original': a copy h·x starts at the original's upright angle plus h's turn, so the copies'
    canonicals agree with the original's and the regressor runs on none of them; 'own' runs it on each copy."""
    from mcekit.losses.base import LossContext
    from mcekit.losses.invariance import InvarianceConfig

    torch.manual_seed(0)
    config = load_config("configs/se2_gmm.yaml", ["model.upright={views: 2}"])
    model = build_model(config.model, (1, 28, 28))
    model.cluster_prior.initialize(torch.randn(50, 10))
    model.upright.fitted.fill_(True)
    x = act(letter_t(4), SO2Config(max_angle_deg=90).build().sample(4, torch.Generator().manual_seed(2)))
    out = model(x, sample=False)
    seen: list[torch.Tensor] = []
    original_encode = model.encode
    monkeypatch.setattr(model, "encode", lambda x, angle=None: seen.append(angle) or original_encode(x, angle))
    guesses: list[int] = []
    original_guess = model.upright.guess
    monkeypatch.setattr(model.upright, "guess", lambda c: guesses.append(c.shape[0]) or original_guess(c))

    def run(copies: str) -> None:
        model.upright.copies_from_original = copies == "original"
        loss = InvarianceConfig(samples=3).build()
        ctx = LossContext(x, out, model, epoch=0.0, generator=torch.Generator().manual_seed(5))
        assert torch.isfinite(loss(ctx).value)

    run("original")
    h = model.group.sample(12, torch.Generator().manual_seed(5))
    expected = pose_components(out.pose_init)["angle"].repeat(3) + pose_components(h)["angle"]
    assert guesses == [] and torch.allclose(wrap_angle(seen[-1] - expected), torch.zeros(12), atol=1e-5)
    run("own")
    assert seen[-1] is None and guesses == [12]


@pytest.mark.parametrize("change, message", [
    (["model.pose_init=none"], "model.upright: needs a moment pose_init"),
    (["model.group={type: translation}"], "has no rotation to turn by"),
    (["model.half_turns={}", "losses=[{type: bce}, {type: half_turn}]"], "set model.half_turns to null"),
    (["model.readout.classifier.frame_turns=2"], "frame_turns: 2 applies without model.upright"),
])
def test_upright_settings_that_cannot_work_are_refused(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config("configs/se2_gmm.yaml", ["model.upright={}", *change])


def test_the_regressor_reads_the_image_centred_on_its_mass_whatever_the_group():
    """An SO(2) model's start pose has no translation, but the regressor's input is still mass-centred: in data
    rotated about the grid centre, an off-centre mass would turn with the image and tell the angle by position."""
    config = load_config("configs/so2_gmm.yaml")
    model = build_model(config.model, (1, 28, 28))
    x = torch.zeros(3, 1, 28, 28)
    x[0, 0, 4:12, 5:9] = 1.0      # far off-centre
    x[1, 0, 12:20, 14:16] = 1.0   # half a pixel off, as in mass-centred digits
    x[2, 0, 8:22, 8:12] = 1.0
    g0, _, centred = model.upright_inputs(x)
    assert torch.allclose(g0[:, :2, 2], torch.zeros(3, 2))  # the group's start pose: a rotation only
    assert moment_pose(x)[:, :2, 2].abs().max() > 0.04
    assert moment_pose(centred)[:, :2, 2].abs().max() < 0.01


def test_evaluation_with_the_upright_angles_prepared_once_gives_the_same_metrics():
    """The trainer runs the learned upright on the test images and their moved copies once, not every epoch."""
    from mcekit.data.transformed import Split
    from mcekit.evaluate import evaluate, evaluation_images

    torch.manual_seed(0)
    config = load_config("configs/se2_gmm.yaml", ["model.upright={views: 4}"])
    model = build_model(config.model, (1, 28, 28))
    model.cluster_prior.initialize(torch.randn(50, 10))
    model.upright.fitted.fill_(True)
    so2 = SO2Config(max_angle_deg=90).build()
    pose = so2.sample(12, torch.Generator().manual_seed(3))
    canonical = torch.cat([letter_t(6), letter_t(6).flip(-2)])
    test = Split(act(canonical, pose), canonical, pose, torch.arange(12) % 2)
    prepared = evaluation_images(model, test, so2, seed=4)
    assert prepared.upright is not None and prepared.upright.shape == (12,)
    fresh = evaluate(model, test, so2, torch.device("cpu"), seed=4)
    cached = evaluate(model, test, so2, torch.device("cpu"), seed=4, prepared=prepared)
    assert fresh.keys() == cached.keys()
    for key, value in fresh.items():  # None where the data's group has no such part
        assert (value is None and cached[key] is None) or value == pytest.approx(cached[key], rel=1e-4, abs=1e-4), key
