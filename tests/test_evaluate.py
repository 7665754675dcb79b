"""The metrics' own definitions: Hungarian cluster accuracy, and which copies of the test images invariance
agreement and pose recovery are scored on."""

from __future__ import annotations

import math

import numpy as np
import torch
from test_orientation import letter_t

from mcekit.config import load_config
from mcekit.data.transformed import Split
from mcekit.evaluate import cluster_accuracy, draw_copies, evaluate
from mcekit.groups.base import act, pose_components
from mcekit.groups.so2 import SO2Config
from mcekit.model import build_model


def test_cluster_accuracy_matches_clusters_to_labels_one_to_one():
    labels = np.array([0, 0, 1, 1, 2, 2])
    assert cluster_accuracy(labels, np.array([2, 2, 0, 0, 1, 1])) == 1.0
    # two clusters cannot both claim label 0: the best matching gets 4 of 6
    assert cluster_accuracy(labels, np.array([0, 0, 1, 1, 1, 1])) == 4 / 6


def test_redrawn_copies_stay_in_the_data_range_where_moved_copies_leave_it():
    """h·c is another image of the ±90° data; h·x = h·g·c turns up to 180° from upright."""
    so2 = SO2Config(max_angle_deg=90).build()
    canonical = letter_t(200)
    pose = so2.sample(200, torch.Generator().manual_seed(1))
    test = Split(act(canonical, pose), canonical, pose, None)
    copies = draw_copies(test, so2, so2, seed=0, padding="zeros")
    assert copies.redrawn is not None
    assert torch.allclose(copies.redrawn, act(canonical, copies.h), atol=1e-6)
    assert torch.allclose(copies.moved, act(test.images, copies.h), atol=1e-6)
    redrawn_angle = pose_components(copies.h.double())["angle"]
    moved_angle = pose_components(copies.h.double() @ pose.double())["angle"]
    assert redrawn_angle.abs().max() <= math.pi / 2 + 1e-6
    assert (moved_angle.abs() > math.pi / 2).float().mean() > 0.1
    # the same seed draws the same copies
    assert torch.equal(draw_copies(test, so2, so2, seed=0, padding="zeros").h, copies.h)


def test_untransformed_data_score_both_agreements_on_the_same_copies():
    torch.manual_seed(0)
    config = load_config("configs/so2_gmm.yaml", ["model.upright=null"])
    model = build_model(config.model, (1, 28, 28))
    model.cluster_prior.initialize(torch.randn(50, 10))
    canonical = torch.cat([letter_t(6), letter_t(6).flip(-2)])
    test = Split(canonical, canonical, torch.eye(3).expand(12, 3, 3), torch.arange(12) % 2)
    assert draw_copies(test, None, model.group, seed=0, padding="zeros").redrawn is None
    metrics = evaluate(model, test, None, torch.device("cpu"))
    assert metrics["invariance_agreement"] == metrics["invariance_agreement_moved"]
