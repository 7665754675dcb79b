"""How well the contrastive signal alone separates the digits: no decoder, no mixture, no pose head.

    python -m benchmarks.feature_probe [--datasets so2 se2] [--seeds 0] [--epochs 30] [--out FILE]

For each dataset (as in ``benchmarks/targets.yaml``) and seed, the 4,000 training images are moved back
by their moment pose (``pose_init: moments``), and the shipped configs' encoder with a linear head to the
cluster block's size is trained with the ``contrastive`` term's NT-Xent and deformations alone (every
image gets a copy). Then, on the normalised features:

- ``k-means`` — test ACC of k-means fitted on the training features;
- ``kNN purity`` — share of each test image's 10 nearest test neighbours with its label, and of each
  training image's 5 nearest training neighbours (the neighbours the ``neighbours`` term mines);
- ``SCAN step`` — test ACC after SCAN's clustering step: a head of k-means-initialised centroids (cosine
  logits at temperature 0.1) and the network trained so that a deformed image agrees with its training
  neighbours (−log of the dot product of their assignments) while all clusters stay in use.

Each with the moment arrow as it comes; with the arrows of the upside-down canonicals corrected from the
true pose (oracle: what the 180° ambiguity of the axis costs the features); with the model's learned
upright (``model.upright``: an angle learned from the data's own rotation prior, no label, no pose);
and on the untransformed digits (oracle: what this recipe reaches with a perfect canonicaliser). Labels
are used only to score.
Writes ``benchmarks/results/feature_probe.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import publish
from benchmarks.ceiling import DATASETS, dataset_config, flipped

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "feature_probe.md"
ARROWS = ("moment arrow", "true arrow (oracle)", "learned upright", "untransformed digits (oracle)")
COLUMNS = ("k-means", "kNN-10 purity (test)", "5-NN purity (train)", "SCAN step")


def aligned(split: Any, group: Any, oracle: bool) -> Any:
    """The images moved back by their moment pose; with ``oracle``, the upside-down ones turned right."""
    import torch

    from mcekit.groups.base import act
    from mcekit.moments import moment_pose
    from mcekit.orientation import half_turn

    moved = act(split.images, group.inverse(moment_pose(split.images, group)), "zeros")
    if oracle:
        turn = flipped(split.images, split.canonical, split.pose)
        moved = torch.where(turn[:, None, None, None], half_turn(moved), moved)
    return moved


def purity(features: Any, labels: Any, k: int) -> float:
    from mcekit.losses.neighbours import nearest_neighbours

    return float((labels[nearest_neighbours(features, k)] == labels[:, None]).float().mean())


def probe(dataset: str, seed: int, canonical: str, epochs: int, scan_epochs: int) -> dict[str, float]:

    from mcekit.data.transformed import prepare

    config = dataset_config(dataset, seed)
    data = prepare(config.data, seed)
    group = config.model.group.build()
    if canonical == ARROWS[3]:
        train, test = data.train.canonical, data.test.canonical
    elif canonical == ARROWS[2]:
        train, test = learned_upright(data, config, seed)
    else:
        oracle = canonical == ARROWS[1]
        train, test = aligned(data.train, group, oracle), aligned(data.test, group, oracle)
    return probe_canonicals(train, test, data, config, seed, epochs, scan_epochs)


def learned_upright(data: Any, config: Any, seed: int) -> tuple[Any, Any]:
    """The images as the model's encoder reads them with the learned upright (``model.upright``, fitted as the
    trainer fits it): moment-aligned, then turned by the regressor's correction."""
    import torch

    from benchmarks.upright_probe import fitted_upright_model

    model = fitted_upright_model(config, data, seed)
    with torch.no_grad():
        return tuple(torch.cat([model.encode(x[i:i + 500]).aligned for i in range(0, len(x), 500)])
                     for x in (data.train.images, data.test.images))  # type: ignore[return-value]


