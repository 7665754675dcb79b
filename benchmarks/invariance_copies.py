"""How far the copies that invariance agreement scores leave the range the model was trained on.

    python -m benchmarks.invariance_copies [--datasets so2 se2 so2_full] [--seed 0] [--out FILE]

Invariance agreement (METHOD §4) moves each test image, which the data already moved by g, by a fresh
element h of the data's range and asks whether its cluster stays. On ±90° data the copy's total rotation
h·g can reach ±180°, where the half-plane arrow flips and a 6 becomes a 9; on shifted data the total
shift reaches ±50 % of the width and part of the digit leaves the frame. Reported, per dataset: the share
of copies turned beyond 90° from upright in total, and the shares that keep less than 95 % and less than
80 % of the test image's ink. Writes ``benchmarks/results/invariance_copies.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import publish
from benchmarks.ceiling import DATASETS, dataset_config

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "invariance_copies.md"


def measure(dataset: str, seed: int) -> dict[str, float]:
    import torch

    from mcekit.data.transformed import prepare
    from mcekit.groups.base import act, pose_components

    config = dataset_config(dataset, seed)
    test = prepare(config.data, seed).test
    group = config.data.transform.group.build()
    # the same elements mcekit.evaluate draws for invariance agreement
    h = group.sample(len(test), torch.Generator().manual_seed(seed + 7919), dtype=torch.float32)
    copies = act(test.images, h, "zeros")
    ink_kept = copies.flatten(1).sum(1) / test.images.flatten(1).sum(1)
    total_angle = pose_components(h.double() @ test.pose.double())["angle"]
    return {"turned beyond 90°": float((total_angle.abs() > math.pi / 2).float().mean()),
            "< 95 % of the ink": float((ink_kept < 0.95).float().mean()),
            "< 80 % of the ink": float((ink_kept < 0.80).float().mean())}


def markdown(rows: dict[str, dict[str, float]], seed: int) -> str:
    columns = list(next(iter(rows.values())))
    lines = [
        "# Invariance-agreement copies against the training range", "",
        f"`python -m benchmarks.invariance_copies --seed {seed}` — 1,000 test images per dataset, the copies "
        f"`mcekit.evaluate` scores; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        "| dataset | " + " | ".join(f"share of copies {c}" for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for dataset, row in rows.items():
        lines.append(f"| {dataset} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.invariance_copies",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS),
                        help="datasets (default: all three)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown report (default benchmarks/results/invariance_copies.md)")
    args = parser.parse_args(argv)
    rows: dict[str, Any] = {d: measure(d, args.seed) for d in args.datasets}
    publish(markdown(rows, args.seed), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
