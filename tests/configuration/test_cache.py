"""Reads come from a per-process snapshot that writes invalidate, here and in other processes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test.utils import CaptureQueriesContext

from configuration.cache import VERSION_KEY, bump_shared_version
from configuration.models import RuntimeSetting
from configuration.selectors import config_cache_clear, config_value, effective_config
from configuration.services import config_update

pytestmark = pytest.mark.django_db


def _written_by_another_process(path: str, value: Any) -> None:
    """A row committed elsewhere: this process's snapshot knows nothing about it."""
    RuntimeSetting.objects.update_or_create(path=path, defaults={"value": value})


def test_warm_reads_do_not_touch_the_database(no_config_file: Path) -> None:
    config_value("load_balancer.strategy")
    with CaptureQueriesContext(connection) as queries:
        for _ in range(50):
            config_value("load_balancer.strategy")
            effective_config()
    assert len(queries) == 0


def test_what_a_caller_does_to_a_result_does_not_leak_into_the_cache(no_config_file: Path) -> None:
    effective_config()["load_balancer"]["strategy"] = "mangled"
    config_value("providers.zai.default_models").append("mangled")
    assert config_value("load_balancer.strategy") == "health_based"
    assert config_value("providers.zai.default_models") == []


def test_a_write_in_this_process_is_seen_at_once(no_config_file: Path, clock: Any) -> None:
    assert config_value("load_balancer.strategy") == "health_based"
    config_update(changes={"load_balancer": {"strategy": "random"}}, updated_by="t")
    assert config_value("load_balancer.strategy") == "random"


def test_a_write_publishes_a_new_version_once_committed(
    no_config_file: Path, django_capture_on_commit_callbacks: Any
) -> None:
    before = cache.get(VERSION_KEY)
    with django_capture_on_commit_callbacks(execute=True):
        config_update(changes={"load_balancer": {"strategy": "random"}}, updated_by="t")
    assert cache.get(VERSION_KEY) == (before or 0) + 1


def test_another_processs_write_is_seen_after_the_version_check_interval(no_config_file: Path, clock: Any) -> None:
    assert config_value("load_balancer.strategy") == "health_based"
    _written_by_another_process("load_balancer.strategy", "weighted")
    bump_shared_version()

    clock.advance(0.5)
    assert config_value("load_balancer.strategy") == "health_based"  # the version is not checked every read
    clock.advance(0.6)
    assert config_value("load_balancer.strategy") == "weighted"


def test_without_a_shared_version_the_ttl_bounds_staleness(no_config_file: Path, clock: Any) -> None:
    assert config_value("load_balancer.strategy") == "health_based"
    _written_by_another_process("load_balancer.strategy", "weighted")  # e.g. a per-process locmem cache

    clock.advance(4.9)
    assert config_value("load_balancer.strategy") == "health_based"
    clock.advance(0.2)
    assert config_value("load_balancer.strategy") == "weighted"


def test_tests_can_reset_the_cache(no_config_file: Path) -> None:
    assert config_value("load_balancer.strategy") == "health_based"
    _written_by_another_process("load_balancer.strategy", "weighted")
    config_cache_clear()
    assert config_value("load_balancer.strategy") == "weighted"


def test_a_file_broken_after_start_keeps_the_last_good_configuration(
    config_file: Any, clock: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = config_file({"load_balancer": {"strategy": "random"}})
    assert config_value("load_balancer.strategy") == "random"
    path.write_text('{"load_balancer": {"strategy": "fastest", "health_check_interval": 3}}')

    clock.advance(6)
    with caplog.at_level(logging.ERROR, logger="configuration.cache"):
        assert config_value("load_balancer.strategy") == "random"
    assert "keeping the last good configuration" in caplog.text

    config_cache_clear()
    with pytest.raises(ImproperlyConfigured, match="fastest"):
        config_value("load_balancer.strategy")


def test_the_cache_being_down_does_not_stop_reads(
    no_config_file: Path, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(cache, "get", broken)
    monkeypatch.setattr(cache, "incr", broken)
    config_update(changes={"load_balancer": {"strategy": "random"}}, updated_by="t")
    clock.advance(2)
    assert config_value("load_balancer.strategy") == "random"
    bump_shared_version()  # logs, does not raise
