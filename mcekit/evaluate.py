"""Metrics of METHOD §4 on the test split: clustering, invariance, pose recovery, reconstruction."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from mcekit.data.transformed import Split
from mcekit.groups.base import LieGroup, act, pose_components, wrap_angle
from mcekit.losses.reconstruction import bernoulli_nll
from mcekit.model import MCEVAE


def cluster_accuracy(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Best one-to-one matching of clusters to labels (Hungarian), as a fraction correct."""
    labels, clusters = np.asarray(labels), np.asarray(clusters)
    n = max(labels.max(), clusters.max()) + 1
    table = np.zeros((n, n), dtype=np.int64)
    np.add.at(table, (clusters, labels), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(labels))


@dataclass
class Encodings:
    clusters: np.ndarray          # assignment per image
    stages: dict[str, np.ndarray]  # every fitted stage's assignment (``MCEVAE.assignments``; the last is ``clusters``)
    cluster_means: torch.Tensor   # (N, d) cluster-block point estimates
    pose: torch.Tensor            # (N,3,3) predicted g
    recon_bce: torch.Tensor       # (N,)
    canonical: torch.Tensor       # (N,C,H,W) decoded canonical images


#: the test-time group elements come from Generator(seed + INVARIANCE_SEED_OFFSET), for models and baselines alike
INVARIANCE_SEED_OFFSET = 7919


@dataclass
class Copies:
    """Each test image x = g·c drawn again: ``redrawn`` = h·c, its canonical c moved by a fresh element h of the
    data's range (what invariance to the data's transformations means: another image the data could have held),
    and ``moved`` = h·x, x moved once more (the pair whose known relative transform h scores pose recovery; its
    whole move h·g may lie beyond the data's range, a 6 turned past a quarter turn reading as a 9)."""

    group: LieGroup                      # what h was drawn from
    h: torch.Tensor                      # (N,3,3)
    moved: torch.Tensor
    redrawn: torch.Tensor | None         # None for untransformed data, where c = x and h·c = h·x


def draw_copies(test: Split, data_group: LieGroup | None, model_group: LieGroup, seed: int,
                padding: str) -> Copies:
    """Draw h from the data's range (the model's when the data are untransformed), fixed by the seed."""
    group = data_group if data_group is not None else model_group
    h = group.sample(len(test), torch.Generator().manual_seed(seed + INVARIANCE_SEED_OFFSET), dtype=torch.float32)

    def move(images: torch.Tensor) -> torch.Tensor:
        return torch.cat([act(images[i:i + 500], h[i:i + 500], padding)  # type: ignore[arg-type]
                          for i in range(0, len(test), 500)])

    return Copies(group, h, move(test.images), None if data_group is None else move(test.canonical))


@dataclass
class EvaluationImages:
    """What the metrics encode besides the test images: their ``Copies``, and the learned upright's
    start-pose angles of all three sets where the model has one. They stay the same for a fitted model, so a
    trainer that evaluates every epoch prepares them once."""

    copies: Copies
    upright: torch.Tensor | None         # (N,) start-pose angles of the images (None: no learned upright)
    upright_moved: torch.Tensor | None
    upright_redrawn: torch.Tensor | None


@torch.no_grad()
def evaluation_images(model: MCEVAE, test: Split, data_group: LieGroup | None, seed: int = 0) -> EvaluationImages:
    """Draw the copies and run the learned upright once on every set."""
    copies = draw_copies(test, data_group, model.group, seed, model.padding)
    if model.upright is None:
        return EvaluationImages(copies, None, None, None)
    redrawn = None if copies.redrawn is None else model.upright_angles(copies.redrawn).cpu()
    return EvaluationImages(copies, model.upright_angles(test.images).cpu(), model.upright_angles(copies.moved).cpu(),
                            redrawn)


@torch.no_grad()
def encode_split(model: MCEVAE, images: torch.Tensor, device: torch.device, batch_size: int = 500,
                 kmeans_clusters: int = 10, seed: int = 0, upright: torch.Tensor | None = None) -> Encodings:
    """``upright``: the learned upright's start-pose angles of ``images`` where already known."""
    model.eval()
    prior = model.cluster_prior
    stages: dict[str, list[torch.Tensor]] = {}
    means, poses, bces, canon = [], [], [], []
    for i in range(0, images.shape[0], batch_size):
        x = images[i:i + batch_size].to(device)
        out = model(x, sample=False, upright_angle=None if upright is None else upright[i:i + batch_size])
        post = out.posteriors["cluster"]
        if prior.is_cluster:
            for stage, assigned in model.assignments(post, x, out.aligned).items():
                stages.setdefault(stage, []).append(assigned.cpu())
        means.append(post.mean.cpu())
        poses.append(out.pose.cpu())
        bces.append(bernoulli_nll(out.recon, x).cpu())
        canon.append(out.canonical.cpu())
    mean = torch.cat(means)
    if stages:
        by_stage = {stage: torch.cat(parts).numpy() for stage, parts in stages.items()}
    else:  # a continuous cluster latent (the paper's set-up): k-means on it
        from sklearn.cluster import KMeans

        by_stage = {"kmeans": KMeans(kmeans_clusters, n_init=10, random_state=seed).fit_predict(mean.double().numpy())}
    return Encodings(list(by_stage.values())[-1], by_stage, mean, torch.cat(poses), torch.cat(bces), torch.cat(canon))


