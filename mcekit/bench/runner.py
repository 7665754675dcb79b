"""Run cells: each in its own spawned process, results written atomically one JSON file per cell.

A cell's process trains with :class:`mcekit.train.Trainer` (or fits a k-means reference), then records
the test metrics, timing (training seconds per epoch, images per second, wall time) and memory (peak
RSS of that process from ``resource.getrusage``; CUDA max allocated on a GPU). One process per cell
(``max_tasks_per_child=1``) keeps the peak RSS that cell's own. A finished cell whose fingerprint still
matches is skipped on the next run; an interrupted training resumes from its last checkpoint.
"""

from __future__ import annotations

import fnmatch
import json
import multiprocessing
import os
import resource
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mcekit.bench.cells import KIND_ORDER, Cell, expand
from mcekit.bench.spec import LoadedSpec, load_spec
from mcekit.config import ConfigError

SHOWN = ("acc", "nmi", "invariance_agreement", "seconds_per_epoch")


# --- files --------------------------------------------------------------------------------------------

def write_json_atomic(data: dict[str, Any], path: Path) -> None:
    """Temporary file, fsync, rename: a reader never sees half a result, even with parallel writers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as handle:
        handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def cell_path(cells_dir: Path, cid: str) -> Path:
    return cells_dir / f"{cid}.json"


def read_record(cells_dir: Path, cid: str) -> dict[str, Any] | None:
    try:
        return json.loads(cell_path(cells_dir, cid).read_text())
    except (OSError, ValueError):
        return None


def is_done(record: dict[str, Any] | None, cell: Cell) -> bool:
    return bool(record) and record.get("status") == "ok" and record.get("fingerprint") == cell.fingerprint


# --- one cell (runs in a worker process) ----------------------------------------------------------------

def peak_rss_mb() -> float:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def _without(config: dict[str, Any], *train_keys: str) -> dict[str, Any]:
    train = {k: v for k, v in config.get("train", {}).items() if k not in train_keys}
    return {**config, "train": train}


def train_cell(cell: Cell, run_dir: Path, threads: int) -> tuple[dict[str, Any], str]:
    """Train (resuming a matching interrupted run), evaluate; metrics and the device type."""
    import torch

    from mcekit.config import config_from_dump, validate_config
    from mcekit.train import Trainer, load_checkpoint

    config = validate_config({**cell.config, "train": {**cell.config["train"], "threads": threads}},
                             source=cell.id)
    last = run_dir / "checkpoints" / "last.pt"
    resumable = False
    if last.is_file():
        try:
            previous = config_from_dump(load_checkpoint(last)["config"]).model_dump(mode="json")
            resumable = _without(previous, "threads") == _without(config.model_dump(mode="json"), "threads")
        except Exception:
            resumable = False
    if not resumable and run_dir.exists():
        shutil.rmtree(run_dir)
    trainer = Trainer(config, run_dir, quiet=True)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    if resumable:
        trainer.resume()
    metrics = dict(trainer.fit())
    epochs, seconds = metrics.get("epochs") or 0, metrics.get("train_seconds") or 0.0
    metrics["seconds_per_epoch"] = seconds / epochs if epochs else None
    metrics["images_per_second"] = epochs * config.data.split.train / seconds if seconds > 0 else None
    metrics["resumed"] = resumable
    return metrics, trainer.device.type


def quiet_worker(threads: int) -> None:
    """A worker's torch threads, and no deprecation notice from a dependency in every cell's output."""
    import warnings

    import torch

    warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=FutureWarning)
    torch.set_num_threads(threads)


def run_cell(cell_data: dict[str, Any], cells_dir: str, threads: int) -> dict[str, Any]:
    """Run one cell in this process and write ``cells/<id>.json``; never raises for a failing cell."""
    import torch

    from mcekit import __version__

    quiet_worker(threads)
    cell = Cell.from_dict(cell_data)
    folder = Path(cells_dir)
    start = time.perf_counter()
    status, error, device = "ok", None, "cpu"
    metrics: dict[str, Any] = {}
    try:
        if cell.kind == "kmeans":
            from mcekit.bench.baselines import kmeans_cell
            from mcekit.config import validate_config

            metrics = kmeans_cell(validate_config(cell.config, source=cell.id), cell.options, threads)
        else:
            metrics, device = train_cell(cell, folder / cell.id, threads)
    except Exception as exc:  # the cell failed; the benchmark goes on and the report lists it
        status = "failed"
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{cell.id}.log").write_text(traceback.format_exc())
    if status == "ok":  # a traceback from an earlier failed attempt no longer describes this cell
        (folder / f"{cell.id}.log").unlink(missing_ok=True)
    metrics["wall_seconds"] = time.perf_counter() - start
    metrics["peak_rss_mb"] = peak_rss_mb()
    metrics["cuda_max_allocated_mb"] = (torch.cuda.max_memory_allocated() / 2**20) if device == "cuda" else None
    record = {
        "id": cell.id, "dataset": cell.dataset, "model": cell.model, "kind": cell.kind, "group": cell.group,
        "prior": cell.prior, "seed": cell.seed, "fingerprint": cell.fingerprint, "status": status, "error": error,
        "metrics": metrics, "threads": threads, "device": device, "mcekit_version": __version__,
        "torch_version": torch.__version__, "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json_atomic(record, cell_path(folder, cell.id))
    return record


def reevaluate_cell(cell_data: dict[str, Any], cells_dir: str, threads: int) -> dict[str, Any]:
    """Recompute a finished learned cell's test metrics from its best checkpoint, keeping its timing and memory
    (what a changed metric needs, without training again); a k-means reference is cheap enough to rerun."""
    cell = Cell.from_dict(cell_data)
    folder = Path(cells_dir)
    if cell.kind == "kmeans":
        return run_cell(cell_data, cells_dir, threads)
    quiet_worker(threads)
    from mcekit.train import evaluate_run

    record = read_record(folder, cell.id) or {}
    try:
        fresh = evaluate_run(folder / cell.id).metrics
    except Exception as exc:  # e.g. the run directory is gone: the old record stays as it was
        return {**record, "status": "failed", "error": f"re-evaluation: {type(exc).__name__}: {exc}"}
    record = {**record, "metrics": {**record.get("metrics", {}), **fresh},
              "reevaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json_atomic(record, cell_path(folder, cell.id))
    return record


# --- the pool ---------------------------------------------------------------------------------------------

def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    return max(1, available_cores() // jobs)


@dataclass
class BenchOutcome:
    name: str
    out_dir: Path
    total: int                                   # cells in the spec
    selected: int                                # cells matching --only
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)          # copied from another spec's finished cells
    failed: list[str] = field(default_factory=list)
    reports: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.name}: {self.selected} of {self.total} cells selected — {len(self.ran)} run, "
                f"{len(self.skipped)} skipped (done earlier), {len(self.reused)} reused, {len(self.failed)} failed")


def results_dir(loaded: LoadedSpec, out: str | Path | None = None) -> Path:
    return Path(out) if out else loaded.path.parent / "results" / loaded.name


def select(cells: list[Cell], only: str | None) -> list[Cell]:
    if not only:
        return cells
    chosen = [c for c in cells if fnmatch.fnmatchcase(c.id, only)]
    if not chosen:
        shown = ", ".join(c.id for c in cells[:6]) + (", ..." if len(cells) > 6 else "")
        raise ConfigError([f"--only {only}: matches no cell; cell ids look like {shown}"])
    return chosen


def cell_states(cells: list[Cell], cells_dir: Path, reuse: list[str] | None = None) -> dict[str, str]:
    """done | failed | stale (a result for other settings) | todo, per cell id; a cell that is not done but
    finished in one of the ``reuse`` specs' results is ``reusable (<name>)``."""
    states = {}
    for cell in cells:
        record = read_record(cells_dir, cell.id)
        if record is None:
            states[cell.id] = "todo"
        elif record.get("fingerprint") != cell.fingerprint:
            states[cell.id] = "stale"
        else:
            states[cell.id] = "done" if record.get("status") == "ok" else "failed"
        if states[cell.id] != "done" and (found := reusable(cell, cells_dir.parent, reuse or [])):
            states[cell.id] = f"reusable ({found[0]})"
    return states


