"""The Lie group catalogue: the shared property check on every registered group, plus formulas,
the action convention, torchvision agreement, sampling ranges and configs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torchvision.transforms.functional as TF
from pydantic import ValidationError
from torchvision.transforms import InterpolationMode

from mcekit.groups.affine import AffineConfig, AffineGroup
from mcekit.groups.base import act, homogeneous, pose_components, rotation_matrix
from mcekit.groups.scale import ScaleConfig
from mcekit.groups.se2 import SE2Config, SE2Group, half_cot, one_minus_cos_over, sin_over
from mcekit.groups.sim2 import Sim2Config, expm1_over
from mcekit.groups.so2 import SO2Config, SO2Group
from mcekit.groups.translation import TranslationConfig
from mcekit.groups.trivial import TrivialConfig
from mcekit.registry import groups
from mcekit.testing.groups import blob_image, check_group, to_torchvision_affine

F64 = torch.float64


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def algebra(name: str, tau: torch.Tensor) -> torch.Tensor:
    """The 3×3 Lie-algebra matrix of τ, written out from METHOD §1 (independently of the code)."""
    z = torch.zeros_like(tau[:, 0])
    if name == "translation":
        u1, u2 = tau.unbind(-1)
        rows = [[z, z, u1], [z, z, u2]]
    elif name == "so2":
        (t,) = tau.unbind(-1)
        rows = [[z, -t, z], [t, z, z]]
    elif name == "se2":
        t, u1, u2 = tau.unbind(-1)
        rows = [[z, -t, u1], [t, z, u2]]
    elif name == "scale":
        (s,) = tau.unbind(-1)
        rows = [[s, z, z], [z, s, z]]
    elif name == "sim2":
        t, s, u1, u2 = tau.unbind(-1)
        rows = [[s, -t, u1], [t, s, u2]]
    elif name == "affine":
        a, b, c, d, u1, u2 = tau.unbind(-1)
        rows = [[a, b, u1], [c, d, u2]]
    else:
        raise KeyError(name)
    rows.append([z, z, z])
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


BUILTIN = ("trivial", "translation", "so2", "se2", "scale", "sim2", "affine")
WITH_ALGEBRA = BUILTIN[1:]


# -- the shared property check -----------------------------------------------------------------------


def test_builtin_groups_are_registered():
    assert set(BUILTIN) <= set(groups.names())


@pytest.mark.parametrize("name", groups.names())
def test_check_group_default_ranges(name):
    check_group(groups.build({"type": name}))


@pytest.mark.parametrize("config", [
    SO2Config(max_angle_deg=180),
    SE2Config(max_angle_deg=180, max_translation=1.0),
    Sim2Config(max_angle_deg=180, min_scale=0.5, max_scale=2.0, max_translation=1.0),
    AffineConfig(max_angle_deg=120, min_scale=0.5, max_scale=2.0, max_shear=0.5, max_translation=1.0),
    ScaleConfig(min_scale=0.25, max_scale=4.0),
    TranslationConfig(max_translation=1.5),
    SO2Config(max_angle_deg=0),
    ScaleConfig(min_scale=1.0, max_scale=1.0),
    AffineConfig(max_angle_deg=0, min_scale=1, max_scale=1, max_shear=0, max_translation=0),
], ids=lambda c: f"{c.type}-{'-'.join(f'{v:g}' for k, v in c.model_dump().items() if k != 'type')}")
def test_check_group_wide_ranges(config):
    check_group(config.build(), seed=1)


class _ReversedCompose(SE2Group):
    def compose(self, g, h):
        return h @ g


class _EpsilonHack(SE2Group):
    """The published ``θ + 1e-20`` formula: wrong derivative of V(θ)u at θ = 0."""

    def exp(self, tau):
        theta, u1, u2 = tau.unbind(-1)
        t = theta + 1e-20
        a, b = torch.sin(t) / t, (1 - torch.cos(t)) / t
        return homogeneous(rotation_matrix(theta), torch.stack([a * u1 - b * u2, b * u1 + a * u2], -1))


class _ArctanLog(SO2Group):
    """atan instead of atan2: wrong beyond ±90°."""

    def log(self, g):
        return torch.atan(g[:, 1, 0] / g[:, 0, 0])[:, None]


@pytest.mark.parametrize(("group", "message"), [
    (_ReversedCompose(), r"compose\(g, h\) = g @ h"),
    (_EpsilonHack(), r"gradcheck of exp failed .* at input \[0\.0, 0\.3, 0\.0\]"),
    (_ArctanLog(max_angle_deg=180), r"log\(exp\(tau\)\) = tau"),
], ids=["reversed-compose", "epsilon-hack", "atan-log"])
def test_check_group_reports_broken_groups(group, message):
    with pytest.raises(AssertionError, match=message) as info:
        check_group(group)
    assert str(info.value).startswith(f"check_group('{group.name}'):")


# -- formulas ----------------------------------------------------------------------------------------


def test_so2_exp_is_rotation_matrix():
    theta = torch.linspace(-math.pi, math.pi, 13, dtype=F64)
    g = groups.build({"type": "so2"}).exp(theta[:, None])
    torch.testing.assert_close(g[:, :2, :2], rotation_matrix(theta), atol=1e-15, rtol=0)
    torch.testing.assert_close(g[:, :2, 2], torch.zeros(13, 2, dtype=F64), atol=0, rtol=0)


def test_se2_exp_matches_method_formula():
    tau = torch.randn(64, 3, generator=gen(), dtype=F64) * torch.tensor([2.0, 0.5, 0.5], dtype=F64)
    theta, u = tau[:, 0], tau[:, 1:]
    v = torch.stack([torch.stack([theta.sin(), -(1 - theta.cos())], -1),
                     torch.stack([1 - theta.cos(), theta.sin()], -1)], -2) / theta[:, None, None]
    g = groups.build({"type": "se2"}).exp(tau)
    torch.testing.assert_close(g[:, :2, :2], rotation_matrix(theta), atol=1e-15, rtol=0)
    torch.testing.assert_close(g[:, :2, 2], (v @ u[:, :, None])[..., 0], atol=1e-14, rtol=0)


@pytest.mark.parametrize("name", WITH_ALGEBRA)
def test_exp_matches_matrix_exp_of_the_algebra_element(name):
    group = groups.build({"type": name})
    directions = torch.randn(40, group.dim, generator=gen(1), dtype=F64)
    magnitudes = torch.tensor([0.0, 1e-9, 1e-3, 0.05, 0.0999, 0.1001, 0.5, 1.5] * 5, dtype=F64)
    tau = directions / directions.norm(dim=1, keepdim=True) * magnitudes[:, None]
    expected = torch.linalg.matrix_exp(algebra(name, tau))
    torch.testing.assert_close(group.exp(tau), expected, atol=1e-13, rtol=1e-13)
    torch.testing.assert_close(group.exp(tau.float()), expected.float(), atol=2e-6, rtol=2e-6)


def test_series_helpers_meet_the_closed_forms():
    x = torch.cat([torch.linspace(-0.3, -1e-3, 301, dtype=F64), torch.linspace(1e-3, 0.3, 301, dtype=F64)])
    torch.testing.assert_close(sin_over(x), x.sin() / x, atol=1e-15, rtol=0)
    torch.testing.assert_close(one_minus_cos_over(x), 2 * (x / 2).sin() ** 2 / x, atol=1e-15, rtol=0)
    torch.testing.assert_close(half_cot(x), (x / 2) / (x / 2).tan(), atol=1e-15, rtol=0)
    s, theta = torch.randn(2, 500, generator=gen(2), dtype=F64) * 0.1
    re, im = expm1_over(s, theta)
    lam = s.numpy() + 1j * theta.numpy()
    ref = np.expm1(lam) / lam
    np.testing.assert_allclose(re.numpy() + 1j * im.numpy(), ref, atol=1e-15, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_series_derivatives_at_zero(dtype):
    """Exact derivatives at 0: (sin θ/θ)' = 0, ((1−cos θ)/θ)' = ½, ((θ/2)cot(θ/2))' = 0, ((e^λ−1)/λ)' = ½."""
    for fn, expected in ((sin_over, 0.0), (one_minus_cos_over, 0.5), (half_cot, 0.0),
                         (lambda t: expm1_over(t, torch.zeros_like(t))[0], 0.5),
                         (lambda t: expm1_over(torch.zeros_like(t), t)[1], 0.5)):
        x = torch.zeros(1, dtype=dtype, requires_grad=True)
        (grad,) = torch.autograd.grad(fn(x).sum(), x)
        assert grad.item() == pytest.approx(expected, abs=1e-7)


def test_affine_log_matches_scipy_logm():
    group = AffineGroup(max_angle_deg=120, min_scale=0.5, max_scale=2.0, max_shear=0.5, max_translation=1.0)
    g = group.sample(8, gen(3), dtype=F64)
    tau = group.log(g)
    ref = np.stack([scipy.linalg.logm(m) for m in g.numpy()])
    np.testing.assert_allclose(ref.imag, 0, atol=1e-12)
    np.testing.assert_allclose(algebra("affine", tau).numpy(), ref.real, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["so2", "se2", "sim2"])
def test_log_wraps_to_the_principal_branch(name):
    group = groups.build({"type": name})
    tau = torch.zeros(4, group.dim, dtype=F64)
    tau[:, 0] = torch.tensor([1.5 * math.pi, -1.25 * math.pi, 3.0, math.pi], dtype=F64)
    tau[:, 1:] = 0.2
    g = group.exp(tau)
    out = group.log(g)
    assert bool((out[:, 0] > -math.pi).all() and (out[:, 0] <= math.pi + 1e-12).all())
    torch.testing.assert_close(out[:, 0].cos(), tau[:, 0].cos(), atol=1e-12, rtol=0)
    torch.testing.assert_close(group.exp(out), g, atol=1e-12, rtol=0)


def test_trivial_group():
    group = TrivialConfig().build()
    tau = torch.zeros(5, 0, dtype=F64)
    torch.testing.assert_close(group.exp(tau), torch.eye(3, dtype=F64).expand(5, 3, 3))
    assert group.log(group.exp(tau)).shape == (5, 0)
    assert group.sample_tau(4).shape == (4, 0)


@pytest.mark.parametrize("name", BUILTIN)
def test_bad_shapes_are_rejected(name):
    group = groups.build({"type": name})
    with pytest.raises(ValueError, match=f"shape \\(B, {group.dim}\\)"):
        group.exp(torch.zeros(2, group.dim + 1))
    with pytest.raises(ValueError, match=r"shape \(B, 3, 3\)"):
        group.log(torch.zeros(2, 2, 3))


# -- gradients at the identity -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("name", WITH_ALGEBRA)
def test_gradients_at_identity_are_the_generators(name, dtype):
    """d exp(τ)/dτᵢ at τ = 0 is the i-th basis element of the algebra, also in float32."""
    group = groups.build({"type": name})
    jac = torch.autograd.functional.jacobian(lambda t: group.exp(t[None])[0],
                                             torch.zeros(group.dim, dtype=dtype))
    expected = torch.stack([algebra(name, e[None])[0] for e in torch.eye(group.dim, dtype=dtype)], -1)
    torch.testing.assert_close(jac, expected, atol=1e-6 if dtype == torch.float32 else 1e-12, rtol=0)
    # a loss on log at the identity (the pose-equivariance residual of METHOD §3) has finite gradients
    g = group.identity(3, dtype=dtype).requires_grad_(True)
    (grad,) = torch.autograd.grad(group.log(g).pow(2).sum() + group.log(g).sum(), g)
    assert bool(torch.isfinite(grad).all())


# -- the action --------------------------------------------------------------------------------------


def blob_at(x: float, y: float, size: int = 64) -> torch.Tensor:
    axis = (torch.arange(size, dtype=F64) * 2 + 1) / size - 1
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 0.08**2))[None, None]


def centre_of_mass(img: torch.Tensor) -> tuple[float, float]:
    size = img.shape[-1]
    axis = (torch.arange(size, dtype=F64) * 2 + 1) / size - 1
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    w = img[0, 0] / img.sum()
    return float((w * xx).sum()), float((w * yy).sum())


def test_action_convention():
    """Content at p moves to g·p; y points down, so +90° takes the right of the image to the bottom."""
    x = blob_at(0.4, 0.0)
    rot = groups.build({"type": "so2"}).exp(torch.tensor([[math.pi / 2]], dtype=F64))
    assert centre_of_mass(act(x, rot)) == pytest.approx((0.0, 0.4), abs=1e-3)
    shift = groups.build({"type": "translation"}).exp(torch.tensor([[-0.25, 0.25]], dtype=F64))
    assert centre_of_mass(act(x, shift)) == pytest.approx((0.15, 0.25), abs=1e-3)
    grow = groups.build({"type": "scale"}).exp(torch.tensor([[math.log(1.5)]], dtype=F64))
    assert centre_of_mass(act(x, grow)) == pytest.approx((0.6, 0.0), abs=1e-3)
    # act(act(x, g), h) = act(x, h∘g): rotate, then shift
    se2 = groups.build({"type": "se2"})
    both = act(act(x, rot), shift)
    torch.testing.assert_close(both, act(x, se2.compose(shift, rot)), atol=0.02, rtol=0)
    assert centre_of_mass(both) == pytest.approx((-0.25, 0.65), abs=1e-3)


@pytest.mark.parametrize("name", ["so2", "se2", "scale", "translation", "sim2"])
def test_act_agrees_with_torchvision(name):
    group = groups.build({"type": name})
    x = blob_image(1, 64, dtype=torch.float32)
    for g in group.sample(6, gen(4)):
        kwargs = to_torchvision_affine(g, 64)
        ours = act(x, g[None])
        theirs = TF.affine(x, **kwargs, interpolation=InterpolationMode.BILINEAR)
        # both sample bilinearly at the same points, so they agree to float rounding
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0, msg=f"{name}: {kwargs}")


@pytest.mark.parametrize("name", ["scale", "translation"])
def test_act_agrees_with_torchvision_on_non_square_images(name):
    group = groups.build({"type": name})
    x = torch.rand(1, 1, 40, 64, generator=gen(5))
    for g in group.sample(4, gen(6)):
        theirs = TF.affine(x, **to_torchvision_affine(g, (40, 64)), interpolation=InterpolationMode.BILINEAR)
        torch.testing.assert_close(act(x, g[None]), theirs, atol=1e-5, rtol=0)


def test_torchvision_conversion_values_and_limits():
    g = homogeneous(1.5 * rotation_matrix(torch.tensor([math.radians(30.0)])), torch.tensor([[0.5, -0.25]]))
    kwargs = to_torchvision_affine(g, 28)
    assert kwargs["angle"] == pytest.approx(30.0)
    assert kwargs["scale"] == pytest.approx(1.5)
    assert kwargs["translate"] == pytest.approx([7.0, -3.5])
    assert kwargs["shear"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="rotation × uniform"):
        to_torchvision_affine(g, (28, 40))  # a rotation in normalised coordinates is not one in pixels
    sheared = homogeneous(torch.tensor([[[1.0, 0.3], [0.0, 1.0]]]), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="rotation × uniform"):
        to_torchvision_affine(sheared, 28)


# -- sampling ranges ---------------------------------------------------------------------------------


def test_so2_samples_cover_the_configured_range():
    for max_deg in (30.0, 90.0, 180.0):
        theta = SO2Config(max_angle_deg=max_deg).build().sample_tau(4000, gen(7), dtype=F64)[:, 0]
        limit = math.radians(max_deg)
        assert float(theta.abs().max()) <= limit
        assert float(theta.max()) > 0.98 * limit and float(theta.min()) < -0.98 * limit


@pytest.mark.parametrize("name", ["translation", "so2", "se2", "scale", "sim2", "affine"])
def test_sampled_elements_respect_their_ranges(name):
    config = groups.get(name)()
    g = config.build().sample(4000, gen(8), dtype=F64)
    pose = pose_components(g)
    max_angle = math.radians(getattr(config, "max_angle_deg", 0.0))
    max_t = getattr(config, "max_translation", 0.0)
    lo, hi = (math.log(getattr(config, k, 1.0)) for k in ("min_scale", "max_scale"))
    eps = 1e-9
    if name != "affine":  # the polar angle of a sheared element is not the sampled rotation
        assert float(pose["angle"].abs().max()) <= max_angle + eps
        if max_angle:
            assert float(pose["angle"].abs().max()) > 0.98 * max_angle
    assert float(pose["translation"].abs().max()) <= max_t + eps
    if max_t:
        assert float(pose["translation"].abs().max()) > 0.98 * max_t
    assert lo - eps <= float(pose["log_scale"].min()) and float(pose["log_scale"].max()) <= hi + eps
    if config.model_dump().get("max_shear", 0) == 0:  # no shear: the linear part is a similarity
        torch.testing.assert_close(g[:, 0, 0], g[:, 1, 1])
        torch.testing.assert_close(g[:, 0, 1], -g[:, 1, 0])


def test_sample_is_reproducible_and_dtype_independent():
    group = groups.build({"type": "se2"})
    a = group.sample_tau(10, gen(9), dtype=torch.float32)
    b = group.sample_tau(10, gen(9), dtype=F64)
    torch.testing.assert_close(a, b.float(), atol=0, rtol=0)


def test_affine_sample_is_the_exponential_of_its_sampled_coordinates():
    """sample() skips exp∘log; the elements are those sample_tau's coordinates stand for."""
    group = groups.build({"type": "affine", "max_angle_deg": 60, "max_shear": 0.3})
    direct = group.sample(200, gen(10), dtype=F64)
    via_tau = group.exp(group.sample_tau(200, gen(10), dtype=F64))
    torch.testing.assert_close(direct, via_tau, atol=1e-9, rtol=0)


