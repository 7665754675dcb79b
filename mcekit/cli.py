"""Command line: mcekit run | eval | list | info | validate | schema."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

EXIT_USAGE = 2


class UserError(Exception):
    """Anything the user can fix: printed as one line per problem, exit code 2."""

    def __init__(self, lines: list[str] | str) -> None:
        self.lines = [lines] if isinstance(lines, str) else list(lines)
        super().__init__("\n".join(self.lines))


def _user_errors() -> tuple[type[BaseException], ...]:
    from mcekit.config import ConfigError
    from mcekit.data.sources import DataError
    from mcekit.registry import RegistryError
    from mcekit.train import TrainingError

    return ConfigError, DataError, RegistryError, TrainingError, UserError


def _lines(exc: BaseException) -> list[str]:
    return list(getattr(exc, "lines", None) or [str(exc).splitlines()[0] if str(exc) else type(exc).__name__])


# --- commands ------------------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from mcekit.config import load_config
    from mcekit.train import Trainer

    config = load_config(args.config, args.set)
    out = Path(args.out) if args.out else (
        Path("runs") / Path(args.config).stem / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    from mcekit.distributed import is_main_process

    if is_main_process():  # under torchrun only rank 0 owns the run directory
        prepare_run_directory(out, resume=args.resume, overwrite=args.overwrite)
    trainer = Trainer(config, out, quiet=args.quiet)
    if args.resume:
        trainer.resume()
    metrics = trainer.fit()
    if is_main_process():
        _print_metrics(metrics, out)
    return 0


def prepare_run_directory(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Never overwrite a run by accident: an existing run needs --resume or --overwrite."""
    if resume:
        if not (out / "checkpoints" / "last.pt").is_file():
            raise UserError(f"{out}: nothing to resume (no checkpoints/last.pt)")
    elif out.exists() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"{out}: run directory exists; pass --resume to continue it or --overwrite to replace it")
        import shutil

        shutil.rmtree(out)


def cmd_eval(args: argparse.Namespace) -> int:
    from mcekit.figures import write_figures
    from mcekit.train import RunPaths, atomic_write_text, evaluate_run

    paths = RunPaths(Path(args.run_dir))
    run = evaluate_run(paths.root, args.device)
    atomic_write_text(json.dumps(run.metrics, indent=2, sort_keys=True) + "\n", paths.metrics_json)
    write_figures(run.model, run.data, json.loads(run.checkpoint["history"]), paths.figures, run.device)
    _print_metrics(run.metrics, paths.root)
    return 0


def _print_metrics(metrics: dict[str, Any], out: Path) -> None:
    keys = ("acc", "nmi", "ari", "clusters_used", "invariance_agreement", "pose_angle_error_deg", "recon_bce",
            "train_seconds")
    shown = "  ".join(f"{k}={metrics[k]:.4g}" for k in keys if isinstance(metrics.get(k), int | float))
    print(f"{shown}\nrun directory: {out}")


def cmd_list(args: argparse.Namespace) -> int:
    from mcekit import registry

    kinds = [registry.registry(args.kind).kind] if args.kind else list(registry.REGISTRIES)
    for kind in kinds:
        reg = registry.registry(kind)
        print(f"{kind}:")
        for entry in reg.entries():
            doc = (entry.config_class.__doc__ or "").strip().splitlines()
            origin = f"{entry.source.distribution} {entry.source.version}"
            print(f"  {entry.name:<24} {origin:<20} {doc[0] if doc else ''}")
        for problem in reg.problems():
            print(f"  {problem.name:<24} BROKEN: {problem}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from mcekit import registry

    reg = registry.registry(args.kind)
    entry = reg.entry(args.name)
    cls = entry.config_class
    print(f"{reg.noun} '{entry.name}' from {entry.source}")
    if cls.__doc__:
        print(f"  {cls.__doc__.strip()}")
    print("config fields:")
    for name, field in cls.model_fields.items():
        if name == "type":
            continue
        default = "required" if field.is_required() else f"default {field.get_default(call_default_factory=True)!r}"
        annotation = getattr(field.annotation, "__name__", str(field.annotation)).replace("typing.", "")
        print(f"  {name}: {annotation} ({default}){' — ' + field.description if field.description else ''}")
    if reg.kind == "groups":
        group = cls().build() if not any(f.is_required() for f in cls.model_fields.values()) else None
        if group is not None:
            described = group.describe()
            print(f"dimension: {described.get('dim')}")
            coords = described.get("coordinates") or []
            print(f"pose coordinates: {', '.join(coords) if coords else '(none)'}")
            for key, value in described.items():
                if key not in ("name", "dim", "coordinates"):
                    print(f"  {key}: {value}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from mcekit.config import load_config

    config = load_config(args.config, args.set)
    model = config.model
    print(f"{args.config}: ok ({model.group.type} group, {model.latents.cluster.prior.type} cluster prior, "
          f"{len(config.losses)} loss terms)")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from mcekit.config import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from mcekit import __version__

    parser = argparse.ArgumentParser(prog="mcekit", description="Transformation-invariant clustering VAEs.")
    parser.add_argument("--version", action="version", version=f"mcekit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_overrides(p: argparse.ArgumentParser) -> None:
        p.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                       help="override a config field by dotted path (value parsed as YAML); repeatable")

    p = sub.add_parser("run", help="train a model from a config and evaluate it")
    p.add_argument("config")
    with_overrides(p)
    p.add_argument("--out", help="run directory (default runs/<config name>/<UTC time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("eval", help="recompute metrics and figures of a run from its best.pt")
    p.add_argument("run_dir")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"])
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("list", help="list registered components and where they come from")
    p.add_argument("kind", nargs="?", help="encoders, decoders, groups, priors, losses or datasets")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="a component's config fields, defaults and description")
    p.add_argument("kind")
    p.add_argument("name")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("validate", help="check a config without running it")
    p.add_argument("config")
    with_overrides(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("schema", help="print the JSON schema of experiment configs")
    p.set_defaults(func=cmd_schema)

    from mcekit.bench.cli import add_command
    add_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # geoopt still calls torch.jit.script, which newer torch flags as deprecated on every import
    warnings.filterwarnings("ignore", message=".*torch.jit.script.*deprecated", category=FutureWarning)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        for line in _lines(exc):
            print(line, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mcekit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
