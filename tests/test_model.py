"""The model's parts as mathematics: moment pose equivariance, named outputs, loss plumbing."""

from __future__ import annotations

import pytest
import torch

from mcekit.config import load_config
from mcekit.groups.base import act, pose_components, wrap_angle
from mcekit.groups.se2 import SE2Config
from mcekit.losses.base import LossContext
from mcekit.model import MCEOutput, build_model
from mcekit.moments import moment_pose


def elongated_blob(size: int = 48) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    # an off-centre, vertically elongated, asymmetric blob
    img = torch.exp(-((xs - 0.05) ** 2 / 0.02 + (ys + 0.1) ** 2 / 0.15)) + 0.5 * torch.exp(
        -((xs - 0.1) ** 2 / 0.01 + (ys - 0.3) ** 2 / 0.01))
    return img[None, None].double()


def test_moment_pose_is_equivariant_modulo_half_turns():
    x = elongated_blob()
    g0 = moment_pose(x)
    group = SE2Config(max_angle_deg=60, max_translation=0.2).build()
    h = group.sample(16, torch.Generator().manual_seed(0), dtype=torch.float64)
    moved = act(x.expand(16, -1, -1, -1), h)
    predicted = moment_pose(moved)
    expected = h @ g0
    a, b = pose_components(predicted), pose_components(expected)
    angle_gap = wrap_angle(2 * (a["angle"] - b["angle"])) / 2  # the principal axis has no arrow
    assert torch.rad2deg(angle_gap).abs().max() < 2.0
    assert (a["translation"] - b["translation"]).norm(dim=-1).max() < 0.02


def test_skew_arrow_makes_the_moment_pose_equivariant_under_any_rotation():
    """With the third moment as the axis's arrow the estimate follows every turn, half turns included."""
    from mcekit.groups.so2 import SO2Config

    x = elongated_blob()
    g0 = moment_pose(x, arrow="skew")
    h = SO2Config(max_angle_deg=180).build().sample(32, torch.Generator().manual_seed(0), dtype=torch.float64)
    predicted = moment_pose(act(x.expand(32, -1, -1, -1), h), arrow="skew")
    a, b = pose_components(predicted), pose_components(h @ g0)
    assert torch.rad2deg(wrap_angle(a["angle"] - b["angle"])).abs().max() < 2.0
    assert (a["translation"] - b["translation"]).norm(dim=-1).max() < 0.02
    # the canonical has its heavier tail down (positive third moment along y), wherever it started
    canonical = act(x, torch.linalg.inv(g0))
    ys = torch.linspace(-1, 1, 48, dtype=torch.float64).view(1, 1, 48, 1)
    cy = (canonical * ys).sum() / canonical.sum()
    assert float((canonical * (ys - cy) ** 3).sum()) > 0
    # the half-plane arrow cannot follow a half turn: an image and its half turn get the same estimate
    turned = act(x, torch.tensor([[[-1.0, 0, 0], [0, -1.0, 0], [0, 0, 1]]], dtype=torch.float64))
    gap = pose_components(moment_pose(turned))["angle"] - pose_components(moment_pose(x))["angle"]
    assert torch.rad2deg(wrap_angle(gap)).abs().item() < 2.0


def test_moment_canonical_is_centred_and_upright():
    x = elongated_blob()
    canonical = act(x, torch.linalg.inv(moment_pose(x)))
    again = moment_pose(canonical)
    comps = pose_components(again)
    assert comps["translation"].abs().max() < 0.02
    assert torch.rad2deg(wrap_angle(2 * comps["angle"]) / 2).abs().max() < 1.0


def test_moment_pose_respects_the_group():
    x = elongated_blob().float()
    so2 = load_config("configs/so2_gmm.yaml").model.group.build()
    g = moment_pose(x, so2)
    assert torch.allclose(g[:, :2, 2], torch.zeros(1, 2))


@pytest.fixture(scope="module")
def model_and_batch():
    torch.manual_seed(0)
    config = load_config("configs/se2_gmm.yaml")
    model = build_model(config.model, (1, 28, 28))
    x = torch.rand(6, 1, 28, 28)
    return config, model, x


def test_forward_returns_named_output(model_and_batch):
    _, model, x = model_and_batch
    out = model(x)
    assert isinstance(out, MCEOutput)
    assert out.recon.shape == x.shape and out.canonical.shape == x.shape
    assert out.pose.shape == (6, 3, 3)
    assert set(out.posteriors) == {"cluster", "style", "pose"}
    # the pose is the moment estimate composed with the learned residual
    tau = out.samples["pose"]
    assert torch.allclose(out.pose, out.pose_init @ model.group.exp(tau), atol=1e-5)
    assert torch.all((out.recon >= 0) & (out.recon <= 1))


def test_reconstruction_is_the_canonical_moved_by_the_pose(model_and_batch):
    _, model, x = model_and_batch
    out = model(x, sample=False)
    assert torch.allclose(out.recon, act(out.canonical, out.pose), atol=1e-6)


