"""The anti-flap status rules, as a table (no database, no network)."""

from __future__ import annotations

import pytest

from instances.health.status import HealthState, Thresholds, next_status

T = Thresholds(healthy_threshold=2, unhealthy_threshold=3)


def run(status: str, results: list[str], *, auth_at: int | None = None) -> list[str]:
    """Apply results in turn; "healthy*" is a healthy result from a check that got no answer from the API."""
    state = HealthState(status=status)
    seen = []
    for index, written in enumerate(results):
        result = written.rstrip("*")
        score = {"healthy": 1.0, "degraded": 0.5, "unhealthy": 0.0, "unknown": 0.0}[result]
        state = next_status(
            state,
            result_status=result,
            result_score=score,
            auth_failure=index == auth_at,
            api_exercised=not written.endswith("*"),
            thresholds=T,
        ).state
        seen.append(state.status)
    return seen


@pytest.mark.parametrize(
    ("start", "results", "expected"),
    [
        ("starting", ["healthy", "healthy"], ["starting", "healthy"]),
        ("starting", ["degraded", "healthy"], ["starting", "healthy"]),
        ("healthy", ["unhealthy", "unhealthy"], ["healthy", "healthy"]),
        ("healthy", ["unhealthy"] * 3, ["healthy", "healthy", "unhealthy"]),
        ("healthy", ["unhealthy", "unhealthy", "healthy", "unhealthy", "unhealthy"], ["healthy"] * 5),
        (
            "unhealthy",
            ["healthy", "unhealthy", "healthy", "healthy"],
            ["unhealthy", "unhealthy", "unhealthy", "healthy"],
        ),
        ("healthy", ["degraded", "healthy", "degraded", "healthy"], ["healthy"] * 4),
        ("healthy", ["degraded", "degraded"], ["healthy", "degraded"]),
        ("degraded", ["healthy", "healthy"], ["degraded", "healthy"]),
        ("healthy", ["unknown"] * 5, ["healthy"] * 5),
        # Neither an unknown result nor an up one without the API's answer ends a failing streak.
        ("healthy", ["unhealthy", "unhealthy", "unknown", "unhealthy"], ["healthy", "healthy", "healthy", "unhealthy"]),
        (
            "healthy",
            ["unhealthy", "unhealthy", "healthy*", "unhealthy"],
            ["healthy", "healthy", "healthy", "unhealthy"],
        ),
        (
            "healthy",
            ["unhealthy", "unhealthy", "degraded*", "unhealthy"],
            ["healthy", "healthy", "healthy", "unhealthy"],
        ),
        ("unhealthy", ["healthy*"] * 4, ["unhealthy"] * 4),
        ("starting", ["healthy", "healthy*", "healthy"], ["starting", "starting", "healthy"]),
        ("healthy", ["degraded*"] * 3, ["healthy"] * 3),
        ("maintenance", ["unhealthy"] * 4, ["maintenance"] * 4),
        ("draining", ["healthy"] * 3, ["draining"] * 3),
        ("standby", ["healthy"] * 3, ["standby"] * 3),
    ],
)
def test_status_changes_only_after_the_thresholds(start, results, expected):
    assert run(start, results) == expected


def test_an_auth_failure_makes_it_unhealthy_at_once_and_zeroes_the_score():
    state = HealthState(status="healthy", health_score=0.9)

    decision = next_status(
        state, result_status="unhealthy", result_score=0.0, auth_failure=True, api_exercised=False, thresholds=T
    )

    assert decision.changed
    assert decision.state.status == "unhealthy"
    assert decision.state.health_score == 0.0
    assert "authentication" in decision.reason


def test_the_reason_names_the_count_and_threshold():
    state = HealthState(status="healthy", consecutive_failures=2)

    decision = next_status(
        state,
        result_status="unhealthy",
        result_score=0.0,
        auth_failure=False,
        api_exercised=False,
        thresholds=T,
        summary="connection refused",
    )

    assert decision.changed
    assert decision.reason == "3 failed checks in a row (threshold 3): connection refused"


def test_the_score_is_an_even_weighted_moving_average():
    state = HealthState(status="healthy")
    for score, expected in [(1.0, 1.0), (0.0, 0.5), (0.0, 0.25), (1.0, 0.625)]:
        state = next_status(
            state, result_status="healthy", result_score=score, auth_failure=False, api_exercised=True, thresholds=T
        ).state
        assert state.health_score == expected
