"""Unsupervised invariance (METHOD §3): K random copies x'_k = act(x, h_k), encoded in one batched pass."""

from __future__ import annotations

from typing import Literal

import torch
from einops import repeat
from pydantic import Field

from mcekit.groups.base import LieGroup, act, pose_components
from mcekit.losses.base import Loss, LossConfig, LossContext, LossResult, ramp
from mcekit.losses.reconstruction import bernoulli_nll
from mcekit.priors.base import Posterior
from mcekit.registry import losses


def repeat_posterior(post: Posterior, k: int, n: int | None = None) -> Posterior:
    """The first ``n`` rows (all by default), tiled ``k`` times like the copies."""
    tile = lambda t: repeat(t[:n], "b ... -> (k b) ...", k=k)  # noqa: E731
    return Posterior(tile(post.mean), {name: tile(v) for name, v in post.params.items()})


def pose_discrepancy(group: LieGroup, residual: torch.Tensor) -> torch.Tensor:
    """‖log r‖² per element; ‖r − I‖²_F where the group's log is undefined (an affine residual past the
    principal branch early in training), with the log fed a safe input there so no NaN reaches the gradient."""
    with torch.no_grad():
        defined = torch.isfinite(group.log(residual)).all(-1)
    eye = torch.eye(3, dtype=residual.dtype, device=residual.device).expand_as(residual)
    safe = torch.where(defined[:, None, None], residual, eye)
    fallback = (residual - eye).pow(2).sum((-2, -1))
    return torch.where(defined, group.log(safe).pow(2).sum(-1), fallback)


class InvarianceLoss(Loss):
    def __init__(self, config: InvarianceConfig) -> None:
        super().__init__("invariance", config.weight)
        self.c = config

    @property
    def settled_epoch(self) -> float:
        return self.c.start_epoch + self.c.warmup_epochs

    def __call__(self, ctx: LossContext) -> LossResult:
        c, model, x, out = self.c, ctx.model, ctx.images, ctx.out
        factor = ramp(ctx.epoch, c.warmup_epochs, c.start_epoch)
        zero = torch.zeros((), device=x.device)
        if factor == 0.0:
            return LossResult(zero, {})
        b = max(1, round(c.fraction * x.shape[0]))  # batches are shuffled: the first b are a random subsample
        h = model.group.sample(b * c.samples, ctx.generator, dtype=x.dtype, device=x.device)
        x_rep = repeat(x[:b], "b ... -> (k b) ...", k=c.samples)
        moved = act(x_rep, h, model.padding)
        upright = None
        if model.upright is not None and model.upright.copies_from_original:
            # h·x stands upright when turned by the original's upright angle plus h's own turn
            start = repeat(pose_components(out.pose_init[:b])["angle"], "b -> (k b)", k=c.samples)
            upright = (start + pose_components(h)["angle"]).detach()
        with torch.set_grad_enabled(c.copy_gradients and torch.is_grad_enabled()):
            enc = model.encode(moved, upright)
            g_moved = model.pose_of(enc)
        parts: dict[str, torch.Tensor] = {}
        total = zero
        for block, weight in (("cluster", c.cluster), ("style", c.style)):
            if weight > 0:
                prior = model.priors[block]
                term = prior.consistency(repeat_posterior(out.posteriors[block], c.samples, b),
                                         enc.posteriors[block]).mean()
                parts[f"inv_{block}"] = term
                total = total + weight * term
        if c.canonical > 0:
            canonical = repeat(out.canonical[:b], "b ... -> (k b) ...", k=c.samples)
            term = bernoulli_nll(act(canonical, g_moved, model.padding), moved).mean()
            parts["inv_canonical"] = term
            total = total + c.canonical * term
        if c.pose > 0 and model.group.dim > 0:
            g = repeat(out.pose[:b], "b i j -> (k b) i j", k=c.samples)
            residual = model.group.compose(model.group.inverse(g_moved), model.group.compose(h, g))
            term = pose_discrepancy(model.group, residual).mean()
            parts["inv_pose"] = term
            total = total + c.pose * term
        return LossResult(self.weight * factor * total, parts)


@losses.register
class InvarianceConfig(LossConfig):
    """Unsupervised invariance: K random group elements per image, one batched encoder pass, four terms."""

    type: Literal["invariance"] = "invariance"
    samples: int = Field(2, ge=1, le=64, description="random copies per image (K)")
    fraction: float = Field(1.0, gt=0, le=1, description=(
        "share of each batch that gets copies (a random subsample: batches are shuffled); less is cheaper"))
    cluster: float = Field(1.0, ge=0, description="weight of cluster-posterior consistency")
    style: float = Field(1.0, ge=0, description="weight of style-mean consistency")
    canonical: float = Field(1.0, ge=0, description="weight of 'canonical of x moved by pose of x′ explains x′'")
    pose: float = Field(1.0, ge=0, description="weight of pose equivariance ‖log(g(x′)⁻¹ h g(x))‖²")
    copy_gradients: bool = Field(True, description=(
        "differentiate through the copies' encoding too; false: the copies are fixed targets for the "
        "image's own pass (as in the paper's protocol), which saves their backward pass"))
    start_epoch: float = Field(0.0, ge=0, description="epoch at which the term switches on")
    warmup_epochs: float = Field(0.0, ge=0, description="linear ramp after start_epoch")

    def build(self) -> Loss:
        return InvarianceLoss(self)
