"""The report of a benchmark: Markdown table, CSVs and plots, from the cells' JSON results.

Rows are (dataset, model) with mean ± standard deviation over seeds (sample std; a single seed shows the
mean alone). A second table gives what the toolkit's choices add: each grid model's accuracy minus each
reference's (the trivial group with the same prior, the paper-faithful MCE-VAE, k-means on moment-
canonicalised and on raw pixels). Plots use matplotlib's Agg backend.
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcekit.bench.cells import Cell, grid_model
from mcekit.bench.spec import TRIVIAL, LoadedSpec


@dataclass(frozen=True)
class Metric:
    key: str
    header: str
    digits: int
    meaning: str


METRICS: tuple[Metric, ...] = (
    Metric("acc", "ACC", 3, "clustering accuracy on the test split, clusters matched to labels (Hungarian)"),
    Metric("acc_prior", "ACC mixture", 3,
           "the same for the cluster prior's own assignment, where a neighbour readout assigns the clusters"),
    Metric("acc_neighbours", "ACC neighbours", 3,
           "the same for the neighbour readout's vote, where self-labelling classifiers assign the clusters"),
    Metric("half_turn_repairs", "half-turn repairs", 2,
           "pairs of clusters joined as each other's half turns before self-labelling (model.readout.half_turn_merge), "
           "per run"),
    Metric("nmi", "NMI", 3, "normalised mutual information of clusters and labels"),
    Metric("ari", "ARI", 3, "adjusted Rand index of clusters and labels"),
    Metric("invariance_agreement", "inv. agr.", 3,
           "fraction of test images x = g·c whose cluster stays when drawn again as h·c, h a fresh element of the "
           "data's range"),
    Metric("invariance_agreement_moved", "inv. agr. h·x", 3,
           "the same for x moved once more, h·x = h·g·c (the total move may leave the data's range)"),
    Metric("pose_angle_error_deg", "rot. err °", 1,
           "median error of the predicted relative rotation between x and h·x, degrees"),
    Metric("pose_translation_error_px", "shift err px", 2,
           "median error of the predicted relative translation between x and h·x, pixels"),
    Metric("pose_log_scale_error", "log-scale err", 3, "median error of the predicted relative log-scale"),
    Metric("recon_bce", "recon BCE", 1, "mean per-image binary cross-entropy of the reconstruction x̂ against x"),
    Metric("seconds_per_epoch", "s/epoch", 2, "training seconds per epoch (evaluation excluded)"),
    Metric("images_per_second", "img/s", 0, "training images per second (k-means: training images / fit time)"),
    Metric("train_seconds", "train s", 1, "total training seconds (k-means: fit seconds)"),
    Metric("peak_rss_mb", "peak RSS MB", 0,
           "peak resident memory of the cell's own process (resource.getrusage), interpreter and torch included"),
    Metric("cuda_max_allocated_mb", "CUDA max MB", 0, "torch.cuda.max_memory_allocated on a GPU"),
)
REFERENCES = ("paper_mcevae", "kmeans_moments", "kmeans_pixels")


@dataclass
class Row:
    dataset: str
    model: str
    kind: str
    group: str | None
    prior: str | None
    seeds: list[int] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    values: dict[str, list[float]] = field(default_factory=dict)

    def mean(self, key: str) -> float | None:
        vals = self.values.get(key) or []
        return statistics.fmean(vals) if vals else None

    def std(self, key: str) -> float | None:
        vals = self.values.get(key) or []
        return statistics.stdev(vals) if len(vals) >= 2 else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) or math.isinf(value) else float(value)


def aggregate(cells: list[Cell], records: dict[str, dict[str, Any]]) -> list[Row]:
    """One row per (dataset, model) in spec order; successful cells feed the statistics."""
    rows: dict[tuple[str, str], Row] = {}
    for cell in cells:
        row = rows.setdefault((cell.dataset, cell.model),
                              Row(cell.dataset, cell.model, cell.kind, cell.group, cell.prior))
        record = records.get(cell.id)
        if record is None:
            continue
        if record.get("status") != "ok":
            row.failed.append(cell.id)
            continue
        row.seeds.append(cell.seed)
        for metric in METRICS:
            value = _number(record.get("metrics", {}).get(metric.key))
            if value is not None:
                row.values.setdefault(metric.key, []).append(value)
    return list(rows.values())


def _fmt(value: float | None, digits: int) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _cell_text(row: Row, metric: Metric) -> str:
    mean, std = row.mean(metric.key), row.std(metric.key)
    if mean is None:
        return "—"
    return _fmt(mean, metric.digits) + (f" ± {_fmt(std, metric.digits)}" if std is not None else "")


def shown_metrics(rows: list[Row]) -> list[Metric]:
    """Columns that some row has a value for (no pose columns for pose-less data, no CUDA column on CPU)."""
    return [m for m in METRICS if any(row.values.get(m.key) for row in rows)]


def deltas(rows: list[Row]) -> list[dict[str, Any]]:
    """Per grid row: its ACC and the difference to each reference available for its dataset."""
    by_key = {(r.dataset, r.model): r for r in rows}
    out = []
    for row in rows:
        if row.kind != "grid" or row.mean("acc") is None:
            continue
        acc = row.mean("acc")
        entry: dict[str, Any] = {"dataset": row.dataset, "model": row.model, "acc": acc}
        trivial = by_key.get((row.dataset, grid_model(TRIVIAL, row.prior or "")))
        entry["trivial"] = (acc - trivial.mean("acc") if trivial is not None and trivial is not row
                            and trivial.mean("acc") is not None else None)
        for ref in REFERENCES:
            other = by_key.get((row.dataset, ref))
            entry[ref] = acc - other.mean("acc") if other is not None and other.mean("acc") is not None else None
        out.append(entry)
    return out


def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def markdown(loaded: LoadedSpec, cells: list[Cell], rows: list[Row], records: dict[str, dict[str, Any]],
             figures: list[str]) -> str:
    spec = loaded.spec
    done = sum(1 for r in records.values() if r.get("status") == "ok")
    budget = spec.budget
    parts = [f"epochs {budget.epochs}" if budget.epochs else "the base config's epochs",
             f"{budget.train} train" if budget.train else "the base config's train split",
             f"{budget.test} test images" if budget.test else "the base config's test split"]
    paper = spec.baselines.paper_mcevae
    if paper is not None and paper.epochs:
        parts.append(f"paper_mcevae {paper.epochs} epochs")
    threads = sorted({r.get("threads") for r in records.values() if r.get("threads")})
    devices = sorted({r.get("device") for r in records.values() if r.get("device")})
    versions = sorted({f"mcekit {r.get('mcekit_version')}, torch {r.get('torch_version')}" for r in records.values()})
    lines = [
        f"# Benchmark `{spec.name}`", "",
        f"Spec `{loaded.path.name}`, base config `{spec.base}`; budget: {', '.join(parts)}; "
        f"seeds {', '.join(map(str, spec.seeds))}. {done} of {len(cells)} cells done."
        + (f" Device {', '.join(devices)}, {', '.join(map(str, threads))} thread(s) per cell; "
           f"{'; '.join(versions)}." if records else ""), "",
        "## Results (test split; mean ± std over seeds)", "",
    ]
    metrics = shown_metrics(rows)
    header = ["dataset", "model", "seeds"] + [m.header for m in metrics]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---", "---", "---:"] + ["---:"] * len(metrics)) + "|")
    for row in rows:
        seeds = f"{len(row.seeds)}" + (f" ({len(row.failed)} failed)" if row.failed else "")
        lines.append("| " + " | ".join([row.dataset, f"`{row.model}`", seeds]
                                       + [_cell_text(row, m) for m in metrics]) + " |")
    table = deltas(rows)
    if table:
        refs = [r for r in REFERENCES if any(e[r] is not None for e in table)]
        lines += ["", "## What the toolkit adds (Δ ACC against each reference, means over seeds)", "",
                  "| dataset | model | ACC | vs trivial + same prior | " + " | ".join(f"vs {r}" for r in refs) + " |",
                  "|---|---|---:|---:|" + "---:|" * len(refs)]
        for e in table:
            lines.append("| " + " | ".join([e["dataset"], f"`{e['model']}`", f"{e['acc']:.3f}", _signed(e["trivial"])]
                                           + [_signed(e[r]) for r in refs]) + " |")
    failures = [r for r in records.values() if r.get("status") != "ok"]
    if failures:
        lines += ["", "## Failed cells (re-running the spec retries them)", ""]
        lines += [f"- `{r['id']}`: {r.get('error')}" for r in failures]
    missing = [c.id for c in cells if c.id not in records]
    if missing:
        lines += ["", f"{len(missing)} cell(s) not run yet: " + ", ".join(f"`{m}`" for m in missing[:20])
                  + (", ..." if len(missing) > 20 else "")]
    if figures:
        lines += ["", "## Plots", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    lines += ["", "## Columns", ""] + [f"- **{m.header}**: {m.meaning}" for m in metrics]
    lines += ["- **seeds**: cells that finished (each seed also draws its own split and transformations)", ""]
    return "\n".join(lines)


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "model", "kind", "group", "prior", "n_seeds", "n_failed"]
                        + [f"{m.key}_{stat}" for m in METRICS for stat in ("mean", "std")])
        for row in rows:
            stats = []
            for m in METRICS:
                stats += ["" if row.mean(m.key) is None else f"{row.mean(m.key):.6g}",
                          "" if row.std(m.key) is None else f"{row.std(m.key):.6g}"]
            writer.writerow([row.dataset, row.model, row.kind, row.group or "", row.prior or "", len(row.seeds),
                             len(row.failed)] + stats)


def write_cells_csv(cells: list[Cell], records: dict[str, dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "dataset", "model", "kind", "group", "prior", "seed", "status"]
                        + [m.key for m in METRICS] + ["wall_seconds", "error"])
        for cell in cells:
            record = records.get(cell.id)
            if record is None:
                continue
            metrics = record.get("metrics", {})
            values = ["" if _number(metrics.get(m.key)) is None else f"{metrics[m.key]:.6g}" for m in METRICS]
            wall = _number(metrics.get("wall_seconds"))
            writer.writerow([cell.id, cell.dataset, cell.model, cell.kind, cell.group or "", cell.prior or "",
                             cell.seed, record.get("status")] + values
                            + ["" if wall is None else f"{wall:.1f}", record.get("error") or ""])


# --- plots --------------------------------------------------------------------------------------------------

def plot_accuracy_bars(loaded: LoadedSpec, rows: list[Row], path: Path) -> bool:
    """Grouped bars per dataset: groups on the x axis, one bar per prior (error bars: std over seeds);
    the references as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(loaded.spec.datasets)
    if not any(r.mean("acc") is not None for r in rows):
        return False
    fig, axes = plt.subplots(1, len(datasets), figsize=(max(6.0, 1.2 * len(loaded.groups) + 2) * len(datasets), 5.0),
                             squeeze=False, sharey=True)
    width = 0.8 / max(1, len(loaded.priors))
    colours = plt.get_cmap("tab10")
    styles = {"kmeans_pixels": ":", "kmeans_moments": "--", "paper_mcevae": "-."}
    for ax, dataset in zip(axes[0], datasets, strict=True):
        by_model = {r.model: r for r in rows if r.dataset == dataset}
        for j, prior in enumerate(loaded.priors):
            xs, means, errs = [], [], []
            for i, group in enumerate(loaded.groups):
                row = by_model.get(grid_model(group, prior))
                if row is not None and row.mean("acc") is not None:
                    xs.append(i - 0.4 + width * (j + 0.5))
                    means.append(row.mean("acc"))
                    errs.append(row.std("acc") or 0.0)
            if xs:
                ax.bar(xs, means, width, yerr=errs if any(errs) else None, capsize=3, label=prior, color=colours(j))
        for k, ref in enumerate(REFERENCES):
            row = by_model.get(ref)
            if row is not None and row.mean("acc") is not None:
                ax.axhline(row.mean("acc"), color=colours(len(loaded.priors) + k), linestyle=styles[ref],
                           linewidth=1.5, label=ref)
        ax.set_xticks(range(len(loaded.groups)), loaded.groups, rotation=20)
        ax.set_title(f"data: {dataset}")
        ax.set_xlabel("model group")
        ax.set_ylim(0, 1)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (mean ± std over seeds)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    for ax in axes[0][1:]:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8,
               title="bars: cluster prior; lines: references")
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_accuracy_vs_time(rows: list[Row], path: Path) -> bool:
    """Accuracy against total training seconds per cell (k-means: fit time); error bars both ways."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.mean("acc") is not None and r.mean("train_seconds")]
    if not points:
        return False
    datasets = sorted({r.dataset for r in points})
    markers = dict(zip(datasets, "osD^v<>ph*", strict=False))
    models = list(dict.fromkeys(r.model for r in points))
    colours = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(8, 5))
    for row in points:
        colour = colours(models.index(row.model) % 20)
        ax.errorbar(row.mean("train_seconds"), row.mean("acc"), xerr=row.std("train_seconds") or 0,
                    yerr=row.std("acc") or 0, fmt=markers.get(row.dataset, "o"), color=colour, capsize=2)
        ax.annotate(f"{row.model} ({row.dataset})", (row.mean("train_seconds"), row.mean("acc")), fontsize=7,
                    xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("training seconds per cell (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title("accuracy against training time; marker = dataset")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_report(loaded: LoadedSpec, cells: list[Cell], records: dict[str, dict[str, Any]],
                 out_dir: Path) -> dict[str, Path]:
    """results.md, results.csv (one row per dataset × model), cells.csv (one row per cell) and plots."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = aggregate(cells, records)
    paths = {"markdown": out_dir / "results.md", "csv": out_dir / "results.csv", "cells_csv": out_dir / "cells.csv"}
    figures: list[str] = []
    if loaded.spec.plots:
        for name, draw in (("acc_by_group_prior.png", lambda p: plot_accuracy_bars(loaded, rows, p)),
                           ("acc_vs_time.png", lambda p: plot_accuracy_vs_time(rows, p))):
            if draw(out_dir / name):
                figures.append(name)
                paths[Path(name).stem] = out_dir / name
    write_csv(rows, paths["csv"])
    write_cells_csv(cells, records, paths["cells_csv"])
    paths["markdown"].write_text(markdown(loaded, cells, rows, records, figures))
    return paths
