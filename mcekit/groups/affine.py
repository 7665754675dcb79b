"""GA⁺(2), the orientation-preserving affine group of the plane (6 parameters).

τ = (a₁₁, a₁₂, a₂₁, a₂₂, u₁, u₂): the Lie-algebra element X = [[A, u], [0, 0]] with A row-major.
exp(τ) = matrix exponential of X (``torch.linalg.matrix_exp``). log is numerical: inverse scaling
and squaring — closed-form principal square roots until the element is close to the identity, a
[8/8] Padé approximant of log(I + X) (Gauss–Legendre partial fractions), times 2^k.

This module also holds the checks the other built-in groups (all subgroups of GA⁺(2)) share:
:func:`check_coordinates`, :func:`check_elements`; compose and inverse are the closed forms of
:class:`~mcekit.groups.base.LieGroup`.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from mcekit.groups.base import GroupConfig, LieGroup, homogeneous, inverse_2x2, rotation_matrix, uniform
from mcekit.registry import groups

# -- helpers shared by the built-in groups ---------------------------------------------------------


def check_coordinates(tau: torch.Tensor, dim: int, name: str) -> None:
    """Raise ValueError unless ``tau`` has shape (B, dim)."""
    if tau.ndim != 2 or tau.shape[1] != dim:
        raise ValueError(f"group '{name}': expected Lie-algebra coordinates of shape (B, {dim}), "
                         f"got {tuple(tau.shape)}")


def check_elements(g: torch.Tensor, name: str) -> None:
    """Raise ValueError unless ``g`` has shape (B, 3, 3)."""
    if g.ndim != 3 or g.shape[1:] != (3, 3):
        raise ValueError(f"group '{name}': expected group elements of shape (B, 3, 3), got {tuple(g.shape)}")


# -- the numerical logarithm -------------------------------------------------------------------------

#: Frobenius norm of [A − I, t] below which the Padé approximant is used directly
_ROOT_UNTIL = 0.25
_MAX_ROOTS = 60
_PADE_DEGREE = 8
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(_PADE_DEGREE)
_PADE_NODES = tuple(float(x) for x in (_NODES + 1) / 2)  # Gauss–Legendre on [0, 1]
_PADE_WEIGHTS = tuple(float(w) for w in _WEIGHTS / 2)


def sqrt_affine(g: torch.Tensor) -> torch.Tensor:
    """Principal square root of affine elements, closed form.

    For a 2×2 matrix A with no eigenvalue on the closed negative real axis,
    √A = (A + √det A · I) / √(tr A + 2√det A) (Cayley–Hamilton); the shift of the root is
    (√A + I)⁻¹ t. Elements outside that domain give NaN.
    """
    a = g[:, :2, :2]
    det = a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]
    root_det = det.sqrt()
    norm = (a[:, 0, 0] + a[:, 1, 1] + 2 * root_det).sqrt()
    eye = torch.eye(2, dtype=g.dtype, device=g.device)
    root = (a + root_det[:, None, None] * eye) / norm[:, None, None]
    shift = (inverse_2x2(root + eye) @ g[:, :2, 2:]).squeeze(-1)
    return homogeneous(root, shift)


def log_affine(g: torch.Tensor) -> torch.Tensor:
    """Principal matrix logarithm of affine elements as (B, 2, 3) = [L, v] (the bottom row of log is 0).

    Inverse scaling and squaring, per element: take k closed-form square roots until
    ‖[A − I, t]‖_F ≤ 0.25 (a ``torch.where`` keeps elements that are already close, so every entry
    and its gradient stay finite), then log(I + X) ≈ Σⱼ wⱼ X (I + xⱼX)⁻¹ (Gauss–Legendre nodes on
    [0, 1], the [8/8] Padé approximant), then multiply by 2^k. For X = [[E, v], [0, 0]] the terms
    reduce to 2×2 algebra: (I + xX)⁻¹X = [[M⁻¹E, M⁻¹v], [0, 0]] with M = I + xE.

    Valid for linear parts without eigenvalues on the closed negative real axis (rotation below π);
    other elements give NaN.
    """
    n = g.shape[0]
    eye23 = torch.eye(2, 3, dtype=g.dtype, device=g.device)
    y = g
    roots = torch.zeros(n, dtype=g.dtype, device=g.device)
    for _ in range(_MAX_ROOTS):
        with torch.no_grad():
            need = torch.linalg.matrix_norm(y[:, :2, :] - eye23) > _ROOT_UNTIL
        if not bool(need.any()):
            break
        y = torch.where(need[:, None, None], sqrt_affine(y), y)
        roots = roots + need.to(g.dtype)
    x = y[:, :2, :] - eye23  # [E, v]
    e = x[:, :, :2]
    eye = torch.eye(2, dtype=g.dtype, device=g.device)
    out = torch.zeros_like(x)
    for node, weight in zip(_PADE_NODES, _PADE_WEIGHTS, strict=True):
        out = out + weight * (inverse_2x2(eye + node * e) @ x)
    return out * torch.exp2(roots)[:, None, None]


# -- the group ---------------------------------------------------------------------------------------


class AffineGroup(LieGroup):
    """GA⁺(2): 2×2 linear part with positive determinant plus a shift."""

    name: ClassVar[str] = "affine"
    dim: ClassVar[int] = 6
    coordinates: ClassVar[tuple[str, ...]] = (
        "a11: linear generator, row 1 col 1 (x stretch)",
        "a12: linear generator, row 1 col 2 (x shear by y)",
        "a21: linear generator, row 2 col 1 (y shear by x)",
        "a22: linear generator, row 2 col 2 (y stretch)",
        "u1: translation generator, x (normalised units)",
        "u2: translation generator, y (normalised units, down)",
    )
    has_rotation: ClassVar[bool] = True
    has_translation: ClassVar[bool] = True
    has_scale: ClassVar[bool] = True

    def __init__(self, max_angle_deg: float = 45.0, min_scale: float = 0.8, max_scale: float = 1.2,
                 max_shear: float = 0.2, max_translation: float = 0.3) -> None:
        self.max_angle_deg = float(max_angle_deg)
        self.min_scale = float(min_scale)
        self.max_scale = float(max_scale)
        self.max_shear = float(max_shear)
        self.max_translation = float(max_translation)

    def exp(self, tau: torch.Tensor) -> torch.Tensor:
        check_coordinates(tau, self.dim, self.name)
        n = tau.shape[0]
        top = torch.cat([tau[:, :4].reshape(n, 2, 2), tau[:, 4:6, None]], dim=2)
        algebra = torch.cat([top, tau.new_zeros(n, 1, 3)], dim=1)
        m = torch.linalg.matrix_exp(algebra)
        return homogeneous(m[:, :2, :2], m[:, :2, 2])  # exact [0, 0, 1] last row

    def log(self, g: torch.Tensor) -> torch.Tensor:
        check_elements(g, self.name)
        lg = log_affine(g)
        return torch.cat([lg[:, :, :2].reshape(-1, 4), lg[:, :, 2]], dim=1)

    def sample_linear_and_shift(self, n: int, generator: torch.Generator | None = None
                                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 CPU draws, in this order: angle θ, log-scale s, anisotropy a, shear h, shift t₁, t₂.

        Linear part eˢ·R(θ)·diag(eᵃ, e⁻ᵃ)·[[1, h], [0, 1]]; t is the translation of the matrix.
        """
        kw: dict[str, Any] = {"dtype": torch.float64, "device": "cpu"}
        amax = math.radians(self.max_angle_deg)
        theta = uniform(n, -amax, amax, generator, **kw)
        s = uniform(n, math.log(self.min_scale), math.log(self.max_scale), generator, **kw)
        aniso = uniform(n, -self.max_shear, self.max_shear, generator, **kw)
        shear = uniform(n, -self.max_shear, self.max_shear, generator, **kw)
        t1 = uniform(n, -self.max_translation, self.max_translation, generator, **kw)
        t2 = uniform(n, -self.max_translation, self.max_translation, generator, **kw)
        zero, one = torch.zeros_like(shear), torch.ones_like(shear)
        stretch = torch.diag_embed(torch.stack([aniso.exp(), (-aniso).exp()], -1))
        shear_m = torch.stack([torch.stack([one, shear], -1), torch.stack([zero, one], -1)], -2)
        linear = s.exp()[:, None, None] * rotation_matrix(theta) @ stretch @ shear_m
        return linear, torch.stack([t1, t2], -1)

    def sample_tau(self, n: int, generator: torch.Generator | None = None, *,
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        linear, shift = self.sample_linear_and_shift(n, generator)
        return self.log(homogeneous(linear, shift)).to(dtype=dtype, device=device)

    def sample(self, n: int, generator: torch.Generator | None = None, *,
               dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        """The drawn matrices themselves: exp(log(M)) = M, without the numerical log's cost."""
        linear, shift = self.sample_linear_and_shift(n, generator)
        return homogeneous(linear, shift).to(dtype=dtype, device=device)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_angle_deg": self.max_angle_deg, "min_scale": self.min_scale,
                "max_scale": self.max_scale, "max_shear": self.max_shear,
                "max_translation": self.max_translation,
                "sampling": "linear part e^s R(theta) diag(e^a, e^-a) [[1, h], [0, 1]] with theta, s, a, h "
                            "uniform in their ranges, matrix translation uniform per axis; tau = log"}


@groups.register
class AffineConfig(GroupConfig):
    """GA⁺(2), the orientation-preserving affine maps of the image plane (6 parameters).

    Random elements: rotation · uniform scale · anisotropy · shear, then a shift.
    """

    type: Literal["affine"] = "affine"
    max_angle_deg: float = Field(45.0, ge=0, le=120, description="rotation uniform in [-max, max] degrees "
                                 "(at most 120, so log stays on its principal branch with shear)")
    min_scale: float = Field(0.8, ge=0.01, le=100, description="smallest uniform scale factor (log-uniform)")
    max_scale: float = Field(1.2, ge=0.01, le=100, description="largest uniform scale factor (log-uniform)")
    max_shear: float = Field(0.2, ge=0, le=0.5, description="shear h and log-anisotropy a uniform in "
                             "[-max, max]: linear part e^s R(θ) diag(e^a, e^-a) [[1, h], [0, 1]]")
    max_translation: float = Field(0.3, ge=0, le=2, description="shift uniform per axis in [-max, max], "
                                   "normalised coordinates (0.5 = 25% of the width)")

    @model_validator(mode="after")
    def _scale_order(self) -> AffineConfig:
        if self.min_scale > self.max_scale:
            raise ValueError(f"min_scale ({self.min_scale}) must not exceed max_scale ({self.max_scale})")
        return self

    def build(self) -> AffineGroup:
        return AffineGroup(self.max_angle_deg, self.min_scale, self.max_scale, self.max_shear,
                           self.max_translation)
