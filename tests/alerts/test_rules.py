"""The alert rules and the plan, as tables: no database, the clock passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.rules import (
    MAX_CHECK_AGE,
    MIN_LATENCY_SAMPLES,
    GroupSnapshot,
    InstanceSnapshot,
    Plan,
    Thresholds,
    TransitionView,
    UnresolvedAlert,
    evaluate_rules,
    plan_alerts,
    unhealthy_episodes,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T = Thresholds()  # 2000 / 5000 ms, 5 / 10 %


def snap(**fields) -> InstanceSnapshot:
    return InstanceSnapshot(**{"id": 1, "name": "vllm-1", "status": "healthy", **fields})


def fired(*instances: InstanceSnapshot, groups=(), thresholds=T) -> dict[str, tuple[str, float | None]]:
    firing = evaluate_rules(instances=instances, groups=groups, thresholds=thresholds, now=NOW)
    return {key: (condition.severity, condition.value) for key, condition in firing.items()}


@pytest.mark.parametrize(
    ("snapshot", "expected"),
    [
        # From the latest latency/comprehensive check.
        (snap(check_latency_ms=1999, check_latency_at=NOW), {}),
        (snap(check_latency_ms=2000, check_latency_at=NOW), {"response_time:instance:1": ("warning", 2000)}),
        (snap(check_latency_ms=4999, check_latency_at=NOW), {"response_time:instance:1": ("warning", 4999)}),
        (snap(check_latency_ms=5000, check_latency_at=NOW), {"response_time:instance:1": ("critical", 5000)}),
        (snap(check_latency_ms=9000, check_latency_at=NOW - MAX_CHECK_AGE - timedelta(seconds=1)), {}),
        # p95 of requests wins when there are enough of them.
        (
            snap(check_latency_ms=9000, check_latency_at=NOW, request_p95_ms=300, latency_samples=MIN_LATENCY_SAMPLES),
            {},
        ),
        (
            snap(request_p95_ms=2500, latency_samples=MIN_LATENCY_SAMPLES),
            {"response_time:instance:1": ("warning", 2500)},
        ),
        # Too few requests: the health check decides.
        (
            snap(
                check_latency_ms=6000, check_latency_at=NOW, request_p95_ms=300, latency_samples=MIN_LATENCY_SAMPLES - 1
            ),
            {"response_time:instance:1": ("critical", 6000)},
        ),
        (snap(request_p95_ms=9000, latency_samples=MIN_LATENCY_SAMPLES - 1), {}),
        # Error rate from requests.
        (snap(requests=100, request_errors=4), {}),
        (snap(requests=100, request_errors=5), {"error_rate:instance:1": ("warning", 5.0)}),
        (snap(requests=100, request_errors=10), {"error_rate:instance:1": ("critical", 10.0)}),
        (snap(requests=0), {}),
        # ... or, with no traffic, from health checks.
        (snap(checks=10, check_failures=1), {"error_rate:instance:1": ("critical", 10.0)}),
        (snap(checks=10, check_failures=0), {}),
        # Traffic wins over health checks.
        (snap(requests=100, request_errors=0, checks=10, check_failures=5), {}),
        # Unhealthy.
        (snap(status="unhealthy"), {"instance_unhealthy:instance:1": ("critical", None)}),
        (snap(status="degraded"), {}),
        # Parked instances are not judged on latency or errors.
        (snap(status="maintenance", check_latency_ms=9000, check_latency_at=NOW, requests=10, request_errors=10), {}),
        (snap(status="standby", checks=3, check_failures=3), {}),
    ],
)
def test_instance_rules(snapshot, expected):
    assert fired(snapshot) == expected


def test_several_rule_families_fire_for_one_instance_each_once():
    snapshot = snap(status="unhealthy", check_latency_ms=7000, check_latency_at=NOW, requests=10, request_errors=6)

    assert fired(snapshot) == {
        "response_time:instance:1": ("critical", 7000),
        "error_rate:instance:1": ("critical", 60.0),
        "instance_unhealthy:instance:1": ("critical", None),
    }


def test_thresholds_come_from_the_argument():
    strict = Thresholds(
        response_time_warning=100, response_time_critical=200, error_rate_warning=1, error_rate_critical=2
    )

    assert fired(snap(check_latency_ms=150, check_latency_at=NOW), thresholds=strict) == {
        "response_time:instance:1": ("warning", 150)
    }
    assert fired(snap(requests=100, request_errors=1), thresholds=strict) == {"error_rate:instance:1": ("warning", 1.0)}


@pytest.mark.parametrize(
    ("group", "fires"),
    [
        (GroupSnapshot(id=7, name="g", active_instances=0, serving_instances=0), False),
        (GroupSnapshot(id=7, name="g", active_instances=3, serving_instances=0), True),
        (GroupSnapshot(id=7, name="g", active_instances=3, serving_instances=1), False),
    ],
)
def test_a_group_with_instances_but_none_healthy_or_degraded_fires(group, fires):
    assert fired(groups=[group]) == ({"group_no_healthy:group:7": ("critical", 0.0)} if fires else {})


def test_the_message_and_title_say_what_and_how_much():
    firing = evaluate_rules(
        instances=[snap(check_latency_ms=5200, check_latency_at=NOW)], groups=[], thresholds=T, now=NOW
    )
    condition = firing["response_time:instance:1"]
    assert condition.title == "Response time 5200 ms on vllm-1"
    assert "5000 ms" in condition.message and condition.threshold == 5000
    assert condition.details["source"] == "health_check"


def transition(old: str, new: str, minute: int, instance_id: int = 1) -> TransitionView:
    return TransitionView(
        instance_id, f"vllm-{instance_id}", old, new, "3 failed checks", NOW + timedelta(minutes=minute)
    )


def test_episodes_span_first_fall_to_last_recovery():
    episodes = unhealthy_episodes(
        [
            transition("healthy", "unhealthy", 1),
            transition("unhealthy", "healthy", 2),
            transition("healthy", "unhealthy", 3),
            transition("unhealthy", "healthy", 4),
            transition("starting", "healthy", 1, instance_id=2),
            transition("healthy", "unhealthy", 5, instance_id=3),
        ]
    )

    assert set(episodes) == {"instance_unhealthy:instance:1", "instance_unhealthy:instance:3"}
    first = episodes["instance_unhealthy:instance:1"]
    assert (first.started_at, first.ended_at) == (NOW + timedelta(minutes=1), NOW + timedelta(minutes=4))
    assert episodes["instance_unhealthy:instance:3"].ended_at is None


def test_the_plan_opens_updates_escalates_and_resolves():
    firing = evaluate_rules(
        instances=[
            snap(id=1, check_latency_ms=6000, check_latency_at=NOW),  # open warning -> critical
            snap(id=2, check_latency_ms=2500, check_latency_at=NOW),  # open critical -> warning
            snap(id=3, status="unhealthy"),  # new
        ],
        groups=[],
        thresholds=T,
        now=NOW,
    )
    unresolved = [
        UnresolvedAlert(10, "response_time:instance:1", "warning"),
        UnresolvedAlert(20, "response_time:instance:2", "critical"),
        UnresolvedAlert(40, "error_rate:instance:4", "warning"),  # cleared
    ]

    plan = plan_alerts(firing=firing, unresolved=unresolved, episodes={}, now=NOW)

    assert [(a.condition.dedup_key, a.at) for a in plan.to_open] == [("instance_unhealthy:instance:3", NOW)]
    assert {(u.alert_id, u.condition.severity, u.escalated) for u in plan.to_update} == {
        (10, "critical", True),
        (20, "warning", False),
    }
    assert [(r.alert_id, r.at) for r in plan.to_resolve] == [(40, NOW)]
    assert plan.flaps == ()


def test_an_episode_between_evaluations_is_opened_and_resolved_at_its_times():
    episodes = unhealthy_episodes([transition("healthy", "unhealthy", -3), transition("unhealthy", "healthy", -1)])

    plan = plan_alerts(firing={}, unresolved=[], episodes=episodes, now=NOW)

    assert plan.to_open == () and plan.to_resolve == ()
    (flap,) = plan.flaps
    assert (flap.condition.dedup_key, flap.opened_at, flap.resolved_at) == (
        "instance_unhealthy:instance:1",
        NOW - timedelta(minutes=3),
        NOW - timedelta(minutes=1),
    )


def test_an_episode_still_firing_opens_at_its_start_and_one_that_ended_resolves_at_its_end():
    still_down = unhealthy_episodes([transition("healthy", "unhealthy", -2)])
    firing = evaluate_rules(instances=[snap(status="unhealthy")], groups=[], thresholds=T, now=NOW)
    plan = plan_alerts(firing=firing, unresolved=[], episodes=still_down, now=NOW)
    assert [(a.condition.dedup_key, a.at) for a in plan.to_open] == [
        ("instance_unhealthy:instance:1", NOW - timedelta(minutes=2))
    ]

    recovered = unhealthy_episodes([transition("unhealthy", "healthy", -1)])  # went down before these rows
    plan = plan_alerts(
        firing={},
        unresolved=[UnresolvedAlert(5, "instance_unhealthy:instance:1", "critical")],
        episodes=recovered,
        now=NOW,
    )
    assert [(r.alert_id, r.at) for r in plan.to_resolve] == [(5, NOW - timedelta(minutes=1))]
    assert plan.flaps == ()

    plan = plan_alerts(firing={}, unresolved=[], episodes=recovered, now=NOW)
    assert plan == Plan()
