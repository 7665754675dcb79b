"""The equi-affine group SA(2) = SL(2)⋉R²."""

from __future__ import annotations

import math

import pytest
import torch
from mcekit.groups.base import homogeneous, rotation_matrix
from mcekit.testing import check_group
from pydantic import ValidationError

from mcekit_sl2.sa2 import MIN_HALF_TRACE, SA2Config, SA2Group, sl2_exp, sl2_log

F64 = torch.float64


def algebra_matrix(tau: torch.Tensor) -> torch.Tensor:
    """(B, 5) → (B, 3, 3) [[A, u], [0, 0]] with A = [[a, b], [c, −a]]."""
    a, b, c, u1, u2 = tau.unbind(-1)
    zero = torch.zeros_like(a)
    return torch.stack([torch.stack([a, b, u1], -1), torch.stack([c, -a, u2], -1),
                        torch.stack([zero, zero, zero], -1)], -2)


@pytest.mark.parametrize("fields", [{}, {"max_angle_deg": 120, "max_shear": 0.5, "max_translation": 2.0},
                                    {"max_angle_deg": 0, "max_shear": 0, "max_translation": 0}])
def test_check_group(fields):
    check_group(SA2Config(**fields).build())


def test_exp_matches_matrix_exponential():
    gen = torch.Generator().manual_seed(0)
    # every regime: hyperbolic (δ > 0), elliptic (δ < 0), near-parabolic, series region and beyond
    tau = torch.cat([torch.randn(256, 5, generator=gen, dtype=F64) * s for s in (1e-6, 0.1, 0.5, 1.5)])
    tau = torch.cat([tau, torch.tensor([[0.0, 1.0, 0.0, 0.3, -0.2], [0.0, -2.0, 2.0, 1.0, 1.0]], dtype=F64)])
    expected = torch.linalg.matrix_exp(algebra_matrix(tau))
    torch.testing.assert_close(sl2_exp(tau), expected, atol=1e-12, rtol=1e-12)


def test_elements_preserve_area():
    g = SA2Group(120, 0.5, 2.0).sample(1000, torch.Generator().manual_seed(1), dtype=F64)
    det = torch.linalg.det(g[:, :2, :2])
    torch.testing.assert_close(det, torch.ones(1000, dtype=F64), atol=1e-12, rtol=0)


def test_rotation_coordinates():
    theta = torch.tensor([0.3, -1.2, 2.5], dtype=F64)
    zero = torch.zeros_like(theta)
    tau = torch.stack([zero, -theta, theta, zero, zero], -1)
    torch.testing.assert_close(sl2_exp(tau)[:, :2, :2], rotation_matrix(theta))


def test_sampled_elements_stay_on_the_principal_branch():
    """The widest allowed ranges keep the half trace above the clamp, so log is exact on every sample."""
    group = SA2Config(max_angle_deg=120, max_shear=0.5, max_translation=2).build()
    g = group.sample(100_000, torch.Generator().manual_seed(2), dtype=F64)
    half_trace = (g[:, 0, 0] + g[:, 1, 1]) / 2
    assert float(half_trace.min()) > MIN_HALF_TRACE + 0.05
    torch.testing.assert_close(group.exp(group.log(g)), g, atol=1e-9, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_log_is_finite_beyond_the_principal_branch(dtype):
    """Elements without a real logarithm (half trace ≤ −1) give finite values and gradients, never NaN."""
    linear = torch.tensor([[[-1.0, 0.0], [0.0, -1.0]], [[-1.0, -0.3], [0.0, -1.0]],
                           [[-2.0, 0.0], [0.0, -0.5]], [[-40.0, 3.0], [13.0, -1.0]]], dtype=dtype)
    linear = torch.cat([linear, rotation_matrix(torch.tensor([math.pi, math.pi - 1e-4, 3.0], dtype=dtype))])
    g = homogeneous(linear, torch.full((linear.shape[0], 2), 0.5, dtype=dtype)).requires_grad_(True)
    out = sl2_log(g)
    out.pow(2).sum().backward()
    assert bool(torch.isfinite(out).all()) and bool(torch.isfinite(g.grad).all())


def test_compose_inverse_closed_forms():
    group = SA2Group()
    a, b = (group.sample(64, torch.Generator().manual_seed(k), dtype=F64) for k in (3, 4))
    torch.testing.assert_close(group.compose(a, b), a @ b)
    torch.testing.assert_close(group.inverse(a), torch.linalg.inv(a))


def test_describe_and_flags():
    group = SA2Config(max_angle_deg=10).build()
    assert group.dim == 5 and len(group.coordinates) == 5
    assert group.has_rotation and group.has_translation and not group.has_scale
    assert group.describe()["max_angle_deg"] == 10


def test_config_validates_ranges():
    with pytest.raises(ValidationError, match="max_angle_deg"):
        SA2Config(max_angle_deg=150)
    with pytest.raises(ValidationError, match="max_shear"):
        SA2Config(max_shear=-0.1)
