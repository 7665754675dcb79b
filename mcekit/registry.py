"""One registry mechanism for every kind of component.

What is registered is a *config class*: a pydantic model with a literal ``type`` tag and a
``build(...)`` method that makes the torch object. Built-in components register themselves when
their module is imported; third-party packages add components through entry points in the groups
``mcekit.<kind>`` (read with :mod:`importlib.metadata`). Discovery happens once, lazily, the first
time a registry is asked what it holds — never on ``import mcekit``.

Environment:
  ``MCEKIT_DISABLE_PLUGIN_AUTOLOAD=1``  no entry-point discovery at all;
  ``MCEKIT_PLUGINS=dist_a,dist_b``       load entry points only from the named distributions.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import logging
import os
import typing
from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

KINDS: tuple[str, ...] = ("encoders", "decoders", "groups", "priors", "losses", "datasets")
DISABLE_ENV = "MCEKIT_DISABLE_PLUGIN_AUTOLOAD"
ONLY_ENV = "MCEKIT_PLUGINS"

log = logging.getLogger("mcekit.plugins")


class Component(BaseModel):
    """Base of every registered config class: a literal ``type`` tag plus ``build``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)

    type: str

    @abstractmethod
    def build(self, *args: Any, **kwargs: Any) -> Any:
        """Make the runtime object (a torch module, a dataset, ...) this config describes."""


class RegistryError(Exception):
    """Base for registry problems; the message is one line meant for users."""


