"""Configuration tests start from a clean slate: no cached snapshot, no INSTANCE_MANAGER_* overrides."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from configuration.cache import CONFIG_CACHE
from configuration.layers import ENV_SHORTCUTS, env_path
from configuration.selectors import config_cache_clear


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(autouse=True)
def clean_configuration(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A developer's .env or shell must not change what these tests see."""
    for name in list(os.environ):
        if env_path(name) is not None or name in ENV_SHORTCUTS:
            monkeypatch.delenv(name)
    config_cache_clear()
    yield
    config_cache_clear()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Drive the configuration cache's TTL and version checks by hand."""
    fake = FakeClock()
    monkeypatch.setattr(CONFIG_CACHE, "clock", fake)
    return fake


@pytest.fixture
def config_file(tmp_path: Path, settings: Any) -> Callable[..., Path]:
    """Write a configuration document and point settings.CONFIG_FILE at it."""

    def write(document: dict[str, Any] | str, name: str = "config.json") -> Path:
        path = tmp_path / name
        if isinstance(document, str):
            text = document
        elif name.endswith((".yaml", ".yml")):
            text = yaml.safe_dump(document)
        else:
            text = json.dumps(document)
        path.write_text(text)
        settings.CONFIG_FILE = path
        config_cache_clear()
        return path

    return write


@pytest.fixture
def no_config_file(tmp_path: Path, settings: Any) -> Path:
    settings.CONFIG_FILE = tmp_path / "absent.json"
    return settings.CONFIG_FILE
