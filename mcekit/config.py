"""Typed experiment configs: pydantic models whose component fields are unions built from the registries.

The component unions depend on what the registries hold (plugins included), so the experiment config
class is built on first use by :func:`experiment_config_class` (``ExperimentConfig`` is the same
class, resolved lazily). YAML in, one readable line per problem out.
"""

from __future__ import annotations

import copy
import functools
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model, field_validator
from pydantic_core import PydanticCustomError

from mcekit import registry as reg
from mcekit.later_fields import with_earlier_values
from mcekit.registry import Registry, did_you_mean


class ConfigError(Exception):
    """A config problem; ``lines`` holds one user-facing line per problem."""

    def __init__(self, lines: list[str]) -> None:
        lines = [one_line(line) for line in lines]
        super().__init__("\n".join(lines))
        self.lines = lines


def one_line(text: str) -> str:
    """Escape line breaks and other unprintable characters (from keys and values in the YAML) as in repr."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


# --- config pieces that do not depend on the registries -----------------------------------------

class SplitConfig(Strict):
    train: int = Field(4000, ge=1, description="number of training images (seeded shuffle)")
    test: int = Field(1000, ge=1, description="number of test images, disjoint from the training ones")


class HalfTurnsConfig(Strict):
    reliable_within_deg: float = Field(45.0, gt=0, le=90, description=(
        "the detector learns from images whose moment axis was at most this far from upright"))
    margin: float = Field(2.0, ge=0, description="turn an image when the detector's log-odds exceed this")


class UprightConfig(Strict):
    epochs: int = Field(100, ge=1, description="epochs fitting the regressor, before the model trains")
    width: int = Field(16, ge=1, description="channels of the regressor's first convolution (then twice that)")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate of the regressor")
    views: int = Field(16, ge=1, le=64, description=(
        "read the guess from the image turned by this many whole-circle steps (more: closer to equivariant)"))
    min_confidence: float = Field(0.35, ge=0, lt=1, description=(
        "keep the moment angle where the guess's (cos, sin) is shorter than this (no clear direction)"))
    snap_deg: float = Field(15.0, ge=0, le=45, description=(
        "a guess within this of a quarter turn of the moment axis becomes that quarter turn"))
    copies: Literal["original", "own"] = Field("original", description=(
        "an invariance copy h·x starts at its original's upright angle plus h's turn ('original': the copies' "
        "canonicals agree with the original's, and the regressor does not run on them) or at the regressor's "
        "own guess for the copy ('own')"))


class ClassifierConfig(Strict):
    views: list[Literal["aligned", "centred"]] = Field(["aligned", "centred"], min_length=1, max_length=2, description=(
        "what the classifiers read, one CNN each, their log-probabilities summed: 'aligned', the encoder's input "
        "(turned upright); 'centred', the image mass-centred in its own orientation (the data's angles as they "
        "came, which tell a 6 from a turned 9 where the upright does not)"))
    min_agreement: float = Field(0.8, gt=0, le=1, description=(
        "a training image teaches the classifiers when at least this share of its nearest training images voted "
        "for its cluster"))
    epochs: int = Field(20, ge=1, description="epochs fitting each classifier, after the model has trained")
    width: int = Field(16, ge=1, description="channels of a classifier's first convolutions (then twice that)")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate of the classifiers")
    max_turn_deg: float = Field(30.0, ge=0, le=180, description=(
        "augmentation: each training image is turned by a random angle up to this, every epoch"))
    max_scale: float = Field(0.1, ge=0, lt=1, description=(
        "augmentation: ...scaled by a random factor between 1 - this and 1 + this"))
    max_shift_px: float = Field(1.5, ge=0, description="augmentation: ...and shifted by up to this many pixels")
    cut_share: float = Field(0.0, ge=0, le=1, description=(
        "augmentation: this share of the training images, drawn afresh every epoch, first lose what lies beyond a "
        "straight edge at a random angle and are mass-centred again, as the frame crops a digit shifted partly out "
        "of it (for data with shifts; 0: no cuts)"))
    cut_distance: tuple[float, float] = Field((0.25, 0.8), description=(
        "augmentation: the cutting edge's distance from the image's centre of mass, drawn uniformly from this "
        "range, in image half-widths"))
    unsure_turns: Literal[1, 2, 4] = Field(4, description=(
        "where the learned upright is unsure (its confidence below model.upright.min_confidence, so the image keeps "
        "its moment angle, whose arrow and, for roundish digits, axis are guesses), the aligned view is read at "
        "this many evenly spaced turns and the probabilities averaged: 1 as it is, 2 also upside down, 4 at every "
        "quarter turn (square images)"))
    unsure_teaching: Literal["turns", "as_is"] = Field("turns", description=(
        "how an unsure upright's aligned view is taught and read for the next round's labels: 'turns', by its "
        "probabilities averaged over the unsure_turns turns, the reading it is scored with (the CNN has to "
        "recognise it at one of those turns); 'as_is', at its moment angle alone"))
    unsure_ramp: float = Field(0.1, ge=0, lt=1, description=(
        "the final assignment reads an upright whose confidence lies less than this above "
        "model.upright.min_confidence with both readings, one turn and unsure_turns turns, their probabilities "
        "mixed: the one-turn share rises linearly from 0 at min_confidence to 1 at min_confidence + this, so "
        "that the reading does not jump where the confidence crosses the threshold (0: a hard switch)"))
    frame_turns: Literal[1, 2, 4] = Field(1, description=(
        "without a learned upright: every image's aligned view is read and taught at this many evenly spaced turns, "
        "the probabilities averaged, for a start frame that is right only up to those turns: 2 for pose_init "
        "'moments_skew' on data turned by any angle, whose arrow is a guess for shapes with little skew (the "
        "aligned CNNs then cost that many times as much); 1: as it is"))
    members: int = Field(1, ge=1, le=16, description=(
        "CNNs per view, each its own initialisation and augmentation draws, their log-probabilities averaged"))
    rounds: int = Field(3, ge=1, le=5, description=(
        "rounds of self-labelling: the first taught by the neighbours' vote where it agrees, each later one by "
        "the previous round's clusters of every training image"))
    balanced: bool = Field(True, description=(
        "each later round is taught by the previous round's clusters scaled to equal sizes over the training "
        "images (Sinkhorn-Knopp), as the cluster prior's equal weights assume: a cluster that swallowed part of "
        "another gives the surplus back instead of teaching the merge again; false: the plain argmax"))
    kept_rounds: int = Field(3, ge=1, le=5, description=(
        "the last this many rounds' CNNs (at most all rounds) are kept and assign together, their "
        "log-probabilities averaged (1: the last round's alone)"))

    @field_validator("cut_distance")
    @classmethod
    def _ordered(cls, distance: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= distance[0] <= distance[1]:
            raise ValueError(f"a range (low, high) with 0 <= low <= high, got {list(distance)}")
        return distance

    @field_validator("views")
    @classmethod
    def _distinct(cls, views: list[str]) -> list[str]:
        if len(set(views)) != len(views):
            raise ValueError(f"each view at most once, got {views}")
        return views

    def build(self, image_shape: tuple[int, int, int], clusters: int) -> Any:
        """The classifiers these settings describe (a ``SelfLabelClassifier``), keeping at most all rounds."""
        from mcekit.self_label import SelfLabelClassifier

        return SelfLabelClassifier(image_shape, clusters, self.views, self.width, self.members, self.unsure_turns,
                                   min(self.kept_rounds, self.rounds), self.unsure_ramp, self.frame_turns)


class HalfTurnMergeConfig(Strict):
    min_share: float = Field(0.7, gt=0, le=1, description=(
        "two clusters are one kind split by its frame's arrow when at least this share of each one's images, "
        "turned by a half turn in their frame, land in the other (the geometric mean of the two shares)"))
    min_excess: float = Field(1.5, gt=1, description=(
        "...and only while the largest cluster holds at least this many times the mean cluster size: the cluster "
        "freed by a split has merged two kinds elsewhere"))
    max_repairs: int = Field(1, ge=1, le=5, description="at most this many joins, each with one split")


class ReadoutConfig(Strict):
    neighbours: int = Field(20, ge=1, le=1000, description=(
        "an image's cluster is the one most of this many nearest training images (cluster-block means) got "
        "from the mixture"))
    half_turn_merge: HalfTurnMergeConfig | None = Field(None, description=(
        "without a learned upright: before the vote teaches anything, join two clusters whose images are each "
        "other's half turns (a kind whose frame's arrow follows its style, split in two) and split the largest "
        "cluster in two along its latent's two modes (a full-covariance two-component mixture); for pose_init "
        "'moments_skew' on data turned by any angle; null: the mixture's clusters as they are"))
    classifier: ClassifierConfig | None = Field(None, description=(
        "self-labelling: CNNs trained on the training images whose neighbours agree, with the neighbours' "
        "clusters as labels, then assign every image's cluster; null: the neighbours' vote assigns it"))


class TrainConfig(Strict):
    epochs: int = Field(30, ge=1, description="training epochs")
    batch_size: int = Field(100, ge=1, description="global batch size")
    lr: float = Field(1e-3, gt=0, description="Adam learning rate")
    lr_schedule: Literal["constant", "cosine"] = Field("cosine", description="learning-rate schedule over epochs")
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(10.0, gt=0, description="clip the gradient norm (null: no clipping)")
    cluster_init_epoch: int = Field(
        5, ge=0, description="after this many epochs, fit the cluster prior to encoded means (0: never)")
    cluster_refit_every: int = Field(0, ge=0, description=(
        "after that fit, refit the cluster prior to encoded means every N epochs, so it follows the latent "
        "it is trained with (0: never)"))
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    threads: int | None = Field(None, ge=1, le=1024, description="torch CPU threads (null: torch's default)")
    eval_every: int = Field(1, ge=1, description=(
        "log the test metrics every N epochs and at the last (best.pt is still chosen by the test objective at "
        "every epoch once the objective is stationary, so N does not change the result)"))
    figures: bool = Field(True, description="write figures after training")
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16 autocast on CUDA (ignored on the CPU)")
    nonfinite: Literal["stop", "skip"] = Field(
        "stop", description="NaN/Inf loss: stop (keeping the last good checkpoint) or skip the batch")


# --- component unions ----------------------------------------------------------------------------

def _known_type(registry: Registry):
    """Before-validator: an unknown ``type`` becomes one clear line with the available names."""

    def check(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value
        if not isinstance(value, dict):
            raise PydanticCustomError("component_mapping", "expected a mapping with a 'type' key, got {got}",
                                      {"got": repr(value)})
        tag = value.get("type")
        if tag is None:
            raise PydanticCustomError("component_type_missing", "missing 'type'; available: {names}",
                                      {"names": ", ".join(registry.names())})
        if not isinstance(tag, str) or tag not in registry:
            raise PydanticCustomError("unknown_component", "{message}",
                                      {"message": registry.unknown_message(str(tag))})
        return value

    return BeforeValidator(check)


def component_union(registry: Registry) -> Any:
    classes = registry.config_classes()
    if not classes:
        raise reg.RegistryError(f"no {registry.noun} is registered")
    inner = classes[0] if len(classes) == 1 else Annotated[Union[classes], Field(discriminator="type")]  # noqa: UP007
    return Annotated[inner, _known_type(registry)]


def _default(registry: Registry, name: str, **fields: Any) -> Any:
    return Field(default_factory=lambda: registry.get(name)(**fields))


@functools.lru_cache(maxsize=1)
def experiment_config_class() -> type[BaseModel]:
    """Build ExperimentConfig from what the registries hold now."""
    reg.load_all()
    Group, Prior = component_union(reg.groups), component_union(reg.priors)

    TransformConfig = create_model(
        "TransformConfig", __base__=Strict,
        group=(Group, Field(..., description="the group whose random elements move each image")),
        padding=(Literal["zeros", "border", "reflection"], Field("zeros", description="fill outside the image")),
    )
    DataConfig = create_model(
        "DataConfig", __base__=Strict,
        source=(component_union(reg.datasets), _default(reg.datasets, "mnist5k")),
        transform=(TransformConfig | None, Field(None, description="null: the images as they are")),
        split=(SplitConfig, Field(default_factory=SplitConfig)),
    )
    LatentBlock = create_model(
        "LatentBlock", __base__=Strict,
        dim=(int, Field(..., ge=1, le=4096, description="latent size (categories, for a categorical prior)")),
        prior=(Prior, Field(...)),
    )
    PoseBlock = create_model("PoseBlock", __base__=Strict, prior=(Prior, _default(reg.priors, "normal")))
    LatentsConfig = create_model(
        "LatentsConfig", __base__=Strict,
        cluster=(LatentBlock, Field(..., description="semantic, invariant block that defines the clusters")),
        style=(LatentBlock, Field(..., description="invariant within-class variation")),
        pose=(PoseBlock, Field(default_factory=lambda: PoseBlock(), description="equivariant block; dim = group's")),
    )
    ModelConfig = create_model(
        "ModelConfig", __base__=Strict,
        encoder=(component_union(reg.encoders), Field(...)),
        decoder=(component_union(reg.decoders), Field(...)),
        group=(Group, Field(..., description="the model's pose group")),
        latents=(LatentsConfig, Field(...)),
        pose_init=(Literal["none", "moments", "moments_skew"], Field(
            "moments", description="'moments': start the pose from image moments (centre of mass, principal "
                                   "axis, turned by at most 90°) and learn a residual; 'moments_skew': the "
                                   "axis's arrow from the third moment, for data turned by any angle; "
                                   "'none': the encoder predicts the whole pose")),
        half_turns=(HalfTurnsConfig | None, Field(None, description=(
            "learn which way up a moment-aligned image goes (needs pose_init 'moments', a group with rotation "
            "and the 'half_turn' loss, which trains the detector and switches it on); null: never turn"))),
        upright=(UprightConfig | None, Field(None, description=(
            "turn each image upright by the whole rotation a CNN learns from the data's own angles (data "
            "turned symmetrically about upright, e.g. ±90°; needs a moment pose_init and a group with "
            "rotation); fitted before the model trains; null: the moment angle as it is"))),
        readout=(ReadoutConfig | None, Field(None, description=(
            "after training, assign clusters by a vote of the nearest training images in the cluster block "
            "(needs a cluster prior); null: by the cluster prior itself"))),
    )
    Loss = component_union(reg.losses)
    return create_model(
        "ExperimentConfig", __base__=Strict,
        seed=(int, Field(0, ge=0, le=2**32 - 1, description="seeds data transforms, initialisation and sampling")),
        data=(DataConfig, Field(default_factory=lambda: DataConfig())),
        model=(ModelConfig, Field(...)),
        losses=(list[Loss], Field(..., min_length=1, description="weighted loss terms, summed")),
        train=(TrainConfig, Field(default_factory=TrainConfig)),
    )


def __getattr__(name: str) -> Any:  # ExperimentConfig resolves lazily (it depends on plugins)
    if name == "ExperimentConfig":
        return experiment_config_class()
    raise AttributeError(name)


# --- loading, overrides, errors --------------------------------------------------------------------

class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (YAML would silently keep the later value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable: the base class says so
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{path}: not a text (UTF-8) file"]) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError([f"{path}: {where}malformed YAML: {problem}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: the top level must be a mapping, got {type(data).__name__}"])
    return data


def list_key(items: list[Any], key: str, where: str) -> str:
    """A list item by index, or by its ``type`` tag when exactly one item has it (``losses.kl.beta``)."""
    if key.lstrip("-").isdigit():
        if -len(items) <= int(key) < len(items):
            return key
        raise ConfigError([f"{where}: '{key}' is not an index of a list of {len(items)}"])
    types = [item.get("type") if isinstance(item, dict) else None for item in items]
    if types.count(key) == 1:
        return str(types.index(key))
    if types.count(key) > 1:
        raise ConfigError([f"{where}: several items of type '{key}'; address one by index"])
    shown = ", ".join(str(t) for t in types if t is not None) or "(none)"
    raise ConfigError([f"{where}: no item of type '{key}' (types: {shown}) and not an index of a list of {len(items)}"])


def apply_overrides(data: dict[str, Any], overrides: list[str], source: str = "--set") -> dict[str, Any]:
    """Apply ``dotted.path=value`` overrides (value parsed as YAML; list items by index or by type tag)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError([f"{source} {item}: expected dotted.path=value"])
        path, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        keys = path.strip().split(".")
        node: Any = data
        for i, key in enumerate(keys):
            last = i == len(keys) - 1
            if isinstance(node, list):
                key = list_key(node, key, f"{source} {path}")
                if last:
                    node[int(key)] = value
                else:
                    node = node[int(key)]
            elif isinstance(node, dict):
                if last:
                    node[key] = value
                else:
                    node = node.setdefault(key, {})
            else:
                raise ConfigError([f"{source} {path}: '{'.'.join(keys[:i])}' is not a mapping"])
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> BaseModel:
    data = apply_overrides(read_yaml(path), overrides or [])
    return validate_config(data, source=str(path))


