"""Trainer: the loop, schedules, progress bar, evaluation, atomic checkpoints and exact resume."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mcekit import __version__, distributed
from mcekit.config import config_from_dump, dump_config
from mcekit.data.transformed import PreparedData, prepare
from mcekit.evaluate import EvaluationImages, evaluate, evaluation_images
from mcekit.losses.base import LossContext
from mcekit.model import MCEVAE, build_model
from mcekit.priors.base import Posterior
from mcekit.registry import plugin_distributions


class TrainingError(Exception):
    """A run that cannot go on; one line for the user."""


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("train.device: 'cuda' requested but no CUDA device is available; use auto or cpu")
    return torch.device(name, local_rank) if name == "cuda" else torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- checkpoints -----------------------------------------------------------------------------------

def atomic_save(obj: Any, path: Path) -> None:
    """Write to a temporary file, fsync, then rename: a crash never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:  # disk full, no permission, interrupted: drop the partial file, keep the old one
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise TrainingError(f"{path}: cannot write checkpoint ({exc.strerror or exc}); "
                                "the previous one is unchanged") from None
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (not every filesystem allows it)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TrainingError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupted or not a checkpoint
        raise TrainingError(f"{path}: unreadable checkpoint ({type(exc).__name__}); "
                            "the other checkpoint in the folder may still be usable") from None


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, *rest = state["python"]
    random.setstate((version, tuple(rest[0]), rest[1]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- the trainer -----------------------------------------------------------------------------------

@dataclass
class RunPaths:
    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def metrics_jsonl(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def metrics_json(self) -> Path:
        return self.root / "metrics.json"

    @property
    def figures(self) -> Path:
        return self.root / "figures"


def used_components(config: Any) -> dict[str, list[str]]:
    m = config.model
    names = {
        "encoders": [m.encoder.type], "decoders": [m.decoder.type],
        "groups": [m.group.type] + ([config.data.transform.group.type] if config.data.transform else []),
        "priors": [m.latents.cluster.prior.type, m.latents.style.prior.type, m.latents.pose.prior.type],
        "losses": [loss.type for loss in config.losses], "datasets": [config.data.source.type],
    }
    return {k: sorted(set(v)) for k, v in names.items()}


def cluster_fit_epochs(train: Any) -> list[int]:
    """Epochs after which the cluster prior is fitted to encoded means: the first fit, then every refit."""
    if not train.cluster_init_epoch:
        return []
    return list(range(train.cluster_init_epoch, train.epochs + 1, train.cluster_refit_every or train.epochs + 1))


def make_optimizer(model: MCEVAE, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam, or geoopt's RiemannianAdam when some parameter lives on a manifold."""
    import geoopt

    params = [p for p in model.parameters() if p.requires_grad]
    if any(isinstance(p, geoopt.ManifoldParameter) for p in params):
        return geoopt.optim.RiemannianAdam(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


class TrainingStep(torch.nn.Module):
    """Forward pass plus every loss term: the unit DDP wraps."""

    def __init__(self, model: MCEVAE, losses: list[Any]) -> None:
        super().__init__()
        self.model = model
        self.losses = losses
        #: the learned upright's start-pose angle per training image, once fitted (the batch's rows are looked up)
        self.upright_angles: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, canonical: torch.Tensor | None, epoch: float,
                index: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        known = self.upright_angles
        out = self.model(x, upright_angle=None if known is None or index is None else known[index.to(known.device)])
        ctx = LossContext(x, out, self.model, epoch, canonical, index=index)
        total = torch.zeros((), device=x.device)
        parts: dict[str, torch.Tensor] = {}
        for loss in self.losses:
            result = loss(ctx)
            parts[loss.name] = result.value
            parts.update(result.parts)
            total = total + result.value
        return total, parts


class Trainer:
    def __init__(self, config: Any, run_dir: Path, *, quiet: bool = False, data: PreparedData | None = None) -> None:
        self.config = config
        self.paths = RunPaths(Path(run_dir))
        self.quiet = quiet
        t = config.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.world = distributed.launched_world()
        if t.batch_size % self.world.size:
            raise TrainingError(f"train.batch_size: {t.batch_size} is not divisible by the {self.world.size} processes")
        self.device = resolve_device(t.device, self.world.local_rank)
        distributed.init(self.world, self.device)
        seed_everything(config.seed)
        self.data = data if data is not None else prepare(config.data, config.seed)
        self.model = build_model(config.model, self.data.image_shape, self.data.padding).to(self.device)
        self.losses = [loss.build() for loss in config.losses]
        # What the loop calls: the loss-computing step, wrapped in DDP under torchrun (every use of a
        # parameter must happen inside the wrapped forward). Mixture parameters join the graph only once
        # the mixture is fitted, hence find_unused_parameters.
        self.step_module = TrainingStep(self.model, self.losses)
        self.net: torch.nn.Module = self.step_module
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            devices = [self.device] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.net, device_ids=devices, find_unused_parameters=True)
            self.reseed_rank(0)
        self.optimizer = make_optimizer(self.model, t.lr, t.weight_decay)
        schedulers = torch.optim.lr_scheduler
        self.scheduler = (schedulers.CosineAnnealingLR(self.optimizer, T_max=t.epochs, eta_min=t.lr * 0.05)
                          if t.lr_schedule == "cosine" else schedulers.LambdaLR(self.optimizer, lambda e: 1.0))
        self.epoch = 0
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self._evaluation_images: EvaluationImages | None = None
        self.best_score = math.inf
        self.skipped_batches = 0
        self.train_seconds = 0.0

    # -- state --------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "mcekit_version": __version__,
            "config": dump_config(self.config),
            "plugins": plugin_distributions(used_components(self.config)),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch, "step": self.step,
            "history": json.dumps(self.history),
            "best_score": self.best_score,
            "skipped_batches": self.skipped_batches,
            "train_seconds": self.train_seconds,
            "rng": rng_state(),
            "losses": [loss.state_dict() for loss in self.losses],
        }

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.history = json.loads(ckpt["history"])
        self.best_score = float(ckpt["best_score"])
        self.skipped_batches = int(ckpt["skipped_batches"])
        self.train_seconds = float(ckpt["train_seconds"])
        set_rng_state(ckpt["rng"])
        for loss, state in zip(self.losses, ckpt.get("losses", []), strict=False):  # older checkpoints: none
            loss.load_state_dict(state)

    def reseed_rank(self, epoch: int) -> None:
        """Each rank draws its own posterior noise and invariance elements, from the seed."""
        seed_everything(self.config.seed + 7919 * self.world.rank + 104729 * epoch)

    def resume(self) -> None:
        ckpt = load_checkpoint(self.paths.last)
        try:
            self.restore(ckpt)
        except (KeyError, RuntimeError, ValueError, TypeError) as exc:  # another config's or a foreign checkpoint
            raise TrainingError(f"{self.paths.last}: does not fit this config's model ({type(exc).__name__}: "
                                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else '?'}); resume with the "
                                "config and --set options the run was started with") from None
        if self.world.distributed:
            self.reseed_rank(self.epoch)
        if not self.world.is_main:
            return
        # metrics.jsonl may hold epochs written after the checkpoint: keep it consistent with history
        atomic_write_text("".join(json.dumps(h) + "\n" for h in self.history), self.paths.metrics_jsonl)

    # -- training -----------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to the configured epochs; evaluation, files and checkpoints on rank 0 only."""
        try:
            return self._fit()
        finally:
            distributed.shutdown()

    def _fit(self) -> dict[str, Any]:
        t = self.config.train
        main = self.world.is_main
        if main:
            self.paths.root.mkdir(parents=True, exist_ok=True)
            (self.paths.root / "config.yaml").write_text(dump_config(self.config))
        if self.model.upright is not None:
            if not bool(self.model.upright.fitted):
                self.fit_upright()
            self.step_module.upright_angles = self.model.upright_angles(self.data.train.images)
        while self.epoch < t.epochs:
            self.train_epoch()
            if self.epoch in cluster_fit_epochs(t):
                self.initialize_cluster_prior()
            record = {"epoch": self.epoch, "step": self.step, "lr": self.scheduler.get_last_lr()[0],
                      "train_seconds": round(self.train_seconds, 3), **self._epoch_losses}
            if not main:
                self.history.append(record)
                distributed.barrier(self.world)
                continue
            if self.epoch % t.eval_every == 0 or self.epoch == t.epochs:
                record.update(self.evaluate())
                record["test_loss"] = self.test_loss()
            # best.pt is chosen among every stationary epoch, however often the metrics are logged
            if self.epoch >= self.stationary_epoch():
                score = record["test_loss"] if "test_loss" in record else self.test_loss()
                if score < self.best_score:
                    self.best_score = score
                    atomic_save(self.state() | {"history": json.dumps(self.history + [record])}, self.paths.best)
            self.history.append(record)
            with open(self.paths.metrics_jsonl, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            atomic_save(self.state(), self.paths.last)
            if not self.quiet:
                keys = ("train_loss", "acc", "nmi", "clusters_used", "test_loss")  # test metrics every eval_every
                shown = {k: record[k] for k in keys if record.get(k) is not None}
                tqdm.write(f"epoch {self.epoch}/{t.epochs} " + " ".join(f"{k}={v:.4g}" for k, v in shown.items()))
            distributed.barrier(self.world)
        result: dict[str, Any] = {}
        if main:
            if not self.paths.best.exists():
                atomic_save(self.state(), self.paths.best)
            result = self.finish()
        # leave the process group together: a rank tearing it down while rank 0 still evaluates could abort
        distributed.barrier(self.world)
        return result

    def stationary_epoch(self) -> int:
        """First epoch at which the objective no longer changes by schedule (warm-ups done, last prior fit)."""
        settled = [loss.settled_epoch for loss in self.losses]
        return int(math.ceil(max([*cluster_fit_epochs(self.config.train), *settled], default=0)))

    def finish(self) -> dict[str, Any]:
        best = load_checkpoint(self.paths.best)
        self.model.load_state_dict(best["model"])
        readout_record: dict[str, Any] = {}
        if self.model.readout_pending:
            started = time.perf_counter()
            repairs = self.model.fit_readout(self.data.train.images, self.step_module.upright_angles,
                                             self.config.model.readout.classifier, self.config.train.batch_size,
                                             self.config.seed, progress=not self.quiet,
                                             half_turn_merge=self.config.model.readout.half_turn_merge)
            if not self.quiet:
                for repair in repairs:
                    tqdm.write(f"readout: clusters {repair.joined[0]} and {repair.joined[1]} are each other's half "
                               f"turns ({repair.share:.0%}): joined; cluster {repair.split} split in two")
            if self.config.model.readout.half_turn_merge is not None:
                readout_record["half_turn_repairs"] = len(repairs)
            atomic_save(best | {"model": self.model.state_dict()}, self.paths.best)
            if not self.quiet:
                tqdm.write(f"readout fitted in {time.perf_counter() - started:.0f} s")
        metrics = {**self.evaluate(), "epochs": self.epoch, "best_epoch": int(best["epoch"]),
                   "train_seconds": round(self.train_seconds, 3), "skipped_batches": self.skipped_batches,
                   **readout_record}
        atomic_write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n", self.paths.metrics_json)
        if self.config.train.figures:
            from mcekit.figures import write_figures

            write_figures(self.model, self.data, self.history, self.paths.figures, self.device)
        return metrics

    def batches(self, epoch: int) -> list[torch.Tensor]:
        """This rank's mini-batches: a seeded shuffle per epoch; under DDP, DistributedSampler's share of it
        in per-rank batches of batch_size / world size (the global batch stays batch_size)."""
        size = self.config.train.batch_size // self.world.size
        if self.world.distributed:
            from torch.utils.data import DistributedSampler

            sampler = DistributedSampler(range(len(self.data.train)), num_replicas=self.world.size,
                                         rank=self.world.rank, shuffle=True, seed=self.config.seed)
            sampler.set_epoch(epoch)
            order = torch.tensor(list(iter(sampler)))
        else:
            generator = torch.Generator().manual_seed(self.config.seed * 100003 + epoch)
            order = torch.randperm(len(self.data.train), generator=generator)
        return [order[i:i + size] for i in range(0, len(order), size)]

    def train_epoch(self) -> None:
        self.model.train()
        t = self.config.train
        batches = self.batches(self.epoch)
        sums: dict[str, float] = {}
        start = time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{t.epochs}", leave=False,
                   disable=self.quiet or not sys.stderr.isatty() or not self.world.is_main)
        for i, index in enumerate(bar):
            x = self.data.train.images[index].to(self.device)
            canonical = self.data.train.canonical[index].to(self.device)
            for prior in self.model.priors.values():
                prior.on_step(self.step)
            with self.autocast():
                total, parts = self.net(x, canonical, self.epoch + i / len(batches), index)
            if not distributed.all_true(bool(torch.isfinite(total)), self.world, self.device):
                bad = next((k for k, v in parts.items() if not torch.isfinite(v)), "total")
                if t.nonfinite == "skip":
                    self.skipped_batches += 1
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                kept = (f"last good checkpoint: {self.paths.last}" if self.paths.last.exists()
                        else "no checkpoint was written yet")
                raise TrainingError(f"non-finite loss at epoch {self.epoch + 1}, step {self.step}: term '{bad}' "
                                    f"is {parts.get(bad, total).item()}; {kept}")
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            if t.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
            self.optimizer.step()
            self.step += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            sums["loss"] = sums.get("loss", 0.0) + float(total.detach())
            if not bar.disable:
                bar.set_postfix(loss=f"{float(total):.1f}")
        self.scheduler.step()
        self.train_seconds += time.perf_counter() - start
        self.epoch += 1
        n = max(1, len(batches))
        self._epoch_losses = {f"train_{k}": distributed.all_reduce_mean(v / n, self.world, self.device)
                              for k, v in sorted(sums.items())}

    def fit_upright(self) -> None:
        """Fit the learned upright on the mass-centred training images, before the model trains (every rank
        fits the same way from the seed; rank 0's result is then shared)."""
        start = time.perf_counter()
        self._evaluation_images = None  # their angles depend on the fit
        up = self.config.model.upright
        losses = self.model.fit_upright(self.data.train.images, up.epochs, self.config.train.batch_size,
                                        up.lr, self.config.seed,
                                        progress=not self.quiet and self.world.is_main and sys.stderr.isatty())
        distributed.broadcast_module_state(self.model.upright, self.world)
        seconds = time.perf_counter() - start
        self.train_seconds += seconds
        if not self.quiet and self.world.is_main:  # 0.5: a guess that knows nothing (the zero vector); 0: perfect
            tqdm.write(f"learned upright fitted in {seconds:.0f} s: mean squared error {losses[0]:.3f} → "
                       f"{losses[-1]:.3f}")

    def autocast(self) -> Any:
        """bf16 autocast on CUDA when configured; a no-op elsewhere (CPU autocast is not worth it here)."""
        enabled = self.config.train.precision == "bf16" and self.device.type == "cuda"
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def encoded_posterior(self, images: torch.Tensor, block: str = "cluster") -> Posterior:
        """One block's posterior for a whole image set, encoded in chunks (evaluation mode, on this device)."""
        return self.model.encoded_posterior(images, block)

    def initialize_cluster_prior(self) -> None:
        """Fit the cluster prior to encoded means on rank 0, give every rank the same prior, then tell the
        loss terms (each rank encodes the training images itself: the parameters are equal on all ranks)."""
        posterior = self.encoded_posterior(self.data.train.images)
        if self.world.is_main:
            self.model.cluster_prior.initialize(posterior.mean.cpu(), seed=self.config.seed)
        distributed.broadcast_module_state(self.model.cluster_prior, self.world)
        for loss in self.losses:
            loss.on_cluster_fit(posterior, self.model.cluster_prior)

    @torch.no_grad()
    def test_loss(self) -> float:
        """Label-free objective on the test split (selects best.pt)."""
        self.model.eval()
        total, n = 0.0, 0
        for i in range(0, len(self.data.test), 500):
            x = self.data.test.images[i:i + 500].to(self.device)
            canonical = self.data.test.canonical[i:i + 500].to(self.device)
            state = torch.get_rng_state()
            upright = self.evaluation_images.upright
            out = self.model(x, sample=False, upright_angle=None if upright is None else upright[i:i + 500])
            ctx = LossContext(x, out, self.model, float(self.epoch), canonical,
                              generator=torch.Generator().manual_seed(12345 + i))
            total += sum(float(loss(ctx).value) for loss in self.losses) * x.shape[0]
            torch.set_rng_state(state)
            n += x.shape[0]
        return total / max(1, n)

    @property
    def evaluation_images(self) -> EvaluationImages:
        """Drawn once, on the first evaluation (after the learned upright's fit, which they depend on)."""
        if self._evaluation_images is None:
            self._evaluation_images = evaluation_images(self.model, self.data.test, self.data.group, self.config.seed)
        return self._evaluation_images

    def evaluate(self) -> dict[str, Any]:
        return evaluate(self.model, self.data.test, self.data.group, self.device, seed=self.config.seed,
                        prepared=self.evaluation_images)


@dataclass
class EvaluatedRun:
    config: Any
    checkpoint: dict[str, Any]
    model: MCEVAE
    data: PreparedData
    device: torch.device
    metrics: dict[str, Any]


def evaluate_run(run_dir: Path, device: str | None = None) -> EvaluatedRun:
    """Rebuild a finished run's best model and recompute its test metrics; the plugins it was built with must be
    installed."""
    from importlib import metadata

    best = RunPaths(Path(run_dir)).best
    ckpt = load_checkpoint(best)
    missing = []
    for dist, version in ckpt.get("plugins", {}).items():
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            missing.append(f"{dist}=={version}")
    if missing:
        raise TrainingError(f"{best}: this run was built with plugin package(s) that are not installed: "
                            f"{', '.join(missing)}; install them (pip install {' '.join(missing)}) and retry")
    config = config_from_dump(ckpt["config"])
    resolved = resolve_device(device or config.train.device)
    data = prepare(config.data, config.seed)
    model = build_model(config.model, data.image_shape, data.padding).to(resolved)
    model.load_state_dict(ckpt["model"])
    if model.readout_pending:  # a run stopped before its end
        model.fit_readout(data.train.images, None, config.model.readout.classifier, config.train.batch_size,
                          config.seed, half_turn_merge=config.model.readout.half_turn_merge)
    metrics = {**evaluate(model, data.test, data.group, resolved, seed=config.seed), "epochs": int(ckpt["epoch"]),
               "train_seconds": float(ckpt["train_seconds"])}
    return EvaluatedRun(config, ckpt, model, data, resolved, metrics)
