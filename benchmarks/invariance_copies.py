"""How far the copies that invariance agreement scores leave the range the model was trained on.

    python -m benchmarks.invariance_copies [--datasets so2 se2 so2_full] [--seed 0] [--out FILE]

Invariance agreement (METHOD §4) asks whether a test image x = g·c keeps its cluster under a fresh element
h of the data's range. Two copies answer it differently. Redrawn, h·c, is another image the data could
have held. Moved again, h·x, has the total move h·g: on ±90° data its rotation can reach ±180°, where a
6 becomes a 9, and on shifted data its shift reaches ±50 % of the width, so part of the digit leaves the
frame. Reported, per dataset, for the test images and each kind of copy: the share turned beyond 90° from
upright in total, and the shares that keep less than 95 % and less than 80 % of the digit's ink (the
canonical image's; turning blurs a little ink away too). Writes ``benchmarks/results/invariance_copies.md``.
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


def measure(dataset: str, seed: int) -> dict[str, dict[str, float]]:
    """For the test images and both kinds of copy ``mcekit.evaluate`` draws (x moved once more, and the canonical
    redrawn), the shares turned beyond 90° from upright in total and keeping less than 95 % / 80 % of the
    digit's ink (its canonical image's) inside the frame."""

    from mcekit.data.transformed import prepare
    from mcekit.evaluate import draw_copies
    from mcekit.groups.base import pose_components

    config = dataset_config(dataset, seed)
    test = prepare(config.data, seed).test
    group = config.data.transform.group.build()
    copies = draw_copies(test, group, group, seed, "zeros")
    assert copies.redrawn is not None  # transformed data
    ink = test.canonical.flatten(1).sum(1)
    rows = {}
    for kind, images, total in (("x (the test image)", test.images, test.pose.double()),
                                ("h·x (moved again)", copies.moved, copies.h.double() @ test.pose.double()),
                                ("h·c (redrawn)", copies.redrawn, copies.h.double())):
        ink_kept = images.flatten(1).sum(1) / ink
        angle = pose_components(total)["angle"]
        rows[f"{dataset}, {kind}"] = {"turned beyond 90°": float((angle.abs() > math.pi / 2).float().mean()),
                                      "< 95 % of the ink": float((ink_kept < 0.95).float().mean()),
                                      "< 80 % of the ink": float((ink_kept < 0.80).float().mean())}
    return rows


def markdown(rows: dict[str, dict[str, float]], seed: int) -> str:
    columns = list(next(iter(rows.values())))
    lines = [
        "# Invariance-agreement copies against the training range", "",
        f"`python -m benchmarks.invariance_copies --seed {seed}` — 1,000 test images per dataset and the copies "
        f"`mcekit.evaluate` scores; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        "| dataset, images | " + " | ".join(f"share {c}" for c in columns) + " |",
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
    rows: dict[str, Any] = {k: v for d in args.datasets for k, v in measure(d, args.seed).items()}
    publish(markdown(rows, args.seed), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
