"""Expand a spec into cells: one dataset × one model × one seed, each with a stable id and a fingerprint.

A learned cell's experiment config is the base config changed through :func:`mcekit.config.apply_overrides`
(budget, dataset, seed, then the model's group and prior and their tweaks) and validated like any
config, so a bad spec fails before anything runs. The fingerprint hashes what the cell computes; a
result on disk counts as done only while its fingerprint matches.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

import yaml

from mcekit.bench.spec import BASELINES, KMeansOptions, LoadedSpec, PaperOptions, Tweaks
from mcekit.config import ConfigError, apply_overrides, validate_config
from mcekit.later_fields import INERT_WITHOUT, LATER_FIELDS, section_of, sections_holding

#: bump when what a cell computes or records changes, so old results are not taken as done
RESULT_FORMAT = 1
#: the paper's invariance copies: rotation over the whole circle, shifts of ±0.25 (normalised)
PAPER_COPY_RANGE = {"max_angle_deg": 180.0, "max_translation": 0.25}
#: order in which cells start: longest first (the many-copy paper model), so parallel jobs finish together
KIND_ORDER = {"paper": 0, "grid": 1, "kmeans": 2}


@dataclass(frozen=True)
class Cell:
    id: str
    dataset: str
    model: str                 # "se2+gmm" for a grid cell, else the baseline's name
    kind: str                  # "grid" | "paper" | "kmeans"
    group: str | None          # the model's group (learned cells)
    prior: str | None          # the cluster prior (learned cells)
    seed: int
    config: dict[str, Any]     # the validated experiment config, JSON types
    options: dict[str, Any]    # baseline options (k-means: features, clusters, n_init)
    fingerprint: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        return cls(**data)


def cell_id(dataset: str, model: str, seed: int) -> str:
    return f"{dataset}__{model}__s{seed}"


def grid_model(group: str, prior: str) -> str:
    return f"{group}+{prior}"


# --- config surgery through apply_overrides ----------------------------------------------------------

def _yaml(value: Any) -> str:
    """A value as apply_overrides reads it back (YAML; floats keep their type, e.g. 1.0e-05)."""
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**9)


def set_fields(data: dict[str, Any], values: dict[str, Any], source: str) -> dict[str, Any]:
    items = [f"{path}={_yaml(value)}" for path, value in values.items()]
    return apply_overrides(data, items, source=source)


def drop_losses(data: dict[str, Any], types: list[str], source: str) -> dict[str, Any]:
    present = [loss.get("type") for loss in data.get("losses") or [] if isinstance(loss, dict)]
    missing = [t for t in types if t not in present]
    if missing:
        raise ConfigError([f"{source} drop_losses: no loss term of type '{missing[0]}'; "
                           f"loss types: {', '.join(map(str, present))}"])
    return {**data, "losses": [loss for loss in data["losses"] if loss.get("type") not in types]}


def data_fields(loaded: LoadedSpec, dataset: str, seed: int) -> dict[str, Any]:
    """Budget, dataset transformation and seed: the part every cell of a dataset and seed shares."""
    spec = loaded.spec
    group = spec.datasets[dataset]
    values: dict[str, Any] = {"seed": seed}
    if group is None:
        values["data.transform"] = None
    elif isinstance((loaded.base.get("data") or {}).get("transform"), dict):
        values["data.transform.group"] = group
    else:
        values["data.transform"] = {"group": group}
    budget = spec.budget
    for path, value in (("train.epochs", budget.epochs), ("data.split.train", budget.train),
                        ("data.split.test", budget.test), ("train.batch_size", budget.batch_size)):
        if value is not None:
            values[path] = value
    values["train.figures"] = spec.run_figures
    return values


def paper_group(dataset_group: dict[str, Any] | None) -> dict[str, Any]:
    """The dataset's group type with the paper's copy range, for the fields that group has."""
    from mcekit import registry as reg

    if dataset_group is None:
        return {"type": "trivial"}
    fields = reg.groups.get(dataset_group["type"]).model_fields
    return {"type": dataset_group["type"], **{k: v for k, v in PAPER_COPY_RANGE.items() if k in fields}}


def paper_fields(options: PaperOptions, dataset_group: dict[str, Any] | None) -> dict[str, Any]:
    """The paper-faithful MCE-VAE on top of any base config (its published networks and losses)."""
    values: dict[str, Any] = {
        "model.encoder": {"type": "paper_cnn"},
        "model.decoder": {"type": "gated_mlp"},
        "model.group": options.group if options.group is not None else paper_group(dataset_group),
        "model.pose_init": "none",
        "model.half_turns": None,
        "model.upright": None,
        "model.readout": None,  # its cluster block has no mixture to vote with
        "model.latents": {"cluster": {"dim": options.cluster_dim, "prior": {"type": "normal"}},
                          "style": {"dim": options.style_dim, "prior": {"type": "normal"}},
                          "pose": {"prior": {"type": "normal"}}},
        # reconstruction, KL with β = 1 from the start, and the published unsupervised invariance loop
        # (sequential no-grad passes on moved copies as targets for samples and canonical image)
        "losses": [{"type": "bce"}, {"type": "kl", "beta": 1.0, "warmup_epochs": 0.0},
                   {"type": "paper_invariance", "samples": options.samples}],
        "train.cluster_init_epoch": 0,
        "train.cluster_refit_every": 0,
        "train.lr": 1.0e-3,
        "train.lr_schedule": "constant",
        "train.grad_clip": None,
    }
    if options.epochs is not None:
        values["train.epochs"] = options.epochs
    return values


def fingerprinted_config(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a config dump that decides a cell's numbers: without ``train.figures`` and without the
    later fields that sit at their earlier-behaviour value."""
    config = copy.deepcopy(config)
    train = config.get("train", {})
    train.pop("figures", None)  # whether a run draws its own figures does not change its numbers
    if "eval_every" in train:  # nor how often it logs test metrics: every cell counts as logging every epoch
        train["eval_every"] = 1
    for path, value in LATER_FIELDS.items():
        for section in sections_holding(config, path):
            if path[-1] in section and section[path[-1]] == value:
                del section[path[-1]]
    for path, needed in INERT_WITHOUT.items():
        holder, section = section_of(config, needed), section_of(config, path)
        if holder is not None and holder.get(needed[-1]) is None and section is not None:
            section.pop(path[-1], None)
    return config


