"""How far the initial pose leaves each digit from its own upright: the moment frame against the learned upright.

    python -m benchmarks.upright_probe [--datasets so2 se2] [--seeds 0 1 2] [--out FILE]

For each dataset (as in ``benchmarks/targets.yaml``) and seed, the shipped config's model is built and its
learned upright (``model.upright``) fitted exactly as the trainer fits it (on the mass-centred training
images). Then, on the 1,000 test images, the angle of the initial pose g₀ is compared
with the true rotation of each image (the untransformed digit is upright by definition):

- ``moment frame`` — g₀ from the moments alone (``model.upright: null``);
- ``learned, one view, raw`` — the regressor's guess from the image itself, no snapping, no fallback;
- ``learned upright (defaults)`` — as the model uses it: guesses read from ``views`` turned copies, snapped
  to the moment axis's quarter turns within ``snap_deg``, unsure ones left at the moment frame.

Reported: the median angle error, the shares more than 45° and more than 90° off (a digit standing on its
side or upside down relative to its kind), and the share beyond 45° per digit (mean over seeds). Labels and
true poses are used only to score. Writes ``benchmarks/results/upright_probe.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import publish
from benchmarks.ceiling import DATASETS, dataset_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "upright_probe.md"
FRAMES = ("moment frame", "learned, one view, raw", "learned upright (defaults)")


def fitted_upright_model(config: Any, data: Any, seed: int) -> Any:
    """The config's model (with ``model.upright``) with its regressor fitted as the trainer fits it."""
    import torch

    from mcekit.model import build_model

    torch.manual_seed(seed)
    model = build_model(config.model, data.image_shape)
    up = config.model.upright
    model.fit_upright(data.train.images, up.epochs, config.train.batch_size, up.lr, seed)
    return model.eval()


def probe(dataset: str, seed: int) -> dict[str, dict[str, Any]]:
    """Per frame: median error (degrees), shares beyond 45° and 90°, share beyond 45° per digit."""
    import torch

    from mcekit.data.transformed import prepare
    from mcekit.groups.base import pose_components, wrap_angle

    config = dataset_config(dataset, seed)
    data = prepare(config.data, seed)
    model = fitted_upright_model(config, data, seed)
    regressor = model.upright
    test = data.test
    labels = test.labels
    true_angle = pose_components(test.pose)["angle"]

    def scored(angle: torch.Tensor) -> dict[str, Any]:
        error = wrap_angle(angle - true_angle).abs().rad2deg()
        return {"median": float(error.median()), "beyond 45": float((error > 45).float().mean()),
                "beyond 90": float((error > 90).float().mean()),
                "per digit": [float((error[labels == d] > 45).float().mean()) for d in range(10)]}

    with torch.no_grad():
        _, moment_angle, centred = model.upright_inputs(test.images)
        vector = regressor.net(centred)
        raw = torch.atan2(vector[:, 1], vector[:, 0])
        learned = pose_components(model.encode(test.images).pose_init)["angle"]
    return dict(zip(FRAMES, (scored(moment_angle), scored(raw), scored(learned)), strict=True))


def _mean_std(values: list[float], digits: int = 3) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown(results: dict[str, list[dict[str, dict[str, Any]]]], seeds: list[int]) -> str:
    import torch

    lines = [
        "# Upright probe: how far the initial pose leaves each digit from its own upright", "",
        f"`python -m benchmarks.upright_probe --seeds {' '.join(map(str, seeds))}` — 1,000 test images per "
        f"dataset and seed, mean ± std over seeds; torch {torch.__version__}; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        "| dataset | initial pose | median error ° | beyond 45° | beyond 90° | "
        + " | ".join(f"{d} > 45°" for d in range(10)) + " |",
        "|---|---|---:|---:|---:|" + "---:|" * 10,
    ]
    for dataset, runs in results.items():
        for frame in FRAMES:
            rows = [run[frame] for run in runs]
            per_digit = [statistics.fmean(r["per digit"][d] for r in rows) for d in range(10)]
            lines.append(f"| {dataset} | {frame} | {_mean_std([r['median'] for r in rows], digits=1)} | "
                         f"{_mean_std([r['beyond 45'] for r in rows])} | {_mean_std([r['beyond 90'] for r in rows])} | "
                         + " | ".join(f"{v:.2f}" for v in per_digit) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(prog="python -m benchmarks.upright_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    parser.add_argument("--datasets", nargs="+", default=["so2", "se2"], choices=list(DATASETS),
                        help="datasets (default so2 se2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown report (default benchmarks/results/upright_probe.md)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    jobs = [(d, s) for d in args.datasets for s in args.seeds]
    done = {job: probe(*job) for job in tqdm(jobs, desc="upright probe", unit="fit")}
    results = {d: [done[(d, s)] for s in args.seeds] for d in args.datasets}
    publish(markdown(results, args.seeds), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
