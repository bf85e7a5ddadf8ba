"""How check results move an instance's status without flapping (pure, no ORM).

Rules, in order:
1. An auth failure (401/403) makes the instance unhealthy at once: no amount of
   waiting fixes a bad key.
2. `unknown` results (the check could not judge) change nothing, and neither
   does an up result from a check that did not get an answer from the API
   (`api_exercised` false): only the API answering can end a failing streak.
3. Parked statuses (standby, maintenance, stopped) and draining belong to
   operators and scaling: results update the counters, never the status.
4. `unhealthy_threshold` failed results in a row make an instance unhealthy.
5. Out of starting/unhealthy: `healthy_threshold` up results (healthy or
   degraded) in a row; the new status is that of the latest result.
6. Between healthy and degraded: `healthy_threshold` identical results in a row.

Health score: an exponentially weighted average of check scores,
score' = 0.5 * score + 0.5 * result_score (the first result sets it; an auth
failure sets it to 0), so one slow check dents it and a run of them sinks it.
"""

from __future__ import annotations

from dataclasses import dataclass

from instances.choices import CheckStatus, InstanceStatus

SCORE_ALPHA = 0.5
HELD_STATUSES = frozenset(
    {InstanceStatus.STANDBY, InstanceStatus.MAINTENANCE, InstanceStatus.STOPPED, InstanceStatus.DRAINING}
)
_UP_RESULTS = frozenset({CheckStatus.HEALTHY, CheckStatus.DEGRADED})


@dataclass(frozen=True, slots=True)
class Thresholds:
    healthy_threshold: int = 2
    unhealthy_threshold: int = 3


@dataclass(frozen=True, slots=True)
class HealthState:
    status: str
    consecutive_successes: int = 0
    consecutive_failures: int = 0
    streak_status: str = ""
    streak_length: int = 0
    health_score: float | None = None


@dataclass(frozen=True, slots=True)
class StatusDecision:
    state: HealthState
    changed: bool
    reason: str


def _score(previous: float | None, result_score: float) -> float:
    if previous is None:
        return round(result_score, 4)
    return round(SCORE_ALPHA * previous + (1 - SCORE_ALPHA) * result_score, 4)


def next_status(
    state: HealthState,
    *,
    result_status: str,
    result_score: float,
    auth_failure: bool,
    api_exercised: bool,
    thresholds: Thresholds,
    summary: str = "",
) -> StatusDecision:
    """Apply one check result to `state` (see the module docstring for the rules)."""
    detail = f": {summary}" if summary else ""
    if auth_failure:
        new_state = HealthState(
            status=state.status if state.status in HELD_STATUSES else InstanceStatus.UNHEALTHY,
            consecutive_successes=0,
            consecutive_failures=state.consecutive_failures + 1,
            streak_status=CheckStatus.UNHEALTHY,
            streak_length=(state.streak_length + 1) if state.streak_status == CheckStatus.UNHEALTHY else 1,
            health_score=0.0,
        )
        return StatusDecision(new_state, new_state.status != state.status, f"authentication failed{detail}")

    up = result_status in _UP_RESULTS
    if result_status == CheckStatus.UNKNOWN or (up and not api_exercised):
        return StatusDecision(state, False, f"inconclusive check{detail}")

    streak = state.streak_length + 1 if state.streak_status == result_status else 1
    successes = state.consecutive_successes + 1 if up else 0
    failures = 0 if up else state.consecutive_failures + 1
    target = state.status
    reason = ""
    if state.status not in HELD_STATUSES:
        if not up and failures >= thresholds.unhealthy_threshold:
            target = InstanceStatus.UNHEALTHY
            reason = f"{failures} failed checks in a row (threshold {thresholds.unhealthy_threshold}){detail}"
        elif up and state.status in (InstanceStatus.STARTING, InstanceStatus.UNHEALTHY):
            if successes >= thresholds.healthy_threshold:
                target = result_status
                reason = f"{successes} good checks in a row (threshold {thresholds.healthy_threshold}){detail}"
        elif up and result_status != state.status and streak >= thresholds.healthy_threshold:
            target = result_status
            reason = f"{streak} {result_status} checks in a row (threshold {thresholds.healthy_threshold}){detail}"

    new_state = HealthState(
        status=target,
        consecutive_successes=successes,
        consecutive_failures=failures,
        streak_status=result_status,
        streak_length=streak,
        health_score=_score(state.health_score, result_score),
    )
    changed = target != state.status
    return StatusDecision(new_state, changed, reason if changed else f"{result_status}{detail}")
