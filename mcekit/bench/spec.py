"""The benchmark spec: datasets, models (group × cluster prior, plus baselines), seeds and a training budget.

A YAML file validated by pydantic models that forbid unknown fields. Every problem becomes one line that
names the spec file and the field, raised as :class:`mcekit.config.ConfigError` (the CLI prints the
lines and exits with code 2). Group and prior names are checked against the registries, plugins
included; ``all`` picks every registered group, or every registered prior that defines clusters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from mcekit.config import ConfigError, Strict, format_errors, read_yaml, validate_config
from mcekit.registry import did_you_mean

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
#: the references that every grid can carry, in the order they appear in tables
BASELINES = ("kmeans_pixels", "kmeans_moments", "paper_mcevae")
#: the model group of a plain VAE; every grid includes it
TRIVIAL = "trivial"


class Budget(Strict):
    """Training budget of every learned cell; null keeps the base config's value."""

    epochs: int | None = Field(None, ge=1, description="training epochs (null: the base config's)")
    train: int | None = Field(None, ge=1, description="training images (null: the base config's split)")
    test: int | None = Field(None, ge=1, description="test images (null: the base config's split)")
    batch_size: int | None = Field(None, ge=1, description="batch size (null: the base config's)")


class Tweaks(Strict):
    """Config changes for the cells of one model group or one cluster prior."""

    set: dict[str, Any] = Field(default_factory=dict, description=(
        "dotted config path → value; loss terms by index or by type, e.g. losses.kl.warmup_epochs"))
    drop_losses: list[str] = Field(default_factory=list, description="loss terms (by type) removed from the list")


class PaperOptions(Strict):
    """The paper-faithful MCE-VAE: continuous cluster latent with a standard-normal prior, k-means on it
    for assignment, no moment initialisation, paper_cnn + gated_mlp, unsupervised invariance loss."""

    epochs: int | None = Field(None, ge=1, description="training epochs (null: the budget's)")
    samples: int = Field(25, ge=1, description="invariance copies per image (the paper draws 25)")
    cluster_dim: int = Field(10, ge=1, description="size of the continuous cluster latent (the paper's nCat)")
    style_dim: int = Field(3, ge=1, description="size of the style latent (the paper's nVar)")
    group: dict[str, Any] | None = Field(None, description=(
        "model group; null: the dataset's group type with the paper's copy range (whole circle, ±0.25)"))
    seeds: list[int] | None = Field(None, min_length=1, description=(
        "seeds of this baseline (null: the spec's); fewer keep the slow 25-copy loop affordable"))
    set: dict[str, Any] = Field(default_factory=dict, description="further dotted config overrides")


class KMeansOptions(Strict):
    """k-means on pixels (raw or canonicalised by image moments), fitted on the training split."""

    clusters: int | None = Field(None, ge=2, description="k (null: the number of label classes)")
    n_init: int = Field(10, ge=1, description="k-means restarts")


class Baselines(Strict):
    """References next to the grid; a list of names takes every option's default."""

    kmeans_pixels: KMeansOptions | None = None
    kmeans_moments: KMeansOptions | None = None
    paper_mcevae: PaperOptions | None = None

    @model_validator(mode="before")
    @classmethod
    def _names_or_mapping(cls, value: Any) -> Any:
        if isinstance(value, list):
            chosen: dict[str, Any] = {}
            for name in value:
                if not isinstance(name, str) or name not in BASELINES:
                    raise PydanticCustomError(
                        "unknown_baseline", "unknown baseline {name}; available: {names}{hint}",
                        {"name": repr(name), "names": ", ".join(BASELINES),
                         "hint": did_you_mean(str(name), list(BASELINES))})
                chosen[name] = {}
            return chosen
        if isinstance(value, dict):  # "paper_mcevae:" with nothing after it means its defaults
            return {k: ({} if v is None else v) for k, v in value.items()}
        return value

    def enabled(self) -> list[str]:
        return [name for name in BASELINES if getattr(self, name) is not None]


def _names(value: Any) -> Any:
    """``all`` or one name → a list, so errors come from one list validator."""
    return [value] if isinstance(value, str) else value


