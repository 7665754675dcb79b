"""The package's tests need it installed (entry points live in the installed metadata)."""

from __future__ import annotations

import importlib.metadata as metadata
import os
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
DISTRIBUTION = "mcekit-sl2"


def pytest_configure(config: pytest.Config) -> None:
    try:
        metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise pytest.UsageError(
            f"{DISTRIBUTION} is not installed in this environment; run `pip install -e {PACKAGE_ROOT}` first"
        ) from None


@pytest.fixture
def cli_env() -> dict[str, str]:
    """Environment for `mcekit` subprocesses: one thread, plugin autoload on."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("MCEKIT_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("MCEKIT_PLUGINS", None)
    return env
