"""``mcekit bench SPEC [--jobs N] [--only PATTERN] [--rerun | --reevaluate]``: run a grid, write its report."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_bench(args: argparse.Namespace) -> int:
    from mcekit.bench.runner import cell_states, results_dir, select, threads_per_job
    from mcekit.config import ConfigError

    if args.jobs < 1:
        raise ConfigError([f"--jobs {args.jobs}: must be at least 1"])
    if args.rerun and args.reevaluate:
        raise ConfigError(["--rerun and --reevaluate: choose one (train again, or re-score the trained cells)"])
    if args.threads is not None and args.threads < 1:
        raise ConfigError([f"--threads {args.threads}: must be at least 1"])
    if args.list:
        from mcekit.bench.cells import expand
        from mcekit.bench.spec import load_spec

        loaded = load_spec(args.spec)
        cells = select(expand(loaded), args.only)
        states = cell_states(cells, results_dir(loaded, args.out) / "cells", loaded.spec.reuse)
        for cell in cells:
            print(f"{cell.id:<44} {states[cell.id]}")
        kinds = [state.split(" ")[0] for state in states.values()]
        counts = {s: kinds.count(s) for s in ("done", "reusable", "failed", "stale", "todo")}
        print(f"{len(cells)} cells: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
              + f"; {args.threads or threads_per_job(args.jobs)} thread(s) per cell with --jobs {args.jobs}")
        return 0
    from mcekit.bench.runner import run_bench

    outcome = run_bench(args.spec, jobs=args.jobs, only=args.only, rerun=args.rerun, out=args.out,
                        threads=args.threads, reevaluate=args.reevaluate)
    return 1 if outcome.failed else 0


def add_command(subparsers: Any) -> None:
    """Register ``bench`` on the ``mcekit`` command's subparsers."""
    p = subparsers.add_parser(
        "bench", help="compare group × prior combinations and baselines over seeds (tables, CSV, plots)",
        description="Run the cells of a benchmark spec (datasets × models × seeds), each in its own process, "
                    "skipping cells already done, then write results/<name>/results.md, results.csv, cells.csv "
                    "and plots.")
    p.add_argument("spec", help="benchmark spec (YAML), e.g. benchmarks/quick.yaml")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="cells run in parallel processes (default 1); torch threads per cell = max(1, cores // N)")
    p.add_argument("--only", metavar="PATTERN",
                   help="run only cells whose id matches this glob, e.g. 'se2__*+gmm__*' (ids: --list)")
    p.add_argument("--rerun", action="store_true", help="run the selected cells again even if they are done")
    p.add_argument("--reevaluate", action="store_true",
                   help="recompute the finished cells' metrics from their checkpoints, keeping their timing "
                        "(after a metric changes); k-means references rerun")
    p.add_argument("--out", metavar="DIR", help="results folder (default: results/<name>/ next to the spec)")
    p.add_argument("--threads", type=int, metavar="T", help="torch threads per cell (default: cores // jobs)")
    p.add_argument("--list", action="store_true", help="list the cells and their state without running anything")
    p.set_defaults(func=cmd_bench)
