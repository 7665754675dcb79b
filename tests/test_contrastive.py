"""Deformations as samplers with known moments; NT-Xent as a formula; the contrastive term's plumbing."""

from __future__ import annotations

import math

import pytest
import torch

from mcekit.augment import elastic_warp, max_filter3, vary_stroke_width
from mcekit.config import load_config
from mcekit.losses.base import LossContext
from mcekit.losses.contrastive import ContrastiveConfig, nt_xent
from mcekit.model import build_model


def test_stroke_width_change_is_a_dilation_or_an_erosion_of_every_image():
    torch.manual_seed(0)
    x = (torch.rand(200, 1, 12, 12) > 0.7).float()
    same = vary_stroke_width(x, 0.0)
    assert torch.equal(same, x)
    changed = vary_stroke_width(x, 1.0, torch.Generator().manual_seed(0))
    thick = torch.nn.functional.max_pool2d(x, 3, 1, 1)
    thin = -torch.nn.functional.max_pool2d(-x, 3, 1, 1)
    is_thick = (changed == thick).flatten(1).all(1)
    is_thin = (changed == thin).flatten(1).all(1)
    assert (is_thick | is_thin).all()
    # each half the time
    assert 0.4 < is_thick.float().mean() < 0.6


@pytest.mark.parametrize("shape", [(3, 1, 28, 28), (2, 3, 7, 10), (1, 2, 1, 5)])
def test_max_filter_is_the_3x3_max_pool(shape):
    x = torch.randn(shape)   # negative values too: the border is not padded with zeros
    assert torch.equal(max_filter3(x), torch.nn.functional.max_pool2d(x, 3, stride=1, padding=1))
    assert torch.equal(-max_filter3(-x), -torch.nn.functional.max_pool2d(-x, 3, stride=1, padding=1))


def test_elastic_displacement_has_the_requested_spread_at_the_control_points():
    """On a horizontal ramp image the value at a pixel is its x coordinate, so a warp reads off the
    displacement. Pixel 9 of 28 is a control point of the 4×4 grid, where the shift is N(0, pixels²)."""
    n, size, pixels = 4000, 28, 1.5
    ramp = torch.arange(size, dtype=torch.float64).expand(n, 1, size, size).contiguous()
    warped = elastic_warp(ramp, pixels, torch.Generator().manual_seed(0))
    shift = warped[:, 0, 9, 9] - 9
    assert abs(float(shift.mean())) < 0.1
    assert float(shift.std()) == pytest.approx(pixels, rel=0.06)
    assert torch.equal(elastic_warp(ramp[:3], 0.0), ramp[:3])
    # smooth: neighbouring pixels move almost together
    neighbour = warped[:, 0, 9, 10] - 10
    assert float((neighbour - shift).std()) < 0.2 * pixels


@pytest.mark.parametrize("n, m", [(5, 5), (7, 3), (4, 1)])
def test_nt_xent_is_the_cross_entropy_of_finding_the_partner(n, m):
    """Rows 0..m−1 of the anchors pair with the m positives; unpaired anchors are negatives only."""
    torch.manual_seed(0)
    a, b = torch.randn(n, 4), torch.randn(m, 4)
    z = torch.nn.functional.normalize(torch.cat([a, b]), dim=1)
    sim = z @ z.T / 0.5
    expected = 0.0
    queries = list(range(m)) + list(range(n, n + m))
    for i in queries:
        partner = i + n if i < m else i - n
        others = torch.cat([sim[i, :i], sim[i, i + 1:]])
        expected += -(sim[i, partner] - torch.logsumexp(others, 0))
    assert torch.allclose(nt_xent(a, b, 0.5), expected / (2 * m), atol=1e-6)
    # no information (all means equal): log of the 2n − 1 candidates
    same = torch.ones(5, 4)
    assert float(nt_xent(same, same, 0.2)) == pytest.approx(math.log(9), rel=1e-6)
    # perfect pairs far from each other: near zero
    basis = torch.eye(4)
    assert float(nt_xent(basis, basis, 0.05)) < 1e-6


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = load_config("configs/se2_gmm.yaml")
    net = build_model(config.model, (1, 28, 28))
    net.cluster_prior.initialize(torch.randn(50, 10))
    return net


def test_contrastive_copies_go_to_the_first_rows_and_the_rest_are_negatives(model):
    x = torch.rand(8, 1, 28, 28, requires_grad=True)
    out = model(x, sample=False)
    loss = ContrastiveConfig(fraction=0.5).build()
    ctx = LossContext(x, out, model, epoch=0.0, generator=torch.Generator().manual_seed(1))
    result = loss(ctx)
    assert set(result.parts) == {"nt_xent_cluster"}
    assert 0 < float(result.value.detach()) < math.log(11) * 1.5
    (grad,) = torch.autograd.grad(result.value, x, retain_graph=True)
    assert grad[:4].abs().sum() > 0 and grad[4:].abs().sum() > 0  # negatives get pushed away too
    # the copies are the deformed first four aligned images: the same draws give the same copies
    copies = loss.deform(out.aligned[:4].detach(), torch.Generator().manual_seed(1), model.padding)
    positives = model.posteriors_of_aligned(copies)["cluster"].mean
    expected = nt_xent(out.posteriors["cluster"].mean, positives, loss.c.temperature)
    assert torch.allclose(result.value, expected, atol=1e-5)
    result.value.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.encoder.parameters())


def test_cluster_agreement_counts_once_the_mixture_is_fitted():
    torch.manual_seed(0)
    model = build_model(load_config("configs/se2_gmm.yaml").model, (1, 28, 28))
    x = torch.rand(6, 1, 28, 28)
    loss = ContrastiveConfig(agreement=1.0).build()
    before = loss(LossContext(x, model(x, sample=False), model, epoch=0.0,
                              generator=torch.Generator().manual_seed(1)))
    model.cluster_prior.initialize(torch.randn(50, 10))
    out = model(x, sample=False)
    after = loss(LossContext(x, out, model, epoch=0.0, generator=torch.Generator().manual_seed(1)))
    assert "copy_disagreement" not in before.parts
    disagreement = after.parts["copy_disagreement"].detach()
    # −log of a probability that two assignments agree: between 0 and −log of the chance level's floor
    assert 0 <= float(disagreement) < -math.log(1e-8)
    assert torch.allclose(after.value, before.value + disagreement, atol=1e-5)


def test_agreement_needs_a_cluster_prior_but_the_plain_term_does_not():
    from mcekit.config import ConfigError

    normal = ["model.latents.cluster.prior={type: normal}", "model.readout=null",
              "losses=[{type: bce}, {type: contrastive, agreement: 1.0}]"]
    with pytest.raises(ConfigError, match="'contrastive' needs a cluster prior"):
        load_config("configs/se2_gmm.yaml", normal)
    plain = load_config("configs/se2_gmm.yaml", [*normal[:2], "losses=[{type: bce}, {type: contrastive}]"])
    assert plain.losses[1].agreement == 0
