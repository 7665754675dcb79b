"""Training throughput: a plain VAE step, the default mcekit step and the paper's 25-copy protocol.

    python -m benchmarks.speed [--batches N] [--repeats R] [--warmup W] [--batch-size B] [--out FILE]

Same data, same batch size, same networks (paper_cnn encoder, gated_mlp decoder) for all three:

(a) plain VAE — the base config with the trivial group and losses bce + kl only (no pose, no invariance);
(b) mcekit — the base config as it is (configs/se2_gmm.yaml: bce, kl, invariance with one copy for a
    quarter of each batch, encoded in one batched pass with gradients, cluster_balance), every term on;
(c) paper protocol — the paper-faithful model exactly as the ``paper_mcevae`` benchmark baseline: bce + kl
    + ``paper_invariance``, per batch a loop of 25 forward passes under ``torch.no_grad`` on randomly moved
    copies (each one encodes and decodes), whose cluster/style samples and canonical images are the
    targets of the paper's invariance term, as in the published code.

Each step is forward, losses, backward, gradient clipping as configured, optimizer step — the body of
``Trainer.train_epoch``, with the model, losses and optimizer built by the functions the Trainer uses.
Warm-up batches are not timed; the settings are timed interleaved (a, b, c, a, b, c, ...) so that load
from other processes spreads evenly; the median over repeats is reported.
Writes ``benchmarks/results/speed.md``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import publish

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "se2_gmm.yaml"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "speed.md"
#: schedule position of the timed steps: every warm-up over, every loss term on (the steady state)
STEADY_EPOCH = 1000.0


@dataclass
class Setting:
    key: str
    label: str
    description: str
    config: Any
    rates: list[float] = field(default_factory=list)   # images per second, one per repeat
    fit_seconds: float | None = None                    # the learned upright's fit, once before training

    @property
    def median(self) -> float:
        return statistics.median(self.rates)


def build_settings(config_path: Path, copies: int, batch_size: int | None) -> list[Setting]:
    from mcekit.bench.cells import paper_fields, set_fields
    from mcekit.bench.spec import PaperOptions
    from mcekit.config import read_yaml, validate_config

    base = read_yaml(config_path)
    if batch_size is not None:
        base = set_fields(base, {"train.batch_size": batch_size}, "--batch-size")
    source = str(config_path)
    transform = (base.get("data") or {}).get("transform")
    data_group = transform.get("group") if isinstance(transform, dict) else None
    plain_losses = [{"type": "bce"}, {"type": "kl"}]
    plain = set_fields(copy.deepcopy(base), {"model.group": {"type": "trivial"}, "model.half_turns": None,
                                             "model.upright": None,
                                             "losses": plain_losses}, source)
    paper = set_fields(copy.deepcopy(base), paper_fields(PaperOptions(samples=copies), data_group), source)
    default_losses = ", ".join(str(loss.get("type")) for loss in base.get("losses", []))
    return [
        Setting("plain", "(a) plain VAE", "trivial group, losses bce + kl", validate_config(plain, source)),
        Setting("mcekit", "(b) mcekit default", f"{config_path.name} as is: {default_losses}",
                validate_config(base, source)),
        Setting("paper", "(c) paper protocol", f"paper model, bce + kl + {copies} sequential no-grad "
                f"re-encodings/decodings of moved copies", validate_config(paper, source)),
    ]


def make_step(setting: Setting, data: Any) -> tuple[Callable[[Any, Any, Any], None], Any]:
    """A training step whose model, losses and optimizer are built with the functions the Trainer uses, and
    whose forward pass and loss terms are the Trainer's own (``TrainingStep``)."""
    import torch

    from mcekit.model import build_model
    from mcekit.train import TrainingStep, make_optimizer, resolve_device, seed_everything

    config = setting.config
    seed_everything(config.seed)
    device = resolve_device(config.train.device)
    model = build_model(config.model, data.image_shape, data.padding).to(device)
    losses = [loss.build() for loss in config.losses]
    optimizer = make_optimizer(model, config.train.lr, config.train.weight_decay)
    training_step = TrainingStep(model, losses)
    up = config.model.upright
    if up is not None:  # fitted once before training, as the Trainer does; its time is reported on its own
        start = time.perf_counter()
        model.fit_upright(data.train.images, up.epochs, config.train.batch_size, up.lr, config.seed)
        setting.fit_seconds = time.perf_counter() - start
        training_step.upright_angles = model.upright_angles(data.train.images)
    clip = config.train.grad_clip
    model.train()

    def step(x: Any, canonical: Any, index: Any) -> None:
        total, _ = training_step(x, canonical, STEADY_EPOCH, index)
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()

    return step, device


