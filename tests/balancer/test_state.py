"""The behaviour contract of the state store, run against both implementations."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis

from instances.balancer.breaker import BreakerConfig, BreakerEvent, Outcome, Phase
from instances.balancer.candidates import Candidate, Reason
from instances.balancer.state import (
    InProcessStateStore,
    Lease,
    LeaseNotFound,
    RedisStateStore,
    ResilientStateStore,
    StateStore,
    get_state_store,
)
from instances.balancer.strategies import swrr_step
from tests.balancer.conftest import FakeClock

CONFIG = BreakerConfig()
POOL = "zai/glm-4"


def admit(store: StateStore, candidate: Candidate, now: float, *, lease_seconds: float = 60.0) -> Lease:
    admission = store.begin(candidate, pool=POOL, now=now, breaker=CONFIG, lease_seconds=lease_seconds)
    assert admission.lease is not None, admission
    return admission.lease


def request(
    store: StateStore, candidate: Candidate, now: float, outcome: Outcome, *, pool_size: int = 1, **kwargs: Any
) -> BreakerEvent | None:
    """One whole request: begin, then finish with this outcome."""
    lease = admit(store, candidate, now)
    return store.finish(lease, outcome=outcome, now=now, breaker=CONFIG, pool_size=pool_size, **kwargs)


def test_turns_are_counted_per_pool(store: StateStore) -> None:
    assert [store.next_turn("a") for _ in range(4)] == [0, 1, 2, 3]
    assert store.next_turn("b") == 0


def test_swrr_weights_advance_per_pool(store: StateStore) -> None:
    weights = {"a": 5, "b": 1, "c": 1}

    def step(current: dict[str, int]) -> tuple[str, dict[str, int]]:
        chosen, updated = swrr_step(current, weights)
        return chosen, updated

    assert "".join(store.advance_weights("p", step) for _ in range(7)) == "aabacaa"
    assert store.advance_weights("other", step) == "a"


def test_a_session_is_remembered_per_pool(store: StateStore) -> None:
    assert store.session_get(POOL, "s1") is None
    store.session_put(POOL, "s1", "inst-a", ttl_seconds=3600)
    assert store.session_get(POOL, "s1") == "inst-a"
    assert store.session_get("other/pool", "s1") is None


def test_an_untouched_instance_reads_as_idle_and_closed(store: StateStore, clock: FakeClock) -> None:
    state = store.snapshot([Candidate("a", rpm_limit=10)], now=clock.now, breaker=CONFIG)["a"]
    assert state.breaker.phase is Phase.CLOSED
    assert (state.in_flight, state.latency_ms, state.success_rate, state.rate_limited) == (0, None, None, False)


def test_leases_count_in_flight_and_enforce_capacity(store: StateStore, clock: FakeClock) -> None:
    candidate = Candidate("a", max_concurrent=2)
    first = admit(store, candidate, clock.now)
    admit(store, candidate, clock.now)
    refused = store.begin(candidate, pool=POOL, now=clock.now, breaker=CONFIG, lease_seconds=60)
    assert (refused.admitted, refused.refusal) == (False, Reason.AT_CAPACITY)
    assert store.snapshot([candidate], now=clock.now, breaker=CONFIG)["a"].in_flight == 2

    store.finish(first, outcome=Outcome.SUCCESS, now=clock.now, breaker=CONFIG, pool_size=1)
    assert store.snapshot([candidate], now=clock.now, breaker=CONFIG)["a"].in_flight == 1


def test_a_lease_never_finished_lapses_at_its_deadline(store: StateStore, clock: FakeClock) -> None:
    candidate = Candidate("a", max_concurrent=1)
    admit(store, candidate, clock.now, lease_seconds=30)
    assert store.snapshot([candidate], now=clock.now + 29, breaker=CONFIG)["a"].in_flight == 1
    assert store.snapshot([candidate], now=clock.now + 30, breaker=CONFIG)["a"].in_flight == 0
    assert store.begin(candidate, pool=POOL, now=clock.now + 30, breaker=CONFIG, lease_seconds=30).admitted


def test_reported_load_counts_beside_leases_and_lapses_unless_renewed(store: StateStore, clock: FakeClock) -> None:
    candidate = Candidate("a", max_concurrent=5)
    admit(store, candidate, clock.now)
    store.report_load("a", 3, now=clock.now, ttl_seconds=15)
    assert store.in_flight(["a", "idle"], now=clock.now) == {"a": 4, "idle": 0}
    assert store.snapshot([candidate], now=clock.now, breaker=CONFIG)["a"].in_flight == 4

    store.report_load("a", 1, now=clock.now + 10, ttl_seconds=15)  # a new report replaces the old one
    assert store.in_flight(["a"], now=clock.now + 10) == {"a": 2}
    assert store.in_flight(["a"], now=clock.now + 24) == {"a": 2}
    assert store.in_flight(["a"], now=clock.now + 25.001) == {"a": 1}  # the report lapsed; the lease stays


def test_reported_load_takes_capacity_and_reporting_zero_frees_it(store: StateStore, clock: FakeClock) -> None:
    candidate = Candidate("a", max_concurrent=2)
    store.report_load("a", 2, now=clock.now, ttl_seconds=15)
    refused = store.begin(candidate, pool=POOL, now=clock.now, breaker=CONFIG, lease_seconds=60)
    assert refused.refusal == Reason.AT_CAPACITY

    store.report_load("a", 0, now=clock.now, ttl_seconds=15)
    assert store.begin(candidate, pool=POOL, now=clock.now, breaker=CONFIG, lease_seconds=60).admitted


def test_a_live_release_feeds_the_breaker_and_a_replayed_one_is_refused(store: StateStore, clock: FakeClock) -> None:
    candidate = Candidate("a", max_concurrent=5)
    lease = admit(store, candidate, clock.now, lease_seconds=30)
    store.finish(
        lease, outcome=Outcome.SUCCESS, now=clock.now, breaker=CONFIG, pool_size=1, latency_ms=250.0, require_live=True
    )
    assert store.snapshot([candidate], now=clock.now, breaker=CONFIG)["a"].latency_ms == pytest.approx(250.0)

    with pytest.raises(LeaseNotFound):
        store.finish(lease, outcome=Outcome.FAILURE, now=clock.now, breaker=CONFIG, pool_size=1, require_live=True)
    expired = admit(store, candidate, clock.now, lease_seconds=30)
    with pytest.raises(LeaseNotFound):
        store.finish(
            expired, outcome=Outcome.FAILURE, now=clock.now + 31, breaker=CONFIG, pool_size=1, require_live=True
        )
    assert store.breaker_states(["a"])["a"].consecutive_failures == 0


def test_the_request_limit_admits_exactly_rpm_and_gives_the_lease_back(store: StateStore, clock: FakeClock) -> None:
    candidate = Candidate("a", rpm_limit=5, rpm_burst=5, max_concurrent=100)  # the whole minute at once
    results = [store.begin(candidate, pool=POOL, now=clock.now, breaker=CONFIG, lease_seconds=60) for _ in range(8)]
    assert [r.admitted for r in results] == [True] * 5 + [False] * 3
    assert results[-1].refusal is Reason.RATE_LIMITED
    assert results[-1].retry_after == pytest.approx(12.0)
    snapshot = store.snapshot([candidate], now=clock.now, breaker=CONFIG)["a"]
    assert (snapshot.in_flight, snapshot.rate_limited) == (5, True)
    assert store.snapshot([candidate], now=clock.now + 12, breaker=CONFIG)["a"].rate_limited is False


def test_tokens_used_are_charged_against_the_token_limit(store: StateStore, clock: FakeClock) -> None:
    candidate = Candidate("a", tpm_limit=1000)
    lease = admit(store, candidate, clock.now)
    store.finish(lease, outcome=Outcome.SUCCESS, now=clock.now, breaker=CONFIG, pool_size=1, tokens=1200)
    assert store.snapshot([candidate], now=clock.now, breaker=CONFIG)["a"].rate_limited is True
    refused = store.begin(candidate, pool=POOL, now=clock.now, breaker=CONFIG, lease_seconds=60)
    assert refused.refusal is Reason.RATE_LIMITED


def test_latency_samples_feed_the_peak_ewma(store: StateStore, clock: FakeClock) -> None:
    candidate = Candidate("a")
    request(store, candidate, clock.now, Outcome.SUCCESS, latency_ms=100.0)
    request(store, candidate, clock.now + 1, Outcome.SUCCESS, latency_ms=900.0)
    assert store.snapshot([candidate], now=clock.now + 1, breaker=CONFIG)["a"].latency_ms == 900.0


def test_the_breaker_opens_probes_and_closes_through_the_store(store: StateStore, clock: FakeClock) -> None:
    candidate = Candidate("a")
    events = [request(store, candidate, clock.now, Outcome.FAILURE) for _ in range(5)]
    assert events == [None, None, None, None, BreakerEvent.OPENED]
    assert store.breaker_states(["a"])["a"].phase is Phase.OPEN
    refused = store.begin(candidate, pool=POOL, now=clock.now + 29, breaker=CONFIG, lease_seconds=60)
    assert refused.refusal is Reason.BREAKER_OPEN

    half_open = clock.now + 30
    probes = [admit(store, candidate, half_open) for _ in range(3)]
    assert all(p.probe for p in probes)
    busy = store.begin(candidate, pool=POOL, now=half_open, breaker=CONFIG, lease_seconds=60)
    assert busy.refusal is Reason.BREAKER_OPEN
    finished = [store.finish(p, outcome=Outcome.SUCCESS, now=half_open, breaker=CONFIG, pool_size=1) for p in probes]
    assert finished == [None, None, BreakerEvent.CLOSED]
    assert store.breaker_states(["a"])["a"].phase is Phase.CLOSED
    assert not admit(store, candidate, half_open).probe


def test_a_429_cools_the_instance_for_retry_after(store: StateStore, clock: FakeClock) -> None:
    candidate = Candidate("a")
    event = request(store, candidate, clock.now, Outcome.RATE_LIMITED, retry_after=20.0)
    assert event is BreakerEvent.COOLED
    refused = store.begin(candidate, pool=POOL, now=clock.now + 5, breaker=CONFIG, lease_seconds=60)
    assert (refused.refusal, refused.retry_after) == (Reason.RATE_LIMITED, 15.0)
    assert store.begin(candidate, pool=POOL, now=clock.now + 20, breaker=CONFIG, lease_seconds=60).admitted


def test_the_success_rate_comes_from_the_breaker_window(store: StateStore, clock: FakeClock) -> None:
    candidate = Candidate("a")
    for outcome in [Outcome.SUCCESS, Outcome.SUCCESS, Outcome.SUCCESS, Outcome.FAILURE]:
        request(store, candidate, clock.now, outcome)
    assert store.snapshot([candidate], now=clock.now, breaker=CONFIG)["a"].success_rate == 0.75


def test_no_more_than_the_max_share_of_a_pool_is_ejected(store: StateStore, clock: FakeClock) -> None:
    pool = [Candidate(f"i{n}") for n in range(4)]

    def fail_five(candidate: Candidate, *, agree: bool = False) -> BreakerEvent | None:
        events = [
            request(store, candidate, clock.now, Outcome.FAILURE, pool_size=4, health_checks_agree=agree)
            for _ in range(5)
        ]
        return events[-1]

    assert fail_five(pool[0]) is BreakerEvent.OPENED
    assert fail_five(pool[1]) is BreakerEvent.OPENED
    assert fail_five(pool[2]) is BreakerEvent.EJECTION_REFUSED  # 2 of 4 already out
    assert store.breaker_states(["i2"])["i2"].phase is Phase.CLOSED
    assert request(store, pool[2], clock.now, Outcome.FAILURE, pool_size=4, health_checks_agree=True) is (
        BreakerEvent.OPENED
    )

    # Once one recovers, it leaves the pool's ejected set and another may go.
    half_open = clock.now + 30
    for _ in range(3):
        lease = admit(store, pool[0], half_open)
        store.finish(lease, outcome=Outcome.SUCCESS, now=half_open, breaker=CONFIG, pool_size=4)
    assert fail_five(pool[3]) is BreakerEvent.EJECTION_REFUSED  # i1 and i2 still out
    for _ in range(3):
        lease = admit(store, pool[1], half_open)
        store.finish(lease, outcome=Outcome.SUCCESS, now=half_open, breaker=CONFIG, pool_size=4)
    assert request(store, pool[3], half_open, Outcome.FAILURE, pool_size=4) is BreakerEvent.OPENED


def test_concurrent_updates_of_one_instance_lose_nothing(store: StateStore, clock: FakeClock) -> None:
    candidate = Candidate("a", max_concurrent=1000)

    def hammer() -> None:
        for _ in range(50):
            request(store, candidate, clock.now, Outcome.SUCCESS, latency_ms=10.0)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = store.breaker_states(["a"])["a"]
    assert state.window_totals(clock.now, CONFIG) == (400, 0)
    assert store.snapshot([candidate], now=clock.now, breaker=CONFIG)["a"].in_flight == 0


def test_in_process_keys_expire_on_the_store_clock(clock: FakeClock) -> None:
    store = InProcessStateStore(clock=clock)
    store.session_put(POOL, "s1", "inst-a", ttl_seconds=60)
    clock.advance(59.9)
    assert store.session_get(POOL, "s1") == "inst-a"
    clock.advance(0.1)
    assert store.session_get(POOL, "s1") is None


def test_redis_keys_are_namespaced_and_expire(redis_url: str, redis_prefix: str, clock: FakeClock) -> None:
    store = RedisStateStore(redis_url, prefix=redis_prefix)
    store.session_put(POOL, "s1", "inst-a", ttl_seconds=3600)
    store.next_turn(POOL)
    request(store, Candidate("a", rpm_limit=60, tpm_limit=1000), clock.now, Outcome.FAILURE, latency_ms=5.0, tokens=10)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = sorted(client.scan_iter(match=f"{redis_prefix}*"))
    kinds = {key.removeprefix(redis_prefix).split(":")[0] for key in keys}
    assert kinds == {"sess", "rr", "brk", "lat", "rl"}  # the lease was given back: no inflight key
    assert all(client.pttl(key) > 0 for key in keys)
    assert 3590_000 < client.pttl(next(k for k in keys if ":sess:" in k)) <= 3600_000


def test_the_process_store_is_redis_when_a_url_is_configured(
    settings: Any, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    import instances.balancer.state as state_module

    monkeypatch.setattr(state_module, "_store", None)
    settings.REDIS_URL = ""
    in_process = get_state_store()
    assert isinstance(in_process, InProcessStateStore)
    assert get_state_store() is in_process

    monkeypatch.setattr(state_module, "_store", None)
    settings.REDIS_URL = redis_url
    settings.BALANCER_KEY_PREFIX = "custom:"
    shared = get_state_store()
    assert isinstance(shared, ResilientStateStore)
    assert isinstance(shared.primary, RedisStateStore)
    assert isinstance(shared.fallback, InProcessStateStore)
    assert shared.primary.prefix == shared.fallback.prefix == "custom:"
