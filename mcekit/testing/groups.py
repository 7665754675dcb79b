"""Property checks every :class:`~mcekit.groups.base.LieGroup` must pass, for mcekit and for plugins.

    from mcekit.testing import check_group
    check_group(MyGroupConfig().build())        # raises AssertionError naming the failed property

Also :func:`to_torchvision_affine`, the documented conversion from a group element in mcekit's
normalised coordinates to the arguments of ``torchvision.transforms.functional.affine``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import torch

from mcekit.groups.base import LieGroup, act

F64 = torch.float64
F32 = torch.float32

#: magnitudes of the random principal-branch τ: exact identity, the series region, both sides of the
#: usual series threshold (0.1) and moderate elements
_MAGNITUDES = (0.0, 1e-30, 1e-12, 1e-8, 1e-4, 0.01, 0.05, 0.0999, 0.1001, 0.3, 1.0)


class _Checker:
    def __init__(self, group: LieGroup, seed: int) -> None:
        self.group = group
        self.label = f"check_group({getattr(group, 'name', type(group).__name__)!r})"
        self.seed = seed

    def gen(self, offset: int = 0) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + offset)

    def fail(self, message: str) -> None:
        raise AssertionError(f"{self.label}: {message}")

    def require(self, condition: bool, message: str) -> None:
        if not condition:
            self.fail(message)

    def close(self, what: str, actual: torch.Tensor, expected: torch.Tensor, atol: float,
              rtol: float = 0.0) -> None:
        if actual.shape != expected.shape:
            self.fail(f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
        if actual.numel() == 0:
            return
        a, e = actual.detach().to(F64), expected.detach().to(F64)
        err = (a - e).abs()
        bad = ~(err <= atol + rtol * e.abs())  # NaN counts as bad
        if bool(bad.any()):
            worst = torch.where(torch.isnan(err), torch.full_like(err, math.inf), err)
            i = int(worst.flatten(1).amax(1).argmax()) if a.ndim > 1 else int(worst.argmax())
            self.fail(f"{what}: max |difference| {float(worst.max()):.3g} exceeds tolerance "
                      f"(atol {atol:g}, rtol {rtol:g}); worst batch item {i}:\n"
                      f"  got      {a[i].tolist()}\n  expected {e[i].tolist()}")

    def finite(self, what: str, x: torch.Tensor | None) -> None:
        if x is None:
            self.fail(f"{what}: no gradient reached the input (is the output detached?)")
        elif not bool(torch.isfinite(x).all()):
            self.fail(f"{what}: non-finite values {x.detach().tolist()}")


def check_group(group: LieGroup, *, seed: int = 0) -> None:
    """Check the LieGroup contract on random elements and coordinates; raise AssertionError on failure.

    Verified (float64 unless stated): metadata and ``describe()``; ``sample``/``sample_tau`` shapes,
    dtypes and reproducibility; exp(0) = I, last row [0, 0, 1], det > 0; log(exp(τ)) = τ on the
    principal branch and exp(log(g)) = g (atol 1e-9; float32 at 1e-4); compose = matrix product,
    associativity, inverse = ``torch.linalg.inv`` and g∘g⁻¹ = I; gradients of exp and log finite at
    τ = 0 in float32 and float64, the Jacobian of log∘exp at 0 equal to I, ``gradcheck`` of exp and
    log; and that act(act(x, g), h) ≈ act(x, h∘g) on a smooth 64×64 image. Checks that mean nothing
    for dim 0 are skipped.
    """
    c = _Checker(group, seed)
    with torch.random.fork_rng(devices=[]):  # gradcheck's random projections must not disturb the caller
        torch.manual_seed(seed)
        _check_interface(c)
        _check_sampling(c)
        _check_exp(c)
        if group.dim > 0:
            _check_log(c)
        _check_compose_inverse(c)
        if group.dim > 0:
            _check_gradients(c)
        _check_action(c)


# -- individual properties ---------------------------------------------------------------------------


def _check_interface(c: _Checker) -> None:
    g = c.group
    c.require(isinstance(g, LieGroup), f"{type(g).__name__} is not a mcekit.groups.base.LieGroup")
    c.require(isinstance(g.dim, int) and g.dim >= 0, f"dim must be a non-negative int, got {g.dim!r}")
    c.require(len(g.coordinates) == g.dim,
              f"coordinates has {len(g.coordinates)} entries for dim {g.dim}: {g.coordinates!r}")
    for flag in ("has_rotation", "has_translation", "has_scale"):
        c.require(isinstance(getattr(g, flag), bool), f"{flag} must be a bool")
    d = g.describe()
    c.require(isinstance(d, dict), f"describe() must return a dict, got {type(d).__name__}")
    for key in ("name", "dim", "coordinates"):
        c.require(key in d, f"describe() lacks '{key}': {d!r}")
    c.require(d["name"] == g.name and d["dim"] == g.dim and list(d["coordinates"]) == list(g.coordinates),
              f"describe() disagrees with the class attributes: {d!r}")
    try:
        json.dumps(d)
    except TypeError as exc:
        c.fail(f"describe() is not JSON-serialisable ({exc})")


def _check_sampling(c: _Checker) -> None:
    g, n = c.group, 16
    for dtype in (F32, F64):
        tau = g.sample_tau(n, c.gen(), dtype=dtype)
        c.require(tau.shape == (n, g.dim) and tau.dtype == dtype,
                  f"sample_tau({n}, dtype={dtype}) gave shape {tuple(tau.shape)} dtype {tau.dtype}")
        c.require(bool(torch.isfinite(tau).all()), f"sample_tau gave non-finite values: {tau.tolist()}")
        els = g.sample(n, c.gen(), dtype=dtype)
        c.require(els.shape == (n, 3, 3) and els.dtype == dtype,
                  f"sample({n}, dtype={dtype}) gave shape {tuple(els.shape)} dtype {els.dtype}")
    c.close("sample_tau with the same seed twice", g.sample_tau(n, c.gen(), dtype=F64),
            g.sample_tau(n, c.gen(), dtype=F64), atol=0.0)
    c.close("sample(float32) vs sample(float64) from the same seed (draw in float64 on the CPU generator, "
            "e.g. with mcekit.groups.base.uniform, then cast)", g.sample(n, c.gen(), dtype=F32),
            g.sample(n, c.gen(), dtype=F64), atol=1e-5, rtol=1e-5)
    a, b = g.sample_tau(n, c.gen(), dtype=F64), g.sample_tau(n, c.gen(1), dtype=F64)
    if g.dim > 0 and not torch.equal(a, a[:1].expand_as(a)):  # a range of zero width draws constants
        c.require(not torch.equal(a, b), "sample_tau ignores its generator (two seeds gave equal draws)")


def _random_tau(c: _Checker, dtype: torch.dtype) -> torch.Tensor:
    """Random principal-branch coordinates: random unit directions times each of _MAGNITUDES, plus samples."""
    g = c.group
    directions = torch.randn(len(_MAGNITUDES), g.dim, generator=c.gen(2), dtype=F64)
    directions = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-300)
    tau = directions * torch.tensor(_MAGNITUDES, dtype=F64)[:, None]
    return torch.cat([tau, g.sample_tau(16, c.gen(3), dtype=F64)]).to(dtype)


def _check_exp(c: _Checker) -> None:
    g, n = c.group, 5
    for dtype, atol in ((F32, 1e-6), (F64, 1e-12)):
        out = g.exp(torch.zeros(n, g.dim, dtype=dtype))
        c.require(out.shape == (n, 3, 3) and out.dtype == dtype,
                  f"exp of ({n}, {g.dim}) {dtype} gave shape {tuple(out.shape)} dtype {out.dtype}")
        c.close(f"exp(0) = I ({dtype})", out, torch.eye(3, dtype=dtype).expand(n, 3, 3), atol=atol)
    els = torch.cat([g.exp(_random_tau(c, F64)), g.sample(16, c.gen(), dtype=F64)])
    c.require(bool(torch.isfinite(els).all()), "exp gave non-finite elements")
    last = torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand(els.shape[0], 3)
    c.close("last row of exp(tau) and of samples is [0, 0, 1]", els[:, 2, :], last, atol=1e-12)
    det = torch.linalg.det(els)
    c.require(bool((det > 0).all()), f"elements must preserve orientation (det > 0); got det {det.tolist()}")


def _check_log(c: _Checker) -> None:
    g = c.group
    tau = _random_tau(c, F64)
    c.close("log(exp(tau)) = tau on the principal branch (float64)", g.log(g.exp(tau)), tau, atol=1e-9)
    els = g.sample(16, c.gen(4), dtype=F64)
    c.close("exp(log(g)) = g for sampled g (float64)", g.exp(g.log(els)), els, atol=1e-9)
    out = g.log(els)
    c.require(out.shape == (16, g.dim) and out.dtype == F64,
              f"log of (16, 3, 3) float64 gave shape {tuple(out.shape)} dtype {out.dtype}")
    c.close("log(exp(tau)) = tau (float32)", g.log(g.exp(tau.float())), tau.float(), atol=1e-4, rtol=1e-4)
    c.close("exp(log(g)) = g (float32)", g.exp(g.log(els.float())), els.float(), atol=1e-4, rtol=1e-4)


def _check_compose_inverse(c: _Checker) -> None:
    g, n = c.group, 16
    a, b, d = (g.sample(n, c.gen(k), dtype=F64) for k in (5, 6, 7))
    c.close("compose(g, h) = g @ h", g.compose(a, b), a @ b, atol=1e-12, rtol=1e-12)
    c.close("compose is associative", g.compose(g.compose(a, b), d), g.compose(a, g.compose(b, d)),
            atol=1e-10, rtol=1e-10)
    eye = torch.eye(3, dtype=F64).expand(n, 3, 3)
    c.close("compose(g, identity) = g", g.compose(a, g.identity(n, dtype=F64)), a, atol=1e-12)
    inv = g.inverse(a)
    c.close("inverse(g) = torch.linalg.inv(g)", inv, torch.linalg.inv(a), atol=1e-10, rtol=1e-10)
    c.close("compose(g, inverse(g)) = I", g.compose(a, inv), eye, atol=1e-10)
    c.close("compose(inverse(g), g) = I", g.compose(inv, a), eye, atol=1e-10)
    if g.dim > 0:
        tau = g.sample_tau(n, c.gen(8), dtype=F64)
        c.close("inverse(exp(tau)) = exp(-tau)", g.inverse(g.exp(tau)), g.exp(-tau), atol=1e-10, rtol=1e-10)


def _grad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor | None:
    x = x.detach().clone().requires_grad_(True)
    y = fn(x)
    if not y.requires_grad:  # the function cut the graph: reported by the caller as "no gradient"
        return None
    weights = torch.linspace(-1.0, 2.0, y.numel(), dtype=y.dtype).reshape(y.shape)
    scalar = (y * weights).sum() + (y * y).sum()
    (grad,) = torch.autograd.grad(scalar, x, allow_unused=True)
    return grad


def _worst_row(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> str:
    """Locate the first input row whose analytical and numerical Jacobians disagree, for the message."""
    for i in range(x.shape[0]):
        row = x[i:i + 1].clone().requires_grad_(True)
        if not torch.autograd.gradcheck(fn, (row,), raise_exception=False):
            return f"at input {x[i].tolist()}"
    return "(on the batch, not on any single row)"


def _check_gradients(c: _Checker) -> None:
    g, n = c.group, 3
    for dtype in (F32, F64):
        zero = torch.zeros(n, g.dim, dtype=dtype)
        tiny = 1e-30 * torch.randn(n, g.dim, generator=c.gen(9), dtype=F64).to(dtype)
        for name, tau in (("0", zero), ("1e-30·randn", tiny)):
            c.finite(f"gradient of a scalar function of exp(tau) at tau = {name} ({dtype})",
                     _grad(g.exp, tau))
            c.finite(f"gradient of a scalar function of log(exp(tau)) at tau = {name} ({dtype})",
                     _grad(lambda t: g.log(g.exp(t)), tau))
        c.finite(f"gradient of a scalar function of log(g) at g = I ({dtype})",
                 _grad(g.log, g.identity(n, dtype=dtype)))
    # the Jacobian of exp at 0 holds the generators: they must be independent
    jac = torch.autograd.functional.jacobian(lambda t: g.exp(t[None])[0], torch.zeros(g.dim, dtype=F64))
    rank = int(torch.linalg.matrix_rank(jac.reshape(9, g.dim)))
    c.require(rank == g.dim, f"the generators d exp/d tau at 0 have rank {rank}, expected dim {g.dim}")
    for dtype, atol in ((F64, 1e-9), (F32, 1e-5)):
        jl = torch.autograd.functional.jacobian(lambda t: g.log(g.exp(t[None]))[0],
                                                torch.zeros(g.dim, dtype=dtype))
        c.close(f"Jacobian of log(exp(tau)) at tau = 0 is the identity ({dtype})", jl,
                torch.eye(g.dim, dtype=dtype), atol=atol)
    # exactly zero, one coordinate at a time (e.g. θ = 0 with u ≠ 0), all but one, random and sampled
    one_hot = 0.3 * torch.eye(g.dim, dtype=F64)
    rand = 0.3 * torch.randn(g.dim, g.dim, generator=c.gen(10), dtype=F64)
    tau = torch.cat([torch.zeros(1, g.dim, dtype=F64), one_hot, rand * (1 - torch.eye(g.dim, dtype=F64)),
                     _random_tau(c, F64)])
    for fn, x, what in ((g.exp, tau, "exp"), (g.log, g.exp(tau).detach(), "log")):
        if not torch.autograd.gradcheck(fn, (x.clone().requires_grad_(True),), raise_exception=False,
                                        fast_mode=True):
            c.fail(f"torch.autograd.gradcheck of {what} failed (analytical and numerical Jacobians differ) "
                   f"{_worst_row(fn, x)}")


# -- the action --------------------------------------------------------------------------------------


def blob_image(n: int = 1, size: int = 64, *, seed: int = 0, dtype: torch.dtype = F64) -> torch.Tensor:
    """(n, 1, size, size) smooth test images with peak 1: four Gaussian blobs of σ = 0.2 (6.4 px at 64 px)
    centred within ±0.3 of the centre, so the image is below 0.01 at the border."""
    gen = torch.Generator().manual_seed(seed)
    centres = (torch.rand(n, 4, 2, generator=gen, dtype=F64) - 0.5) * 0.6
    heights = 0.5 + 0.5 * torch.rand(n, 4, generator=gen, dtype=F64)
    axis = (torch.arange(size, dtype=F64) * 2 + 1) / size - 1  # pixel centres, align_corners=False
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    d2 = ((xx[None, None] - centres[..., 0, None, None]) ** 2
          + (yy[None, None] - centres[..., 1, None, None]) ** 2)
    img = (heights[..., None, None] * torch.exp(-d2 / (2 * 0.2**2))).sum(1, keepdim=True)
    img = img / img.amax(dim=(2, 3), keepdim=True)
    return img.to(dtype)


def _interior_mask(h: torch.Tensor, size: int, margin_px: float = 2.0) -> torch.Tensor:
    """Output pixels p (B, size, size) off the border whose pre-image h⁻¹p lies well inside the frame."""
    axis = (torch.arange(size, dtype=F64) * 2 + 1) / size - 1
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    pts = torch.stack([xx, yy, torch.ones_like(xx)], -1).reshape(-1, 3)
    q = pts @ torch.linalg.inv(h.to(F64)).transpose(1, 2)  # (B, P, 3)
    inner = 1 - 2 * margin_px / size
    ok = (q[..., 0].abs() <= inner) & (q[..., 1].abs() <= inner)
    ok &= (pts[:, 0].abs() <= inner) & (pts[:, 1].abs() <= inner)
    return ok.reshape(-1, size, size)


def _check_action(c: _Checker) -> None:
    g, n, size = c.group, 8, 64
    x = blob_image(n, size, seed=c.seed)
    c.close("act(x, identity) = x", act(x, g.identity(n, dtype=F64)), x, atol=1e-9)
    cases = [("sampled elements", g.sample(n, c.gen(12), dtype=F64), g.sample(n, c.gen(13), dtype=F64))]
    if g.dim > 0:
        small = [g.exp(0.25 * g.sample_tau(n, c.gen(k), dtype=F64)) for k in (14, 15)]
        cases.append(("elements exp(tau/4) near the identity", small[0], small[1]))
    for what, a, b in cases:
        two_steps = act(act(x, a), b)
        one_step = act(x, g.compose(b, a))
        mask = _interior_mask(b, size)[:, None]
        c.require(int(mask.sum()) >= 0.05 * mask.numel() or what == "sampled elements",
                  f"act check on {what}: too few interior pixels to compare ({int(mask.sum())})")
        err = (two_steps - one_step).abs()[mask]
        if err.numel() and float(err.max()) > 0.05:
            c.fail(f"act(act(x, g), h) differs from act(x, compose(h, g)) on {what}: max |difference| "
                   f"{float(err.max()):.3g} over {err.numel()} interior pixels (tolerance 0.05 for bilinear "
                   "resampling of a smooth image of peak ≈ 1); is the action convention (g·x)(p) = x(g⁻¹p)?")


# -- torchvision -------------------------------------------------------------------------------------


def to_torchvision_affine(g: torch.Tensor, size: int | tuple[int, int]) -> dict[str, Any]:
    """Arguments of ``torchvision.transforms.functional.affine`` that move an image like ``act(x, g)``.

    ``g`` is one element (3, 3) or (1, 3, 3) in mcekit's normalised coordinates; ``size`` is the image
    size, ``N`` or ``(H, W)``. Both libraries use the same convention (y down, content at p moves to
    g·p, positive angle = clockwise on screen, rotation about the image centre, bilinear sampling at
    pixel centres), so with S = diag(W/2, H/2) the pixel-space element is S·g·S⁻¹:

    - ``angle`` = degrees(θ) and ``scale`` = eˢ from the pixel-space linear part, which must be a
      similarity (rotation × uniform scale) — for a non-square image only if g has no rotation;
    - ``translate`` = (t₁·W/2, t₂·H/2) pixels (fractional; the tensor path accepts floats);
    - ``shear`` = (0, 0), ``center`` = None (the image centre).

    Pass ``interpolation=InterpolationMode.BILINEAR`` and the default ``fill`` (0 = zero padding).
    Raises ValueError for elements torchvision's (angle, translate, scale) cannot express.
    """
    if g.ndim == 3:
        if g.shape[0] != 1:
            raise ValueError(f"to_torchvision_affine converts one element, got a batch of {g.shape[0]}")
        g = g[0]
    if g.shape != (3, 3):
        raise ValueError(f"expected a (3, 3) element, got {tuple(g.shape)}")
    h, w = (size, size) if isinstance(size, int) else size
    m = g.detach().to(device="cpu", dtype=F64)
    half = torch.tensor([w / 2, h / 2], dtype=F64)
    linear = m[:2, :2] * half[:, None] / half[None, :]  # S A S⁻¹
    (a, b), (cc, d) = linear.tolist()
    scale = math.hypot(a, cc)
    if abs(a - d) > 1e-6 * scale or abs(b + cc) > 1e-6 * scale:
        raise ValueError("torchvision's affine(angle, translate, scale) only expresses rotation × uniform "
                         f"scale in pixel space; this element's pixel-space linear part is {linear.tolist()}")
    tx, ty = (m[:2, 2] * half).tolist()
    return {"angle": math.degrees(math.atan2(cc, a)), "translate": [tx, ty], "scale": scale,
            "shear": [0.0, 0.0]}
