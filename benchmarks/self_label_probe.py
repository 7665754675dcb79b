"""How the self-labelling classifiers' settings change test ACC, refitted on finished runs.

    python -m benchmarks.self_label_probe [RUN_DIR ...] [--variants NAME ...] [--out FILE]

For each finished run with a neighbour readout (default: seed 0 of the targets grid's `so2+gmm` cells on
so2 and `se2+gmm` cells on se2), the trained model is kept and only the classifiers are fitted again, once
per variant of ``model.readout.classifier`` (the run's own settings changed in one or two fields; a setting
the run's config predates takes today's default), then scored on the test split: ACC and invariance
agreement. The neighbours' vote is the reference row. About 4 minutes per variant and run at one thread
(three rounds). Writes ``benchmarks/results/self_label_probe.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import publish

ROOT = Path(__file__).resolve().parents[1]
CELLS = ROOT / "benchmarks" / "results" / "targets" / "cells"
DEFAULT_RUNS = [CELLS / "so2__so2+gmm__s0", CELLS / "se2__se2+gmm__s0"]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "self_label_probe.md"

#: name → changes to the run's classifier settings
VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "aligned view only": {"views": ["aligned"]},
    "centred view only": {"views": ["centred"]},
    "agreement 0.6": {"min_agreement": 0.6},
    "agreement 0.9": {"min_agreement": 0.9},
    "turns only (no scales or shifts)": {"max_scale": 0.0, "max_shift_px": 0.0},
    "turns ±15° only": {"max_turn_deg": 15.0, "max_scale": 0.0, "max_shift_px": 0.0},
    "30 epochs": {"epochs": 30},
    "32 channels": {"width": 32},
    "unbalanced later rounds": {"balanced": False},
    "2 rounds": {"rounds": 2, "kept_rounds": 1},
    "2 members": {"members": 2},
    "3 members": {"members": 3},
    "3 members, 2 rounds": {"members": 3, "rounds": 2, "kept_rounds": 1},
    "1 round": {"rounds": 1, "kept_rounds": 1},
    "3 rounds, the last read": {"rounds": 3, "kept_rounds": 1},
    "5 rounds, the last read": {"rounds": 5, "kept_rounds": 1},
    "2 rounds, both read": {"rounds": 2, "kept_rounds": 2},
    "the last two rounds read": {"kept_rounds": 2},
    "the last three rounds read": {"kept_rounds": 3},
    "unsure uprights read as they are": {"unsure_turns": 1},
    "unsure uprights read both ways up": {"unsure_turns": 2},
    "unsure uprights read at quarter turns": {"unsure_turns": 4},
    "unsure uprights taught as they are": {"unsure_teaching": "as_is"},
    "unsure uprights taught at their turns": {"unsure_teaching": "turns"},
    "no cuts": {"cut_share": 0.0},
    "cuts on a third": {"cut_share": 0.3},
    "cuts on half": {"cut_share": 0.5},
    "cuts on a third, unsure taught at their turns": {"cut_share": 0.3, "unsure_teaching": "turns"},
    "cuts on half, unsure taught at their turns": {"cut_share": 0.5, "unsure_teaching": "turns"},
    "a hard switch at the upright's threshold": {"unsure_ramp": 0.0},
    "readings mixed over 0.2 above the threshold": {"unsure_ramp": 0.2},
    "every frame read as it is": {"frame_turns": 1},
    "every frame read both ways up": {"frame_turns": 2},
    "every frame read at quarter turns": {"frame_turns": 4},
    "every frame read both ways up, aligned view only": {"frame_turns": 2, "views": ["aligned"]},
    "every frame read at quarter turns, aligned view only": {"frame_turns": 4, "views": ["aligned"]},
    "half-turn splits repaired": {"half_turn_merge": {}},
    "no half-turn repair": {"half_turn_merge": None},
}


def measure(run_dir: Path, variants: list[str]) -> dict[str, tuple[float, float]]:
    """Test ACC and invariance agreement of the run's neighbour vote (its ACC only) and classifiers, then of
    classifiers fitted with each variant's settings."""
    import torch

    from mcekit.config import HalfTurnMergeConfig
    from mcekit.evaluate import evaluate
    from mcekit.train import evaluate_run

    run = evaluate_run(run_dir, device="cpu")
    model, data, config = run.model, run.data, run.config
    if model.readout is None or data.test.labels is None:
        raise SystemExit(f"{run_dir}: needs a neighbour readout and labelled test data")
    settings = config.model.readout.classifier
    if settings is None:
        raise SystemExit(f"{run_dir}: has no model.readout.classifier to vary")
    upright = None if model.upright is None else model.upright_angles(data.train.images)
    row = {"neighbours (the run's)": (run.metrics["acc_neighbours"], math.nan),
           "classifiers (the run's)": (run.metrics["acc"], run.metrics["invariance_agreement"])}
    for name in variants:
        changes = dict(VARIANTS[name])
        merge = changes.pop("half_turn_merge", config.model.readout.half_turn_merge)
        merge = HalfTurnMergeConfig(**merge) if isinstance(merge, dict) else merge
        varied = settings.model_copy(update=changes)
        with torch.random.fork_rng(devices=[]):
            model.classifier = varied.build(model.image_shape, model.cluster_prior.n_clusters)
        repairs = model.fit_readout(data.train.images, upright, varied, config.train.batch_size, config.seed,
                                    half_turn_merge=merge)
        metrics = evaluate(model, data.test, data.group, torch.device("cpu"), seed=config.seed)
        row[name] = (metrics["acc"], metrics["invariance_agreement"])
        print(f"{run_dir.name}: {name}: ACC {row[name][0]:.3f}, invariance agreement {row[name][1]:.3f} "
              f"(neighbours {metrics['acc_neighbours']:.3f}, {len(repairs)} half-turn repairs)", flush=True)
    return row


def cell(acc: float, agreement: float) -> str:
    return f"{acc:.3f}" if math.isnan(agreement) else f"{acc:.3f} / {agreement:.3f}"


def markdown(rows: dict[str, dict[str, tuple[float, float]]]) -> str:
    columns = list(next(iter(rows.values())))
    lines = [
        "# Self-labelling settings", "",
        "`python -m benchmarks.self_label_probe` — finished runs with the classifiers fitted again "
        f"under each setting (the trained model unchanged): test ACC / invariance agreement; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC.", "",
        "| setting | " + " | ".join(rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for column in columns:
        lines.append(f"| {column} | " + " | ".join(cell(*row[column]) for row in rows.values()) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.self_label_probe",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, default=DEFAULT_RUNS,
                        help="finished run directories (default: seed 0 of the targets grid's default-model cells)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS),
                        help="which settings to fit (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="Markdown report (default benchmarks/results/self_label_probe.md)")
    args = parser.parse_args(argv)
    publish(markdown({run.name: measure(run, args.variants) for run in args.runs}), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