def validate_config(data: dict[str, Any], source: str = "<config>") -> BaseModel:
    cls = experiment_config_class()
    try:
        config = cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([f"{source}: {line}" for line in format_errors(exc, cls, data)]) from None
    problems = check_components(config)
    if problems:
        raise ConfigError([f"{source}: {line}" for line in problems])
    return config


def check_components(config: Any) -> list[str]:
    """What field constraints cannot see: every prior must build at the size its block gets (the pose block
    has the model group's dimension), and a loss that needs clusters must get a cluster prior."""
    import torch

    model, lines = config.model, []
    built: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[]):  # building draws random parameters: leave the global RNG alone
        group = model.group.build()
        group_dim = group.dim
        for block in ("cluster", "style", "pose"):
            prior = getattr(model.latents, block).prior
            dim = group_dim if block == "pose" else getattr(model.latents, block).dim
            size = f"model.group '{model.group.type}' has dimension {dim}" if block == "pose" else f"dim {dim}"
            try:
                built[block] = prior.build(dim)
            except ValueError as exc:
                lines.append(f"model.latents.{block}.prior: '{prior.type}' does not fit this block ({size}): {exc}")
    for i, loss in enumerate(config.losses):
        needed = getattr(loss, "needs_model_field", None)
        if needed and getattr(model, needed) is None:
            lines.append(f"losses.{i}: '{loss.type}' needs model.{needed} to be set")
    if model.half_turns is not None:
        if model.pose_init != "moments":
            lines.append(f"model.half_turns: needs pose_init 'moments' (the half-plane estimate), "
                         f"not '{model.pose_init}'")
        elif not group.has_rotation:
            lines.append(f"model.half_turns: model.group '{model.group.type}' has no rotation to turn by")
        if not any(getattr(loss, "needs_model_field", None) == "half_turns" for loss in config.losses):
            lines.append("model.half_turns: no loss trains the detector; add {type: half_turn}")
    if model.upright is not None:
        if model.pose_init == "none":
            lines.append("model.upright: needs a moment pose_init ('moments' or 'moments_skew'), not 'none'")
        if not group.has_rotation:
            lines.append(f"model.upright: model.group '{model.group.type}' has no rotation to turn by")
        if model.half_turns is not None:
            lines.append("model.upright: already decides which way up an image goes; set model.half_turns to null")
        taught = None if model.readout is None else model.readout.classifier
        if model.readout is not None and model.readout.half_turn_merge is not None:
            lines.append("model.readout.half_turn_merge: applies without model.upright (with one, the frame has no "
                         "half turn left to split a kind by); set it to null")
        if taught is not None and taught.frame_turns != 1:
            lines.append(f"model.readout.classifier.frame_turns: {taught.frame_turns} applies without model.upright "
                         "(with one, unsure_turns says how its unsure images are read); set it to 1")
    if model.readout is not None and model.readout.half_turn_merge is not None and not group.has_rotation:
        lines.append(f"model.readout.half_turn_merge: model.group '{model.group.type}' has no rotation: its frame "
                     "has no half turn to split a kind by; set it to null")
    cluster = built.get("cluster")
    if cluster is not None and not cluster.is_cluster and model.readout is not None:
        lines.append(f"model.readout: needs a cluster prior (e.g. gmm, gumbel, vmf_mixture) on model.latents.cluster; "
                     f"'{model.latents.cluster.prior.type}' has no clusters (set model.readout to null)")
    if cluster is not None and not cluster.is_cluster:
        for i, loss in enumerate(config.losses):
            if getattr(loss, "needs_cluster_prior", False):
                lines.append(f"losses.{i}: '{loss.type}' needs a cluster prior (e.g. gmm, gumbel, vmf_mixture) on "
                             f"model.latents.cluster; '{model.latents.cluster.prior.type}' has no clusters")
    return lines


