"""GCRA for the request and token limits, with an injected clock (`now`)."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from instances.balancer.ratelimit import RateState, admit_request, charge_tokens, default_burst, gcra, is_limited

T0 = 1_000_000.0


def burst(
    state: RateState, now: float, *, rpm: int | None, tpm: int | None = None, tries: int, rpm_burst: int | None = None
) -> tuple[int, RateState]:
    admitted = 0
    for _ in range(tries):
        decision, state = admit_request(state, now, rpm=rpm, tpm=tpm, rpm_burst=rpm_burst)
        admitted += decision.allowed
    return admitted, state


def admitted_times(arrivals: Iterable[float], *, rpm: int, rpm_burst: int | None) -> list[float]:
    """The arrival times (seconds) a request limit admits, in order."""
    state, admitted = RateState(), []
    for at in arrivals:
        decision, state = admit_request(state, T0 + at, rpm=rpm, tpm=None, rpm_burst=rpm_burst)
        if decision.allowed:
            admitted.append(at)
    return admitted


def most_in_any_window(times: list[float], window: float = 60.0) -> int:
    """The most admissions in any closed window [t, t + window] (it suffices to start at each admission)."""
    most, end = 0, 0
    for start, at in enumerate(times):
        end = max(end, start)
        while end < len(times) and times[end] <= at + window + 1e-9:
            end += 1
        most = max(most, end - start)
    return most


def saturating(seconds: float, step: float = 0.01, start: float = 0.0) -> list[float]:
    """A client trying every `step` seconds."""
    return [start + n * step for n in range(int(seconds / step))]


def bursty(seed: int) -> list[float]:
    """Idle gaps and bursts of many requests at once, in random order over 10 minutes."""
    rng = random.Random(seed)
    arrivals, now = [], 0.0
    while now < 600:
        now += rng.choice([0.0, 0.5, 3.0, 29.0, 61.0])
        arrivals += [now] * rng.randint(1, 40)
    return arrivals


@pytest.mark.parametrize(
    ("limit", "expected"), [(1, 1), (5, 1), (10, 1), (11, 2), (30, 3), (60, 6), (61, 7), (1000, 100)]
)
def test_the_default_burst_is_a_tenth_of_the_limit_and_at_least_one(limit: int, expected: int) -> None:
    assert default_burst(limit) == expected


@pytest.mark.parametrize(
    ("rpm", "rpm_burst", "at_once"),
    [
        (1, None, 1),
        (7, None, 1),
        (30, None, 3),
        (60, None, 6),
        (1000, None, 100),
        (30, 1, 1),
        (30, 10, 10),
        (30, 30, 30),
        (30, 45, 45),
    ],
)
def test_from_idle_exactly_the_burst_passes_at_once(rpm: int, rpm_burst: int | None, at_once: int) -> None:
    admitted, state = burst(RateState(), T0, rpm=rpm, tries=rpm * 2, rpm_burst=rpm_burst)
    assert admitted == at_once
    assert is_limited(state, T0, rpm=rpm, tpm=None, rpm_burst=rpm_burst)


@pytest.mark.parametrize(("rpm", "rpm_burst"), [(30, None), (30, 1), (30, 10), (30, 30), (60, None), (7, 2)])
@pytest.mark.parametrize("demand", ["saturating", "idle_then_saturating", "bursty_1", "bursty_2"])
def test_any_minute_admits_at_most_the_limit_plus_the_burst(rpm: int, rpm_burst: int | None, demand: str) -> None:
    arrivals = {
        "saturating": saturating(600),
        "idle_then_saturating": saturating(300, start=90.0) + saturating(300, start=500.0),
        "bursty_1": bursty(1),
        "bursty_2": bursty(2),
    }[demand]
    b = rpm_burst or default_burst(rpm)

    most = most_in_any_window(admitted_times(arrivals, rpm=rpm, rpm_burst=rpm_burst))

    assert most <= rpm + b
    if demand == "saturating":
        assert most >= rpm + b - 1  # the bound is reached: b at once, then the steady rate


def test_the_reported_case_30_a_minute_no_longer_lets_58_through_in_57_seconds() -> None:
    """The old bucket was a whole minute's worth (burst 30): 30 at once, then one every 2 s."""
    admitted = admitted_times(saturating(57), rpm=30, rpm_burst=None)
    assert len(admitted) == 3 + 28  # burst 3, then one every 2 s up to 56 s
    assert len(admitted_times(saturating(57), rpm=30, rpm_burst=30)) == 58  # the old behaviour, when asked for


