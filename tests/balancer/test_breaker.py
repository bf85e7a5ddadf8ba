from __future__ import annotations

import pytest

from instances.balancer.breaker import (
    Availability,
    BreakerConfig,
    BreakerEvent,
    BreakerState,
    Outcome,
    Phase,
    acquire,
    availability,
    ejection_allowed,
    outcome_for_error,
    record,
)

CONFIG = BreakerConfig()
T0 = 1_000_000.0


def fail(state: BreakerState, now: float, times: int = 1) -> tuple[BreakerState, BreakerEvent | None]:
    event = None
    for _ in range(times):
        state, event = record(state, Outcome.FAILURE, now, CONFIG, probe=False)
    return state, event


def succeed(state: BreakerState, now: float, times: int = 1) -> BreakerState:
    for _ in range(times):
        state, _ = record(state, Outcome.SUCCESS, now, CONFIG, probe=False)
    return state


def probe(state: BreakerState, now: float, outcome: Outcome) -> tuple[BreakerState, BreakerEvent | None]:
    verdict, state = acquire(state, now, CONFIG)
    assert verdict is Availability.PROBE
    return record(state, outcome, now, CONFIG, probe=True)


def open_breaker() -> BreakerState:
    state, event = fail(BreakerState(), T0, times=5)
    assert event is BreakerEvent.OPENED
    return state


def test_it_stays_closed_after_four_consecutive_failures() -> None:
    state, event = fail(BreakerState(), T0, times=4)
    assert (state.phase, event) == (Phase.CLOSED, None)
    assert availability(state, T0, CONFIG) is Availability.AVAILABLE


def test_it_opens_after_five_consecutive_failures() -> None:
    state = open_breaker()
    assert state.phase is Phase.OPEN
    assert state.open_until == T0 + 30
    assert availability(state, T0, CONFIG) is Availability.OPEN


def test_a_success_resets_the_consecutive_count() -> None:
    state, _ = fail(BreakerState(), T0, times=4)
    state = succeed(state, T0)
    state, event = fail(state, T0, times=4)
    assert (state.phase, event) == (Phase.CLOSED, None)


def test_it_stays_open_for_thirty_seconds_then_turns_half_open() -> None:
    state = open_breaker()
    assert availability(state, T0 + 29.9, CONFIG) is Availability.OPEN
    assert state.phase_at(T0 + 30) is Phase.HALF_OPEN
    assert availability(state, T0 + 30, CONFIG) is Availability.PROBE


def test_half_open_admits_three_concurrent_probes_and_no_more() -> None:
    state = open_breaker()
    now = T0 + 30
    for _ in range(3):
        verdict, state = acquire(state, now, CONFIG)
        assert verdict is Availability.PROBE
    verdict, state = acquire(state, now, CONFIG)
    assert verdict is Availability.PROBES_BUSY
    assert state.phase is Phase.HALF_OPEN


def test_a_probe_that_never_reports_frees_its_slot_after_its_lease() -> None:
    state = open_breaker()
    now = T0 + 30
    for _ in range(3):
        _, state = acquire(state, now, CONFIG)
    assert availability(state, now + CONFIG.probe_lease_seconds - 1, CONFIG) is Availability.PROBES_BUSY
    assert availability(state, now + CONFIG.probe_lease_seconds, CONFIG) is Availability.PROBE


def test_three_probe_successes_close_it() -> None:
    state = open_breaker()
    now = T0 + 30
    state, event = probe(state, now, Outcome.SUCCESS)
    state, event = probe(state, now, Outcome.SUCCESS)
    assert (state.phase, event) == (Phase.HALF_OPEN, None)
    state, event = probe(state, now, Outcome.SUCCESS)
    assert (state.phase, event) == (Phase.CLOSED, BreakerEvent.CLOSED)
    assert state == BreakerState()


