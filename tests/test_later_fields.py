"""Every config field added after the snapshot in tests/data/config_fields.txt says what a config dump written
before it existed means (``mcekit.later_fields.LATER_FIELDS``). Without that, an old checkpoint or benchmark
cell validates with the new field's default and is taken for a run of the new behaviour."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel

from mcekit.config import experiment_config_class
from mcekit.later_fields import LATER_FIELDS

SNAPSHOT = Path(__file__).parent / "data" / "config_fields.txt"


def models_in(annotation: object) -> Iterator[type[BaseModel]]:
    """The config classes an annotation names, through unions, optionals and lists."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from models_in(arg)


def core_fields() -> set[str]:
    """``Class.field`` for every field of mcekit's own config classes (plugins' classes left out)."""
    seen: set[type[BaseModel]] = set()
    todo = [experiment_config_class()]
    while todo:
        cls = todo.pop()
        if cls not in seen and cls.__module__.split(".")[0] == "mcekit":
            seen.add(cls)
            for field in cls.model_fields.values():
                todo.extend(models_in(field.annotation))
    return {f"{cls.__name__}.{name}" for cls in seen for name in cls.model_fields}


def type_tag(cls: type[BaseModel]) -> object:
    return typing.get_args(cls.model_fields["type"].annotation)[0] if "type" in cls.model_fields else None


def field_at(path: tuple[str, ...]) -> str:
    """``Class.field`` of a later field's path; a loss field's path names the loss's type tag."""
    cls: type[BaseModel] = experiment_config_class()
    keys = list(path)
    while len(keys) > 1:
        choices = list(models_in(cls.model_fields[keys.pop(0)].annotation))
        if len(choices) > 1:  # a registry's union: the next key is the type tag
            tag = keys.pop(0)
            choices = [choice for choice in choices if type_tag(choice) == tag]
        (cls,) = choices
    assert keys[0] in cls.model_fields, f"{path}: {cls.__name__} has no field {keys[0]}"
    return f"{cls.__name__}.{keys[0]}"


def test_every_later_field_names_a_config_field():
    assert field_at(("model", "readout", "classifier", "balanced")) == "ClassifierConfig.balanced"
    assert field_at(("losses", "invariance", "copy_gradients")) == "InvarianceConfig.copy_gradients"
    for path in LATER_FIELDS:
        field_at(path)


def test_a_field_added_after_the_snapshot_has_an_earlier_value():
    known = set(SNAPSHOT.read_text().split())
    registered = {field_at(path) for path in LATER_FIELDS}
    unexplained = sorted(core_fields() - known - registered)
    assert not unexplained, (f"new config fields {unexplained}: add each to mcekit.later_fields.LATER_FIELDS with "
                             "the value that reproduces the behaviour before it existed")
    assert core_fields() >= known - registered, "a field in the snapshot is gone: take it out of the snapshot"
