from __future__ import annotations

import pytest

from instances.balancer.ratelimit import RateState, admit_request, charge_tokens, gcra, is_limited

T0 = 1_000_000.0


def burst(
    state: RateState, now: float, *, rpm: int | None, tpm: int | None = None, tries: int
) -> tuple[int, RateState]:
    admitted = 0
    for _ in range(tries):
        decision, state = admit_request(state, now, rpm=rpm, tpm=tpm)
        admitted += decision.allowed
    return admitted, state


@pytest.mark.parametrize("rpm", [1, 7, 60, 1000])
def test_from_idle_exactly_the_limit_passes_at_once(rpm: int) -> None:
    admitted, state = burst(RateState(), T0, rpm=rpm, tries=rpm * 2)
    assert admitted == rpm
    assert is_limited(state, T0, rpm=rpm, tpm=None)


@pytest.mark.parametrize("rpm", [7, 60])
def test_after_a_burst_exactly_one_more_passes_each_interval(rpm: int) -> None:
    interval = 60 / rpm
    _, state = burst(RateState(), T0, rpm=rpm, tries=rpm)
    assert burst(state, T0 + interval - 0.001, rpm=rpm, tries=5)[0] == 0
    admitted, state = burst(state, T0 + interval, rpm=rpm, tries=5)
    assert admitted == 1
    # Ten minutes of saturating demand, one try every 10 ms: one per interval.
    total, now = 0, T0 + interval
    while now < T0 + 600:
        now += 0.01
        n, state = burst(state, now, rpm=rpm, tries=1)
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
