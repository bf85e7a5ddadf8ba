"""A Redis outage degrades every use of the cache instead of failing the request.

Django's cache is pointed at a real Redis behind the fault proxy (settings.REDIS_URL's
server, else the local Redis's database 14 as the balancer tests use), with the
connect/socket timeouts of ishchat/settings.py and a key prefix of its own.
"""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from ishchat.outage import CACHE_OUTAGE, Outage
from tests.support.faultproxy import FaultProxy

UPSTREAM_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/14"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def outage_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "ishchat.outage"]


def said(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The outage lines without the error's detail."""
    return [re.sub(r" \(\w+: .*\); degrading until it answers$", "", r.getMessage()) for r in outage_lines(caplog)]


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    parts = urlsplit(UPSTREAM_URL)
    try:
        redis.Redis(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, socket_connect_timeout=1).ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"no Redis at {UPSTREAM_URL} ({exc})")
    with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 6379) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def proxied_cache(proxy: FaultProxy, settings: Any) -> Iterator[FaultProxy]:
    """The default cache through the proxy, configured as ishchat/settings.py configures Redis."""
    db = urlsplit(UPSTREAM_URL).path.strip("/") or "0"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{proxy.port}/{db}",
            "KEY_PREFIX": f"degrade-{uuid.uuid4().hex[:8]}",
            "OPTIONS": {
                "socket_connect_timeout": settings.REDIS_TIMEOUT_SECONDS,
                "socket_timeout": settings.REDIS_TIMEOUT_SECONDS,
            },
        }
    }
    CACHE_OUTAGE.recovered()
    yield proxy
    proxy.heal()
    CACHE_OUTAGE.recovered()  # the next test starts with the cache up


# --- The outage log ------------------------------------------------------------


def test_an_outage_logs_one_line_then_one_on_recovery_and_skips_calls_between_retries(caplog):
    clock = Clock()
    outage = Outage("thing", errors=(ConnectionError,), retry_seconds=5, clock=clock)
    calls: list[int] = []

    def failing() -> str:
        calls.append(1)
        raise ConnectionError("refused")

    results = [outage.call(failing, fallback=lambda: "fallback") for _ in range(10)]
    clock.now += 6
    results.append(outage.call(failing, fallback=lambda: "fallback"))
    clock.now += 6
    results.append(outage.call(lambda: "value", fallback=lambda: "fallback"))

    assert results == ["fallback"] * 11 + ["value"]
    assert len(calls) == 2  # once, then once more after retry_seconds
    assert [r.getMessage() for r in outage_lines(caplog)] == [
        "thing unreachable (ConnectionError: refused); degrading until it answers",
        "thing reachable again",
    ]
    assert all(record.exc_info is None for record in outage_lines(caplog))


def test_errors_that_are_not_an_outage_propagate():
    outage = Outage("thing", errors=(ConnectionError,))

    with pytest.raises(ValueError):
        outage.call(lambda: int("x"), fallback=lambda: 0)
    assert not outage.down


# --- The API (throttle, registry version) ----------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("fault", ["cut", "blackhole"])
def test_the_api_answers_and_drains_an_instance_while_redis_is_down(
    fault, proxied_cache, api_client, registration, django_capture_on_commit_callbacks, caplog
):
    instance_id = api_client.post("/api/instances/register", registration, format="json").json()["instance_id"]
    getattr(proxied_cache, fault)()

    started = time.monotonic()
    status = api_client.get("/api/instances/status")
    with django_capture_on_commit_callbacks(execute=True):
        drained = api_client.patch(f"/api/instances/{instance_id}", {"status": "maintenance"}, format="json")
    listed = [api_client.get("/api/instances").status_code for _ in range(5)]
    elapsed = time.monotonic() - started

    assert status.status_code == 200, status.content
    assert drained.status_code == 200, drained.content
    assert drained.json()["status"] == "maintenance"
    assert listed == [200] * 5
    # One socket timeout for the first failure, then calls skip the cache (not one stall per call).
    assert elapsed < 4 * 0.5 + 2, elapsed
    assert said(caplog) == ["cache (Redis) unreachable"]


@pytest.mark.django_db
def test_the_throttle_counts_again_once_redis_is_back(proxied_cache, api_client, settings, monkeypatch, caplog):
    settings.API_RATE_LIMIT = "3/min"
    monkeypatch.setattr(CACHE_OUTAGE, "retry_seconds", 0.3)
    proxied_cache.cut()
    while_down = [api_client.get("/api/instances").status_code for _ in range(5)]
    proxied_cache.heal()
    time.sleep(0.35)  # the retry time has come

    after = [api_client.get("/api/instances").status_code for _ in range(4)]

    assert while_down == [200] * 5  # fail open
    assert after == [200, 200, 200, 429]
    assert said(caplog) == [
        "cache (Redis) unreachable",
        "cache (Redis) reachable again",
    ]


# --- The registry snapshot ------------------------------------------------------


