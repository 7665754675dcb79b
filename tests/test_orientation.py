"""Half turns: the exact 180° action, the reliability measure, the detector's switch and that it learns."""

from __future__ import annotations

import math

import pytest
import torch

from mcekit.config import load_config
from mcekit.groups.base import act, pose_components, wrap_angle
from mcekit.groups.so2 import SO2Config
from mcekit.losses.base import LossContext
from mcekit.losses.half_turn import HalfTurnConfig
from mcekit.model import HALF_TURN, build_model
from mcekit.moments import moment_pose
from mcekit.orientation import HalfTurnDetector, axis_offset, half_turn


def letter_t(n: int = 1, size: int = 28) -> torch.Tensor:
    """A 'T' leaning by 40°, like a slanted digit: the half-plane estimate turns it upside down when a
    rotation carries its axis past horizontal."""
    img = torch.zeros(1, 1, size, size)
    img[..., 6:10, 7:21] = 1.0
    img[..., 10:23, 12:16] = 1.0
    lean = SO2Config().build().exp(torch.tensor([[math.radians(40)]]))
    return act(img, lean).expand(n, 1, size, size).clone()


def test_half_turn_is_the_group_action_of_a_180_degree_rotation():
    x = torch.rand(3, 1, 28, 28)
    assert torch.allclose(half_turn(x), act(x, HALF_TURN.expand(3, 3, 3)), atol=1e-5)
    assert torch.equal(half_turn(half_turn(x)), x)


def test_axis_offset_is_the_distance_of_the_axis_from_upright_and_ignores_half_turns():
    angles = torch.tensor([0.0, 0.3, -0.7, math.pi / 2 - 1e-3])
    g = SO2Config().build().exp(angles[:, None])
    assert torch.allclose(axis_offset(g), angles.abs(), atol=1e-6)
    assert torch.allclose(axis_offset(g @ HALF_TURN), angles.abs(), atol=1e-5)


def test_detector_turns_nothing_until_active_then_what_its_score_says():
    torch.manual_seed(0)
    detector = HalfTurnDetector(1, 45.0, margin=0.0)
    x = torch.rand(16, 1, 28, 28)
    assert not detector.should_turn(x).any()
    detector.active.fill_(True)
    assert torch.equal(detector.should_turn(x), detector.score(x) > 0)
    # antisymmetric: an image and its half turn get opposite scores
    assert torch.allclose(detector.score(half_turn(x)), -detector.score(x), atol=1e-5)


def test_detector_learns_the_right_way_up_from_reliable_images_only():
    """Trained only on T's turned by less than 45° (plus their half turns), it tells every upside-down T —
    including those the half-plane moment estimate turned wrongly — from an upright one."""
    torch.manual_seed(0)
    so2 = SO2Config(max_angle_deg=90).build()
    detector = HalfTurnDetector(1, 45.0, margin=0.0)
    optimizer = torch.optim.Adam(detector.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        x = act(letter_t(64), so2.sample(64, generator))
        g0 = moment_pose(x, so2)
        loss, count = detector.training_loss(act(x, torch.linalg.inv(g0)), g0)
        assert 0 < count < 64
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x = act(letter_t(200), so2.sample(200, generator))
    g0 = moment_pose(x, so2)
    aligned = act(x, torch.linalg.inv(g0))
    # an aligned T is upside down when it is closer to the half turn of the untransformed T's aligned image
    reference = letter_t()
    reference = act(reference, torch.linalg.inv(moment_pose(reference, so2)))
    upside_down = (aligned - half_turn(reference)).pow(2).sum((1, 2, 3)) < (aligned - reference).pow(2).sum((1, 2, 3))
    assert 0.05 < upside_down.float().mean() < 0.5  # the half-plane estimate does get some wrong
    detector.active.fill_(True)
    assert (detector.should_turn(aligned) == upside_down).float().mean() > 0.95


def test_model_turns_the_start_pose_and_the_aligned_image_together():
    torch.manual_seed(0)
    config = load_config("configs/se2_gmm.yaml", ["model.half_turns={margin: 0.0}", "model.upright=null",
                                                  "losses=[{type: bce}, {type: half_turn, use_from_epoch: 1}]"])
    model = build_model(config.model, (1, 28, 28))
    x = act(letter_t(8), SO2Config(max_angle_deg=90).build().sample(8, torch.Generator().manual_seed(1)))
    before = model(x, sample=False)
    assert not before.turned.any()
    loss = HalfTurnConfig(use_from_epoch=1).build()
    value = loss(LossContext(x, before, model, epoch=0.5)).value
    assert torch.isfinite(value) and not bool(model.half_turns.active)
    loss(LossContext(x, before, model, epoch=1.0))
    assert bool(model.half_turns.active)
    after = model(x, sample=False)
    turned = after.turned
    expected = torch.where(turned[:, None, None], before.pose_init @ HALF_TURN, before.pose_init)
    assert torch.allclose(after.pose_init, expected, atol=1e-6)
    assert torch.allclose(after.aligned[turned], half_turn(before.aligned[turned]), atol=1e-6)
    gap = pose_components(after.pose_init)["angle"] - pose_components(before.pose_init)["angle"]
    assert torch.allclose(wrap_angle(gap).abs(), turned.double().to(gap) * math.pi, atol=1e-4)
    assert torch.allclose(after.recon, act(after.canonical, after.pose), atol=1e-6)


@pytest.mark.parametrize("change, message", [
    (["model.pose_init=moments_skew"], "model.half_turns: needs pose_init 'moments'"),
    (["model.group={type: translation}"], "has no rotation to turn by"),
    (["losses=[{type: bce}]"], "no loss trains the detector"),
])
def test_half_turn_settings_that_cannot_work_are_refused(change, message):
    from mcekit.config import ConfigError

    base = ["model.half_turns={}", "model.upright=null", "losses=[{type: bce}, {type: half_turn}]"]
    with pytest.raises(ConfigError, match=message):
        load_config("configs/se2_gmm.yaml", base + change)
