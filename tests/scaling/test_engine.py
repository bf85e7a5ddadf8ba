"""The decision engine, HPA-style: tables of (policy, window, state, now) -> desired, direction, clamps."""

from __future__ import annotations

import itertools
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from scaling.choices import PredictiveMode as PredictiveModeChoice
from scaling.choices import ScalingDirection, ScalingTrigger
from scaling.engine import (
    Decision,
    Direction,
    GroupState,
    MetricWindow,
    PredictiveMode,
    ScalingPolicy,
    ScheduledWindow,
    Trigger,
    TriggerTargets,
    advance_state,
    decide,
    decide_manual,
    replay,
)
from scaling.models import ScalingEvent

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday


def seconds_ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def policy(**overrides: Any) -> ScalingPolicy:
    """Issue defaults; min 1, max 50 so bounds only bind where a case says so."""
    settings: dict[str, Any] = {"min_instances": 1, "max_instances": 50}
    settings.update(overrides)
    return ScalingPolicy(**settings)


TRACKING = {"scale_down_threshold": 0.5}  # target tracking: shrink as soon as outside the tolerance


@dataclass
class Case:
    name: str
    window: MetricWindow
    state: GroupState
    desired: int
    direction: Direction
    policy: dict[str, Any] = field(default_factory=dict)
    clamps: tuple[str, ...] = ()
    trigger: Trigger | None = Trigger.UTILIZATION


def U(utilization: float | None, **more: Any) -> MetricWindow:
    return MetricWindow(utilization=utilization, **more)


def S(active: int, starting: int = 0, **more: Any) -> GroupState:
    return GroupState(active=active, starting=starting, **more)


LATENCY = {"triggers": TriggerTargets(response_time_p95_ms=2000.0)}
ALL_TRIGGERS = {"triggers": TriggerTargets(response_time_p95_ms=2000.0, error_rate=0.05, queue_length=5.0)}

