"""Fixtures for the balancer: a fake clock and both state stores.

Redis tests use database 14 of the local Redis. Each test gets its own key
prefix and deletes only its own keys afterwards, so parallel runs (xdist,
another checkout's suite) never wipe each other's state mid-test.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator

import pytest
import redis

from instances.balancer.state import InProcessStateStore, RedisStateStore, StateStore

REDIS_TEST_URL = os.environ.get("BALANCER_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rng() -> random.Random:
    return random.Random(1234)


@pytest.fixture
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        pytest.skip(f"Redis is not reachable at {REDIS_TEST_URL} ({exc}); the Redis store tests need it")
    finally:
        client.close()
    return REDIS_TEST_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own, its keys deleted afterwards."""
    prefix = f"test:lb:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()


@pytest.fixture(params=["in_process", "redis"])
def store(request: pytest.FixtureRequest, clock: FakeClock) -> StateStore:
    """Each behaviour test runs against both stores."""
    if request.param == "in_process":
        return InProcessStateStore(clock=clock)
    return RedisStateStore(request.getfixturevalue("redis_url"), prefix=request.getfixturevalue("redis_prefix"))
