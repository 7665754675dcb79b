"""The installed plugin seen through the `mcekit` command: listing, info, a one-epoch run."""

from __future__ import annotations

import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

import torch

DISTRIBUTION = "mcekit-sl2"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "sa2_ps.yaml"
#: the `mcekit` console script of the environment running the tests (it need not be on PATH)
SCRIPT = Path(sys.executable).with_name("mcekit")
COMMAND = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "mcekit"]
TINY = ["--set", "train.epochs=1", "--set", "data.split.train=200", "--set", "data.split.test=100",
        "--set", "train.figures=false", "--set", "train.batch_size=50", "--set", "train.cluster_init_epoch=1"]


def mcekit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True, env=env, timeout=600)


def test_list_shows_components_with_distribution_and_version(cli_env):
    version = metadata.version(DISTRIBUTION)
    groups = mcekit("list", "groups", env=cli_env)
    assert groups.returncode == 0, groups.stderr
    assert re.search(rf"^\s+sl2lab\.sa2\s+{DISTRIBUTION} {re.escape(version)}\s", groups.stdout,
                     re.M), groups.stdout
    priors = mcekit("list", "priors", env=cli_env)
    assert re.search(rf"^\s+sl2lab\.power_spherical\s+{DISTRIBUTION} {re.escape(version)}\s", priors.stdout,
                     re.M), priors.stdout
    assert "BROKEN" not in groups.stdout + priors.stdout


def test_info_describes_the_group(cli_env):
    out = mcekit("info", "groups", "sl2lab.sa2", env=cli_env)
    assert out.returncode == 0, out.stderr
    assert "entry point sl2lab.sa2 = mcekit_sl2.sa2:SA2Config" in out.stdout
    assert "dimension: 5" in out.stdout and "max_shear" in out.stdout


def test_one_epoch_run_records_the_plugin(tmp_path, cli_env):
    out = tmp_path / "run"
    result = mcekit("run", str(CONFIG), "--out", str(out), "--quiet", *TINY, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "run directory:" in result.stdout
    ckpt = torch.load(out / "checkpoints" / "best.pt", map_location="cpu", weights_only=True)
    assert ckpt["plugins"] == {DISTRIBUTION: metadata.version(DISTRIBUTION)}
    assert (out / "metrics.json").is_file()
    evaluated = mcekit("eval", str(out), "--device", "cpu", env=cli_env)
    assert evaluated.returncode == 0, evaluated.stderr


def test_config_without_the_plugin_fails_in_one_line(cli_env):
    """With plugin loading switched off, the config names the missing group and the available ones."""
    env = dict(cli_env, MCEKIT_DISABLE_PLUGIN_AUTOLOAD="1")
    result = mcekit("validate", str(CONFIG), env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr  # the group and the style prior
    assert "model.group.type: unknown group 'sl2lab.sa2'; available: affine" in lines[0]
    assert "unknown prior 'sl2lab.power_spherical'" in lines[1]