CASES = [
    Case("at target: no change", U(0.6), S(10), 10, Direction.NONE),
    Case("inside the tolerance: no change", U(0.65), S(10), 10, Direction.NONE),
    Case("inside the tolerance below target: no change", U(0.55), S(10), 10, Direction.NONE, TRACKING),
    Case("above target: ceil(current x u / target)", U(0.9), S(10), 15, Direction.UP),
    Case("exact ratio is not rounded up by float noise", U(0.78), S(10), 13, Direction.UP),
    Case("scale_up_threshold forces +1 inside the tolerance", U(0.8), S(10), 11, Direction.UP,
         {"target_utilization": 0.75}, clamps=("scale_up_threshold",)),
    Case("above scale_down_threshold the fleet is kept", U(0.3), S(10), 10, Direction.NONE,
         {"scale_down_threshold": 0.2}, clamps=("scale_down_threshold",)),
    Case("below scale_down_threshold it shrinks, -50 % per step", U(0.15), S(10), 5, Direction.DOWN,
         clamps=("step_limit_down",)),
    Case("target tracking shrinks proportionally", U(0.45), S(10), 8, Direction.DOWN, TRACKING),
    Case("starting instances count as capacity", U(0.9), S(8, starting=4), 12, Direction.NONE),
    Case("starting instances count, remaining gap is added", U(0.9), S(8, starting=2), 12, Direction.UP),
    Case("step limit up: +4 beats +100 % on a small fleet", U(1.0, queue_length=200.0), S(2), 6, Direction.UP,
         ALL_TRIGGERS, clamps=("step_limit_up",), trigger=Trigger.QUEUE_LENGTH),
    Case("step limit up: +100 % beats +4 on a large fleet", U(1.0, queue_length=500.0), S(10), 20, Direction.UP,
         ALL_TRIGGERS, clamps=("step_limit_up",), trigger=Trigger.QUEUE_LENGTH),
    Case("step limit down is configurable", U(0.06), S(10), 8, Direction.DOWN,
         {"scale_down_limit_percent": 20.0}, clamps=("step_limit_down",)),
    Case("clamped to max", U(0.9), S(10), 12, Direction.UP, {"max_instances": 12}, clamps=("max_instances",)),
    Case("clamped to min", U(0.1), S(4), 3, Direction.DOWN, {"min_instances": 3},
         clamps=("step_limit_down", "min_instances")),
    Case("below min scales up to min", U(0.6), S(3), 5, Direction.UP, {"min_instances": 5},
         clamps=("min_instances",), trigger=Trigger.BOUNDS),
    Case("above max scales down to max", U(0.6), S(10), 8, Direction.DOWN, {"max_instances": 8},
         clamps=("max_instances",), trigger=Trigger.BOUNDS),
    Case("p95 latency above target", U(0.6, p95_ms=3000.0), S(10), 15, Direction.UP, LATENCY,
         trigger=Trigger.RESPONSE_TIME),
    Case("error rate above target", U(0.6, p95_ms=1000.0, error_rate=0.1, queue_length=0.0), S(10), 20,
         Direction.UP, ALL_TRIGGERS, trigger=Trigger.ERROR_RATE),
    Case("queue per instance above target", U(0.6, p95_ms=1000.0, error_rate=0.0, queue_length=80.0), S(10), 16,
         Direction.UP, ALL_TRIGGERS, trigger=Trigger.QUEUE_LENGTH),
    Case("the largest proposal wins", U(0.9, p95_ms=2400.0, error_rate=0.0, queue_length=80.0), S(10), 16,
         Direction.UP, ALL_TRIGGERS, trigger=Trigger.QUEUE_LENGTH),
    Case("latency of the active instances is relieved by starting ones", U(0.6, p95_ms=3000.0),
         S(10, starting=5), 15, Direction.NONE, {**LATENCY, **TRACKING}, trigger=Trigger.RESPONSE_TIME),
    Case("a missing metric blocks a scale-down", U(0.1), S(10), 10, Direction.NONE, LATENCY,
         clamps=("missing_metrics",)),
    Case("a missing metric does not block a scale-up", U(0.9), S(10), 15, Direction.UP, LATENCY),
    Case("missing utilisation with low latency: no scale-down", U(None, p95_ms=500.0), S(10), 10, Direction.NONE,
         LATENCY, clamps=("missing_metrics",), trigger=Trigger.RESPONSE_TIME),
    Case("no metrics at all: hold", U(None), S(10), 10, Direction.NONE, clamps=("missing_metrics",), trigger=None),
    Case("only starting instances: utilisation unknown, hold", U(0.9), S(0, starting=3), 3, Direction.NONE,
         clamps=("missing_metrics",), trigger=None),
    Case("silent instances count as on target when shrinking", U(0.1, reporting_instances=5), S(10), 6,
         Direction.DOWN, TRACKING),
    Case("silent instances count as idle when growing", U(1.0, reporting_instances=5), S(10), 10,
         Direction.NONE, TRACKING),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_decision_table(case: Case) -> None:
    decision = decide(policy(**case.policy), case.window, case.state, NOW)

    assert (decision.desired, decision.direction) == (case.desired, case.direction), decision.reason
    assert decision.clamps == case.clamps, decision.reason
    assert decision.trigger == case.trigger
    assert decision.current == case.state.current
    assert decision.would_act == (case.direction != Direction.NONE)


def test_a_trigger_missing_for_ten_minutes_stops_blocking_a_scale_down_and_says_so() -> None:
    # A queue-length trigger on a hosted API that never publishes a queue: the recommended policy
    # with a queue trigger used to hold every scale-down forever.
    queue = {**TRACKING, "scale_down_stabilization_seconds": 0, "triggers": TriggerTargets(queue_length=10.0)}
    idle = U(0.1)  # queue_length None
    first = decide(policy(**queue), idle, S(10), NOW)
    assert (first.direction, first.missing_since) == (Direction.NONE, {"queue_length": NOW})
    assert "missing_metrics" in first.clamps

    carried = advance_state(S(10), first)
    almost = decide(policy(**queue), idle, carried, NOW + timedelta(seconds=590))
    assert almost.direction == Direction.NONE and almost.missing_since == {"queue_length": NOW}

    later = decide(policy(**queue), idle, advance_state(carried, almost), NOW + timedelta(seconds=600))
    assert later.direction == Direction.DOWN
    assert "queue_length has had no data for 10 min: it no longer blocks a scale-down" in later.reason
    assert replay(json.loads(json.dumps(later.to_dict()))) == later

    data_again = U(0.1, queue_length=0.0)
    back = decide(policy(**queue), data_again, advance_state(carried, later), NOW + timedelta(seconds=630))
    assert back.missing_since == {}  # data again: the next gap starts from zero


def test_missing_utilisation_blocks_a_scale_down_for_as_long_as_the_outage_lasts() -> None:
    # A metrics outage: utilisation gone for 20 minutes while an idle queue still reports 0.
    queue = {**TRACKING, "scale_down_stabilization_seconds": 0, "triggers": TriggerTargets(queue_length=10.0)}
    outage = U(None, queue_length=0.0)
    state = S(10)
    for minute in range(0, 21):
        decision = decide(policy(**queue), outage, state, NOW + timedelta(minutes=minute))
        assert decision.direction == Direction.NONE, (minute, decision.reason)
        state = advance_state(state, decision)
    assert "no scale-down while a metric is missing (utilization)" in decision.reason


def test_the_request_rate_trigger_sizes_the_group_on_demand_even_when_utilisation_is_capped() -> None:
    # 10 instances saturated (utilisation 1.0) while 3,000 req/min arrive, 100 per instance at target:
    # utilisation can only ask for ceil(10 / 0.6) = 17; the demand signal asks for 30.
    demand = {"triggers": TriggerTargets(request_rate=100.0), "scale_up_limit_percent": 300.0}
    decision = decide(policy(**demand), U(1.0, request_rate=3000.0), S(10), NOW)

    assert (decision.direction, decision.desired, decision.trigger) == (Direction.UP, 30, Trigger.REQUEST_RATE)
    assert "request rate 3000 req/min" in decision.reason
    idle = decide(policy(**demand, scale_down_stabilization_seconds=0), U(0.1, request_rate=300.0), S(10), NOW)
    assert (idle.direction, idle.desired) == (Direction.DOWN, 5)  # -50 % per step towards 3


def test_the_reason_says_what_happened_with_the_numbers() -> None:
    decision = decide(policy(max_instances=12), U(0.9), S(10), NOW)

    assert decision.reason.startswith("scale up 10 -> 12")
    assert "utilisation 0.90 vs target 0.60" in decision.reason
    assert "max 12: 15 -> 12" in decision.reason


def test_each_trigger_reports_metric_target_and_proposal() -> None:
    window = U(0.9, p95_ms=2400.0, error_rate=0.01, queue_length=80.0)
    decision = decide(policy(**ALL_TRIGGERS), window, S(10), NOW)

    table = {p.trigger: (p.metric, p.target, p.proposal) for p in decision.proposals}
    assert table == {
        Trigger.UTILIZATION: (0.9, 0.6, 15),
        Trigger.RESPONSE_TIME: (2400.0, 2000.0, 12),
        Trigger.ERROR_RATE: (0.01, 0.05, 2),
        Trigger.QUEUE_LENGTH: (80.0, 5.0, 16),
    }
    assert decision.threshold == 5.0
    assert decision.metric_values["queue_length"] == 80.0


# --- cooldowns, with a mocked clock -------------------------------------------------------------

UP_COOLDOWN = {"scale_up_cooldown": 300}  # the shipped default is 0: a cooldown is the operator's choice


def test_a_scale_up_inside_the_cooldown_is_reported_as_skipped_with_what_it_would_do() -> None:
    decision = decide(policy(**UP_COOLDOWN), U(0.9), S(10, last_scale_up_at=seconds_ago(120)), NOW)

    assert decision.skipped_by_cooldown and not decision.would_act
    assert (decision.direction, decision.current, decision.desired) == (Direction.UP, 10, 15)
    assert decision.new_count == 10
    assert decision.clamps == ("cooldown_up",)
    assert "scale-up cooldown 300 s, last scale-up 120 s ago (180 s left)" in decision.reason


def test_a_scale_up_acts_once_the_cooldown_has_passed() -> None:
    decision = decide(policy(**UP_COOLDOWN), U(0.9), S(10, last_scale_up_at=seconds_ago(300)), NOW)

    assert decision.would_act and not decision.skipped_by_cooldown
    assert decision.new_count == 15


def test_a_scale_up_is_not_held_back_by_a_recent_scale_down() -> None:
    decision = decide(policy(), U(0.9), S(10, last_scale_down_at=seconds_ago(30)), NOW)

    assert decision.would_act and decision.direction == Direction.UP


def test_no_scale_down_within_the_scale_down_cooldown_of_a_scale_up() -> None:
    state = S(10, last_scale_up_at=seconds_ago(599))
    assert decide(policy(**TRACKING), U(0.3), state, NOW).skipped_by_cooldown

    later = decide(policy(**TRACKING), U(0.3), replace(state, last_scale_up_at=seconds_ago(600)), NOW)
    assert later.would_act and later.direction == Direction.DOWN


def test_no_scale_down_within_the_scale_down_cooldown_of_a_scale_down() -> None:
    decision = decide(policy(**TRACKING), U(0.3), S(10, last_scale_down_at=seconds_ago(100)), NOW)

    assert decision.skipped_by_cooldown
    assert decision.clamps == ("cooldown_down",)
    assert decision.event_fields()["new_count"] == 5


def test_below_min_scales_up_to_min_even_in_the_cooldown_and_says_so() -> None:
    decision = decide(policy(min_instances=4, **UP_COOLDOWN), U(0.9), S(2, last_scale_up_at=seconds_ago(10)), NOW)

    assert decision.would_act and not decision.skipped_by_cooldown
    assert (decision.desired, decision.trigger) == (4, Trigger.BOUNDS)
    assert "cooldown_up" in decision.clamps
    assert "below min 4: scaling up to min regardless of the scale-up cooldown" in decision.reason


def test_above_max_scales_down_to_max_even_in_the_cooldown() -> None:
    decision = decide(policy(max_instances=6), U(0.1), S(10, last_scale_up_at=seconds_ago(10)), NOW)

    assert decision.would_act and not decision.skipped_by_cooldown
    assert (decision.desired, decision.trigger, decision.threshold) == (6, Trigger.BOUNDS, 6.0)
    assert "above max 6: scaling down to max regardless of the scale-down cooldown (590 s left)" in decision.reason


def test_over_a_mocked_clock_scale_ups_are_at_least_a_cooldown_apart() -> None:
    p = policy(max_instances=200, **UP_COOLDOWN)
    state, acted_at = S(4), []
    for tick in range(40):  # 20 minutes, evaluated every 30 s, load always above target
        now = NOW + timedelta(seconds=30 * tick)
        decision = decide(p, U(0.95), state, now)
        state = advance_state(state, decision)
        if decision.would_act:
            acted_at.append(now)
            state = replace(state, active=decision.desired)

    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(acted_at)]
    assert len(acted_at) == 4
    assert gaps == [300.0, 300.0, 300.0]