def reusable(cell: Cell, out_dir: Path, names: list[str]) -> tuple[str, dict[str, Any]] | None:
    """A finished result of the very same cell (same id and fingerprint) in another spec's results."""
    for name in names:
        record = read_record(out_dir.parent / name / "cells", cell.id)
        if record is not None and is_done(record, cell):
            return name, record
    return None


def reuse_record(cell: Cell, out_dir: Path, names: list[str], cells_dir: Path) -> str | None:
    """Copy such a result into this spec's cells; the name it came from, or None."""
    found = reusable(cell, out_dir, names)
    if found is None:
        return None
    name, record = found
    write_json_atomic({**record, "reused_from": name}, cell_path(cells_dir, cell.id))
    return name


def _line(record: dict[str, Any]) -> str:
    if record.get("status") != "ok":
        return f"FAILED: {record.get('error')}"
    m = record.get("metrics", {})
    shown = " ".join(f"{k}={m[k]:.3g}" for k in SHOWN if isinstance(m.get(k), int | float))
    return f"{shown} ({m.get('wall_seconds', 0):.0f} s)"


def run_bench(spec_path: str | Path, *, jobs: int = 1, only: str | None = None, rerun: bool = False,
              out: str | Path | None = None, threads: int | None = None, reevaluate: bool = False,
              log: Callable[[str], None] = print) -> BenchOutcome:
    """Run the spec's unfinished cells (``jobs`` processes at a time) and write the report. ``reevaluate``:
    recompute the metrics of the finished cells instead, from their checkpoints."""
    from mcekit.bench.report import write_report

    if jobs < 1:
        raise ConfigError([f"--jobs {jobs}: must be at least 1"])
    loaded = load_spec(spec_path)
    cells = expand(loaded)
    chosen = select(cells, only)
    out_dir = results_dir(loaded, out)
    cells_dir = out_dir / "cells"
    outcome = BenchOutcome(loaded.name, out_dir, len(cells), len(chosen))
    todo = []
    for cell in chosen:
        if reevaluate:  # only finished cells have weights to evaluate
            if is_done(read_record(cells_dir, cell.id), cell):
                todo.append(cell)
            else:
                outcome.skipped.append(cell.id)
        elif not rerun and is_done(read_record(cells_dir, cell.id), cell):
            outcome.skipped.append(cell.id)
        elif not rerun and (source := reuse_record(cell, out_dir, loaded.spec.reuse, cells_dir)):
            outcome.reused.append(cell.id)
            log(f"{cell.id}: the same cell finished in {source}; copied")
        else:
            if rerun:  # from scratch: a finished (or interrupted) run of this cell must not be resumed
                shutil.rmtree(cells_dir / cell.id, ignore_errors=True)
            todo.append(cell)
    todo.sort(key=lambda c: KIND_ORDER.get(c.kind, 9))  # stable: spec order within a kind
    per_job = threads or threads_per_job(jobs)
    if todo:
        log(f"{loaded.name}: {'re-evaluating' if reevaluate else 'running'} {len(todo)} cell(s), "
            f"{min(jobs, len(todo))} at a time, {per_job} thread(s) each; {len(outcome.skipped)} skipped")
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=context,
                                 max_tasks_per_child=1) as pool:
            work = reevaluate_cell if reevaluate else run_cell
            futures = {pool.submit(work, cell.to_dict(), str(cells_dir), per_job): cell for cell in todo}
            for done, future in enumerate(as_completed(futures), 1):
                cell = futures[future]
                try:
                    record = future.result()
                except Exception as exc:  # the worker process itself died (killed, out of memory)
                    outcome.failed.append(cell.id)
                    log(f"[{done}/{len(todo)}] {cell.id}: worker process ended abruptly ({type(exc).__name__})")
                    continue
                (outcome.ran if record["status"] == "ok" else outcome.failed).append(cell.id)
                log(f"[{done}/{len(todo)}] {cell.id}: {_line(record)}")
    records = {}
    for cell in cells:
        record = read_record(cells_dir, cell.id)
        if record is not None and record.get("fingerprint") == cell.fingerprint:
            records[cell.id] = record
    outcome.reports = write_report(loaded, cells, records, out_dir)
    log(outcome.summary())
    log(f"report: {outcome.reports.get('markdown')}")
    return outcome