def format_errors(exc: ValidationError, cls: type[BaseModel], data: Any) -> list[str]:
    lines = []
    for err in exc.errors():
        path, model = _clean_location(err["loc"], cls, data)
        where = ".".join(str(p) for p in path) or "(top level)"
        kind = err["type"]
        if kind == "unknown_component":
            lines.append(f"{where}.type: {err['ctx']['message']}")
        elif kind == "extra_forbidden":
            field = str(path[-1]) if path else "?"
            allowed = sorted(model.model_fields) if model is not None else []
            hint = f"; allowed: {', '.join(allowed)}{did_you_mean(field, allowed)}" if allowed else ""
            lines.append(f"{where}: unknown field '{field}'{hint}")
        elif kind == "missing":
            lines.append(f"{where}: required field is missing")
        else:
            shown = err.get("input")
            got = "" if isinstance(shown, dict | list) else f" (got {shown!r})"
            lines.append(f"{where}: {err['msg']}{got}")
    return lines


def _clean_location(loc: tuple[Any, ...], cls: type[BaseModel], data: Any) -> tuple[list[Any], type[BaseModel] | None]:
    """Drop pydantic's union-tag steps from an error location and find the model that owns the last key."""
    path: list[Any] = []
    model: type[BaseModel] | None = cls
    owner: type[BaseModel] | None = cls
    node = data
    steps = list(loc)
    while steps:
        step = steps.pop(0)
        if isinstance(node, dict) and isinstance(node.get("type"), str) and step == node["type"] and step not in node:
            continue  # the discriminator tag pydantic inserts for the chosen union member
        if isinstance(step, str) and step.startswith(("function-", "list[", "tagged-union")):
            continue
        path.append(step)
        owner = model
        model = _child_model(model, step, node)
        node = node.get(step) if isinstance(node, dict) else (
            node[step] if isinstance(node, list) and isinstance(step, int) and step < len(node) else None)
    return path, owner


