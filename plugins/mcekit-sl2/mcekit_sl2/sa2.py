"""SA(2) = SL(2) ⋉ R², the equi-affine group: area-preserving linear maps plus a translation (5 parameters).

Coordinates τ = (a, b, c, u₁, u₂): the Lie-algebra element X = [[A, u], [0, 0]] with the traceless
A = [[a, b], [c, −a]] ∈ sl(2). Because A² = δI with δ = a² + bc = −det A, every power series in A
collapses to two scalar functions of δ:

    exp(τ) = [[C(δ) I + S(δ) A,  (S(δ) I + D(δ) A) u], [0, 1]]
    C(δ) = Σ δᵏ/(2k)!      = cosh √δ          (δ > 0)   or  cos √−δ           (δ < 0)
    S(δ) = Σ δᵏ/(2k+1)!    = sinh √δ / √δ                or  sin √−δ / √−δ
    D(δ) = Σ δᵏ/(2k+2)!    = 2 sinh²(√δ/2) / δ           or  2 sin²(√−δ/2) / (−δ)

δ > 0 gives hyperbolic elements (squeezes), δ < 0 elliptic ones (rotation-like), δ = 0 parabolic ones
(shears). The functions are entire in δ; for |δ| < 0.1 their Taylor series are used (``torch.where``
with safe inputs on each branch, so values and gradients stay finite at δ = 0).

log: with M the linear part, h = tr M / 2 = C(δ), the algebra element is A = F(h)·(M − hI), where
F(h) = 1/S = arccos h / √(1 − h²) (h < 1) or arccosh h / √(h² − 1) (h > 1); near h = 1 F is the
series ₂F₁(1, 1; 3/2; (1 − h)/2) = Σ k!/(3/2)ₖ · ((1 − h)/2)ᵏ. The translation generator is
u = V⁻¹t with V = S I + D A, and since (S I + D A)(S I − D A) = (S² − δD²) I = 2D I,
u = (S/2D)·t − ½·A t, where S/(2D) = (r/2)·coth(r/2) or (r/2)·cot(r/2).

Branch. A real logarithm in sl(2) needs h > −1 (or M = −I), and near h = −1 it is unbounded. log
clamps h at −0.99 before computing F (so F ≤ 21.3): it is exact for h > −0.99 (pure rotations up to
±171.9°; every sampled element, see ``SA2Config``) and elsewhere a finite, continuous stand-in that is
*not* a logarithm. The invariance loss takes log of arbitrary residuals (early in training pose
samples are wide, and a moment-based pose estimate can flip by 180°): they give large values, not NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
from mcekit.groups.base import GroupConfig, LieGroup, homogeneous, rotation_matrix, uniform
from pydantic import Field

#: |δ| (for exp) and |h − 1| (for log) below which the Taylor series are used
SERIES_THRESHOLD = 0.1
#: log clamps the half trace of the linear part here: exact above (a pure rotation up to ±171.9°); below it
#: — and at h ≤ −1, where no real logarithm exists — log is a finite, continuous stand-in, not a logarithm
MIN_HALF_TRACE = -0.99

_C = tuple(1.0 / math.factorial(2 * k) for k in range(8))
_S = tuple(1.0 / math.factorial(2 * k + 1) for k in range(8))
_D = tuple(1.0 / math.factorial(2 * k + 2) for k in range(8))
# k!/(3/2)_k, the coefficients of 2F1(1, 1; 3/2; y)
_F = tuple(math.factorial(k) / math.prod(1.5 + j for j in range(k)) for k in range(16))
# B₂ₖ/(2k)!, the coefficients of (r/2)·coth(r/2) in δ = r²
_E = (1.0, 1 / 12, -1 / 720, 1 / 30240, -1 / 1209600, 1 / 47900160, -691 / 1307674368000)


def _poly(x: torch.Tensor, coefficients: tuple[float, ...]) -> torch.Tensor:
    """Σ cₖ xᵏ by Horner's rule."""
    out = torch.full_like(x, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        out = out * x + c
    return out


def _series_where(x: torch.Tensor, series: Callable[[torch.Tensor], torch.Tensor],
                  direct: Callable[[torch.Tensor], torch.Tensor], centre: float = 0.0) -> torch.Tensor:
    """``series(x)`` where |x − centre| < SERIES_THRESHOLD, else ``direct(x)``; each branch only ever sees
    inputs where it is well behaved, so the discarded branch cannot put inf/NaN into the gradient."""
    small = (x - centre).abs() < SERIES_THRESHOLD
    x_series = torch.where(small, x, torch.full_like(x, centre))
    x_direct = torch.where(small, torch.full_like(x, centre + 1.0), x)
    return torch.where(small, series(x_series), direct(x_direct))


def _by_sign(delta: torch.Tensor, hyperbolic: Callable[[torch.Tensor], torch.Tensor],
             trigonometric: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``hyperbolic(√δ)`` for δ > 0, ``trigonometric(√−δ)`` for δ < 0 (δ is away from 0 here)."""
    positive = delta > 0
    r_pos = torch.sqrt(torch.where(positive, delta, torch.ones_like(delta)))
    r_neg = torch.sqrt(torch.where(positive, torch.ones_like(delta), -delta))
    return torch.where(positive, hyperbolic(r_pos), trigonometric(r_neg))


def cosh_sqrt(delta: torch.Tensor) -> torch.Tensor:
    """C(δ) = cosh √δ = cos √−δ."""
    return _series_where(delta, lambda d: _poly(d, _C),
                         lambda d: _by_sign(d, torch.cosh, torch.cos))


def sinhc_sqrt(delta: torch.Tensor) -> torch.Tensor:
    """S(δ) = sinh √δ / √δ = sin √−δ / √−δ (1 at δ = 0)."""
    return _series_where(delta, lambda d: _poly(d, _S),
                         lambda d: _by_sign(d, lambda r: torch.sinh(r) / r, lambda r: torch.sin(r) / r))


def coshm1_over(delta: torch.Tensor) -> torch.Tensor:
    """D(δ) = (C(δ) − 1)/δ, written as 2 sinh²(r/2)/r² or 2 sin²(r/2)/r² (½ at δ = 0)."""
    return _series_where(delta, lambda d: _poly(d, _D),
                         lambda d: _by_sign(d, lambda r: 2 * torch.sinh(r / 2) ** 2 / (r * r),
                                            lambda r: 2 * torch.sin(r / 2) ** 2 / (r * r)))


def half_coth_sqrt(delta: torch.Tensor) -> torch.Tensor:
    """S(δ)/(2D(δ)) = (r/2)·coth(r/2) (δ = r² > 0) or (r/2)·cot(r/2) (δ = −r² < 0); 1 at δ = 0.

    Written without sinh/cosh so that large δ (elements far outside the sampled range) cannot overflow.
    """
    return _series_where(delta, lambda d: _poly(d, _E),
                         lambda d: _by_sign(d, lambda r: (r / 2) / torch.tanh(r / 2),
                                            lambda r: (r / 2) * torch.cos(r / 2) / torch.sin(r / 2)))


def inverse_sinhc(h: torch.Tensor) -> torch.Tensor:
    """F(h) = 1/S(δ) for the δ with C(δ) = h: arccos h/√(1 − h²) or arccosh h/√(h² − 1) (1 at h = 1)."""

    def direct(x: torch.Tensor) -> torch.Tensor:
        above = x > 1
        hi = torch.where(above, x, torch.full_like(x, 2.0))
        lo = torch.where(above, torch.zeros_like(x), x)
        return torch.where(above, torch.acosh(hi) / torch.sqrt((hi - 1) * (hi + 1)),
                           torch.acos(lo) / torch.sqrt((1 - lo) * (1 + lo)))

    return _series_where(h, lambda x: _poly((1 - x) / 2, _F), direct, centre=1.0)


def sl2_exp(tau: torch.Tensor) -> torch.Tensor:
    """(B, 5) coordinates → (B, 3, 3) elements, closed form."""
    a, b, c, u1, u2 = tau.unbind(-1)
    delta = a * a + b * c
    cc, s, d = cosh_sqrt(delta), sinhc_sqrt(delta), coshm1_over(delta)
    linear = torch.stack([torch.stack([cc + s * a, s * b], -1), torch.stack([s * c, cc - s * a], -1)], -2)
    au1, au2 = a * u1 + b * u2, c * u1 - a * u2  # A u
    shift = torch.stack([s * u1 + d * au1, s * u2 + d * au2], -1)
    return homogeneous(linear, shift)


def sl2_log(g: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) elements → (B, 5) coordinates on the principal branch (half trace > −1)."""
    m11, m12, m21, m22 = g[:, 0, 0], g[:, 0, 1], g[:, 1, 0], g[:, 1, 1]
    half_trace = ((m11 + m22) / 2).clamp_min(MIN_HALF_TRACE)
    f = inverse_sinhc(half_trace)
    a, b, c = f * (m11 - m22) / 2, f * m12, f * m21  # A = F·(M − hI), traceless by construction
    e = half_coth_sqrt(a * a + b * c)  # S/(2D)
    t1, t2 = g[:, 0, 2], g[:, 1, 2]
    u1 = e * t1 - (a * t1 + b * t2) / 2
    u2 = e * t2 - (c * t1 - a * t2) / 2
    return torch.stack([a, b, c, u1, u2], -1)


def _check_shape(x: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"group 'sl2lab.sa2': expected {what} of shape (B, {', '.join(map(str, shape))}), "
                         f"got {tuple(x.shape)}")


class SA2Group(LieGroup):
    """SA(2): area-preserving linear maps about the image centre (rotation, squeeze, shear), then a shift."""

    name: ClassVar[str] = "sl2lab.sa2"
    dim: ClassVar[int] = 5
    coordinates: ClassVar[tuple[str, ...]] = (
        "a: sl(2) generator [[a, b], [c, -a]], diagonal (x stretch with y squeeze, area kept)",
        "b: sl(2) generator, row 1 col 2 (x shear by y)",
        "c: sl(2) generator, row 2 col 1 (y shear by x; c = -b = theta is a rotation by theta)",
        "u1: translation generator, x (normalised units; the matrix shift is V u)",
        "u2: translation generator, y (normalised units, down)",
    )
    has_rotation: ClassVar[bool] = True
    has_translation: ClassVar[bool] = True
    has_scale: ClassVar[bool] = False

    def __init__(self, max_angle_deg: float = 30.0, max_shear: float = 0.2,
                 max_translation: float = 0.3) -> None:
        self.max_angle_deg = float(max_angle_deg)
        self.max_shear = float(max_shear)
        self.max_translation = float(max_translation)

    def exp(self, tau: torch.Tensor) -> torch.Tensor:
        _check_shape(tau, (self.dim,), "Lie-algebra coordinates")
        return sl2_exp(tau)

    def log(self, g: torch.Tensor) -> torch.Tensor:
        _check_shape(g, (3, 3), "group elements")
        return sl2_log(g)

    def sample_linear_and_shift(self, n: int, generator: torch.Generator | None = None
                                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Float64 CPU draws, in this order: angle θ, log-anisotropy s, shear k, shift t₁, t₂.

        Linear part R(θ)·diag(eˢ, e⁻ˢ)·[[1, k], [0, 1]] (determinant 1); t is the matrix translation.
        """
        kw: dict[str, Any] = {"dtype": torch.float64, "device": "cpu"}
        amax = math.radians(self.max_angle_deg)
        theta = uniform(n, -amax, amax, generator, **kw)
        squeeze = uniform(n, -self.max_shear, self.max_shear, generator, **kw)
        shear = uniform(n, -self.max_shear, self.max_shear, generator, **kw)
        t1 = uniform(n, -self.max_translation, self.max_translation, generator, **kw)
        t2 = uniform(n, -self.max_translation, self.max_translation, generator, **kw)
        zero, one = torch.zeros_like(shear), torch.ones_like(shear)
        stretch = torch.diag_embed(torch.stack([squeeze.exp(), (-squeeze).exp()], -1))
        shear_m = torch.stack([torch.stack([one, shear], -1), torch.stack([zero, one], -1)], -2)
        return rotation_matrix(theta) @ stretch @ shear_m, torch.stack([t1, t2], -1)

    def sample_tau(self, n: int, generator: torch.Generator | None = None, *,
                   dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        linear, shift = self.sample_linear_and_shift(n, generator)
        return self.log(homogeneous(linear, shift)).to(dtype=dtype, device=device)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_angle_deg": self.max_angle_deg, "max_shear": self.max_shear,
                "max_translation": self.max_translation,
                "sampling": "linear part R(theta) diag(e^s, e^-s) [[1, k], [0, 1]] with theta uniform in "
                            "[-max_angle, max_angle], s and k uniform in [-max_shear, max_shear], matrix "
                            "translation uniform per axis in [-max_translation, max_translation]; tau = log"}


class SA2Config(GroupConfig):
    """SA(2) = SL(2)⋉R², area-preserving linear maps plus translation (5 parameters: a, b, c, u1, u2)."""

    type: Literal["sl2lab.sa2"] = "sl2lab.sa2"
    max_angle_deg: float = Field(30.0, ge=0, le=120, description="rotation uniform in [-max, max] degrees "
                                 "(at most 120, so that sampled elements stay on log's principal branch)")
    max_shear: float = Field(0.2, ge=0, le=0.5, description="shear k and log-anisotropy s uniform in "
                             "[-max, max]: linear part R(θ) diag(e^s, e^-s) [[1, k], [0, 1]]")
    max_translation: float = Field(0.3, ge=0, le=2, description="matrix translation uniform per axis in "
                                   "[-max, max], normalised coordinates (0.5 = 25% of the width)")

    def build(self) -> SA2Group:
        return SA2Group(self.max_angle_deg, self.max_shear, self.max_translation)


__all__ = ["SA2Config", "SA2Group", "sl2_exp", "sl2_log"]
