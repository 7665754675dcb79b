"""References that learn nothing: k-means on raw pixels and on pixels canonicalised by image moments.

Both fit k-means on the training split and assign the test split, on the same seeded, transformed data
as the learned cells, and report the same metrics where they make sense: ACC / NMI / ARI, invariance
agreement on the same test copies as :func:`mcekit.evaluate.evaluate` (``draw_copies``), and for the
moment canonicaliser its pose errors. There is no reconstruction.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from mcekit.groups.base import LieGroup, act
from mcekit.moments import Arrow


def moment_canonical(images: torch.Tensor, group: LieGroup | None, padding: str = "zeros",
                     arrow: Arrow = "half_plane") -> torch.Tensor:
    """Undo the moment pose: centre of mass to the centre, principal axis vertical (parts the group has)."""
    from mcekit.moments import moment_pose

    out = []
    for i in range(0, images.shape[0], 500):
        x = images[i:i + 500]
        g = moment_pose(x, group, arrow=arrow)
        inverse = group.inverse(g) if group is not None else torch.linalg.inv(g)
        out.append(act(x, inverse, padding))  # type: ignore[arg-type]
    return torch.cat(out)


def features(images: torch.Tensor, kind: str, group: LieGroup | None, padding: str) -> np.ndarray:
    if kind == "moments":
        images = moment_canonical(images, group, padding)
    elif kind != "pixels":
        raise ValueError(f"unknown k-means features '{kind}'; use pixels or moments")
    return images.flatten(1).double().numpy()


def kmeans_cell(config: Any, options: dict[str, Any], threads: int) -> dict[str, Any]:
    """Fit, assign, score. ``config`` is a validated experiment config (only its data part and seed matter)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from threadpoolctl import threadpool_limits

    from mcekit.data.transformed import prepare
    from mcekit.evaluate import cluster_accuracy, draw_copies, pose_errors, same_cluster
    from mcekit.moments import moment_pose

    seed, kind = config.seed, options["features"]
    data = prepare(config.data, seed)
    group, padding = data.group, data.padding
    labels = data.test.labels
    k = options.get("clusters") or (int(labels.max()) + 1 if labels is not None else 10)
    metrics: dict[str, Any] = {}
    with threadpool_limits(threads):
        start = time.perf_counter()
        train = features(data.train.images, kind, group, padding)
        model = KMeans(k, n_init=options.get("n_init", 10), random_state=seed).fit(train)
        fit_seconds = time.perf_counter() - start
        clusters = model.predict(features(data.test.images, kind, group, padding))
        metrics["clusters_used"] = float(len(np.unique(clusters)))
        if labels is not None:
            y = labels.numpy()
            metrics["acc"] = cluster_accuracy(y, clusters)
            metrics["nmi"] = float(normalized_mutual_info_score(y, clusters))
            metrics["ari"] = float(adjusted_rand_score(y, clusters))
        if group is not None:
            test, copies = data.test.images, draw_copies(data.test, group, group, seed, padding)
            for key, images in (("invariance_agreement", copies.redrawn), ("invariance_agreement_moved", copies.moved)):
                metrics[key] = same_cluster(model.predict(features(images, kind, group, padding)), clusters)
            if kind == "moments":
                start = moment_pose(test, group).double()
                predicted = moment_pose(copies.moved, group).double() @ torch.linalg.inv(start)
                errors = pose_errors(group, predicted, copies.h.double(), test.shape[-1])
                metrics.update({key: value for key, value in errors.items() if value == value})  # drop NaN
    n_train = len(data.train)
    metrics.update({"train_seconds": fit_seconds, "epochs": None, "seconds_per_epoch": None,
                    "images_per_second": n_train / fit_seconds if fit_seconds > 0 else None})
    return metrics