@pytest.mark.parametrize(("rpm", "rpm_burst"), [(7, None), (60, None), (60, 60), (30, 5)])
def test_after_a_burst_exactly_one_more_passes_each_interval(rpm: int, rpm_burst: int | None) -> None:
    interval = 60 / rpm
    _, state = burst(RateState(), T0, rpm=rpm, tries=rpm, rpm_burst=rpm_burst)
    assert burst(state, T0 + interval - 0.001, rpm=rpm, tries=5, rpm_burst=rpm_burst)[0] == 0
    admitted, state = burst(state, T0 + interval, rpm=rpm, tries=5, rpm_burst=rpm_burst)
    assert admitted == 1
    # Ten minutes of saturating demand, one try every 10 ms: one per interval.
    total, now = 0, T0 + interval
    while now < T0 + 600:
        now += 0.01
        n, state = burst(state, now, rpm=rpm, tries=1, rpm_burst=rpm_burst)
        total += n
    assert total == pytest.approx((600 - interval) / interval, abs=1)


def test_a_refusal_says_how_long_to_wait() -> None:
    _, state = burst(RateState(), T0, rpm=60, tries=60)
    decision, unchanged = admit_request(state, T0 + 0.25, rpm=60, tpm=None)
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(0.75)
    assert unchanged == state


def test_tokens_are_charged_after_the_fact_and_block_while_in_debt() -> None:
    state = RateState()
    decision, state = admit_request(state, T0, rpm=None, tpm=1000)
    assert decision.allowed
    state = charge_tokens(state, T0, tpm=1000, tokens=1500)  # a response bigger than the whole minute
    assert is_limited(state, T0, rpm=None, tpm=1000)
    # 1500 tokens at 1000/min: the bucket is back under the limit once 1500 - 1000 tokens' time has passed.
    assert is_limited(state, T0 + 29.9, rpm=None, tpm=1000)
    assert not is_limited(state, T0 + 30.06, rpm=None, tpm=1000)


def test_a_token_limited_instance_does_not_spend_its_request_budget() -> None:
    state = charge_tokens(RateState(), T0, tpm=100, tokens=200)
    decision, after = admit_request(state, T0, rpm=10, tpm=100)
    assert not decision.allowed
    assert after.requests_tat == 0.0


def test_no_limit_never_limits() -> None:
    admitted, state = burst(RateState(), T0, rpm=None, tries=10_000)
    assert admitted == 10_000
    assert state == RateState()


def test_gcra_with_a_cost_admits_it_whole_or_not_at_all() -> None:
    assert gcra(0.0, T0, limit=100, cost=100).allowed
    refused = gcra(0.0, T0, limit=100, cost=101)
    assert not refused.allowed
    assert refused.tat == 0.0


@pytest.mark.django_db
@pytest.mark.parametrize(("configured", "at_once"), [(None, 3), (1, 1), (10, 10)])
def test_the_configured_burst_decides_how_many_requests_pass_at_once(configured: int | None, at_once: int) -> None:
    """providers.<type>.rate_limits.requests_burst reaches the fleet-wide limit (registry -> state store)."""
    from configuration.services import runtime_setting_set
    from gateway.registry import build_snapshot
    from instances.balancer.breaker import BreakerConfig
    from instances.balancer.state import get_state_store
    from instances.models import AIInstance

    if configured is not None:
        runtime_setting_set(path="providers.openai.rate_limits.requests_burst", value=configured, updated_by="test")
    AIInstance.objects.create(
        provider_type="openai",
        model_name="burst-model",
        instance_name="burst-1",
        endpoint_url="http://127.0.0.1:9/v1",
        requests_per_minute=30,
        max_concurrent_requests=100,
    )
    (item,) = build_snapshot().pool("openai", "burst-model")
    store = get_state_store()

    admissions = [
        store.begin(item.candidate, pool=item.pool, now=T0, breaker=BreakerConfig(), lease_seconds=60)
        for _ in range(40)
    ]

    assert item.candidate.rpm_burst == configured
    assert sum(a.admitted for a in admissions) == at_once
