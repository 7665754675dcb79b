"""What the neighbour readout mends and what the learned upright still costs, on finished runs.

    python -m benchmarks.readout_probe [RUN_DIR ...] [--out FILE]

For each finished run with a learned upright and a fitted readout (default: the targets grid's `so2+gmm`
cells on so2 and `se2+gmm` cells on se2), test ACC of the mixture's own clusters and of the readout, first
with the learned upright, then with each test image turned upright by its true data angle: an oracle, at
test time only (training and the readout's bank keep the learned uprights). The gap between the two rows
is what a perfect upright would add to this clusterer. Writes ``benchmarks/results/readout_probe.md``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

from benchmarks import publish

ROOT = Path(__file__).resolve().parents[1]
CELLS = ROOT / "benchmarks" / "results" / "targets" / "cells"
DEFAULT_RUNS = [CELLS / f"{data}__{model}__s{seed}" for data, model in (("so2", "so2+gmm"), ("se2", "se2+gmm"))
                for seed in (0, 1, 2)]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "readout_probe.md"


def measure(run_dir: Path) -> dict[str, float]:
    """Test ACC of the mixture and of the readout, with the learned upright and with the true one."""
    import torch

    from mcekit.evaluate import cluster_accuracy
    from mcekit.groups.base import pose_components
    from mcekit.train import evaluate_run

    run = evaluate_run(run_dir, device="cpu")
    model, test = run.model, run.data.test
    if model.upright is None or model.readout is None or test.labels is None:
        raise SystemExit(f"{run_dir}: needs a learned upright, a readout and labelled transformed test data")
    labels = test.labels.numpy()
    # the learned upright's accuracies are the run's own metrics; the true upright needs one more encoding
    # (under self-labelling classifiers, the run's ACC is theirs and the readout's is acc_neighbours)
    row = {"mixture, learned upright": run.metrics["acc_prior"],
           "readout, learned upright": run.metrics.get("acc_neighbours", run.metrics["acc"])}
    posterior = model.encoded_posterior(test.images, "cluster", pose_components(test.pose)["angle"])
    with torch.no_grad():
        row["mixture, true upright"] = cluster_accuracy(labels, model.cluster_prior.assign(posterior).numpy())
        row["readout, true upright"] = cluster_accuracy(labels, model.readout.assign(posterior.mean).numpy())
    return row


def markdown(rows: dict[str, dict[str, float]]) -> str:
    columns = list(next(iter(rows.values())))
    lines = [
        "# Neighbour readout and the learned upright", "",
        "`python -m benchmarks.readout_probe` — test ACC of finished runs; \"true upright\" turns each test image "
        f"by its data angle (an oracle, at test time only); {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        "| run | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for run, row in rows.items():
        lines.append(f"| {run} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readout_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, default=DEFAULT_RUNS,
                        help="finished run directories (default: the targets grid's default-model cells)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown report (default benchmarks/results/readout_probe.md)")
    args = parser.parse_args(argv)
    publish(markdown({run.name: measure(run) for run in args.runs}), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