# --- scale-down stabilization -------------------------------------------------------------------

def test_stabilization_keeps_the_highest_recommendation_of_the_window() -> None:
    recent = ((seconds_ago(290), 12), (seconds_ago(200), 9))
    decision = decide(policy(**TRACKING), U(0.3), S(12, recent_recommendations=recent), NOW)

    assert (decision.direction, decision.desired) == (Direction.NONE, 12)
    assert decision.clamps == ("stabilization",)
    assert decision.recommendation == 6


def test_stabilization_can_allow_part_of_the_scale_down() -> None:
    recent = ((seconds_ago(200), 10), (seconds_ago(100), 8))
    decision = decide(policy(**TRACKING), U(0.3), S(12, recent_recommendations=recent), NOW)

    assert (decision.direction, decision.desired) == (Direction.DOWN, 10)
    assert decision.clamps == ("stabilization",)


def test_recommendations_older_than_the_window_are_forgotten() -> None:
    recent = ((seconds_ago(300), 12), (seconds_ago(301), 12))
    decision = decide(policy(**TRACKING), U(0.45), S(10, recent_recommendations=recent), NOW)

    assert (decision.direction, decision.desired) == (Direction.DOWN, 8)
    assert decision.recommendations == ((NOW, 8),)


def test_after_a_load_drop_the_first_scale_down_waits_for_the_window() -> None:
    p = policy(scale_down_cooldown=0, **TRACKING)
    state = S(10)
    for tick in range(20):  # ten minutes at target
        state = advance_state(state, decide(p, U(0.6), state, NOW + timedelta(seconds=30 * tick)))
    drop = NOW + timedelta(seconds=600)
    first_down = None
    for tick in range(30):
        now = drop + timedelta(seconds=30 * tick)
        decision = decide(p, U(0.3), state, now)
        state = advance_state(state, decision)
        if decision.would_act:
            first_down = now
            break

    # 300 s after the last recommendation that still wanted 10, made 30 s before the drop.
    assert first_down is not None
    assert (first_down - drop).total_seconds() == 270