@pytest.mark.django_db
def test_the_registry_snapshot_rebuilds_from_the_database_while_the_version_is_unreadable(proxied_cache, monkeypatch):
    from gateway import registry
    from instances.models import AIInstance
    from instances.services import instance_register

    instance = instance_register(
        provider_type="openai", model_name="m", instance_name="a", endpoint_url="https://api.example.com/v1"
    )
    AIInstance.objects.filter(pk=instance.pk).update(status="healthy")
    assert registry.registry_snapshot().by_id[str(instance.instance_id)].candidate.status == "healthy"
    proxied_cache.cut()

    # A write whose version bump was lost with the cache: only the database knows.
    AIInstance.objects.filter(pk=instance.pk).update(status="maintenance")
    time.sleep(registry.VERSION_CHECK_SECONDS + 0.05)
    during = registry.registry_snapshot()

    assert during.by_id[str(instance.instance_id)].candidate.status == "maintenance"
    proxied_cache.heal()
    monkeypatch.setattr(CACHE_OUTAGE, "retry_seconds", 0.0)
    time.sleep(registry.VERSION_CHECK_SECONDS + 0.05)
    after = registry.registry_snapshot()
    assert after is not during and not CACHE_OUTAGE.down  # read the version again, rebuilt once


# --- The balancer's state store --------------------------------------------------


def test_the_balancer_store_logs_one_line_per_outage_and_one_on_recovery(proxy, caplog):
    from instances.balancer.state import InProcessStateStore, RedisStateStore, ResilientStateStore

    clock = Clock()
    db = urlsplit(UPSTREAM_URL).path.strip("/") or "0"
    prefix = f"degrade-{uuid.uuid4().hex[:8]}:"
    primary = RedisStateStore(f"redis://127.0.0.1:{proxy.port}/{db}", prefix=prefix)
    store = ResilientStateStore(primary, InProcessStateStore(prefix=prefix), retry_seconds=5, clock=clock)
    store.next_turn("pool")
    proxy.cut()

    for _ in range(4):  # four retry windows of one outage
        store.next_turn("pool")
        clock.now += 6
    proxy.heal()
    store.next_turn("pool")

    assert said(caplog) == [
        "balancer state: Redis unreachable",
        "balancer state: Redis reachable again",
    ]
    assert not store.degraded


# --- Configuration version --------------------------------------------------------


def test_the_configuration_version_degrades_to_unknown_with_one_log_line(proxied_cache, caplog):
    from configuration.cache import bump_shared_version, shared_version

    bump_shared_version()
    assert shared_version() == 1
    proxied_cache.blackhole()

    started = time.monotonic()
    for _ in range(20):
        bump_shared_version()
        assert shared_version() is None
    elapsed = time.monotonic() - started

    assert elapsed < 1.5, elapsed
    assert len(outage_lines(caplog)) == 1
    assert all(record.exc_info is None for record in outage_lines(caplog))


# --- /health ------------------------------------------------------------------


@pytest.mark.django_db
def test_health_answers_quickly_naming_the_cache_when_redis_hangs(proxied_cache, anon_client):
    proxied_cache.blackhole()

    started = time.monotonic()
    response = anon_client.get("/health")
    elapsed = time.monotonic() - started

    assert elapsed < 2.0, elapsed
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert "cache" in body["failed"]
    assert body["components"]["database"]["status"] == "up"


def test_the_broker_check_fails_within_the_redis_timeout(proxy, settings):
    from ishchat.celery import app
    from ishchat.views import _check_broker

    db = urlsplit(UPSTREAM_URL).path.strip("/") or "0"
    saved = app.conf.broker_url, app.conf.broker_transport_options, app.conf.broker_connection_timeout
    app.conf.broker_url = f"redis://127.0.0.1:{proxy.port}/{db}"
    timeout = settings.REDIS_TIMEOUT_SECONDS
    app.conf.broker_transport_options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    app.conf.broker_connection_timeout = timeout
    proxy.blackhole()
    try:
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017  (kombu's OperationalError, whatever the transport wraps)
            _check_broker()
        elapsed = time.monotonic() - started
    finally:
        app.conf.broker_url, app.conf.broker_transport_options, app.conf.broker_connection_timeout = saved

    assert elapsed < 2 * timeout + 0.5, elapsed


def test_redis_settings_give_every_client_connect_and_socket_timeouts():
    import subprocess
    import sys

    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.CACHES['default']['OPTIONS'], s.CELERY_BROKER_TRANSPORT_OPTIONS, "
        "s.CELERY_BROKER_CONNECTION_TIMEOUT]))"
    )
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:6379/2", "INSTANCE_MANAGER_REDIS_TIMEOUT_MS": "700"}
    env["DJANGO_SETTINGS_MODULE"] = "ishchat.settings"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout

    import json

    cache_options, broker_options, broker_timeout = json.loads(out.strip().splitlines()[-1])
    assert cache_options == {"socket_connect_timeout": 0.7, "socket_timeout": 0.7}
    assert broker_options["socket_connect_timeout"] == broker_options["socket_timeout"] == 0.7
    assert broker_timeout == 0.7
