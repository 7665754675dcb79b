"""How many upside-down moment canonicals a learned upright detector can set right.

    python -m benchmarks.arrow_probe [--datasets so2 se2] [--seed 0] [--epochs 20] [--out FILE]

The moment axis has no arrow. Among images whose axis lies within 45° of upright in the input, the
half-plane arrow is almost always right, so they are clean examples of "upright" (and their half turns
of "upside down") without any label. A CNN larger than ``model.half_turns``' own (two 5×5 convolutions
with 32 and 64 maps, 128 hidden units), trained on those pairs under the ``contrastive`` term's
deformations, then decides for every test image whether to turn it: by log-odds above a margin, on every
image or only on those whose axis lay more than 45° from upright. Reported: the share of test images whose
canonical stays upside down (relative to the moment frame of the untransformed digit, from the true pose),
overall and per digit; and, per digit, the share of the untransformed training digits whose principal axis
lies more than 45° from upright (their moment frame is then closer to a quarter turn of the digit than to
the digit). Also the share of upside-down canonicals among the training examples. Labels and true poses
are used only to score. Writes ``benchmarks/results/arrow_probe.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import publish
from benchmarks.ceiling import DATASETS, dataset_config, flipped
from benchmarks.feature_probe import aligned

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "arrow_probe.md"
RELIABLE_DEG = 45.0
#: (log-odds margin, turn only beyond this axis offset in degrees); None: no detector
RULES: tuple[tuple[float, float] | None, ...] = (None, (0.0, 0.0), (0.0, 45.0), (2.0, 45.0), (4.0, 45.0))


def detector() -> Any:
    from torch import nn

    return nn.Sequential(nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.LazyLinear(128), nn.ReLU(), nn.Linear(128, 1))


def probe(dataset: str, seed: int, epochs: int) -> tuple[list[tuple[str, float, list[float]]], float]:
    import torch
    import torch.nn.functional as F

    from mcekit.data.transformed import prepare
    from mcekit.moments import moment_pose
    from mcekit.orientation import axis_offset, half_turn

    config = dataset_config(dataset, seed)
    torch.manual_seed(seed)
    data = prepare(config.data, seed)
    group = config.model.group.build()
    train, test = aligned(data.train, group, False), aligned(data.test, group, False)
    is_reliable = axis_offset(moment_pose(data.train.images, group)) < math.radians(RELIABLE_DEG)
    reliable = train[is_reliable]
    example_noise = float(flipped(data.train.images, data.train.canonical, data.train.pose)[is_reliable].float().mean())
    deform = next(c for c in config.losses if c.type == "contrastive").build().deform
    net = detector()
    net(reliable[:2])  # materialise the lazy layer before the optimiser sees the parameters
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(epochs):
        net.train()
        for index in torch.randperm(len(reliable)).split(100):
            x = deform(reliable[index], None, "zeros")
            logits = net(torch.cat([x, half_turn(x)])).squeeze(1)
            target = torch.cat([torch.zeros(len(index)), torch.ones(len(index))])
            loss = F.binary_cross_entropy_with_logits(logits, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        upside_down = net(test).squeeze(1) - net(half_turn(test)).squeeze(1)
    offset = axis_offset(moment_pose(data.test.images, group))
    wrong_arrow = flipped(data.test.images, data.test.canonical, data.test.pose)
    labels = data.test.labels
    rows = []
    for rule in RULES:
        if rule is None:
            turn, name = torch.zeros_like(wrong_arrow), "moment arrow, no detector"
        else:
            margin, beyond = rule
            turn = (upside_down > margin) & (offset > math.radians(beyond))
            name = f"detector, margin {margin:g}" + (f", axis beyond {beyond:g}°" if beyond else ", every image")
        wrong = wrong_arrow ^ turn
        rows.append((name, float(wrong.float().mean()),
                     [float(wrong[labels == d].float().mean()) for d in range(10)]))
    across = axis_offset(moment_pose(data.train.canonical)) > math.radians(45.0)
    rows.append(("untransformed training digits with the axis beyond 45° from upright", float(across.float().mean()),
                 [float(across[data.train.labels == d].float().mean()) for d in range(10)]))
    return rows, example_noise


def markdown(results: dict[str, Any], seed: int, epochs: int) -> str:
    import torch

    lines = [
        "# Arrow probe: upside-down canonicals left after a learned upright detector", "",
        f"`python -m benchmarks.arrow_probe --seed {seed} --epochs {epochs}` — trained on the training images "
        f"whose axis lay within {RELIABLE_DEG:g}° of upright, scored on 1,000 test images; torch "
        f"{torch.__version__}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        "| dataset | rule | share upside down | " + " | ".join(str(d) for d in range(10)) + " |",
        "|---|---|---:|" + "---:|" * 10,
    ]
    for dataset, (rows, _) in results.items():
        for name, share, per_digit in rows:
            lines.append(f"| {dataset} | {name} | {share:.3f} | " + " | ".join(f"{v:.2f}" for v in per_digit) + " |")
    lines += ["", "Upside-down canonicals among the detector's training examples: " + ", ".join(
        f"{dataset} {noise:.1%}" for dataset, (_, noise) in results.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from tqdm import tqdm

    parser = argparse.ArgumentParser(prog="python -m benchmarks.arrow_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--datasets", nargs="+", default=["so2", "se2"], choices=list(DATASETS),
                        help="datasets (default so2 se2)")
    parser.add_argument("--epochs", type=int, default=20, help="detector training epochs (default 20)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown report (default benchmarks/results/arrow_probe.md)")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = {d: probe(d, args.seed, args.epochs) for d in tqdm(args.datasets, desc="arrow probe", unit="dataset")}
    publish(markdown(rows, args.seed, args.epochs), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