# -- configs -----------------------------------------------------------------------------------------


def test_configs_validate_and_describe():
    group = groups.build({"type": "se2", "max_translation": 0.25})
    assert group.max_translation == 0.25
    described = group.describe()
    assert described["name"] == "se2" and described["dim"] == 3 and len(described["coordinates"]) == 3
    assert described["max_angle_deg"] == 90.0 and described["max_translation"] == 0.25
    for bad in ({"type": "so2", "max_angle_deg": -1}, {"type": "so2", "max_angle_deg": 270},
                {"type": "scale", "min_scale": 1.5, "max_scale": 1.2}, {"type": "scale", "min_scale": 0},
                {"type": "affine", "max_shear": 2.0}, {"type": "se2", "max_translaton": 0.2}):
        with pytest.raises(ValidationError):
            groups.build(bad)


@pytest.mark.parametrize("name", BUILTIN)
def test_config_fields_are_documented(name):
    config_class = groups.get(name)
    assert config_class.__doc__ and config_class.__doc__.strip()
    for field_name, field in config_class.model_fields.items():
        if field_name != "type":
            assert field.description, f"{name}.{field_name} has no description"


def test_act_with_a_singular_pose_gives_nan_images_not_an_exception():
    from mcekit.groups.base import act

    g = torch.eye(3).repeat(2, 1, 1)
    g[1, 0, 0] = 0.0
    g[1, 1, 1] = 0.0   # singular linear part
    out = act(torch.rand(2, 1, 8, 8), g)
    assert torch.isfinite(out[0]).all() and torch.isnan(out[1]).all()
