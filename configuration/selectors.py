"""Reading the effective configuration: cheap enough for hot paths, safe to mutate what they return."""

from __future__ import annotations

import copy
import logging
from typing import Any

from django.db import OperationalError, ProgrammingError, connection

from configuration import layers
from configuration.cache import CONFIG_CACHE
from configuration.models import RuntimeSetting
from configuration.schema import parse_path

logger = logging.getLogger(__name__)

_MISSING: Any = object()
_last_ignored: dict[str, str] = {}


def effective_config() -> dict[str, Any]:
    """The whole merged tree (runtime > env > file > defaults); a copy the caller may change."""
    return copy.deepcopy(_resolved().tree)


def config_value(path: str, default: Any = _MISSING) -> Any:
    """One effective value by dotted path, e.g. config_value("load_balancer.strategy").

    A path the schema does not know raises schema.PathError (a ValueError), so typos
    fail loudly. `default` only applies to map entries that are absent
    (config_value("pricing.gpt-4o", None)); otherwise such a lookup raises KeyError.
    """
    value: Any = _resolved().tree
    for key in parse_path(path):
        try:
            value = value[key]
        except KeyError:
            if default is _MISSING:
                raise KeyError(f"{path}: not set") from None
            return default
    return copy.deepcopy(value) if isinstance(value, dict | list) else value


def config_sources() -> dict[str, str]:
    """{dotted leaf path: "runtime" | "env" | "file" | "default"} for every leaf (an empty map counts as one)."""
    return dict(_resolved().sources)


def config_effective_with_sources() -> tuple[dict[str, Any], dict[str, str]]:
    """The tree and its sources from one snapshot, so they agree with each other."""
    resolved = _resolved()
    return copy.deepcopy(resolved.tree), dict(resolved.sources)


def config_ignored_settings() -> dict[str, str]:
    """Runtime rows not applied (no longer valid, or conflicting with file/env): {path: why}."""
    return dict(_resolved().ignored)


def config_runtime_overrides() -> dict[str, Any]:
    """The stored runtime rows, {path: value}, straight from the database."""
    return dict(RuntimeSetting.objects.order_by("path").values_list("path", "value"))


def config_cache_clear() -> None:
    """Forget the cached configuration and file in this process (tests, or after editing the file)."""
    CONFIG_CACHE.clear()
    layers.clear_file_cache()


def _resolved() -> layers.Resolved:
    return CONFIG_CACHE.get(_load)


def _load() -> layers.Resolved:
    runtime, ignored = layers.runtime_layer(_runtime_rows())
    resolved = layers.resolve(runtime, ignored)
    global _last_ignored
    if resolved.ignored != _last_ignored:  # log once per change, not at every reload
        _last_ignored = dict(resolved.ignored)
        if resolved.ignored:
            logger.error("Runtime configuration settings not applied: %s", resolved.ignored)
    return resolved


def _runtime_rows() -> list[tuple[str, Any]]:
    try:
        return list(RuntimeSetting.objects.values_list("path", "value"))
    except (OperationalError, ProgrammingError):
        # The table is missing before `migrate`; inside a transaction the error must surface
        # (PostgreSQL has aborted it), and code that reads configuration from a migration
        # depends on ("configuration", "0001_initial").
        if connection.in_atomic_block:
            raise
        logger.warning("Runtime settings unavailable (migrations not applied?); using env, file and defaults")
        return []