def _child_model(model: Any, step: Any, node: Any) -> Any:
    if isinstance(model, _ListOf):
        item = node[step] if isinstance(node, list) and isinstance(step, int) and step < len(node) else None
        return _resolve(model.item_annotation, item)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return None
    field = model.model_fields.get(step)
    if field is None:
        return None
    child = node.get(step) if isinstance(node, dict) else None
    return _resolve(field.annotation, child)


def _resolve(annotation: Any, value: Any) -> Any:
    """The BaseModel class an annotation stands for, picking a union member by the value's type tag."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _resolve(typing.get_args(annotation)[0], value)
    if origin in (list, tuple):
        return _ListOf(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        tag = value.get("type") if isinstance(value, dict) else None
        for member in typing.get_args(annotation):
            cls = _resolve(member, value)
            if isinstance(cls, type) and issubclass(cls, BaseModel):
                field = cls.model_fields.get("type")
                if field is None or tag is None or typing.get_args(field.annotation) == (tag,):
                    return cls
        return None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


class _ListOf:
    """A list field met while cleaning an error location: integer steps lead to the item type."""

    def __init__(self, item_annotation: Any) -> None:
        self.item_annotation = item_annotation


def dump_config(config: BaseModel) -> str:
    from mcekit import __version__

    data = {"mcekit_version": __version__, **config.model_dump(mode="json")}
    return yaml.safe_dump(data, sort_keys=False)


def config_from_dump(text_or_data: str | dict[str, Any]) -> BaseModel:
    data = yaml.safe_load(text_or_data) if isinstance(text_or_data, str) else copy.deepcopy(dict(text_or_data))
    data.pop("mcekit_version", None)
    return validate_config(with_earlier_values(data))  # a dump from before a field existed: its earlier value


def json_schema() -> dict[str, Any]:
    return experiment_config_class().model_json_schema()