class BenchSpec(Strict):
    """What one ``mcekit bench`` run compares."""

    name: str = Field(..., pattern=NAME_PATTERN, description="results go to results/<name>/ (default: file stem)")
    base: str = Field(..., description=(
        "base experiment config (model, losses, training defaults); relative to the spec file, else to the "
        "current directory"))
    budget: Budget = Field(default_factory=Budget)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="one cell per seed")
    datasets: dict[str, dict[str, Any] | None] = Field(..., min_length=1, description=(
        "name → the group that moves the data (data.transform.group); null: untransformed images"))
    groups: list[str] = Field(default_factory=lambda: [TRIVIAL], min_length=1, description=(
        "model groups; 'all' = every registered group (plugins included); trivial is always added"))
    priors: list[str] = Field(default_factory=lambda: ["gmm"], min_length=1, description=(
        "cluster priors; 'all' = every registered prior that defines clusters"))
    model_group_ranges: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        "per model group: its range fields (the invariance copies), e.g. so2: {max_angle_deg: 20}"))
    group_overrides: dict[str, Tweaks] = Field(default_factory=dict, description=(
        "per model group: config changes, applied after the dataset and prior overrides"))
    prior_overrides: dict[str, Tweaks] = Field(default_factory=dict, description="per cluster prior: config changes")
    dataset_overrides: dict[str, Tweaks] = Field(default_factory=dict, description=(
        "per dataset: config changes to its grid cells (e.g. a canonicaliser for any-angle rotations)"))
    overrides: dict[str, Any] = Field(default_factory=dict, description=(
        "dotted path → value for every grid cell (not the baselines), applied after the budget"))
    baselines: Baselines = Field(default_factory=Baselines)
    reuse: list[str] = Field(default_factory=list, description=(
        "other specs' result folders (names beside this one's) whose finished cells with the same "
        "fingerprint are copied instead of trained again"))
    run_figures: bool = Field(False, description="let each training run write its own figures")
    plots: bool = Field(True, description="draw the report's plots")

    @field_validator("groups", "priors", mode="before")
    @classmethod
    def _as_list(cls, value: Any) -> Any:
        return _names(value)

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise PydanticCustomError("duplicate_seed", "seeds must be distinct")
        return seeds

    @field_validator("datasets")
    @classmethod
    def _dataset_names(cls, datasets: dict[str, Any]) -> dict[str, Any]:
        for name, group in datasets.items():
            if not re.match(NAME_PATTERN, name):
                raise PydanticCustomError("dataset_name", "dataset name {name} must match {pattern}",
                                          {"name": repr(name), "pattern": NAME_PATTERN})
            if group is not None and "type" not in group:
                raise PydanticCustomError("dataset_type", "dataset {name}: missing the group's 'type'",
                                          {"name": repr(name)})
        return datasets


@dataclass
class LoadedSpec:
    """A checked spec with its paths, the base config and the resolved group and prior names."""

    spec: BenchSpec
    path: Path
    base_path: Path
    base: dict[str, Any]
    groups: list[str]
    priors: list[str]

    @property
    def name(self) -> str:
        return self.spec.name


def is_cluster_prior(name: str) -> bool:
    """Whether a registered prior defines clusters (built with its defaults to ask it)."""
    from mcekit import registry as reg

    try:
        return bool(reg.priors.get(name)().build(10).is_cluster)
    except Exception:
        return False


def _resolve(names: list[str], registry: Any, where: str, path: Path, keep: Any = None) -> list[str]:
    if names == ["all"]:
        return [n for n in registry.names() if keep is None or keep(n)]
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise ConfigError([f"{path}: {where}: {registry.unknown_message(n)}" for n in unknown])
    if len(set(names)) != len(names):
        raise ConfigError([f"{path}: {where}: names must be distinct"])
    return list(names)


def find_base(spec_path: Path, base: str) -> Path:
    candidate = Path(base).expanduser()
    if candidate.is_absolute():
        options = [candidate]
    else:
        options = [spec_path.parent / candidate, Path.cwd() / candidate]
    for option in options:
        if option.is_file():
            return option
    raise ConfigError([f"{spec_path}: base: no such file: {base} (looked in {spec_path.parent or '.'} "
                       f"and in the current directory)"])


def load_spec(path: str | Path) -> LoadedSpec:
    """Read, validate and resolve a spec; every problem is a one-line ConfigError."""
    from mcekit import registry as reg

    path = Path(path)
    data = read_yaml(path)
    data.setdefault("name", path.stem)
    try:
        spec = BenchSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([f"{path}: {line}" for line in format_errors(exc, BenchSpec, data)]) from None
    base_path = find_base(path, spec.base)
    base = read_yaml(base_path)
    validate_config(base, source=str(base_path))
    groups = _resolve(spec.groups, reg.groups, "groups", path)
    if TRIVIAL not in groups:
        groups.insert(0, TRIVIAL)
    else:  # the no-equivariance reference leads
        groups.insert(0, groups.pop(groups.index(TRIVIAL)))
    priors = _resolve(spec.priors, reg.priors, "priors", path, keep=is_cluster_prior)
    if not priors:
        raise ConfigError([f"{path}: priors: no registered prior defines clusters"])
    for where, names, registry in (("model_group_ranges", spec.model_group_ranges, reg.groups),
                                   ("group_overrides", spec.group_overrides, reg.groups),
                                   ("prior_overrides", spec.prior_overrides, reg.priors)):
        for name in names:
            if name not in registry:
                raise ConfigError([f"{path}: {where}: {registry.unknown_message(name)}"])
    unknown = sorted(set(spec.dataset_overrides) - set(spec.datasets))
    if unknown:
        raise ConfigError([f"{path}: dataset_overrides: '{unknown[0]}' is not a dataset of this spec; "
                           f"choose from {', '.join(spec.datasets)}"])
    return LoadedSpec(spec, path, base_path, base, groups, priors)