def test_scale_ups_are_not_stabilized() -> None:
    recent = ((seconds_ago(100), 4),)
    decision = decide(policy(), U(0.9), S(10, recent_recommendations=recent), NOW)

    assert decision.desired == 15
    assert "stabilization" not in decision.clamps


# --- pause, schedules, manual -------------------------------------------------------------------

def test_a_paused_group_is_not_scaled_but_the_decision_says_what_it_would_do() -> None:
    decision = decide(policy(), U(0.9), S(10, paused_until=NOW + timedelta(minutes=5)), NOW)

    assert decision.paused and not decision.would_act and not decision.skipped_by_cooldown
    assert (decision.direction, decision.desired) == (Direction.UP, 15)
    assert "paused" in decision.clamps
    assert "manual scaling" in decision.reason


def test_a_pause_that_has_ended_no_longer_holds_back() -> None:
    decision = decide(policy(), U(0.9), S(10, paused_until=NOW), NOW)

    assert decision.would_act and not decision.paused


BUSINESS_HOURS = ScheduledWindow(name="business hours", cron="0 9 * * mon-fri", end="17:00", min_instances=6,
                                 max_instances=30)


@pytest.mark.parametrize(("moment", "desired", "trigger", "bounds"), [
    (datetime(2026, 3, 2, 10, 0, tzinfo=UTC), 6, Trigger.SCHEDULE, (6, 30)),  # Monday, in hours
    (datetime(2026, 3, 2, 17, 0, tzinfo=UTC), 2, Trigger.UTILIZATION, (1, 20)),  # Monday, after hours
    (datetime(2026, 3, 7, 10, 0, tzinfo=UTC), 2, Trigger.UTILIZATION, (1, 20)),  # Saturday
])
def test_a_scheduled_window_raises_min_and_max_while_active(moment: datetime, desired: int, trigger: Trigger,
                                                            bounds: tuple[int, int]) -> None:
    p = policy(max_instances=20, schedules=(BUSINESS_HOURS,))
    decision = decide(p, U(0.6), S(2), moment)

    assert (decision.desired, decision.trigger) == (desired, trigger)
    assert (decision.min_instances, decision.max_instances) == bounds
    assert decision.schedules_active == (("business hours",) if trigger == Trigger.SCHEDULE else ())


