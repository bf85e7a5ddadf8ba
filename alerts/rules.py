"""The alert rules and the reconciliation of what fires with what is open.

Pure functions over snapshots, with the clock passed in and no ORM: the
selectors build the snapshots, services.alerts_evaluate stores the plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerts.choices import SEVERITY_RANK, AlertRule, AlertSeverity
from instances.choices import PARKED_STATUSES, InstanceStatus

# Request and health-check statistics cover this window.
WINDOW = timedelta(minutes=5)
# A latency/comprehensive check older than this says nothing about now.
MAX_CHECK_AGE = timedelta(minutes=15)
# Fewer successful requests than this in the window: judge latency by the health check.
MIN_LATENCY_SAMPLES = 5


@dataclass(frozen=True)
class Thresholds:
    """monitoring.alert_thresholds: milliseconds and percent."""

    response_time_warning: float = 2000.0
    response_time_critical: float = 5000.0
    error_rate_warning: float = 5.0
    error_rate_critical: float = 10.0


@dataclass(frozen=True)
class InstanceSnapshot:
    """What the rules know of one registered instance at evaluation time."""

    id: int
    name: str
    status: str
    status_reason: str = ""
    group_id: int | None = None
    # The latest latency or comprehensive health check with a response time.
    check_latency_ms: float | None = None
    check_latency_at: datetime | None = None
    # Successful requests in the window: their p95 latency and how many there were.
    request_p95_ms: float | None = None
    latency_samples: int = 0
    # Requests in the window (client-closed ones left out) and how many failed.
    requests: int = 0
    request_errors: int = 0
    # Health checks in the window (unknown results left out) and how many were unhealthy.
    checks: int = 0
    check_failures: int = 0


@dataclass(frozen=True)
class GroupSnapshot:
    id: int
    name: str
    active_instances: int
    serving_instances: int  # healthy or degraded


@dataclass(frozen=True)
class TransitionView:
    """A claimed StatusTransition row."""

    instance_id: int
    instance_name: str
    old_status: str
    new_status: str
    reason: str
    at: datetime
    group_id: int | None = None


@dataclass(frozen=True)
class Condition:
    """A rule firing for one subject; dedup_key names the subject and the rule family."""

    dedup_key: str
    rule: str
    severity: str
    title: str
    message: str
    value: float | None = None
    threshold: float | None = None
    instance_id: int | None = None
    group_id: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class UnhealthyEpisode:
    """An instance that went unhealthy between two evaluations (and maybe recovered)."""

    condition: Condition
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True)
class UnresolvedAlert:
    id: int
    dedup_key: str
    severity: str


@dataclass(frozen=True)
class OpenAction:
    condition: Condition
    at: datetime


@dataclass(frozen=True)
class UpdateAction:
    alert_id: int
    condition: Condition
    escalated: bool  # severity rose (warning -> critical): channels hear about it


@dataclass(frozen=True)
class ResolveAction:
    alert_id: int
    at: datetime


@dataclass(frozen=True)
class FlapAction:
    """Fired and cleared between two evaluations: opened and resolved at once."""

    condition: Condition
    opened_at: datetime
    resolved_at: datetime


@dataclass(frozen=True)
class Plan:
    to_open: tuple[OpenAction, ...] = ()
    to_update: tuple[UpdateAction, ...] = ()
    to_resolve: tuple[ResolveAction, ...] = ()
    flaps: tuple[FlapAction, ...] = ()


def dedup_key(rule: str, *, instance_id: int | None = None, group_id: int | None = None) -> str:
    if instance_id is not None:
        return f"{rule}:instance:{instance_id}"
    return f"{rule}:group:{group_id}"


def _grade(value: float, warning: float, critical: float) -> tuple[str, float] | None:
    """(severity, threshold crossed): critical supersedes warning; at the threshold counts."""
    if value >= critical:
        return AlertSeverity.CRITICAL, critical
    if value >= warning:
        return AlertSeverity.WARNING, warning
    return None


def response_time_condition(instance: InstanceSnapshot, thresholds: Thresholds, *, now: datetime) -> Condition | None:
    """p95 of the window's successful requests when there are MIN_LATENCY_SAMPLES of
    them, else the latest latency/comprehensive check if younger than MAX_CHECK_AGE.
    Parked instances (standby, maintenance, stopped) are not judged."""
    if instance.status in PARKED_STATUSES:
        return None
    if instance.request_p95_ms is not None and instance.latency_samples >= MIN_LATENCY_SAMPLES:
        value, source = instance.request_p95_ms, "p95 of recent requests"
        details: dict[str, Any] = {"source": "requests_p95", "samples": instance.latency_samples}
    elif (
        instance.check_latency_ms is not None
        and instance.check_latency_at is not None
        and now - instance.check_latency_at <= MAX_CHECK_AGE
    ):
        value, source = instance.check_latency_ms, "latest health check"
        details = {"source": "health_check", "checked_at": instance.check_latency_at.isoformat()}
    else:
        return None
    graded = _grade(value, thresholds.response_time_warning, thresholds.response_time_critical)
    if graded is None:
        return None
    severity, threshold = graded
    return Condition(
        dedup_key=dedup_key(AlertRule.RESPONSE_TIME, instance_id=instance.id),
        rule=AlertRule.RESPONSE_TIME,
        severity=severity,
        title=f"Response time {value:.0f} ms on {instance.name}",
        message=f"{instance.name}: {source} is {value:.0f} ms, at or above the {severity} threshold of "
        f"{threshold:.0f} ms.",
        value=round(value, 3),
        threshold=threshold,
        instance_id=instance.id,
        group_id=instance.group_id,
        details=details,
    )


def error_rate_condition(instance: InstanceSnapshot, thresholds: Thresholds) -> Condition | None:
    """Percent of the window's requests that failed (error or timeout); with no
    traffic, percent of the window's health checks that were unhealthy. Needs at
    least one failure, so a 0 % threshold means "any error"."""
    if instance.status in PARKED_STATUSES:
        return None
    if instance.requests > 0:
        value = 100.0 * instance.request_errors / instance.requests
        source = f"{instance.request_errors} of {instance.requests} requests failed"
        details: dict[str, Any] = {
            "source": "requests",
            "requests": instance.requests,
            "errors": instance.request_errors,
        }
    elif instance.checks > 0:
        value = 100.0 * instance.check_failures / instance.checks
        source = f"{instance.check_failures} of {instance.checks} health checks failed (no traffic)"
        details = {"source": "health_checks", "checks": instance.checks, "failures": instance.check_failures}
    else:
        return None
    if value <= 0:
        return None
    graded = _grade(value, thresholds.error_rate_warning, thresholds.error_rate_critical)
    if graded is None:
        return None
    severity, threshold = graded
    return Condition(
        dedup_key=dedup_key(AlertRule.ERROR_RATE, instance_id=instance.id),
        rule=AlertRule.ERROR_RATE,
        severity=severity,
        title=f"Error rate {value:.1f}% on {instance.name}",
        message=f"{instance.name}: {source} in the last {int(WINDOW.total_seconds() // 60)} minutes "
        f"({value:.1f}%), at or above the {severity} threshold of {threshold:g}%.",
        value=round(value, 3),
        threshold=threshold,
        instance_id=instance.id,
        group_id=instance.group_id,
        details=details,
    )


def _unhealthy_condition(instance_id: int, name: str, reason: str, group_id: int | None = None) -> Condition:
    return Condition(
        dedup_key=dedup_key(AlertRule.INSTANCE_UNHEALTHY, instance_id=instance_id),
        rule=AlertRule.INSTANCE_UNHEALTHY,
        severity=AlertSeverity.CRITICAL,
        title=f"Instance {name} is unhealthy",
        message=f"{name} is unhealthy" + (f": {reason}" if reason else "."),
        instance_id=instance_id,
        group_id=group_id,
        details={"reason": reason} if reason else {},
    )


def unhealthy_condition(instance: InstanceSnapshot) -> Condition | None:
    if instance.status != InstanceStatus.UNHEALTHY:
        return None
    return _unhealthy_condition(instance.id, instance.name, instance.status_reason, instance.group_id)


def group_condition(group: GroupSnapshot) -> Condition | None:
    """A group with at least one registered instance and none healthy or degraded."""
    if group.active_instances < 1 or group.serving_instances > 0:
        return None
    return Condition(
        dedup_key=dedup_key(AlertRule.GROUP_NO_HEALTHY, group_id=group.id),
        rule=AlertRule.GROUP_NO_HEALTHY,
        severity=AlertSeverity.CRITICAL,
        title=f"Group {group.name} has no healthy instance",
        message=f"None of the {group.active_instances} instances of group {group.name} is healthy or degraded.",
        value=0.0,
        threshold=1.0,
        group_id=group.id,
        details={"active_instances": group.active_instances},
    )


def evaluate_rules(
    *,
    instances: Iterable[InstanceSnapshot],
    groups: Iterable[GroupSnapshot],
    thresholds: Thresholds,
    now: datetime,
) -> dict[str, Condition]:
    """Every firing condition, by dedup_key (one per subject and rule family)."""
    firing: dict[str, Condition] = {}
    for instance in instances:
        for condition in (
            response_time_condition(instance, thresholds, now=now),
            error_rate_condition(instance, thresholds),
            unhealthy_condition(instance),
        ):
            if condition is not None:
                firing[condition.dedup_key] = condition
    for group in groups:
        condition = group_condition(group)
        if condition is not None:
            firing[condition.dedup_key] = condition
    return firing


def unhealthy_episodes(transitions: Iterable[TransitionView]) -> dict[str, UnhealthyEpisode]:
    """Per instance, the span from its first move into unhealthy to its last move
    out of it among `transitions`. ended_at None: still unhealthy; started_at None:
    it was unhealthy before these rows and recovered. Several round trips between
    two evaluations make one episode, not a burst of alerts."""
    episodes: dict[str, UnhealthyEpisode] = {}
    for transition in sorted(transitions, key=lambda t: t.at):
        key = dedup_key(AlertRule.INSTANCE_UNHEALTHY, instance_id=transition.instance_id)
        episode = episodes.get(key)
        if transition.new_status == InstanceStatus.UNHEALTHY:
            if episode is None:
                condition = _unhealthy_condition(
                    transition.instance_id, transition.instance_name, transition.reason, transition.group_id
                )
                episodes[key] = UnhealthyEpisode(condition=condition, started_at=transition.at, ended_at=None)
            else:
                episodes[key] = UnhealthyEpisode(episode.condition, episode.started_at or transition.at, ended_at=None)
        elif transition.old_status == InstanceStatus.UNHEALTHY:
            if episode is None:
                condition = _unhealthy_condition(
                    transition.instance_id, transition.instance_name, transition.reason, transition.group_id
                )
                episodes[key] = UnhealthyEpisode(condition=condition, started_at=None, ended_at=transition.at)
            else:
                episodes[key] = UnhealthyEpisode(episode.condition, episode.started_at, ended_at=transition.at)
    return episodes


def plan_alerts(
    *,
    firing: Mapping[str, Condition],
    unresolved: Iterable[UnresolvedAlert],
    episodes: Mapping[str, UnhealthyEpisode],
    now: datetime,
) -> Plan:
    """Reconcile the firing conditions with the unresolved alerts.

    1. Firing and unresolved: update it (severity may rise or fall; a rise is an escalation).
    2. Firing, nothing unresolved: open one (at the episode's start if a transition says when).
    3. Unresolved, not firing: resolve it (when a transition says it recovered, else now).
    4. An episode that started among the transitions, neither firing nor unresolved,
       happened between two evaluations: open and resolve it.
    """
    unresolved_by_key = {alert.dedup_key: alert for alert in unresolved}
    to_open, to_update, to_resolve, flaps = [], [], [], []
    for key, condition in firing.items():
        alert = unresolved_by_key.get(key)
        if alert is not None:
            escalated = SEVERITY_RANK[AlertSeverity(condition.severity)] > SEVERITY_RANK[AlertSeverity(alert.severity)]
            to_update.append(UpdateAction(alert.id, condition, escalated))
        else:
            episode = episodes.get(key)
            to_open.append(OpenAction(condition, (episode.started_at if episode else None) or now))
    for key, alert in unresolved_by_key.items():
        if key not in firing:
            episode = episodes.get(key)
            to_resolve.append(ResolveAction(alert.id, (episode.ended_at if episode else None) or now))
    for key, episode in episodes.items():
        if episode.started_at is not None and key not in firing and key not in unresolved_by_key:
            flaps.append(FlapAction(episode.condition, episode.started_at, episode.ended_at or now))
    return Plan(tuple(to_open), tuple(to_update), tuple(to_resolve), tuple(flaps))
