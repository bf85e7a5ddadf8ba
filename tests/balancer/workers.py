"""Work for the multi-process test, in an importable module so `spawn` children can run it.

Each function waits for a common start time, so the processes hammer Redis at once.
"""

from __future__ import annotations

import time

from instances.balancer.breaker import BreakerConfig, Outcome
from instances.balancer.candidates import Candidate
from instances.balancer.state import RedisStateStore


def _wait_until(start_at: float) -> None:
    while time.time() < start_at:
        time.sleep(0.001)


def take_turns(url: str, prefix: str, pool: str, turns: int, start_at: float) -> list[int]:
    store = RedisStateStore(url, prefix=prefix)
    _wait_until(start_at)
    return [store.next_turn(pool) for _ in range(turns)]


def send_requests(url: str, prefix: str, candidate: Candidate, tries: int, now: float, start_at: float) -> int:
    """Begin and finish `tries` requests at a fixed `now`; return how many the limits admitted."""
    store = RedisStateStore(url, prefix=prefix)
    config = BreakerConfig()
    _wait_until(start_at)
    admitted = 0
    for _ in range(tries):
        admission = store.begin(candidate, pool="shared", now=now, breaker=config, lease_seconds=60)
        if admission.lease is not None:
            admitted += 1
            store.finish(admission.lease, outcome=Outcome.SUCCESS, now=now, breaker=config, pool_size=1)
    return admitted