def test_a_manual_resize_is_a_decision_with_the_manual_trigger() -> None:
    decision = decide_manual(policy(max_instances=8), S(3), 6, NOW, reason="launch day")

    assert (decision.direction, decision.desired, decision.trigger) == (Direction.UP, 6, Trigger.MANUAL)
    assert decision.reason == "manual: 3 -> 6; launch day."
    with pytest.raises(ValueError, match="within"):
        decide_manual(policy(max_instances=8), S(3), 9, NOW)


# --- prediction ---------------------------------------------------------------------------------

RISING = tuple(600.0 + 10.0 * minute for minute in range(60))  # 600 -> 1190 req/min, +10 a minute


def predictive(mode: str, **more: Any) -> ScalingPolicy:
    return policy(predictive_mode=mode, instance_capacity_rpm=120.0, **more)


def test_prediction_adds_capacity_ahead_of_a_rising_load() -> None:
    # 1190 req/min now is 16.5 instances at 72 req/min each; four minutes ahead, 1230 needs 18.
    decision = decide(predictive("on"), U(0.6, request_rate_history=RISING), S(17), NOW)

    assert (decision.direction, decision.desired, decision.trigger) == (Direction.UP, 18, Trigger.PREDICTIVE)
    assert decision.forecast is not None
    assert decision.forecast.method == "linear_trend"
    assert decision.forecast.predicted_peak_rate == pytest.approx(1230.0)
    assert decision.forecast.applied


def test_prediction_says_how_right_its_forecasts_have_been_when_it_acts() -> None:
    decision = decide(predictive("on"), U(0.6, request_rate_history=RISING), S(17), NOW)

    assert decision.forecast is not None and decision.forecast.trailing_error == pytest.approx(0.0, abs=1e-9)
    assert "prediction acts: its recent one-minute forecasts were off by 0 %" in decision.reason


