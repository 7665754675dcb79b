"""How far clustering gets once the transformation is removed: no learning, oracles included.

    python -m benchmarks.ceiling [--seeds 0 1 2] [--datasets so2 se2 so2_full] [--out FILE]

For each dataset (the digits of METHOD §4 moved as in ``benchmarks/targets.yaml``) and seed, the 4,000
training images are clustered from five kinds of pixels:

- ``raw`` — the moved images as they are;
- ``moments`` — moment-canonicalised (centre of mass to the centre, principal axis vertical), what
  mcekit's ``pose_init: moments`` starts from;
- ``moments, flips undone (oracle)`` — the same, with the images whose axis landed upside down (relative
  to the moment frame of their own untransformed digit, known from the true pose) turned by 180°:
  what the 180° ambiguity of the axis costs;
- ``moments, third-moment arrow`` — moment-canonicalised with the axis's arrow from the third moment
  (``pose_init: moments_skew``): the same shape gets the same canonical at any angle;
- ``true canonical (oracle)`` — the untransformed digits: the best any canonicaliser can do;

each by k-means (10 restarts) and by a graph method (PCA to 50 dimensions, 10-nearest-neighbour spectral
embedding to 10 dimensions, Gaussian mixture). Reported: ACC on those same 4,000 images (mean ± std over
seeds). Labels are used only to score. Writes ``benchmarks/results/ceiling.md``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import publish

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "ceiling.md"
BASE_CONFIG = ROOT / "configs" / "se2_gmm.yaml"
#: the data's group per dataset name, as in benchmarks/targets.yaml
DATASETS: dict[str, dict[str, Any]] = {
    "so2": {"type": "so2", "max_angle_deg": 90},
    "se2": {"type": "se2", "max_angle_deg": 90, "max_translation": 0.5},
    "so2_full": {"type": "so2", "max_angle_deg": 180},
}
FEATURES = ("raw", "moments", "moments, flips undone (oracle)", "moments, third-moment arrow",
            "true canonical (oracle)")
CLUSTERERS = ("k-means", "spectral + GMM")


def dataset_config(dataset: str, seed: int, overrides: tuple[str, ...] = ()) -> Any:
    """The shipped se2 config with the data moved as ``dataset``, the given seed and ``--set`` overrides."""
    from mcekit.config import load_config

    group = ", ".join(f"{k}: {v}" for k, v in DATASETS[dataset].items())
    return load_config(BASE_CONFIG, [f"data.transform.group={{{group}}}", f"seed={seed}", *overrides])


def flipped(images: Any, canonical: Any, true_pose: Any) -> Any:
    """Which moment canonicals are upside down relative to the moment frame of the untransformed digit."""
    import torch

    from mcekit.groups.base import pose_components
    from mcekit.moments import moment_pose

    moved, original, true = (pose_components(g)["angle"] for g in (moment_pose(images), moment_pose(canonical),
                                                                    true_pose))
    gap = moved - true - original
    gap = torch.remainder(gap + math.pi, 2 * math.pi) - math.pi
    return gap.abs() > math.pi / 2


def feature_sets(split: Any) -> dict[str, Any]:
    from mcekit.bench.baselines import moment_canonical
    from mcekit.orientation import half_turn

    upright = moment_canonical(split.images, None)
    undone = upright.clone()
    flip = flipped(split.images, split.canonical, split.pose)
    undone[flip] = half_turn(upright[flip])
    skew = moment_canonical(split.images, None, arrow="skew")
    return dict(zip(FEATURES, (split.images, upright, undone, skew, split.canonical), strict=True))


def cluster(features: Any, method: str, seed: int, k: int = 10) -> Any:
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.manifold import SpectralEmbedding
    from sklearn.mixture import GaussianMixture

    x = np.asarray(features.flatten(1).double().numpy())
    if method == "k-means":
        return KMeans(k, n_init=10, random_state=seed).fit_predict(x)
    reduced = PCA(min(50, x.shape[1]), random_state=seed).fit_transform(x)
    embedded = SpectralEmbedding(n_components=k, affinity="nearest_neighbors", n_neighbors=10,
                                 random_state=seed).fit_transform(reduced)
    return GaussianMixture(k, n_init=3, random_state=seed).fit(embedded).predict(embedded)


def measure(datasets: list[str], seeds: list[int]) -> dict[str, Any]:
    from tqdm import tqdm

    from mcekit.data.transformed import prepare
    from mcekit.evaluate import cluster_accuracy

    acc: dict[tuple[str, str, str], list[float]] = {}
    flips: dict[str, list[float]] = {}
    jobs = [(d, s) for d in datasets for s in seeds]
    for dataset, seed in tqdm(jobs, desc="ceiling", unit="split"):
        config = dataset_config(dataset, seed)
        split = prepare(config.data, seed).train
        labels = split.labels.numpy()
        flips.setdefault(dataset, []).append(float(flipped(split.images, split.canonical, split.pose).float().mean()))
        for name, features in feature_sets(split).items():
            for method in CLUSTERERS:
                acc.setdefault((dataset, name, method), []).append(
                    cluster_accuracy(labels, cluster(features, method, seed)))
    return {"acc": acc, "flips": flips, "datasets": datasets, "seeds": seeds}


def _mean_std(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ± {spread:.3f}"


def markdown(result: dict[str, Any]) -> str:
    import sklearn
    import torch

    seeds = ", ".join(str(s) for s in result["seeds"])
    lines = [
        "# Clustering ceiling: the digits with the transformation removed, no learning", "",
        f"`python -m benchmarks.ceiling --seeds {' '.join(str(s) for s in result['seeds'])}` — 4,000 training "
        f"images per dataset and seed (seeds {seeds}), ACC on those images, mean ± std over seeds; "
        f"torch {torch.__version__}, scikit-learn {sklearn.__version__}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        "| dataset | pixels | " + " | ".join(CLUSTERERS) + " |",
        "|---|---|" + "---:|" * len(CLUSTERERS),
    ]
    for dataset in result["datasets"]:
        for name in FEATURES:
            cells = [_mean_std(result["acc"][(dataset, name, method)]) for method in CLUSTERERS]
            lines.append(f"| {dataset} | {name} | " + " | ".join(cells) + " |")
    lines += ["", "Share of moment canonicals that land upside down (the axis has no arrow): " + ", ".join(
        f"{d} {statistics.mean(result['flips'][d]):.1%}" for d in result["datasets"]) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ceiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS),
                        help="datasets (default: all three)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown report "
                        "(default benchmarks/results/ceiling.md)")
    args = parser.parse_args(argv)
    publish(markdown(measure(args.datasets, args.seeds)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
