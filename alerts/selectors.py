"""Reads for alerting: the snapshots the rules judge (a fixed number of queries
whatever the fleet size) and the shaped querysets of the API and admin."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import datetime

from django.db.models import Count, ExpressionWrapper, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Window
from django.db.models.functions import Coalesce, RowNumber
from django.http import Http404

from alerts.choices import AlertStatus
from alerts.models import Alert, NotificationChannel
from alerts.rules import MAX_CHECK_AGE, WINDOW, GroupSnapshot, InstanceSnapshot, Thresholds, UnresolvedAlert
from instances.choices import CheckStatus, CheckType, InstanceStatus, RequestStatus
from instances.models import AIInstance, HealthCheck, RequestLog
from scaling.models import ProviderGroup

_FAILED_REQUESTS = (RequestStatus.ERROR, RequestStatus.TIMEOUT)


def _configured(path: str, default: float) -> float:
    """One threshold from configuration.selectors.config_value, or its default
    while that app is not installed or the path is unknown to it."""
    try:
        from configuration.selectors import config_value
    except ImportError:
        return default
    try:
        value = config_value(path)
    except (KeyError, ValueError):  # ValueError: a path its schema does not know yet
        return default
    return default if value is None else float(value)


def alert_thresholds() -> Thresholds:
    """monitoring.alert_thresholds.* (response times in ms, error rates in %)."""
    defaults = Thresholds()
    return Thresholds(
        **{
            spec.name: _configured(f"monitoring.alert_thresholds.{spec.name}", getattr(defaults, spec.name))
            for spec in fields(Thresholds)
        }
    )


def _latency_p95_by_instance(*, since: datetime, now: datetime) -> dict[int, tuple[float, int]]:
    """{instance id: (p95 ms, samples)} over the window's successful requests, in one query.

    Nearest-rank p95: the value at position ceil(0.95 * n) of the sorted latencies,
    i.e. (95 n + 99) // 100 in integer arithmetic. Upstream latency when recorded,
    else total latency (which includes the gateway's own time).
    """
    ranked = (
        RequestLog.objects.filter(
            created_at__gt=since, created_at__lte=now, instance__isnull=False, status=RequestStatus.SUCCESS
        )
        .annotate(latency=Coalesce("upstream_latency_ms", "total_latency_ms"))
        .filter(latency__isnull=False)
        .annotate(
            position=Window(RowNumber(), partition_by=[F("instance_id")], order_by=[F("latency").asc(), F("id").asc()]),
            samples=Window(Count("id"), partition_by=[F("instance_id")]),
        )
        .filter(position=ExpressionWrapper((F("samples") * 95 + 99) / 100, output_field=IntegerField()))
        .order_by()
        .values_list("instance_id", "latency", "samples")
    )
    return {instance_id: (latency, samples) for instance_id, latency, samples in ranked}


def instance_snapshots(*, now: datetime) -> list[InstanceSnapshot]:
    """Every registered instance with its latest latency check, its request
    statistics and its health-check failure ratio over rules.WINDOW: four queries."""
    since = now - WINDOW
    latest_check = HealthCheck.objects.filter(
        instance=OuterRef("pk"),
        check_type__in=[CheckType.LATENCY, CheckType.COMPREHENSIVE],
        response_time_ms__isnull=False,
        checked_at__gte=now - MAX_CHECK_AGE,
        checked_at__lte=now,
    ).order_by("-checked_at")
    instances = (
        AIInstance.objects.filter(is_active=True)
        .annotate(
            check_latency_ms=Subquery(latest_check.values("response_time_ms")[:1]),
            check_latency_at=Subquery(latest_check.values("checked_at")[:1]),
        )
        .order_by("id")
        .values("id", "instance_name", "status", "status_reason", "group_id", "check_latency_ms", "check_latency_at")
    )
    requests: dict[int, tuple[int, int]] = {
        row["instance_id"]: (row["total"], row["errors"])
        for row in RequestLog.objects.filter(created_at__gt=since, created_at__lte=now, instance__isnull=False)
        .exclude(status=RequestStatus.CLIENT_CLOSED)
        .order_by()
        .values("instance_id")
        .annotate(total=Count("id"), errors=Count("id", filter=Q(status__in=_FAILED_REQUESTS)))
    }
    checks: dict[int, tuple[int, int]] = {
        row["instance_id"]: (row["total"], row["failures"])
        for row in HealthCheck.objects.filter(checked_at__gt=since, checked_at__lte=now)
        .exclude(status=CheckStatus.UNKNOWN)
        .order_by()
        .values("instance_id")
        .annotate(total=Count("id"), failures=Count("id", filter=Q(status=CheckStatus.UNHEALTHY)))
    }
    p95 = _latency_p95_by_instance(since=since, now=now)
    snapshots = []
    for row in instances:
        requests_total, request_errors = requests.get(row["id"], (0, 0))
        checks_total, check_failures = checks.get(row["id"], (0, 0))
        p95_ms, samples = p95.get(row["id"], (None, 0))
        snapshots.append(
            InstanceSnapshot(
                id=row["id"],
                name=row["instance_name"],
                status=row["status"],
                status_reason=row["status_reason"],
                group_id=row["group_id"],
                check_latency_ms=row["check_latency_ms"],
                check_latency_at=row["check_latency_at"],
                request_p95_ms=p95_ms,
                latency_samples=samples,
                requests=requests_total,
                request_errors=request_errors,
                checks=checks_total,
                check_failures=check_failures,
            )
        )
    return snapshots


def group_snapshots() -> list[GroupSnapshot]:
    """Every group with its registered and serving (healthy/degraded) instance counts, in one query."""
    active = Q(instances__is_active=True)
    rows = (
        ProviderGroup.objects.annotate(
            active=Count("instances", filter=active),
            serving=Count(
                "instances", filter=active & Q(instances__status__in=[InstanceStatus.HEALTHY, InstanceStatus.DEGRADED])
            ),
        )
        .order_by("id")
        .values("id", "group_name", "active", "serving")
    )
    return [
        GroupSnapshot(
            id=row["id"], name=row["group_name"], active_instances=row["active"], serving_instances=row["serving"]
        )
        for row in rows
    ]


def alerts_unresolved() -> list[UnresolvedAlert]:
    # Served by the partial unique index alert_unique_unresolved_key (same predicate).
    rows = Alert.objects.exclude(status=AlertStatus.RESOLVED).order_by().values_list("id", "dedup_key", "severity")
    return [UnresolvedAlert(id=pk, dedup_key=key, severity=severity) for pk, key, severity in rows]


def channels_enabled() -> list[NotificationChannel]:
    return list(NotificationChannel.objects.filter(enabled=True).order_by("id"))


def alert_list(
    *,
    status: str | None = None,
    severity: str | None = None,
    rule: str | None = None,
    instance_id: uuid.UUID | None = None,
    group_id: int | None = None,
) -> QuerySet[Alert]:
    """Newest first, with instance and group joined (the serializer shows their names)."""
    queryset = Alert.objects.select_related("instance", "group")
    if status:
        queryset = queryset.filter(status=status)
    if severity:
        queryset = queryset.filter(severity=severity)
    if rule:
        queryset = queryset.filter(rule=rule)
    if instance_id is not None:
        queryset = queryset.filter(instance__instance_id=instance_id)
    if group_id is not None:
        queryset = queryset.filter(group_id=group_id)
    return queryset.order_by("-opened_at", "-id")


def alert_get(alert_id: int) -> Alert:
    try:
        return Alert.objects.select_related("instance", "group").get(pk=alert_id)
    except (Alert.DoesNotExist, ValueError, OverflowError):
        raise Http404(f"No alert {alert_id!r}.") from None
