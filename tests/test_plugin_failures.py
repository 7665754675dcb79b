"""What users see when a plugin is broken, invalid or missing: one readable line naming the distribution."""

from __future__ import annotations

import importlib
import logging
import sys

import pytest
import torch
import yaml

from mcekit import config as config_module
from mcekit import registry
from mcekit.cli import main
from mcekit.config import ConfigError, validate_config

BROKEN_IMPORT = "raise ImportError('needs libfoo >= 2')\n"

TURN_GROUP = """
from typing import Literal
from mcekit.groups.so2 import SO2Config

class TurnConfig(SO2Config):
    '''Rotations under a plugin name (test double).'''
    type: Literal['tinylab.turn'] = 'tinylab.turn'
"""

NO_BUILD = """
from typing import Literal
from pydantic import BaseModel

class NoBuildConfig(BaseModel):
    '''A config class that forgot build().'''
    type: Literal['nobuildlab.g'] = 'nobuildlab.g'
"""

ABSTRACT_BUILD = """
from typing import Literal
from mcekit.groups.base import GroupConfig

class HalfDoneConfig(GroupConfig):
    type: Literal['halflab.g'] = 'halflab.g'
"""

TINY = ["--set", "train.epochs=1", "--set", "data.split.train=100", "--set", "data.split.test=50",
        "--set", "train.figures=false", "--set", "train.batch_size=50", "--set", "train.cluster_init_epoch=0"]


def experiment(group: str) -> dict:
    return {"model": {"encoder": {"type": "mlp"}, "decoder": {"type": "gated_mlp"}, "group": {"type": group},
                      "latents": {"cluster": {"dim": 4, "prior": {"type": "gmm", "components": 4}},
                                  "style": {"dim": 2, "prior": {"type": "normal"}}}},
            "losses": [{"type": "bce"}]}


def config_lines(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as err:
        validate_config(data, source="cfg.yaml")
    return err.value.lines


def forget_plugins() -> None:
    registry.reset_plugins()
    config_module.experiment_config_class.cache_clear()


# -- a plugin whose import fails ---------------------------------------------------------------------


def test_config_naming_a_broken_plugin_fails_in_one_line(fake_distribution, caplog):
    fake_distribution("brokenlab", {"brokenlab_mod": BROKEN_IMPORT},
                      {"mcekit.groups": {"brokenlab.g": "brokenlab_mod:Config"}})
    with caplog.at_level(logging.WARNING, logger="mcekit.plugins"):
        lines = config_lines(experiment("brokenlab.g"))
    assert lines == ["cfg.yaml: model.group.type: group 'brokenlab.g' is unavailable: plugin 'brokenlab' "
                     "(entry point mcekit.groups:brokenlab.g) failed to load: ImportError: needs libfoo >= 2"]
    # discovery also logged it as a warning
    assert any("needs libfoo" in r.message for r in caplog.records)


def test_validate_command_reports_the_broken_plugin(fake_distribution, tmp_path, capsys):
    fake_distribution("brokenlab", {"brokenlab_mod": BROKEN_IMPORT},
                      {"mcekit.groups": {"brokenlab.g": "brokenlab_mod:Config"}})
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(experiment("brokenlab.g")))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "plugin 'brokenlab'" in err[0] and "ImportError: needs libfoo >= 2" in err[0]
    assert "Traceback" not in "\n".join(err)


def test_list_shows_broken_plugins_next_to_working_ones(fake_distribution, capsys):
    fake_distribution("brokenlab", {"brokenlab_mod": BROKEN_IMPORT},
                      {"mcekit.groups": {"brokenlab.g": "brokenlab_mod:Config"}})
    fake_distribution("tinylab", {"tinylab_groups": TURN_GROUP},
                      {"mcekit.groups": {"tinylab.turn": "tinylab_groups:TurnConfig"}}, version="0.4.0")
    assert main(["list", "groups"]) == 0
    out = capsys.readouterr().out.splitlines()
    broken = [line for line in out if "brokenlab.g" in line]
    assert len(broken) == 1 and "BROKEN" in broken[0] and "plugin 'brokenlab'" in broken[0]
    assert "ImportError: needs libfoo >= 2" in broken[0]
    assert any(line.split()[:3] == ["tinylab.turn", "tinylab", "0.4.0"] for line in out)
    assert any(line.split()[:2] == ["se2", "mcekit"] for line in out)
    # `mcekit list` without a kind shows it too
    assert main(["list"]) == 0
    assert "BROKEN: plugin 'brokenlab'" in capsys.readouterr().out


# -- an entry point that is not a valid component -----------------------------------------------------


@pytest.mark.parametrize(("dist", "source", "target", "cls"), [
    ("nobuildlab", NO_BUILD, "nobuildlab.g", "NoBuildConfig"),
    ("halflab", ABSTRACT_BUILD, "halflab.g", "HalfDoneConfig"),
])
def test_class_without_build_is_reported_by_name(fake_distribution, capsys, dist, source, target, cls):
    module = f"{dist}_mod"
    fake_distribution(dist, {module: source}, {"mcekit.groups": {target: f"{module}:{cls}"}})
    problems = registry.groups.problems()
    assert [(p.distribution, p.name) for p in problems] == [(dist, target)]
    assert problems[0].error == f"InvalidComponentError: {module}.{cls} has no build() method"
    assert target not in registry.groups.names()
    lines = config_lines(experiment(target))
    assert len(lines) == 1 and f"plugin '{dist}'" in lines[0]
    assert f"{module}.{cls} has no build() method" in lines[0]
    assert main(["list", "groups"]) == 0
    assert f"{module}.{cls} has no build() method" in capsys.readouterr().out


def test_entry_point_naming_a_missing_attribute(fake_distribution):
    fake_distribution("typolab", {"typolab_mod": TURN_GROUP.replace("tinylab", "typolab")},
                      {"mcekit.groups": {"typolab.turn": "typolab_mod:TurnConfg"}})
    (problem,) = registry.groups.problems()
    assert problem.distribution == "typolab"
    assert "AttributeError" in problem.error and "TurnConfg" in problem.error


# -- a run whose plugin has been uninstalled ----------------------------------------------------------


def test_eval_names_the_missing_plugin_distribution(fake_distribution, tmp_path, capsys):
    site = fake_distribution("tinylab", {"tinylab_groups": TURN_GROUP},
                             {"mcekit.groups": {"tinylab.turn": "tinylab_groups:TurnConfig"}},
                             version="0.4.0")
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(experiment("tinylab.turn")))
    run_dir = tmp_path / "run"
    torch.manual_seed(0)
    assert main(["run", str(path), "--out", str(run_dir), "--quiet", *TINY]) == 0
    capsys.readouterr()
    ckpt = torch.load(run_dir / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert ckpt["plugins"] == {"tinylab": "0.4.0"}

    # "uninstall" it: off sys.path, out of sys.modules, registries and config class rebuilt
    sys.path.remove(str(site))
    sys.modules.pop("tinylab_groups", None)
    importlib.invalidate_caches()
    forget_plugins()
    assert "tinylab.turn" not in registry.groups.names()

    assert main(["eval", str(run_dir)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1, captured.err
    assert "plugin package(s) that are not installed: tinylab==0.4.0" in err[0] and "pip install" in err[0]
    assert str(run_dir / "checkpoints" / "best.pt") in err[0]
    assert captured.out == ""

    # resuming the run fails in one line too, naming the group it can no longer find
    assert main(["run", str(path), "--out", str(run_dir), "--resume", "--quiet", *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{path}: model.group.type: unknown group 'tinylab.turn'; available: "
                   + ", ".join(registry.groups.names())]