class UnknownComponentError(RegistryError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DuplicateComponentError(RegistryError):
    """Two sources claim the same component name."""


class InvalidComponentError(RegistryError):
    """An entry point that is not a config class with a literal ``type`` and a ``build``."""


@dataclass(frozen=True)
class Source:
    """Where a component came from: a distribution (and its version) and, for plugins, the entry point."""

    distribution: str
    version: str
    entry_point: str | None = None

    def __str__(self) -> str:
        where = f"{self.distribution} {self.version}"
        return f"{where} (entry point {self.entry_point})" if self.entry_point else where


@dataclass(frozen=True)
class Entry:
    name: str
    config_class: type[Component]
    source: Source


@dataclass(frozen=True)
class PluginProblem:
    kind: str
    name: str
    distribution: str
    error: str

    def __str__(self) -> str:
        return (
            f"plugin '{self.distribution}' (entry point mcekit.{self.kind}:{self.name}) "
            f"failed to load: {self.error}"
        )


def _mcekit_source() -> Source:
    from mcekit import __version__

    return Source("mcekit", __version__)


def type_tag(config_class: type) -> str:
    """The literal ``type`` tag of a config class, or raise InvalidComponentError naming it."""
    where = f"{getattr(config_class, '__module__', '?')}.{getattr(config_class, '__qualname__', config_class)}"
    if not (isinstance(config_class, type) and issubclass(config_class, BaseModel)):
        raise InvalidComponentError(f"{where} is not a pydantic config class")
    field = config_class.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    if field is None or typing.get_origin(field.annotation) is not Literal or len(args) != 1:
        raise InvalidComponentError(f"{where} has no literal 'type' field (e.g. type: Literal['my_name'])")
    build = getattr(config_class, "build", None)
    if not callable(build) or getattr(build, "__isabstractmethod__", False):
        raise InvalidComponentError(f"{where} has no build() method")
    return str(args[0])


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


C = TypeVar("C", bound=type[Component])


class Registry:
    """Name → config class for one kind of component, with lazy built-in and plugin discovery."""

    def __init__(self, kind: str, noun: str, builtin_modules: tuple[str, ...]) -> None:
        self.kind = kind
        self.noun = noun
        self._builtin_modules = builtin_modules
        self._entries: dict[str, Entry] = {}
        self._broken: dict[str, PluginProblem] = {}
        self._loaded = False
        self._loading = False

    # -- registration -------------------------------------------------------------------------
    def register(self, config_class: C) -> C:
        """Class decorator for built-in components (and for plugins that register explicitly)."""
        self._add(config_class, _source_of_module(config_class.__module__))
        return config_class

    def _add(self, config_class: type[Component], source: Source) -> None:
        name = type_tag(config_class)
        old = self._entries.get(name)
        if old is not None:
            if old.config_class is config_class or (
                old.config_class.__qualname__ == config_class.__qualname__
                and old.config_class.__module__ == config_class.__module__
            ):
                # The same class seen twice (re-imported, or decorated and also an entry point): not a
                # conflict; the entry point's record wins, since it names the distribution to install.
                if source.entry_point is not None and old.source.entry_point is None:
                    self._entries[name] = Entry(name, config_class, source)
                return
            raise DuplicateComponentError(
                f"{self.noun} '{name}' is registered twice: by {old.source} and by {source}"
            )
        self._entries[name] = Entry(name, config_class, source)

    # -- discovery ----------------------------------------------------------------------------
    def ensure_loaded(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            for module in self._builtin_modules:
                importlib.import_module(module)
            if os.environ.get(DISABLE_ENV, "").strip() not in ("", "0", "false", "False"):
                return
            self._load_plugins()
        finally:
            self._loading = False
            self._loaded = True

    def _load_plugins(self) -> None:
        only = {d.strip().lower().replace("_", "-") for d in os.environ.get(ONLY_ENV, "").split(",") if d.strip()}
        for ep in _entry_points(f"mcekit.{self.kind}"):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "unknown distribution"
            version = dist.version if dist is not None else "?"
            if only and dist_name.lower().replace("_", "-") not in only:
                continue
            source = Source(dist_name, version, f"{ep.name} = {ep.value}")
            try:
                obj = ep.load()
                tag = type_tag(obj)
                if tag != ep.name:
                    raise InvalidComponentError(
                        f"entry point name '{ep.name}' differs from the config class's type tag '{tag}'"
                    )
            except DuplicateComponentError:
                raise
            except Exception as exc:  # a broken plugin must not take the others down
                problem = PluginProblem(self.kind, ep.name, dist_name, f"{type(exc).__name__}: {exc}".strip())
                self._broken[ep.name] = problem
                log.warning("mcekit: warning: %s", problem)
                continue
            self._add(obj, source)

    # -- lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> type[Component]:
        self.ensure_loaded()
        if name in self._entries:
            return self._entries[name].config_class
        raise UnknownComponentError(self.unknown_message(name))

    def unknown_message(self, name: str) -> str:
        self.ensure_loaded()
        if name in self._broken:
            return f"{self.noun} '{name}' is unavailable: {self._broken[name]}"
        names = self.names()
        return f"unknown {self.noun} '{name}'; available: {', '.join(names)}{did_you_mean(name, names)}"

    def names(self) -> list[str]:
        self.ensure_loaded()
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        self.ensure_loaded()
        return [self._entries[n] for n in sorted(self._entries)]

    def entry(self, name: str) -> Entry:
        self.get(name)
        return self._entries[name]

    def problems(self) -> list[PluginProblem]:
        self.ensure_loaded()
        return list(self._broken.values())

    def config_classes(self) -> tuple[type[Component], ...]:
        return tuple(e.config_class for e in self.entries())

    def build(self, config: dict[str, Any] | Component, *args: Any, **kwargs: Any) -> Any:
        """Validate a ``{type: ...}`` mapping (or take a config object) and build it."""
        if isinstance(config, dict):
            config = self.get(str(config.get("type"))).model_validate(config)
        return config.build(*args, **kwargs)

    def __contains__(self, name: object) -> bool:
        self.ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def reset(self) -> None:
        """Forget plugins (tests and long-lived processes that change sys.path)."""
        builtin = {n: e for n, e in self._entries.items() if e.source.entry_point is None}
        self._entries = builtin
        self._broken = {}
        self._loaded = False


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    # Distributions on sys.path twice (e.g. an editable install also on PYTHONPATH) would list
    # the same entry point twice; keep one per (distribution, name).
    seen: set[tuple[str, str, str]] = set()
    found = []
    for ep in metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        key = (dist.metadata["Name"] if dist is not None else "", ep.name, ep.value)
        if key not in seen:
            seen.add(key)
            found.append(ep)
    return found


def _source_of_module(module: str) -> Source:
    top = module.split(".")[0]
    if top == "mcekit":
        return _mcekit_source()
    for dist_name in metadata.packages_distributions().get(top, []):
        try:
            return Source(dist_name, metadata.version(dist_name))
        except metadata.PackageNotFoundError:
            continue
    return Source(top, "?")


encoders = Registry("encoders", "encoder", ("mcekit.nets.encoders",))
decoders = Registry("decoders", "decoder", ("mcekit.nets.decoders",))
groups = Registry("groups", "group", ("mcekit.groups",))
priors = Registry("priors", "prior", ("mcekit.priors",))
losses = Registry("losses", "loss", ("mcekit.losses",))
datasets = Registry("datasets", "dataset", ("mcekit.data.sources",))

REGISTRIES: dict[str, Registry] = {r.kind: r for r in (encoders, decoders, groups, priors, losses, datasets)}


def registry(kind: str) -> Registry:
    """The registry for a kind; accepts singular or plural ('group' or 'groups')."""
    key = kind if kind in REGISTRIES else kind + "s"
    if key not in REGISTRIES:
        kinds = ", ".join(REGISTRIES)
        hint = did_you_mean(kind, list(REGISTRIES))
        raise UnknownComponentError(f"unknown component kind '{kind}'; available: {kinds}{hint}")
    return REGISTRIES[key]


def load_all() -> None:
    for reg in REGISTRIES.values():
        reg.ensure_loaded()


def reset_plugins() -> None:
    for reg in REGISTRIES.values():
        reg.reset()


def plugin_distributions(names: dict[str, list[str]] | None = None) -> dict[str, str]:
    """Distributions (name → version) that supplied the named components, built-ins excluded."""
    out: dict[str, str] = {}
    for kind, used in (names or {}).items():
        reg = registry(kind)
        for name in used:
            src = reg.entry(name).source
            if src.entry_point is not None:
                out[src.distribution] = src.version
    return out


Factory = Callable[..., Any]
