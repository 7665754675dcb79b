"""Shared fixtures: a throw-away plugin distribution on sys.path, small configs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from mcekit import registry

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_distribution(tmp_path, monkeypatch):
    """Make ``make(dist, module_source, entry_points)`` create an installed-looking distribution."""
    made = []

    def make(dist: str, modules: dict[str, str], entry_points: dict[str, dict[str, str]], version: str = "1.2.3"):
        site = tmp_path / f"site-{dist}"
        site.mkdir()
        for name, source in modules.items():
            (site / f"{name}.py").write_text(textwrap.dedent(source))
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        lines = []
        for group, eps in entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{name} = {target}" for name, target in eps.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(site))
        made.extend(modules)
        registry.reset_plugins()
        from mcekit import config

        config.experiment_config_class.cache_clear()
        return site

    yield make
    for name in made:
        sys.modules.pop(name, None)
    registry.reset_plugins()
    from mcekit import config

    config.experiment_config_class.cache_clear()


@pytest.fixture
def se2_config_dict():
    import yaml

    return yaml.safe_load((ROOT / "configs" / "se2_gmm.yaml").read_text())