def measure(config_path: Path = DEFAULT_CONFIG, *, batches: int = 20, repeats: int = 5, warmup: int = 3,
            batch_size: int | None = None, copies: int = 25, threads: int | None = None,
            device: str | None = None) -> dict[str, Any]:
    """Median training images per second of (a), (b), (c) and the two ratios."""
    import warnings

    warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=FutureWarning)
    import torch

    from mcekit.bench.cells import set_fields
    from mcekit.config import validate_config
    from mcekit.data.transformed import prepare

    if min(batches, repeats) < 1 or warmup < 0 or copies < 1:
        raise ValueError("batches, repeats and copies must be at least 1, warmup at least 0")
    if threads:
        torch.set_num_threads(threads)
    settings = build_settings(Path(config_path), copies, batch_size)
    if device:
        for s in settings:
            data = set_fields(s.config.model_dump(mode="json"), {"train.device": device}, "--device")
            s.config = validate_config(data, "--device")
    first = settings[1].config
    size = first.train.batch_size
    # one pool of images for all three settings: enough distinct batches for a repeat, within the 5,000 digits
    n_train = max(size, min(4000, size * batches))
    data_config = first.data.model_copy(update={"split": first.data.split.model_copy(update={"train": n_train,
                                                                                             "test": 1})})
    data = prepare(data_config, first.seed)
    steps = {s.key: make_step(s, data) for s in settings}
    dev = steps["mcekit"][1]
    images = data.train.images.to(dev)
    canonical = data.train.canonical.to(dev)
    n_batches = max(1, n_train // size)

    def run(key: str, count: int, offset: int) -> None:
        step = steps[key][0]
        for i in range(count):
            j = (offset + i) % n_batches
            rows = slice(j * size, (j + 1) * size)
            step(images[rows], canonical[rows], torch.arange(n_train)[rows])
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for s in settings:
        run(s.key, warmup, 0)
    for r in range(repeats):
        for s in settings:
            start = time.perf_counter()
            run(s.key, batches, r * batches)
            s.rates.append(batches * size / (time.perf_counter() - start))
    a, b, c = (s.median for s in settings)
    return {
        "settings": {s.key: {"label": s.label, "description": s.description, "images_per_second": s.median,
                             "rates": s.rates, "fit_seconds": s.fit_seconds} for s in settings},
        "n_train": n_train,
        "plain": a, "mcekit": b, "paper": c,
        "throughput_ratio_mcekit_over_paper": b / c,     # (b)/(c): how many times faster mcekit trains
        "cost_ratio_mcekit_over_plain": a / b,           # (b)/(a) in time per image: what the terms cost
        "batch_size": size, "batches": batches, "repeats": repeats, "warmup": warmup, "copies": copies,
        "threads": torch.get_num_threads(), "device": str(dev), "torch": torch.__version__,
        "config": str(config_path),
    }


def markdown(result: dict[str, Any]) -> str:
    from mcekit import __version__

    lines = [
        "# Training speed: plain VAE, mcekit, the paper's protocol", "",
        f"`python -m benchmarks.speed --batches {result['batches']} --repeats {result['repeats']} --warmup "
        f"{result['warmup']} --batch-size {result['batch_size']} --copies {result['copies']}` — batch size "
        f"{result['batch_size']}, {result['batches']} timed batches per repeat, {result['repeats']} repeats "
        f"(median), {result['warmup']} warm-up batches not timed; device {result['device']}, "
        f"{result['threads']} thread(s); mcekit {__version__}, torch {result['torch']}; "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.", "",
        "| setting | a training step | images/s (median) | ms per batch | range over repeats |",
        "|---|---|---:|---:|---:|",
    ]
    for entry in result["settings"].values():
        ips = entry["images_per_second"]
        lines.append(f"| {entry['label']} | {entry['description']} | {ips:.0f} | "
                     f"{1000 * result['batch_size'] / ips:.1f} | {min(entry['rates']):.0f}–{max(entry['rates']):.0f} |")
    lines += [
        "",
        f"- **(b)/(c) throughput ratio: {result['throughput_ratio_mcekit_over_paper']:.2f}×** — the default "
        "mcekit step trains on this many times as many images per second as the paper's protocol.",
        f"- **(b)/(a) cost ratio: {result['cost_ratio_mcekit_over_plain']:.2f}×** — a default mcekit step costs "
        "this many plain-VAE steps (time per image).",
        "",
        "Every step is forward, losses, backward, clipping as configured and an optimizer step (the body of "
        "`Trainer.train_epoch`), at the steady state of the schedules (all warm-ups over, all terms on).",
        "",
    ]
    for entry in result["settings"].values():
        if entry.get("fit_seconds") is not None:
            lines += [f"{entry['label']} fits its learned upright once, before training: "
                      f"{entry['fit_seconds']:.1f} s on the {result['n_train']:,} images of this pool (not in the "
                      "throughput above; a run's `train_seconds` include it).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="base config (default configs/se2_gmm.yaml)")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per repeat (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; the median is reported (default 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches per setting first (default 3)")
    parser.add_argument("--batch-size", type=int, help="batch size (default: the config's)")
    parser.add_argument("--copies", type=int, default=25, help="paper protocol: no-grad copies per batch (25)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], help="default: the config's")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown report (default "
                        "benchmarks/results/speed.md)")
    args = parser.parse_args(argv)
    from mcekit.config import ConfigError

    try:
        result = measure(args.config, batches=args.batches, repeats=args.repeats, warmup=args.warmup,
                         batch_size=args.batch_size, copies=args.copies, threads=args.threads, device=args.device)
    except (ConfigError, ValueError) as exc:
        print(str(exc).splitlines()[0], file=sys.stderr)
        return 2
    publish(markdown(result), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