def test_a_probe_failure_reopens_it_for_sixty_seconds() -> None:
    state = open_breaker()
    state, _ = probe(state, T0 + 30, Outcome.SUCCESS)
    state, event = probe(state, T0 + 31, Outcome.FAILURE)
    assert (state.phase, event) == (Phase.OPEN, BreakerEvent.REOPENED)
    assert state.open_until == T0 + 31 + 60


def test_repeated_ejections_double_the_open_time_up_to_three_hundred_seconds() -> None:
    state = open_breaker()
    durations = [state.open_until - T0]
    now = T0
    for _ in range(5):
        now = state.open_until
        state, event = probe(state, now, Outcome.FAILURE)
        assert event is BreakerEvent.REOPENED
        durations.append(state.open_until - now)
    assert durations == [30, 60, 120, 240, 300, 300]


def test_closing_resets_the_open_time_to_thirty_seconds() -> None:
    state = open_breaker()
    state, _ = probe(state, T0 + 30, Outcome.FAILURE)  # reopened for 60 s
    now = T0 + 90
    for _ in range(3):
        state, _ = probe(state, now, Outcome.SUCCESS)
    assert state.phase is Phase.CLOSED
    state, event = fail(state, now + 1, times=5)
    assert event is BreakerEvent.OPENED
    assert state.open_until == now + 1 + 30


def test_results_of_requests_started_before_the_ejection_are_ignored() -> None:
    state = open_breaker()
    assert record(state, Outcome.SUCCESS, T0 + 1, CONFIG, probe=False) == (state, None)
    _, half_open = acquire(state, T0 + 30, CONFIG)
    assert record(half_open, Outcome.FAILURE, T0 + 30, CONFIG, probe=False) == (half_open, None)


@pytest.mark.parametrize(
    ("successes", "failures", "opens"),
    [
        (4, 5, False),  # 9 calls: below min_calls, even at 56 % failures
        (5, 5, True),  # 10 calls, 50 %
        (6, 4, False),  # 10 calls, 40 %
        (11, 10, False),  # 21 calls, 48 %
        (10, 10, True),  # 20 calls, 50 %
    ],
)
def test_it_opens_on_the_failure_rate_once_min_calls_is_reached(successes: int, failures: int, opens: bool) -> None:
    # The consecutive rule set out of reach, so only the rate can open it.
    config = BreakerConfig(failure_threshold=100)
    state, events = BreakerState(), []
    for outcome in [Outcome.SUCCESS] * successes + [Outcome.FAILURE] * failures:
        state, event = record(state, outcome, T0, config, probe=False)
        events.append(event)
    assert events[:-1] == [None] * (len(events) - 1)
    assert (events[-1] is BreakerEvent.OPENED) is opens
    assert (state.phase is Phase.OPEN) is opens


def test_failures_older_than_the_window_no_longer_count() -> None:
    state = BreakerState()
    for i in range(4):
        state, _ = fail(state, T0 + i)
        state = succeed(state, T0 + i)
    # 8 calls, 4 failed at T0..T0+3; 70 s later they have left the 60 s window.
    later = T0 + 70
    state = succeed(state, later)
    state, event = fail(state, later)
    assert state.window_totals(later, CONFIG) == (2, 1)
    assert event is None
    assert state.success_rate(later, CONFIG) == 0.5


def test_a_429_cools_the_instance_for_retry_after_without_counting_as_a_failure() -> None:
    state, _ = fail(BreakerState(), T0, times=4)
    state, event = record(state, Outcome.RATE_LIMITED, T0, CONFIG, probe=False, retry_after=20)
    assert event is BreakerEvent.COOLED
    assert state.consecutive_failures == 4
    assert state.window_totals(T0, CONFIG) == (4, 4)
    assert availability(state, T0 + 19.9, CONFIG) is Availability.COOLING
    assert availability(state, T0 + 20, CONFIG) is Availability.AVAILABLE


def test_a_429_without_retry_after_cools_for_the_default() -> None:
    state, _ = record(BreakerState(), Outcome.RATE_LIMITED, T0, CONFIG, probe=False)
    assert state.cooling_until == T0 + CONFIG.default_cool_seconds


