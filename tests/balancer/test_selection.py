from __future__ import annotations

import random
from typing import Any

import pytest

from instances.balancer.affinity import pick_for_session
from instances.balancer.breaker import Outcome
from instances.balancer.candidates import UNHEALTHY, Candidate, Reason, SelectionRequest
from instances.balancer.selection import NoEligibleInstance, Policy, Selection, select
from instances.balancer.state import InProcessStateStore, StateStore
from instances.balancer.strategies import UnknownStrategy
from tests.balancer.conftest import FakeClock

POOL = "zai/glm-4"
THREE = [Candidate("a"), Candidate("b"), Candidate("c")]


def choose(
    store: StateStore,
    candidates: list[Candidate],
    now: float,
    *,
    strategy: str = "round_robin",
    request: SelectionRequest | None = None,
    policy: Policy | None = None,
) -> Selection:
    return select(
        candidates,
        pool=POOL,
        request=request or SelectionRequest(),
        policy=policy or Policy(strategy=strategy),
        store=store,
        now=now,
        rng=random.Random(3),
    )


def test_the_policy_strategy_picks_and_the_counts_are_reported(store: StateStore, clock: FakeClock) -> None:
    candidates = [*THREE, Candidate("sick", status=UNHEALTHY)]
    picked = [choose(store, candidates, clock.now).selected.instance_id for _ in range(6)]
    assert picked == list("abcabc")
    selection = choose(store, candidates, clock.now)
    assert selection.strategy == "round_robin"
    assert (selection.eligible_count, selection.healthy_count) == (3, 3)
    assert selection.rejections.by_instance == {"sick": Reason.UNHEALTHY}
    assert selection.reason.startswith("round_robin: a takes turn 6")


def test_a_request_may_override_the_strategy(store: StateStore, clock: FakeClock) -> None:
    candidates = [Candidate("a"), Candidate("b")]
    store.report_load("a", 3, now=clock.now, ttl_seconds=30)
    store.report_load("b", 1, now=clock.now, ttl_seconds=30)
    selection = select(
        candidates,
        pool=POOL,
        request=SelectionRequest(),
        policy=Policy(strategy="round_robin"),
        store=store,
        now=clock.now,
        strategy="least_connections",
    )
    assert (selection.strategy, selection.selected.instance_id) == ("least_connections", "b")