def probe_canonicals(train: Any, test: Any, data: Any, config: Any, seed: int, epochs: int,
                     scan_epochs: int) -> dict[str, float]:
    """Contrastive features of given canonical images, then k-means, neighbour purity and SCAN's step."""
    import torch
    import torch.nn.functional as F
    from sklearn.cluster import KMeans

    from mcekit.evaluate import cluster_accuracy
    from mcekit.losses.contrastive import nt_xent
    from mcekit.losses.neighbours import nearest_neighbours

    torch.manual_seed(seed)
    contrastive = next(c for c in config.losses if c.type == "contrastive")
    deform = contrastive.build().deform
    encoder = config.model.encoder.build(data.image_shape)
    net = torch.nn.Sequential(encoder, torch.nn.Linear(encoder.feature_dim, config.model.latents.cluster.dim))
    batch = config.train.batch_size

    def features(images: torch.Tensor) -> torch.Tensor:
        net.eval()
        with torch.no_grad():
            return F.normalize(torch.cat([net(images[i:i + 500]) for i in range(0, len(images), 500)]), dim=1)

    optimizer = torch.optim.Adam(net.parameters(), lr=config.train.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    for _ in range(epochs):
        net.train()
        for index in torch.randperm(len(train)).split(batch):
            x = train[index]
            loss = nt_xent(net(x), net(deform(x, None, "zeros")), contrastive.temperature)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    f_train, f_test = features(train), features(test)
    y_train, y_test = data.train.labels, data.test.labels
    kmeans = KMeans(10, n_init=10, random_state=seed).fit(f_train.double().numpy())
    result = {"k-means": cluster_accuracy(y_test.numpy(), kmeans.predict(f_test.double().numpy())),
              "kNN-10 purity (test)": purity(f_test, y_test, 10), "5-NN purity (train)": purity(f_train, y_train, 5)}

    neighbours = nearest_neighbours(f_train, 5)
    centroids = torch.nn.Parameter(F.normalize(torch.as_tensor(kmeans.cluster_centers_, dtype=torch.float32), dim=1))
    optimizer = torch.optim.Adam([{"params": net.parameters(), "lr": config.train.lr / 4},
                                  {"params": [centroids], "lr": config.train.lr / 2}])

    def assignments(x: torch.Tensor) -> torch.Tensor:
        return F.softmax(F.normalize(net(x), dim=1) @ F.normalize(centroids, dim=1).T / 0.1, dim=1)

    for _ in range(scan_epochs):
        net.train()
        for index in torch.randperm(len(train)).split(batch):
            pick = neighbours[index, torch.randint(0, neighbours.shape[1], (len(index),))]
            own = assignments(deform(train[index], None, "zeros"))
            with torch.no_grad():
                other = assignments(train[pick])
            mean = own.mean(0)
            loss = -(own * other).sum(1).clamp_min(1e-8).log().mean() + 5.0 * (mean * mean.clamp_min(1e-8).log()).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        clusters = torch.cat([assignments(test[i:i + 500]).argmax(1) for i in range(0, len(test), 500)])
    result["SCAN step"] = cluster_accuracy(y_test.numpy(), clusters.numpy())
    return result


def measure(datasets: list[str], seeds: list[int], epochs: int, scan_epochs: int) -> dict[str, Any]:
    from tqdm import tqdm

    rows: dict[tuple[str, str], list[dict[str, float]]] = {}
    jobs = [(d, a, s) for d in datasets for a in ARROWS for s in seeds]
    for dataset, arrow, seed in tqdm(jobs, desc="feature probe", unit="run"):
        rows.setdefault((dataset, arrow), []).append(probe(dataset, seed, arrow, epochs, scan_epochs))
    return {"rows": rows, "datasets": datasets, "seeds": seeds, "epochs": epochs, "scan_epochs": scan_epochs}


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def markdown(result: dict[str, Any]) -> str:
    import torch

    seeds = " ".join(str(s) for s in result["seeds"])
    lines = [
        "# Feature probe: the contrastive signal alone", "",
        f"`python -m benchmarks.feature_probe --seeds {seeds} --epochs {result['epochs']} --scan-epochs "
        f"{result['scan_epochs']}` — 4,000 training / 1,000 test images per dataset and seed; test ACC and "
        f"neighbour purity (mean ± std over seeds); torch {torch.__version__}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        "| dataset | canonical | " + " | ".join(COLUMNS) + " |",
        "|---|---|" + "---:|" * len(COLUMNS),
    ]
    for dataset in result["datasets"]:
        for arrow in ARROWS:
            runs = result["rows"][(dataset, arrow)]
            lines.append(f"| {dataset} | {arrow} | " + " | ".join(_mean_std([r[c] for r in runs]) for c in COLUMNS)
                         + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.feature_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds (default 0)")
    parser.add_argument("--datasets", nargs="+", default=["so2", "se2"], choices=list(DATASETS),
                        help="datasets (default so2 se2)")
    parser.add_argument("--epochs", type=int, default=30, help="contrastive epochs (default 30)")
    parser.add_argument("--scan-epochs", type=int, default=15, help="epochs of the SCAN step (default 15)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown report (default benchmarks/results/feature_probe.md)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    publish(markdown(measure(args.datasets, args.seeds, args.epochs, args.scan_epochs)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