def test_a_429_during_a_probe_frees_the_slot_without_closing_or_reopening() -> None:
    state = open_breaker()
    state, event = probe(state, T0 + 30, Outcome.RATE_LIMITED)
    assert event is BreakerEvent.COOLED
    assert state.phase is Phase.HALF_OPEN
    assert state.probes == ()


def test_an_auth_failure_is_reported_for_the_caller_and_not_counted() -> None:
    state, event = record(BreakerState(), Outcome.AUTH_FAILURE, T0, CONFIG, probe=False)
    assert event is BreakerEvent.AUTH_FAILURE
    assert state == BreakerState()


def test_a_refused_ejection_keeps_it_closed_and_says_so() -> None:
    state, _ = fail(BreakerState(), T0, times=4)
    state, event = record(state, Outcome.FAILURE, T0, CONFIG, probe=False, ejection_allowed=False)
    assert (state.phase, event) == (Phase.CLOSED, BreakerEvent.EJECTION_REFUSED)
    state, event = record(state, Outcome.FAILURE, T0, CONFIG, probe=False, ejection_allowed=True)
    assert event is BreakerEvent.OPENED


@pytest.mark.parametrize(
    ("pool_size", "already_ejected", "max_share", "agree", "allowed"),
    [
        (10, 4, 0.5, False, True),  # the fifth of ten: 50 %
        (10, 5, 0.5, False, False),  # a sixth would pass 50 %
        (10, 5, 0.5, True, True),  # unless health checks agree
        (3, 1, 0.5, False, False),  # floor(1.5) = 1
        (1, 0, 0.5, False, True),  # at least one may always go
        (4, 0, 0.0, False, False),  # share 0: no ejection
        (4, 3, 0.0, True, True),
        (10, 2, 0.3, False, True),  # floor(3.0) = 3, not 2.999...
    ],
)
def test_the_max_ejection_guard(
    pool_size: int, already_ejected: int, max_share: float, agree: bool, allowed: bool
) -> None:
    verdict = ejection_allowed(
        pool_size=pool_size, already_ejected=already_ejected, max_share=max_share, health_checks_agree=agree
    )
    assert verdict is allowed


def test_the_state_round_trips_through_a_dict() -> None:
    state = open_breaker()
    _, state = acquire(state, T0 + 30, CONFIG)
    state, _ = record(state, Outcome.RATE_LIMITED, T0 + 30, CONFIG, probe=False, retry_after=5)
    assert BreakerState.from_dict(state.as_dict()) == state


def test_config_comes_from_a_load_balancer_config_row() -> None:
    from instances.models import LoadBalancerConfig

    row = LoadBalancerConfig(
        breaker_failure_threshold=7,
        breaker_failure_rate=0.25,
        breaker_min_calls=20,
        breaker_open_seconds=10,
        breaker_max_open_seconds=80,
        breaker_half_open_probes=1,
        max_ejection_share=0.2,
    )
    config = BreakerConfig.from_settings(row)
    assert (config.failure_threshold, config.failure_rate, config.min_calls) == (7, 0.25, 20)
    assert (config.open_seconds, config.max_open_seconds, config.half_open_probes) == (10, 80, 1)
    assert config.max_ejection_share == 0.2
    assert [config.open_duration(k) for k in range(5)] == [10, 20, 40, 80, 80]


def test_every_provider_error_kind_has_an_outcome() -> None:
    base = pytest.importorskip("instances.providers.base")
    outcomes = {kind.value: outcome_for_error(kind.value) for kind in base.ErrorKind}
    assert outcomes["auth"] is Outcome.AUTH_FAILURE
    assert outcomes["rate_limited"] is Outcome.RATE_LIMITED
    assert {outcomes[k] for k in ("timeout", "connection", "server_error")} == {Outcome.FAILURE}
    assert outcome_for_error(None) is Outcome.SUCCESS
