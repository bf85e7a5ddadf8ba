"""Two OS processes share one Redis store: the round-robin position, the rate
limits and the breaker window are fleet-wide, not per process."""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from instances.balancer.breaker import BreakerConfig
from instances.balancer.candidates import Candidate
from instances.balancer.state import RedisStateStore
from tests.balancer import workers

pytestmark = pytest.mark.integration

NOW = 1_000_000.0
T = TypeVar("T")


def in_two_processes(function: Callable[..., T], *args: Any) -> list[T]:
    """Run function(*args, start_at) in two spawned processes starting together; their results."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        start_at = time.time() + 3.0  # both interpreters are up by then
        results = pool.starmap(function, [(*args, start_at)] * 2)
    return results


def test_two_processes_share_the_round_robin_position(redis_url: str, redis_prefix: str) -> None:
    first, second = in_two_processes(workers.take_turns, redis_url, redis_prefix, "zai/glm-4", 5000)
    assert sorted(first + second) == list(range(10_000))
    # They really ran at the same time: their turns interleave.
    assert max(min(first), min(second)) < min(max(first), max(second)), (first[:3], second[:3])


def test_two_processes_share_the_rate_limit_and_the_breaker_window(redis_url: str, redis_prefix: str) -> None:
    candidate = Candidate("shared-inst", rpm_limit=1000, rpm_burst=1000, max_concurrent=1000)
    first, second = in_two_processes(workers.send_requests, redis_url, redis_prefix, candidate, 1500, NOW)
    assert first + second == 1000
    assert first > 0 and second > 0, (first, second)
    store = RedisStateStore(redis_url, prefix=redis_prefix)
    window = store.breaker_states(["shared-inst"])["shared-inst"].window_totals(NOW, BreakerConfig())
    assert window == (1000, 0)
    assert store.snapshot([candidate], now=NOW, breaker=BreakerConfig())["shared-inst"].in_flight == 0