def pose_errors(group: LieGroup, predicted_rel: torch.Tensor, true_rel: torch.Tensor,
                image_size: int) -> dict[str, float | None]:
    """Compare predicted relative transforms g(h·x)·g(x)⁻¹ with the true h (drawn from ``group``).

    Rotation, translation and log-scale errors are reported where the group has that part (None
    elsewhere); the Frobenius distance of the relative error to the identity always.
    """
    pred, true = pose_components(predicted_rel.double()), pose_components(true_rel.double())
    out: dict[str, float | None] = {}
    d_angle = wrap_angle(pred["angle"] - true["angle"]).abs()
    out["pose_angle_error_deg"] = float(torch.rad2deg(d_angle).median())
    a, b = pred["angle"], true["angle"]
    num = (torch.sin(a - circular_mean(a)) * torch.sin(b - circular_mean(b))).sum()
    den = torch.sqrt((torch.sin(a - circular_mean(a)) ** 2).sum() * (torch.sin(b - circular_mean(b)) ** 2).sum())
    out["pose_angle_circular_corr"] = float(num / den) if den > 0 else float("nan")
    pixels = (pred["translation"] - true["translation"]).norm(dim=-1) * image_size / 2
    out["pose_translation_error_px"] = float(pixels.median())
    out["pose_log_scale_error"] = float((pred["log_scale"] - true["log_scale"]).abs().median())
    rel = torch.linalg.solve(predicted_rel.double(), true_rel.double())
    out["pose_frobenius_error"] = float((rel - torch.eye(3, dtype=rel.dtype)).flatten(1).norm(dim=1).median())
    parts = {"pose_angle_error_deg": group.has_rotation, "pose_angle_circular_corr": group.has_rotation,
             "pose_translation_error_px": group.has_translation, "pose_log_scale_error": group.has_scale}
    return {k: (None if not parts.get(k, True) else v) for k, v in out.items()}


def circular_mean(angle: torch.Tensor) -> torch.Tensor:
    return torch.atan2(torch.sin(angle).mean(), torch.cos(angle).mean())


def default_cluster_count(test: Split) -> int:
    """k-means clusters for a continuous cluster latent: the number of label values, else ten."""
    return int(torch.unique(test.labels).numel()) if test.labels is not None else 10


@torch.no_grad()
def evaluate(model: MCEVAE, test: Split, data_group: LieGroup | None, device: torch.device, seed: int = 0,
             n_clusters: int | None = None, prepared: EvaluationImages | None = None) -> dict[str, float | None]:
    """All label-using metrics live here and only here. ``prepared``: ``evaluation_images`` of the same test
    split, data group and seed, when already drawn."""
    model.eval()
    prepared = evaluation_images(model, test, data_group, seed) if prepared is None else prepared
    k = n_clusters or model.cluster_prior.n_clusters or default_cluster_count(test)
    base = encode_split(model, test.images, device, kmeans_clusters=k, seed=seed, upright=prepared.upright)
    metrics: dict[str, float | None] = {"clusters_used": float(len(np.unique(base.clusters)))}
    if test.labels is not None:
        labels = test.labels.numpy()
        metrics["acc"] = cluster_accuracy(labels, base.clusters)
        metrics["nmi"] = float(normalized_mutual_info_score(labels, base.clusters))
        metrics["ari"] = float(adjusted_rand_score(labels, base.clusters))
        # the earlier stages' accuracies, where a later one assigns the clusters
        for stage, name in (("prior", "acc_prior"), ("neighbours", "acc_neighbours")):
            if stage in base.stages and stage != list(base.stages)[-1]:
                metrics[name] = cluster_accuracy(labels, base.stages[stage])
    copies = prepared.copies
    moved = encode_split(model, copies.moved, device, kmeans_clusters=k, seed=seed, upright=prepared.upright_moved)
    redrawn = moved if copies.redrawn is None else encode_split(model, copies.redrawn, device, kmeans_clusters=k,
                                                                seed=seed, upright=prepared.upright_redrawn)
    agreement = same_cluster if model.cluster_prior.is_cluster else cluster_agreement_after_matching
    metrics["invariance_agreement"] = agreement(base.clusters, redrawn.clusters)
    metrics["invariance_agreement_moved"] = agreement(base.clusters, moved.clusters)
    predicted_rel = moved.pose.double() @ torch.linalg.inv(base.pose.double())
    metrics.update(pose_errors(copies.group, predicted_rel, copies.h.double(), test.images.shape[-1]))
    metrics["recon_bce"] = float(base.recon_bce.mean())
    if not torch.equal(test.canonical, test.images):
        metrics["canonical_bce"] = float(bernoulli_nll(base.canonical, test.canonical).mean())
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}


def same_cluster(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of images given the same cluster in both labelings."""
    return float((a == b).mean())


def cluster_agreement_after_matching(a: np.ndarray, b: np.ndarray) -> float:
    """Agreement of two independent k-means labelings, after matching their cluster ids."""
    return cluster_accuracy(a, b)