def test_every_loss_gives_a_finite_scalar_and_gradients(model_and_batch):
    config, model, x = model_and_batch
    model.cluster_prior.initialize(torch.randn(50, 10))
    out = model(x)
    ctx = LossContext(x, out, model, epoch=25.0, canonical=x)
    total = 0
    for loss_config in config.losses:
        result = loss_config.build()(ctx)
        assert result.value.dim() == 0 and torch.isfinite(result.value), loss_config.type
        total = total + result.value
    total.backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_trivial_group_model_has_no_pose_block():
    config = load_config("configs/se2_gmm.yaml", ["model.group={type: trivial}", "model.upright=null"])
    model = build_model(config.model, (1, 28, 28))
    out = model(torch.rand(3, 1, 28, 28))
    assert "pose" not in out.posteriors
    assert torch.allclose(out.pose, torch.eye(3).expand(3, 3, 3))



def test_paper_invariance_targets_carry_no_gradient():
    """The published loop: copies are no-grad targets, so only the batch's own outputs get gradients."""
    from dataclasses import replace

    from mcekit.losses.paper_invariance import PaperInvarianceConfig

    torch.manual_seed(0)
    config = load_config("configs/se2_gmm.yaml", ["model.pose_init=none", "model.upright=null"])
    model = build_model(config.model, (1, 28, 28))
    x = torch.rand(4, 1, 28, 28)
    loss = PaperInvarianceConfig(samples=3).build()
    out = model(x)
    value = loss(LossContext(x, out, model, epoch=0.0)).value
    assert value.dim() == 0 and torch.isfinite(value) and value > 0
    value.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters())
    detached = replace(out, samples={k: v.detach() for k, v in out.samples.items()}, canonical=out.canonical.detach())
    assert not loss(LossContext(x, detached, model, epoch=0.0)).value.requires_grad


def test_invariance_on_a_fraction_of_the_batch_uses_only_its_first_rows():
    """fraction f: the copies come from the first round(f·B) images, and the others get no gradient from it."""
    from mcekit.losses.invariance import InvarianceConfig

    torch.manual_seed(0)
    config = load_config("configs/se2_gmm.yaml")
    model = build_model(config.model, (1, 28, 28))
    model.cluster_prior.initialize(torch.randn(50, 10))
    x = torch.rand(8, 1, 28, 28, requires_grad=True)
    out = model(x, sample=False)
    quarter = InvarianceConfig(samples=3, fraction=0.25).build()
    ctx = LossContext(x, out, model, epoch=0.0, generator=torch.Generator().manual_seed(1))
    value = quarter(ctx).value
    (grad,) = torch.autograd.grad(value, x)
    assert torch.isfinite(value) and value > 0
    assert grad[:2].abs().sum() > 0 and grad[2:].abs().sum() == 0
    # the same two images on their own, with the same draws, give the same value
    head = model(x[:2], sample=False)
    alone = InvarianceConfig(samples=3).build()(
        LossContext(x[:2], head, model, epoch=0.0, generator=torch.Generator().manual_seed(1))).value
    assert torch.allclose(value, alone, rtol=1e-5, atol=1e-6)


def test_a_runaway_pose_is_bounded_in_the_decoder_path_but_the_kl_still_pulls_it_back():
    from mcekit.model import POSE_COORDINATE_BOUND

    config = load_config("configs/affine_gmm.yaml")
    model = build_model(config.model, (1, 28, 28))
    enc = model.encode(torch.rand(2, 1, 28, 28))
    tau = torch.full((2, 6), 40.0, requires_grad=True)     # exp of this overflows float32
    g = model.pose_of(enc, tau)
    assert torch.isfinite(g).all()
    assert torch.allclose(model.pose_of(enc, tau), model.pose_of(enc, torch.full((2, 6), POSE_COORDINATE_BOUND)))
    small = torch.full((2, 6), 0.3)
    assert torch.equal(model.pose_of(enc, small), model.group.compose(enc.pose_init, model.group.exp(small)))
    kl = 0.5 * tau.pow(2).sum()                               # the pose KL's mean part sees τ itself
    (grad,) = torch.autograd.grad(kl + g.sum(), tau)
    assert (grad > 0).all()                                   # a step of gradient descent shrinks τ


def test_invariance_copies_as_fixed_targets_give_the_same_value_and_no_gradient_through_them():
    """copy_gradients=false: the same objective, but only the batch's own pass is differentiated."""
    from dataclasses import replace

    from mcekit.losses.invariance import InvarianceConfig

    torch.manual_seed(0)
    config = load_config("configs/se2_gmm.yaml")
    model = build_model(config.model, (1, 28, 28))
    model.cluster_prior.initialize(torch.randn(50, 10))
    x = torch.rand(6, 1, 28, 28)
    out = model(x, sample=False)

    def value(copy_gradients: bool, output=out):
        loss = InvarianceConfig(samples=2, copy_gradients=copy_gradients).build()
        return loss(LossContext(x, output, model, epoch=0.0, generator=torch.Generator().manual_seed(3))).value

    fixed = value(False)
    assert torch.allclose(fixed, value(True), rtol=1e-6) and fixed.requires_grad
    detached = replace(out, posteriors={k: type(p)(p.mean.detach(), {n: v.detach() for n, v in p.params.items()})
                                        for k, p in out.posteriors.items()},
                       pose=out.pose.detach(), canonical=out.canonical.detach())
    encoder = list(model.encoder.parameters())

    def encoder_grads(copy_gradients: bool) -> list:
        return torch.autograd.grad(value(copy_gradients, detached), encoder, allow_unused=True)

    # with the batch's own outputs detached, the encoder gets a gradient only through the copies' encoding
    assert all(g is None for g in encoder_grads(False))
    assert all(g is not None and g.abs().sum() > 0 for g in encoder_grads(True))