def _fingerprint(payload: dict[str, Any]) -> str:
    if "config" in payload:
        payload = {**payload, "config": fingerprinted_config(payload["config"])}
    text = json.dumps({"format": RESULT_FORMAT, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _validated(data: dict[str, Any], source: str) -> dict[str, Any]:
    return validate_config(data, source=source).model_dump(mode="json")


# --- expansion -----------------------------------------------------------------------------------------

def expand(loaded: LoadedSpec) -> list[Cell]:
    """Every cell of the spec, per dataset: baselines, then groups × priors; seeds innermost."""
    spec, path = loaded.spec, loaded.path
    base_prior = (((loaded.base.get("model") or {}).get("latents") or {}).get("cluster") or {}).get("prior") or {}
    cells: list[Cell] = []
    for dataset, dataset_group in spec.datasets.items():
        for name in spec.baselines.enabled():
            options = getattr(spec.baselines, name)
            for seed in getattr(options, "seeds", None) or spec.seeds:
                cells.append(_baseline_cell(loaded, dataset, dataset_group, name, options, seed))
        for group in loaded.groups:
            for prior in loaded.priors:
                for seed in spec.seeds:
                    cid = cell_id(dataset, grid_model(group, prior), seed)
                    source = f"{path}: cell {cid}:"
                    data = set_fields(copy.deepcopy(loaded.base), data_fields(loaded, dataset, seed), source)
                    data = set_fields(data, spec.overrides, f"{path}: overrides:")
                    model_group = {"type": group, **spec.model_group_ranges.get(group, {})}
                    data = set_fields(data, {"model.group": model_group}, source)
                    if prior != base_prior.get("type"):
                        data = set_fields(data, {"model.latents.cluster.prior": {"type": prior}}, source)
                    # the group's last: a reference group (trivial) may null a section another override tunes
                    for where, tweaks in ((f"dataset_overrides.{dataset}", spec.dataset_overrides.get(dataset)),
                                          (f"prior_overrides.{prior}", spec.prior_overrides.get(prior)),
                                          (f"group_overrides.{group}", spec.group_overrides.get(group))):
                        if isinstance(tweaks, Tweaks):
                            data = set_fields(data, tweaks.set, f"{path}: {where}:")
                            data = drop_losses(data, tweaks.drop_losses, f"{path}: {where}:")
                    config = _validated(data, f"{path} (cell {cid})")
                    cells.append(Cell(cid, dataset, grid_model(group, prior), "grid", group, prior, seed, config, {},
                                      _fingerprint({"kind": "grid", "config": config})))
    return cells


def _baseline_cell(loaded: LoadedSpec, dataset: str, dataset_group: dict[str, Any] | None, name: str,
                   options: Any, seed: int) -> Cell:
    path = loaded.path
    cid = cell_id(dataset, name, seed)
    source = f"{path}: cell {cid}:"
    data = set_fields(copy.deepcopy(loaded.base), data_fields(loaded, dataset, seed), source)
    if isinstance(options, PaperOptions):
        data = set_fields(data, paper_fields(options, dataset_group), source)
        data = set_fields(data, options.set, f"{path}: baselines.{name}.set:")
        config = _validated(data, f"{path} (cell {cid})")
        model = config["model"]
        return Cell(cid, dataset, name, "paper", model["group"]["type"], model["latents"]["cluster"]["prior"]["type"],
                    seed, config, options.model_dump(), _fingerprint({"kind": "paper", "config": config}))
    assert isinstance(options, KMeansOptions) and name in BASELINES
    config = _validated(data, f"{path} (cell {cid})")
    extra = {"features": name.removeprefix("kmeans_"), **options.model_dump()}
    # k-means sees only the data: its fingerprint ignores the model, losses and training settings
    return Cell(cid, dataset, name, "kmeans", None, None, seed, config, extra,
                _fingerprint({"kind": "kmeans", "data": config["data"], "seed": seed, "options": extra}))
