"""Fuzzed configs: every mutation of a shipped config either validates AND builds, or is one clear line per problem.

Mutations of each configs/*.yaml: wrong types, out-of-range numbers, nulls, unknown keys at any depth,
unknown or swapped component names, deleted sections and fields, lists where mappings are expected
(and the reverse), strings and keys with odd characters. Derandomized, so CI sees the same cases.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mcekit import registry
from mcekit.cli import main
from mcekit.config import ConfigError, validate_config
from mcekit.losses.base import LossContext
from mcekit.model import build_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").glob("*.yaml"))
EXAMPLES_PER_CONFIG = 150  # × 8 shipped configs = 1200 cases
SOURCE = "fuzz.yaml"

ODD_CHARS = "aZ_ -.:#'\"{}[],&*!|>%@`\\\t\n\r\x00\x0b\x85\u2028é中💥"
odd_text = st.text(alphabet=ODD_CHARS, max_size=10)
NUMBERS = [-1, 0, 1, 2, 3, -0.5, 0.5, 1.5, 121, 181, 1e-300, 1e30, -1e30, 10**30, 2**63, -(2**63),
           math.nan, math.inf, -math.inf]
SMALL = [0, 1, 2, 3, 4, 8, 0.1, 0.9, 1.0, 30, 100, [0, 16], [-1], [1, 2, 3]]
scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(NUMBERS), odd_text,
    st.sampled_from(["ten", "", "1e-3", "null", "~", "yes", "NaN", "-inf", "0x10", "2024-01-01"]),
)
bad_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(odd_text, scalars, max_size=2),
)


def component_names(kind: str | None = None) -> list[str]:
    kinds = [kind] if kind else registry.KINDS
    return sorted({name for k in kinds for name in registry.registry(k).names()})


def kind_of(path: tuple) -> str | None:
    """The registry a component at ``path`` comes from (swaps mostly stay within the kind)."""
    if path[-1:] == ("prior",):
        return "priors"
    if path[-1:] == ("group",):
        return "groups"
    if path[:1] == ("losses",):
        return "losses"
    return {("model", "encoder"): "encoders", ("model", "decoder"): "decoders",
            ("data", "source"): "datasets"}.get(tuple(path))


def walk(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path below ``node`` (dict keys and list indices)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    found = []
    for key, value in items:
        found.append(prefix + (key,))
        found += walk(value, prefix + (key,))
    return found


def get(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


def containers(data: dict, kind: type) -> list[tuple]:
    return [p for p in [(), *walk(data)] if isinstance(get(data, p), kind)]


def set_at(data: dict, path: tuple, value: Any) -> None:
    get(data, path[:-1])[path[-1]] = copy.deepcopy(value)  # sampled lists are shared between cases


@st.composite
def mutated(draw, base: dict) -> tuple[dict, list[str]]:
    """One to three mutations of ``base``, hostile ones and plausible ones (small numbers, swapped components
    with some of their own fields set), so that a share of the cases validates and exercises the builds."""
    data = copy.deepcopy(base)
    done: list[str] = []
    for _ in range(draw(st.sampled_from([1, 1, 2, 3]))):
        op = draw(st.sampled_from(["replace", "replace", "number", "number", "small", "small", "small", "delete",
                                   "unknown_key", "retype", "swap", "swap", "swap", "reshape"]))
        paths = walk(data)
        numeric = [p for p in paths if type(get(data, p)) in (int, float)]
        typed = [p for p in containers(data, dict) if p and "type" in get(data, p)]
        if op in ("number", "small") and numeric:
            path = draw(st.sampled_from(numeric))
            value = draw(st.sampled_from(NUMBERS if op == "number" else SMALL))
            set_at(data, path, value)
            done.append(f"set {path} = {value!r}")
        elif op == "replace" and paths:
            path = draw(st.sampled_from(paths))
            value = draw(bad_values)
            set_at(data, path, value)
            done.append(f"set {path} = {value!r}")
        elif op == "delete" and paths:
            path = draw(st.sampled_from(paths))
            del get(data, path[:-1])[path[-1]]
            done.append(f"delete {path}")
        elif op == "unknown_key":
            path = draw(st.sampled_from(containers(data, dict)))
            key = draw(st.one_of(odd_text, st.sampled_from(["tpye", "epochz", "Type", "dims", "prior", "seed"]),
                                 st.integers(-2, 2), st.none(), st.booleans()))
            value = draw(bad_values)
            set_at(data, (*path, key), value)
            done.append(f"add {path} [{key!r}] = {value!r}")
        elif op == "retype" and typed:  # a name of another kind, a misspelling or odd characters; fields kept
            path = draw(st.sampled_from(typed))
            name = draw(st.one_of(st.sampled_from(component_names()), odd_text,
                                  st.sampled_from(["gmmm", "SE2", "se2 ", "paper-cnn", ""])))
            get(data, path)["type"] = name
            done.append(f"type at {path} = {name!r}")
        elif op == "swap" and any(kind_of(p) for p in typed):  # same kind, maybe with one of its fields set
            path = draw(st.sampled_from([p for p in typed if kind_of(p)]))
            kind = kind_of(path)
            name = draw(st.sampled_from(component_names(kind)))
            new: dict[Any, Any] = {"type": name}
            fields = [f for f in registry.registry(kind).get(name).model_fields if f != "type"]
            if fields and draw(st.sampled_from([True, True, False])):
                value = draw(st.one_of(st.sampled_from(SMALL + NUMBERS), scalars))
                new[draw(st.sampled_from(fields))] = copy.deepcopy(value)
            set_at(data, path, new)
            done.append(f"swap {path} to {new!r}")
        elif op == "reshape":
            targets = [p for p in containers(data, dict) + containers(data, list) if p]
            if targets:
                path = draw(st.sampled_from(targets))
                node = get(data, path)
                set_at(data, path, [node] if isinstance(node, dict) else {str(i): v for i, v in enumerate(node)})
                done.append(f"reshape {path}")
    return data, done


def check_property(data: dict, source: str = SOURCE) -> None:
    """validate_config either gives a config whose parts build (and run a forward pass and every loss term on
    a tiny batch), or raises ConfigError whose lines are '<source>: <where>: <what>', one line each."""
    try:
        config = validate_config(data, source=source)
    except ConfigError as exc:
        assert exc.lines, "ConfigError without lines"
        for line in exc.lines:
            assert isinstance(line, str) and len(line.splitlines()) == 1, f"not one line: {line!r}"
            assert line.startswith(f"{source}: ") and ": " in line[len(source) + 2:], line
        return
    latents = config.model.latents
    group = config.model.group.build()
    latents.cluster.prior.build(latents.cluster.dim)
    latents.style.prior.build(latents.style.dim)
    latents.pose.prior.build(group.dim)
    if config.data.transform is not None:
        config.data.transform.group.build()
    losses = [loss.build() for loss in config.losses]
    model = build_model(config.model, (1, 28, 28))
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = model(x)
    for epoch in (0.0, 1000.0):  # before and after every warm-up
        for loss in losses:
            loss(LossContext(x, out, model, epoch, x.clone()))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_mutated_shipped_configs_validate_and_build_or_fail_cleanly(path):
    base = yaml.safe_load(path.read_text())

    @settings(max_examples=EXAMPLES_PER_CONFIG, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(case=mutated(base))
    def run(case):
        data, _what = case
        check_property(data)

    run()


SWEEP_VALUES = [None, True, "ten", [], {}, [0, 16], [-1], -1, 0, 1, 2, 0.5, 121, 181, 1e-300, 1e30, 10**30, 2**63,
                math.nan, math.inf]
SLOTS = {("model", "encoder"): "encoders", ("model", "decoder"): "decoders", ("model", "group"): "groups",
         ("data", "transform", "group"): "groups", ("model", "latents", "cluster", "prior"): "priors",
         ("model", "latents", "style", "prior"): "priors", ("model", "latents", "pose", "prior"): "priors",
         ("losses", 0): "losses", ("data", "source"): "datasets"}


def sweep_cases(base: dict) -> list[tuple[tuple, Any]]:
    """Every registered component in every slot, alone and with each field set to each sweep value; then every
    field of the config itself set to each sweep value."""
    cases = []
    for path, kind in SLOTS.items():
        for name in component_names(kind):
            cases.append((path, {"type": name}))
            for field in registry.registry(kind).get(name).model_fields:
                if field != "type":
                    cases += [(path, {"type": name, field: value}) for value in SWEEP_VALUES]
    cases += [(path, value) for path in walk(base) for value in SWEEP_VALUES]
    return cases


def test_every_field_of_every_component_swept():
    """Deterministic complement of the random mutations: one field at a time, every component, every slot."""
    base = yaml.safe_load((SHIPPED[0]).read_text())
    failures = []
    cases = sweep_cases(base)
    for path, value in cases:
        data = copy.deepcopy(base)
        set_at(data, path, value)
        try:
            check_property(data)
        except Exception as exc:  # collect them all: one run shows every crash
            failures.append(f"{path} = {value!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    assert len(cases) > 1000 and not failures, "\n".join(failures)


# A handful of bad files through the command line: exit 2, one line per problem, never a traceback.
BAD_FILES = {
    "unknown_prior": ("so2_gmm.yaml", "model.latents.cluster.prior.type", "gmmm"),
    "string_epochs": ("se2_gmm.yaml", "train.epochs", "ten"),
    "null_model": ("affine_gmm.yaml", "model", None),
    "list_for_mapping": ("scale_gmm.yaml", "model.latents", [1, 2]),
    "negative_dim": ("se2_vmf.yaml", "model.latents.style.dim", -3),
    "odd_key": ("sim2_gmm.yaml", "model.encoder.b\u00e9\n\"x':", 1),
    "nan_lr": ("so2_vmf.yaml", "train.lr", math.nan),
    "newline_type": ("se2_gumbel.yaml", "model.group.type", "se2\nboom"),
}


def set_path(data: dict, dotted: str, value: Any) -> dict:
    *parents, last = dotted.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value
    return data


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_validate_command_on_mutated_files(name, tmp_path, capsys):
    config, dotted, value = BAD_FILES[name]
    data = set_path(yaml.safe_load((ROOT / "configs" / config).read_text()), dotted, value)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()
    assert all(line.startswith(f"{path}: ") for line in err.strip().splitlines()), err


@pytest.mark.parametrize("text", [
    "",                                   # empty file: the model section is missing
    "- just\n- a list\n",                  # not a mapping at the top level
    "model: &m {encoder: *m}\nlosses: [{type: bce}]\n",   # a self-referencing mapping
    "model:\n\tencoder: x\n",             # a tab for indentation
    "losses: {type: bce}\nmodel: {}\n",  # a mapping where a list is expected
    "? [a, b]\n: 1\n",                    # unhashable key
    b"\x89PNG\r\n\x1a\n\x00\xff",           # not text at all
])
def test_validate_command_on_odd_yaml(text, tmp_path, capsys):
    path = tmp_path / "odd.yaml"
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip()
    assert all(line.startswith(f"{path}: ") for line in err.strip().splitlines()), err


def test_a_key_given_twice_is_refused(tmp_path, capsys):
    """YAML keeps the later of two equal keys; a config that says seed twice is a mistake, not a choice."""
    path = tmp_path / "twice.yaml"
    path.write_text(SHIPPED[0].read_text() + "seed: 3\n")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{path}: line ") and err.endswith("duplicate key 'seed'") and "\n" not in err