def test_prediction_abstains_while_its_recent_forecasts_were_wrong() -> None:
    # The same rising average, but every minute swings +-40 %: one-minute-ahead forecasts miss by ~40 %.
    erratic = tuple(value * (1.4 if minute % 2 else 0.6) for minute, value in enumerate(RISING))
    erratic = (*erratic[:-3], 1900.0, 1950.0, 2000.0)  # a last jump the trend would extrapolate

    decision = decide(predictive("on"), U(0.6, request_rate_history=erratic), S(17), NOW)

    assert decision.forecast is not None and decision.forecast.trailing_error is not None
    assert decision.forecast.trailing_error > 0.15
    assert decision.forecast.abstained and not decision.forecast.applied
    assert decision.trigger != Trigger.PREDICTIVE and decision.desired == 17
    assert "prediction abstains: its recent one-minute forecasts were off by" in decision.reason
    assert replay(json.loads(json.dumps(decision.to_dict()))) == decision


def test_a_predictive_decision_stores_its_three_days_of_history_by_digest_in_under_5_kb() -> None:
    days = [1000.0 - 600.0 * math.cos(2 * math.pi * minute / 1440) for minute in range(3 * 1440)]
    decision = decide(predictive("on"), U(0.6, request_rate_history=days), S(17), NOW)

    record = json.loads(json.dumps(decision.to_dict()))
    assert len(json.dumps(record)) <= 5 * 1024, len(json.dumps(record))
    stored = record["inputs"]["window"]["request_rate_history"]
    assert stored["minutes"] == 4320 and len(stored["tail"]) == 60
    with pytest.raises(ValueError, match="stored by digest"):
        replay(record)
    with pytest.raises(ValueError, match="not the one this decision saw"):
        replay(record, history=[*days[:-1], 0.0])
    assert replay(record, history=days) == decision


def test_the_policy_season_and_seasonality_reach_the_forecast() -> None:
    ten_hours = [800.0 + 400.0 * math.sin(2 * math.pi * minute / 600) for minute in range(3 * 1440)]
    daily = decide(predictive("forecast_only"), U(0.6, request_rate_history=ten_hours), S(12), NOW)
    own = decide(predictive("forecast_only", forecast_season_minutes=600, forecast_seasonality="multiplicative"),
                 U(0.6, request_rate_history=ten_hours), S(12), NOW)  # fmt: skip

    assert daily.forecast is not None and own.forecast is not None
    assert own.forecast.trailing_error is not None and daily.forecast.trailing_error is not None
    assert own.forecast.trailing_error < daily.forecast.trailing_error
    assert policy(forecast_season_minutes=5).errors() == ["forecast_season_minutes must be in [10, 2160]"]


def test_prediction_never_removes_capacity_the_reactive_result_keeps() -> None:
    falling = tuple(reversed(RISING))
    decision = decide(predictive("on"), U(0.9, request_rate_history=falling), S(10), NOW)

    assert (decision.desired, decision.trigger) == (15, Trigger.UTILIZATION)
    assert decision.forecast is not None and not decision.forecast.applied


def test_forecast_only_shows_what_prediction_would_do_and_does_nothing() -> None:
    decision = decide(predictive("forecast_only"), U(0.6, request_rate_history=RISING), S(17), NOW)

    assert (decision.direction, decision.desired) == (Direction.NONE, 17)
    assert decision.forecast is not None
    assert (decision.forecast.would_desired, decision.forecast.applied) == (18, False)
    assert "forecast only: prediction would make it 18" in decision.reason


def test_prediction_estimates_instance_capacity_from_the_window_when_not_configured() -> None:
    window = U(0.5, request_rate=600.0, request_rate_history=RISING)  # 600 req/min at 50 % on 10 = 120 each
    decision = decide(policy(predictive_mode="on"), window, S(10), NOW)

    assert decision.forecast is not None
    assert decision.forecast.capacity_source == "observed"
    assert decision.forecast.capacity_rpm_per_instance == pytest.approx(120.0)
    assert decision.desired == 18


def test_prediction_without_history_changes_nothing() -> None:
    decision = decide(predictive("on"), U(0.6), S(10), NOW)

    assert decision.direction == Direction.NONE
    assert decision.forecast is not None and decision.forecast.method == "none"


# --- records: JSON, replay, the ScalingEvent mapping ---------------------------------------------

