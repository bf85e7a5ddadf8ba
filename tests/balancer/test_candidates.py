from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import pytest

from instances.balancer.breaker import BreakerConfig, BreakerState, Outcome, Phase, acquire, record
from instances.balancer.candidates import (
    DEGRADED,
    HEALTHY,
    UNHEALTHY,
    Candidate,
    Reason,
    Rejections,
    SelectionRequest,
    filter_candidates,
)
from instances.choices import InstanceStatus

NOW = 1_000_000.0
OPEN = BreakerState(phase=Phase.OPEN, open_until=NOW + 30, ejections=1)
COOLING = BreakerState(cooling_until=NOW + 10)


def run(
    candidates: list[Candidate],
    *,
    request: SelectionRequest | None = None,
    breakers: Mapping[str, BreakerState] | None = None,
    rate_limited: Collection[str] = (),
    min_health_score: float = 0.0,
) -> tuple[list[str], Rejections]:
    eligible, rejections = filter_candidates(
        candidates,
        request=request or SelectionRequest(),
        breaker_states=breakers or {},
        rate_limited=rate_limited,
        now=NOW,
        min_health_score=min_health_score,
    )
    return [c.instance_id for c in eligible], rejections


def test_the_status_values_match_the_registry() -> None:
    assert (
        InstanceStatus.HEALTHY.value,
        InstanceStatus.DEGRADED.value,
        InstanceStatus.UNHEALTHY.value,
    ) == (HEALTHY, DEGRADED, UNHEALTHY)


@pytest.mark.parametrize(
    ("rejected", "kwargs", "reason"),
    [
        (Candidate("x", status=UNHEALTHY), {}, Reason.UNHEALTHY),
        (Candidate("x", status="starting"), {}, Reason.NOT_SERVING),
        (Candidate("x", status="draining"), {}, Reason.NOT_SERVING),
        (Candidate("x", status="maintenance"), {}, Reason.NOT_SERVING),
        (Candidate("x", weight=0), {}, Reason.DRAINED),
        (Candidate("x", health_score=0.4), {"min_health_score": 0.5}, Reason.LOW_SCORE),
        (Candidate("x"), {"breakers": {"x": OPEN}}, Reason.BREAKER_OPEN),
        (Candidate("x"), {"breakers": {"x": COOLING}}, Reason.RATE_LIMITED),
        (Candidate("x"), {"rate_limited": {"x"}}, Reason.RATE_LIMITED),
        (Candidate("x", in_flight=10, max_concurrent=10), {}, Reason.AT_CAPACITY),
        (Candidate("x"), {"request": SelectionRequest(exclude=frozenset({"x"}))}, Reason.EXCLUDED),
        (Candidate("x", group_id=2), {"request": SelectionRequest(group_id=1)}, Reason.OTHER_GROUP),
        (Candidate("x", region="us"), {"request": SelectionRequest(region="eu")}, Reason.OTHER_REGION),
    ],
)
def test_each_rule_leaves_an_instance_out_with_its_reason(
    rejected: Candidate, kwargs: dict[str, Any], reason: Reason
) -> None:
    ok = Candidate("ok", group_id=1, region="eu")
    eligible, rejections = run([ok, rejected], **kwargs)
    assert eligible == ["ok"]
    assert rejections.by_instance == {"x": reason}


def test_what_passes_every_rule_is_eligible() -> None:
    eligible, rejections = run(
        [Candidate("a", health_score=0.9, in_flight=9, max_concurrent=10), Candidate("b", health_score=None)],
        min_health_score=0.5,
    )
    assert eligible == ["a", "b"]
    assert rejections.by_instance == {}


def test_a_half_open_breaker_admits_while_probe_slots_remain() -> None:
    config = BreakerConfig()
    _, one_probe = acquire(OPEN, NOW + 30, config)
    _, two = acquire(one_probe, NOW + 30, config)
    _, full = acquire(two, NOW + 30, config)
    later = NOW + 30
    for state, admitted in [(OPEN, True), (one_probe, True), (full, False)]:
        eligible, _ = filter_candidates(
            [Candidate("x")],
            request=SelectionRequest(),
            breaker_states={"x": state},
            rate_limited=(),
            now=later,
        )
        assert bool(eligible) is admitted


def test_degraded_instances_serve_only_when_no_healthy_one_can() -> None:
    healthy, degraded = Candidate("h"), Candidate("d", status=DEGRADED)
    eligible, rejections = run([healthy, degraded])
    assert eligible == ["h"]
    assert rejections.by_instance == {"d": Reason.DEGRADED}

    eligible, _ = run([healthy, degraded], rate_limited={"h"})
    assert eligible == ["d"]


def test_only_the_best_priority_tier_with_eligible_instances_is_used() -> None:
    tiers = [Candidate("p0"), Candidate("p1a", priority=1), Candidate("p1b", priority=1), Candidate("p2", priority=2)]
    eligible, rejections = run(tiers)
    assert eligible == ["p0"]
    assert rejections.counts[Reason.LOWER_PRIORITY] == 3

    eligible, _ = run(tiers, breakers={"p0": OPEN})
    assert eligible == ["p1a", "p1b"]

    eligible, _ = run(tiers, breakers={"p0": OPEN}, rate_limited={"p1a", "p1b"})
    assert eligible == ["p2"]


@pytest.mark.parametrize(
    ("candidates", "kwargs", "code", "message"),
    [
        ([], {}, "none_registered", "no instance is registered for this model"),
        (
            [Candidate("a", status=UNHEALTHY), Candidate("b", status=UNHEALTHY)],
            {},
            "all_unhealthy",
            "all 2 instances are unhealthy",
        ),
        (
            [Candidate("a"), Candidate("b"), Candidate("c")],
            {"breakers": {"a": OPEN, "b": OPEN, "c": OPEN}},
            "all_breaker_open",
            "all 3 instances are behind an open circuit breaker",
        ),
        ([Candidate("a")], {"rate_limited": {"a"}}, "all_rate_limited", "the only instance is rate-limited"),
        (
            [Candidate("a", in_flight=1, max_concurrent=1), Candidate("b", in_flight=5, max_concurrent=5)],
            {},
            "all_at_capacity",
            "all 2 instances are at capacity",
        ),
        (
            [Candidate("a", status=UNHEALTHY), Candidate("b", status=UNHEALTHY), Candidate("c")],
            {"breakers": {"c": OPEN}},
            "none_eligible",
            "no eligible instance among 3: 2 unhealthy, 1 behind an open circuit breaker",
        ),
    ],
)
def test_an_empty_result_explains_itself(
    candidates: list[Candidate], kwargs: dict[str, Any], code: str, message: str
) -> None:
    eligible, rejections = run(candidates, **kwargs)
    assert eligible == []
    assert rejections.explain_empty() == (code, message)


def test_the_breaker_filter_uses_the_clock_it_is_given() -> None:
    config = BreakerConfig()
    state = BreakerState()
    for _ in range(5):
        state, _ = record(state, Outcome.FAILURE, NOW, config, probe=False)
    args: dict[str, Any] = {"request": SelectionRequest(), "breaker_states": {"x": state}, "rate_limited": ()}
    assert filter_candidates([Candidate("x")], now=NOW + 29, **args)[0] == []
    assert filter_candidates([Candidate("x")], now=NOW + 30, **args)[0] != []
