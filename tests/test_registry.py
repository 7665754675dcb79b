"""Registry and entry-point discovery, with throw-away distributions made inside the tests."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from mcekit import registry
from mcekit.registry import DuplicateComponentError, UnknownComponentError

GOOD_GROUP = """
from typing import Literal
from mcekit.groups.so2 import SO2Config

class MyGroupConfig(SO2Config):
    '''A plugin group (SO(2) under another name).'''
    type: Literal['testlab.turn'] = 'testlab.turn'
"""


def test_builtins_registered_for_every_kind():
    for kind in registry.KINDS:
        assert registry.registry(kind).names(), kind
    assert {"so2", "se2", "trivial", "translation"} <= set(registry.groups.names())
    assert {"normal", "gmm"} <= set(registry.priors.names())
    assert registry.groups.entry("se2").source.distribution == "mcekit"


def test_unknown_name_lists_choices_and_suggests():
    with pytest.raises(UnknownComponentError) as err:
        registry.priors.get("gmmm")
    message = str(err.value)
    assert "unknown prior 'gmmm'" in message and "gmm, " in message and "did you mean 'gmm'" in message


def test_import_mcekit_does_not_load_plugins():
    code = ("import mcekit, sys; "
            "assert 'mcekit.groups' not in sys.modules and 'mcekit.registry' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plugin_discovered_through_entry_point(fake_distribution):
    fake_distribution("testlab", {"testlab_groups": GOOD_GROUP},
                      {"mcekit.groups": {"testlab.turn": "testlab_groups:MyGroupConfig"}})
    entry = registry.groups.entry("testlab.turn")
    assert entry.source.distribution == "testlab" and entry.source.version == "1.2.3"
    assert entry.config_class().build().dim == 1
    from mcekit.config import validate_config

    data = {"model": {"encoder": {"type": "mlp"}, "decoder": {"type": "gated_mlp"},
                      "group": {"type": "testlab.turn"},
                      "latents": {"cluster": {"dim": 4, "prior": {"type": "gmm"}},
                                  "style": {"dim": 2, "prior": {"type": "normal"}}}},
            "losses": [{"type": "bce"}]}
    assert validate_config(data).model.group.type == "testlab.turn"


def test_broken_plugin_reported_and_others_keep_working(fake_distribution, caplog):
    fake_distribution("brokenlab", {"brokenlab_mod": "raise ImportError('needs libfoo')\n"},
                      {"mcekit.groups": {"brokenlab.g": "brokenlab_mod:Config"}})
    fake_distribution("testlab", {"testlab_groups": GOOD_GROUP},
                      {"mcekit.groups": {"testlab.turn": "testlab_groups:MyGroupConfig"}})
    with caplog.at_level(logging.WARNING, logger="mcekit.plugins"):
        names = registry.groups.names()
    assert "testlab.turn" in names and "se2" in names and "brokenlab.g" not in names
    assert any("brokenlab" in r.message and "needs libfoo" in r.message for r in caplog.records)
    with pytest.raises(UnknownComponentError, match="brokenlab.*failed to load.*needs libfoo"):
        registry.groups.get("brokenlab.g")


def test_invalid_component_reported_at_discovery(fake_distribution, caplog):
    fake_distribution("badlab", {"badlab_mod": "class NotAConfig:\n    pass\n"},
                      {"mcekit.priors": {"badlab.p": "badlab_mod:NotAConfig"}})
    with caplog.at_level(logging.WARNING, logger="mcekit.plugins"):
        registry.priors.names()
    assert any("badlab" in r.message and "NotAConfig" in r.message for r in caplog.records)
    assert registry.priors.problems()[0].distribution == "badlab"


def test_duplicate_names_name_both_sources(fake_distribution):
    fake_distribution("lab-a", {"lab_a": GOOD_GROUP}, {"mcekit.groups": {"testlab.turn": "lab_a:MyGroupConfig"}})
    fake_distribution("lab-b", {"lab_b": GOOD_GROUP}, {"mcekit.groups": {"testlab.turn": "lab_b:MyGroupConfig"}})
    with pytest.raises(DuplicateComponentError) as err:
        registry.groups.names()
    assert "lab-a" in str(err.value) and "lab-b" in str(err.value)


def test_plugin_shadowing_builtin_is_an_error(fake_distribution):
    code = GOOD_GROUP.replace("'testlab.turn'", "'so2'")
    fake_distribution("shadow", {"shadow_mod": code}, {"mcekit.groups": {"so2": "shadow_mod:MyGroupConfig"}})
    with pytest.raises(DuplicateComponentError, match="mcekit .* and by shadow"):
        registry.groups.names()


def test_autoload_can_be_disabled(fake_distribution, monkeypatch):
    fake_distribution("testlab", {"testlab_groups": GOOD_GROUP},
                      {"mcekit.groups": {"testlab.turn": "testlab_groups:MyGroupConfig"}})
    monkeypatch.setenv(registry.DISABLE_ENV, "1")
    registry.reset_plugins()
    assert "testlab.turn" not in registry.groups.names()
    assert "se2" in registry.groups.names()


def test_only_named_plugins_load(fake_distribution, monkeypatch):
    fake_distribution("testlab", {"testlab_groups": GOOD_GROUP},
                      {"mcekit.groups": {"testlab.turn": "testlab_groups:MyGroupConfig"}})
    fake_distribution("otherlab", {"otherlab_groups": GOOD_GROUP.replace("testlab.turn", "otherlab.turn")},
                      {"mcekit.groups": {"otherlab.turn": "otherlab_groups:MyGroupConfig"}})
    monkeypatch.setenv(registry.ONLY_ENV, "otherlab")
    registry.reset_plugins()
    names = registry.groups.names()
    assert "otherlab.turn" in names and "testlab.turn" not in names


def test_entry_point_name_must_match_type_tag(fake_distribution):
    fake_distribution("mislab", {"mislab_mod": GOOD_GROUP}, {"mcekit.groups": {"mislab.x": "mislab_mod:MyGroupConfig"}})
    assert "mislab.x" not in registry.groups.names()
    assert "differs from the config class's type tag" in registry.groups.problems()[0].error