def _full_decision() -> Decision:
    p = predictive("on", triggers=TriggerTargets(response_time_p95_ms=2000.0, queue_length=5.0),
                   schedules=(BUSINESS_HOURS,))
    window = MetricWindow(utilization=0.9, p95_ms=2500.0, queue_length=12.0, request_rate=1000.0,
                          request_rate_history=(*RISING[:-1], None))
    state = GroupState(active=8, starting=1, desired=9, last_scale_up_at=seconds_ago(900),
                       last_scale_down_at=seconds_ago(2000), recent_recommendations=((seconds_ago(60), 9),))
    return decide(p, window, state, NOW)


def test_a_decision_survives_json_and_replays_to_the_same_result() -> None:
    decision = _full_decision()
    record = json.loads(json.dumps(decision.to_dict()))

    assert Decision.from_dict(record) == decision
    assert replay(record) == decision
    assert replay(record).to_dict() == record


def test_a_decision_stored_without_inputs_cannot_be_replayed() -> None:
    record = _full_decision().to_dict(inputs=False)

    assert "inputs" not in record
    with pytest.raises(ValueError, match="without its inputs"):
        replay(record)


def test_event_fields_are_scaling_event_columns_with_valid_choices() -> None:
    fields_ = _full_decision().event_fields()
    columns = {f.name for f in ScalingEvent._meta.get_fields()}

    assert set(fields_) <= columns
    assert fields_["direction"] in ScalingDirection.values
    assert fields_["trigger"] in ScalingTrigger.values


def test_engine_enums_match_the_model_choices() -> None:
    assert {str(d) for d in Direction} == set(ScalingDirection.values)
    assert {str(t) for t in Trigger} == set(ScalingTrigger.values)
    assert {str(m) for m in PredictiveMode} == set(PredictiveModeChoice.values)


def test_a_policy_round_trips_and_rejects_unknown_keys() -> None:
    p = predictive("on", triggers=TriggerTargets(error_rate=0.05), schedules=(BUSINESS_HOURS,))

    assert ScalingPolicy.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    with pytest.raises(ValueError, match="unknown ScalingPolicy keys: scale_up_cooldwn"):
        ScalingPolicy.from_dict({"scale_up_cooldwn": 10})
    with pytest.raises(ValueError, match="unknown TriggerTargets keys: latency"):
        ScalingPolicy.from_dict({"triggers": {"latency": 10}})


@pytest.mark.parametrize(("overrides", "problem"), [
    ({"min_instances": 5, "max_instances": 4}, "max_instances must be >= min_instances"),
    ({"scale_up_threshold": 0.3, "scale_down_threshold": 0.3}, "scale_up_threshold must be greater"),
    ({"scale_up_threshold": 1.2}, "scale_up_threshold must be in (0, 1]"),
    ({"scale_down_threshold": 0.0}, "scale_down_threshold must be in (0, 1]"),
    ({"scale_up_cooldown": -1}, "scale_up_cooldown must not be negative"),
    ({"scale_down_cooldown": -1}, "scale_down_cooldown must not be negative"),
    ({"triggers": TriggerTargets(queue_length=0.0)}, "triggers.queue_length must be a positive number"),
    ({"schedules": (ScheduledWindow(name="x", cron="0 9 * *", duration_minutes=60, min_instances=2),)},
     "schedule 'x': a cron expression has 5 fields"),
])
def test_invalid_policies_are_explained(overrides: dict[str, Any], problem: str) -> None:
    assert any(problem in message for message in policy(**overrides).errors())


def test_the_issue_defaults_are_a_valid_policy() -> None:
    p = ScalingPolicy()

    assert p.errors() == [] and p.warnings() == []
    assert (p.scale_up_cooldown, p.scale_down_cooldown, p.scale_down_stabilization_seconds) == (0, 600, 300)
    assert p.scale_down_threshold == pytest.approx(p.target_utilization * (1 - p.tolerance))  # target tracking
    assert p.tolerance == 0.1


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(policy(), U(0.6), S(1), datetime(2026, 3, 2, 10, 0))


def test_the_engine_imports_no_django() -> None:
    engine = Path(__file__).resolve().parents[2] / "scaling" / "engine"
    sources = {path.name: path.read_text() for path in engine.glob("*.py")}
    imports_django = re.compile(r"^\s*(from|import)\s+django", re.MULTILINE)

    assert "decision.py" in sources
    assert [name for name, text in sources.items() if imports_django.search(text)] == []