def test_an_unknown_strategy_is_refused_before_anything_is_read(clock: FakeClock) -> None:
    class Untouchable(InProcessStateStore):
        def snapshot(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the store was read")

    with pytest.raises(UnknownStrategy):
        select(
            THREE,
            pool=POOL,
            request=SelectionRequest(),
            policy=Policy(),
            store=Untouchable(),
            now=clock.now,
            strategy="fastest",
        )


def test_no_eligible_instance_raises_with_the_reason(store: StateStore, clock: FakeClock) -> None:
    with pytest.raises(NoEligibleInstance) as empty:
        choose(store, [], clock.now)
    assert empty.value.code == "none_registered"

    with pytest.raises(NoEligibleInstance) as sick:
        choose(store, [Candidate("a", status=UNHEALTHY), Candidate("b", status=UNHEALTHY)], clock.now)
    assert (sick.value.code, sick.value.message) == ("all_unhealthy", "all 2 instances are unhealthy")


def test_live_in_flight_counts_and_open_breakers_come_from_the_store(store: StateStore, clock: FakeClock) -> None:
    policy = Policy(strategy="least_connections")
    for _ in range(2):
        assert store.begin(THREE[0], pool=POOL, now=clock.now, breaker=policy.breaker, lease_seconds=60).admitted
    assert store.begin(THREE[1], pool=POOL, now=clock.now, breaker=policy.breaker, lease_seconds=60).admitted
    selection = choose(store, THREE, clock.now, policy=policy)
    assert selection.selected.instance_id == "c"
    assert selection.reason == "least_connections: c has 0 in flight of 10 (others: b 1/10, a 2/10)"

    for _ in range(5):
        lease = store.begin(THREE[2], pool=POOL, now=clock.now, breaker=policy.breaker, lease_seconds=60).lease
        assert lease is not None
        store.finish(lease, outcome=Outcome.FAILURE, now=clock.now, breaker=policy.breaker, pool_size=3)
    selection = choose(store, THREE, clock.now, policy=policy)
    assert selection.selected.instance_id == "b"
    assert selection.rejections.by_instance == {"c": Reason.BREAKER_OPEN}


def test_reported_load_counts_until_its_ttl_passes(store: StateStore, clock: FakeClock) -> None:
    candidates = [Candidate("a", max_concurrent=10), Candidate("b")]
    store.report_load("a", 10, now=clock.now, ttl_seconds=15)

    selection = choose(store, candidates, clock.now, strategy="least_connections")
    assert selection.selected.instance_id == "b"
    assert selection.rejections.by_instance == {"a": Reason.AT_CAPACITY}

    clock.advance(15.001)  # never renewed: the report lapses, and with it the block
    selection = choose(store, candidates, clock.now, strategy="least_connections")
    assert (selection.eligible_count, selection.rejections.by_instance) == (2, {})


def test_the_registry_row_load_is_not_the_live_load(store: StateStore, clock: FakeClock) -> None:
    """A stale number on the candidate (from the database) never blocks routing: only leases count."""
    selection = choose(store, [Candidate("a", in_flight=10, max_concurrent=10)], clock.now)
    assert selection.selected.instance_id == "a"


def test_least_response_time_uses_the_stored_latency(store: StateStore, clock: FakeClock) -> None:
    policy = Policy(strategy="least_response_time")
    for candidate, latency_ms in [(THREE[0], 900.0), (THREE[1], 80.0), (THREE[2], 400.0)]:
        lease = store.begin(candidate, pool=POOL, now=clock.now, breaker=policy.breaker, lease_seconds=60).lease
        assert lease is not None
        store.finish(
            lease, outcome=Outcome.SUCCESS, now=clock.now, breaker=policy.breaker, pool_size=3, latency_ms=latency_ms
        )
    assert choose(store, THREE, clock.now, policy=policy).selected.instance_id == "b"


def test_a_session_stays_on_its_instance_while_it_is_eligible(store: StateStore, clock: FakeClock) -> None:
    request = SelectionRequest(session_id="user-42")
    first = choose(store, THREE, clock.now, request=request)
    assert first.strategy == "session_affinity"
    assert first.selected.instance_id == pick_for_session("user-42", ["a", "b", "c"])
    assert "highest rendezvous score among 3 eligible" in first.reason

    # A new instance would win the hash for this session: the remembered one still holds it.
    newcomer = next(
        Candidate(f"n{i}") for i in range(100) if pick_for_session("user-42", ["a", "b", "c", f"n{i}"]) == f"n{i}"
    )
    again = choose(store, [*THREE, newcomer], clock.now, request=request)
    assert again.selected.instance_id == first.selected.instance_id
    assert "stays on" in again.reason


def test_a_session_moves_when_its_instance_leaves_and_does_not_bounce_back(store: StateStore, clock: FakeClock) -> None:
    request = SelectionRequest(session_id="user-42")
    home = choose(store, THREE, clock.now, request=request).selected.instance_id
    without_home = [c for c in THREE if c.instance_id != home]
    moved = choose(store, without_home, clock.now, request=request)
    assert moved.selected.instance_id != home
    assert moved.alternatives and home not in {c.instance_id for c in moved.alternatives}
    assert choose(store, THREE, clock.now, request=request).selected.instance_id == moved.selected.instance_id


def test_excluding_the_session_instance_fails_over_to_its_next_rendezvous_choice(
    store: StateStore, clock: FakeClock
) -> None:
    request = SelectionRequest(session_id="user-7")
    first = choose(store, THREE, clock.now, request=request)
    retry = choose(
        store,
        THREE,
        clock.now,
        request=SelectionRequest(session_id="user-7", exclude=frozenset({first.selected.instance_id})),
    )
    assert retry.selected == first.alternatives[0]


def test_affinity_can_be_turned_off(store: StateStore, clock: FakeClock) -> None:
    selection = choose(
        store,
        THREE,
        clock.now,
        request=SelectionRequest(session_id="user-42"),
        policy=Policy(strategy="round_robin", session_affinity=False),
    )
    assert selection.strategy == "round_robin"
    assert store.session_get(POOL, "user-42") is None


def test_the_policy_comes_from_a_load_balancer_config_row() -> None:
    from instances.models import LoadBalancerConfig

    row = LoadBalancerConfig(
        strategy="power_of_two", min_health_score=0.3, session_affinity=False, session_ttl_seconds=60
    )
    policy = Policy.from_settings(row)
    assert (policy.strategy, policy.min_health_score, policy.session_affinity) == ("power_of_two", 0.3, False)
    assert policy.session_ttl_seconds == 60
    assert policy.breaker.failure_threshold == row.breaker_failure_threshold
