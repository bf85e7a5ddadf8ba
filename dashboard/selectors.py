"""Reads shaped for the dashboard pages: each function runs a fixed number of queries,
whatever the number of instances, requests or alerts (tests/dashboard asserts it)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Avg, Count, Max, Q, QuerySet, Sum
from django.db.models.functions import TruncMinute
from django.http import Http404
from django.utils import timezone

from alerts.choices import AlertStatus
from alerts.models import Alert
from alerts.selectors import alert_list
from configuration.selectors import config_effective_with_sources
from instances.balancer.state import get_state_store
from instances.choices import InstanceStatus, RequestStatus
from instances.models import AIInstance, RequestLog, StatusTransition
from instances.selectors import instance_list
from scaling.choices import OPEN_EVENT_STATUSES
from scaling.models import ProviderGroup, ScalingEvent
from scaling.selectors import group_list

PAGE_SIZE = 25
KPI_WINDOW = timedelta(minutes=5)
CHART_MINUTES = 60
FAILED_REQUESTS = (RequestStatus.ERROR, RequestStatus.TIMEOUT)
# Sort keys offered by the instances table: {query value: ORDER BY}.
INSTANCE_SORTS = {
    "name": ("instance_name", "id"),
    "-name": ("-instance_name", "-id"),
    "status": ("status", "id"),
    "-status": ("-status", "id"),
    "score": ("health_score", "id"),
    "-score": ("-health_score", "id"),
    "load": ("current_load", "id"),
    "-load": ("-current_load", "id"),
    "provider": ("provider_type", "model_name", "id"),
    "-provider": ("-provider_type", "-model_name", "id"),
}
SECRET_WORDS = ("key", "secret", "password", "token")


def nav_counters() -> dict[str, int]:
    """The header's counters (two queries); also sent out-of-band after actions."""
    totals = AIInstance.objects.filter(is_active=True).aggregate(
        total=Count("id"), healthy=Count("id", filter=Q(status=InstanceStatus.HEALTHY))
    )
    open_alerts = Alert.objects.filter(status=AlertStatus.OPEN).count()
    return {"total": totals["total"], "healthy": totals["healthy"], "open_alerts": open_alerts}


def _p95(queryset: QuerySet[RequestLog], n: int) -> float | None:
    """The 95th percentile latency of `queryset` (n rows) with one indexed ORDER BY ... OFFSET,
    portable to SQLite and PostgreSQL."""
    if not n:
        return None
    offset = min(n - 1, max(0, math.ceil(0.95 * n) - 1))
    return (
        queryset.exclude(total_latency_ms=None)
        .order_by("total_latency_ms")
        .values_list("total_latency_ms", flat=True)[offset : offset + 1]
        .first()
    )


def overview_kpis(*, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    instances = AIInstance.objects.filter(is_active=True).aggregate(
        total=Count("id"),
        healthy=Count("id", filter=Q(status=InstanceStatus.HEALTHY)),
        degraded=Count("id", filter=Q(status=InstanceStatus.DEGRADED)),
        unhealthy=Count("id", filter=Q(status=InstanceStatus.UNHEALTHY)),
        load=Sum("current_load"),
        capacity=Sum("max_concurrent_requests"),
    )
    recent = RequestLog.objects.filter(created_at__gte=now - KPI_WINDOW, created_at__lte=now)
    traffic = recent.aggregate(
        n=Count("id"),
        failed=Count("id", filter=Q(status__in=FAILED_REQUESTS)),
        timed=Count("id", filter=Q(total_latency_ms__isnull=False)),
    )
    minutes = KPI_WINDOW.total_seconds() / 60
    return {
        **instances,
        "utilization": (instances["load"] or 0) / instances["capacity"] if instances["capacity"] else 0.0,
        "requests_per_minute": traffic["n"] / minutes,
        "error_rate": traffic["failed"] / traffic["n"] if traffic["n"] else None,
        "p95_ms": _p95(recent, traffic["timed"]),
        "open_alerts": Alert.objects.filter(status=AlertStatus.OPEN).count(),
        "groups_scaling": (
            ScalingEvent.objects.filter(status__in=OPEN_EVENT_STATUSES).values("group").distinct().count()
        ),
        "groups_total": ProviderGroup.objects.count(),
        "window_minutes": int(minutes),
    }


@dataclass(frozen=True)
class TrafficSeries:
    labels: list[str]
    requests: list[float]
    errors: list[float]
    avg_latency: list[float | None]
    max_latency: list[float | None]


def traffic_series(
    *, now: datetime | None = None, minutes: int = CHART_MINUTES, instance: AIInstance | None = None
) -> TrafficSeries:
    """Per-minute requests, failures and latency from RequestLog (one grouped query,
    at most `minutes` rows back). Minutes without traffic are zeros, not gaps."""
    now = (now or timezone.now()).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes - 1)
    queryset = RequestLog.objects.filter(created_at__gte=start)
    if instance is not None:
        queryset = queryset.filter(instance=instance)
    rows: dict[datetime, dict[str, Any]] = {
        row["minute"].replace(second=0, microsecond=0): dict(row)
        for row in queryset.annotate(minute=TruncMinute("created_at"))
        .values("minute")
        .annotate(
            n=Count("id"),
            failed=Count("id", filter=Q(status__in=FAILED_REQUESTS)),
            avg=Avg("total_latency_ms"),
            peak=Max("total_latency_ms"),
        )
        .order_by("minute")
    }
    series = TrafficSeries([], [], [], [], [])
    for i in range(minutes):
        minute = start + timedelta(minutes=i)
        row = rows.get(minute, {})
        series.labels.append(timezone.localtime(minute).strftime("%H:%M"))
        series.requests.append(row.get("n", 0))
        series.errors.append(row.get("failed", 0))
        series.avg_latency.append(row.get("avg"))
        series.max_latency.append(row.get("peak"))
    return series


@dataclass(frozen=True)
class FeedItem:
    at: datetime
    kind: str  # transition, scaling, alert
    title: str
    detail: str
    tone: str  # a status colour class
    url: str = ""


def recent_feed(*, limit: int = 15) -> list[FeedItem]:
    """The newest transitions, scaling events and alerts, merged (three queries)."""
    items = [
        FeedItem(
            t.created_at,
            "transition",
            f"{t.instance.instance_name}: {t.old_status} → {t.new_status}",
            f"{t.source}: {t.reason}",
            t.new_status,
            str(t.instance.instance_id),
        )
        for t in StatusTransition.objects.select_related("instance").order_by("-created_at", "-id")[:limit]
    ]
    items += [
        FeedItem(
            e.created_at,
            "scaling",
            f"{e.group.group_name}: {e.direction} {e.old_count} → {e.new_count}",
            f"{e.trigger}, {e.status}: {e.reason}",
            e.status,
            str(e.group_id),
        )
        for e in ScalingEvent.objects.select_related("group").order_by("-created_at", "-id")[:limit]
    ]
    items += [
        FeedItem(a.opened_at, "alert", a.title, f"{a.severity}, {a.status}", a.severity)
        for a in Alert.objects.order_by("-opened_at", "-id")[:limit]
    ]
    items.sort(key=lambda item: item.at, reverse=True)
    return items[:limit]


# --- instances ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceFilters:
    provider_type: str = ""
    status: str = ""
    model_name: str = ""
    group_id: int | None = None
    search: str = ""
    sort: str = "name"

    @classmethod
    def from_query(cls, query: Any) -> InstanceFilters:
        group = query.get("group", "")
        sort = query.get("sort", "name")
        return cls(
            provider_type=query.get("provider", "")[:32],
            status=query.get("status", "")[:16],
            model_name=query.get("model", "")[:200],
            group_id=int(group) if group.isdigit() else None,
            search=query.get("q", "").strip()[:200],
            sort=sort if sort in INSTANCE_SORTS else "name",
        )


def instance_table_page(filters: InstanceFilters, *, page: int | str | None) -> Page:
    """One page of instances (a COUNT and one SELECT with the group joined)."""
    queryset = instance_list(
        provider_type=filters.provider_type or None,
        status=filters.status or None,
        model_name=filters.model_name or None,
        group_id=filters.group_id,
    )
    if filters.search:
        queryset = queryset.filter(
            Q(instance_name__icontains=filters.search)
            | Q(model_name__icontains=filters.search)
            | Q(region__icontains=filters.search)
        )
    queryset = queryset.order_by(*INSTANCE_SORTS[filters.sort])
    return Paginator(queryset, PAGE_SIZE).get_page(page)


def instance_filter_options() -> dict[str, Any]:
    """Models and groups for the filter form (two queries; distinct models come from the routing index)."""
    models = (
        AIInstance.objects.filter(is_active=True)
        .order_by("model_name")
        .values_list("model_name", flat=True)
        .distinct()[:200]
    )
    return {
        "models": list(models),
        "groups": list(ProviderGroup.objects.order_by("group_name").values_list("id", "group_name")[:500]),
    }


def breaker_phases(instances: list[AIInstance]) -> dict[str, str]:
    """{instance_id: closed | open | half_open} from the balancer's shared state (no SQL)."""
    ids = [str(instance.instance_id) for instance in instances]
    if not ids:
        return {}
    now = time.time()
    return {iid: str(state.phase_at(now)) for iid, state in get_state_store().breaker_states(ids).items()}


def instance_recent_requests(instance: AIInstance, *, limit: int = 20) -> list[RequestLog]:
    return list(RequestLog.objects.filter(instance=instance).order_by("-created_at", "-id")[:limit])


def instance_transitions(instance: AIInstance, *, limit: int = 10) -> list[StatusTransition]:
    return list(instance.transitions.order_by("-created_at", "-id")[:limit])


# --- groups ---------------------------------------------------------------------------------------


def group_rows() -> QuerySet[ProviderGroup]:
    """Every group with member counts, load and capacity of its registered instances (one query)."""
    registered = Q(instances__is_active=True)
    return group_list().annotate(
        load=Sum("instances__current_load", filter=registered),
        capacity=Sum("instances__max_concurrent_requests", filter=registered),
        open_events=Count("scaling_events", filter=Q(scaling_events__status__in=OPEN_EVENT_STATUSES), distinct=True),
    )


def group_row(group_id: int | str) -> ProviderGroup:
    """One group annotated like group_rows; Http404 otherwise."""
    try:
        return group_rows().get(pk=int(group_id))
    except (ProviderGroup.DoesNotExist, ValueError, OverflowError, TypeError):
        raise Http404(f"No provider group {group_id!r}.") from None


def group_events(group: ProviderGroup, *, limit: int = 30) -> list[ScalingEvent]:
    return list(group.scaling_events.order_by("-created_at", "-id")[:limit])


# --- load balancer --------------------------------------------------------------------------------


def balancer_distribution(*, now: datetime | None = None, hours: int = 1, limit: int = 20) -> dict[str, Any]:
    """Where the gateway sent requests in the last `hours`: the busiest instances and the failovers."""
    now = now or timezone.now()
    window = RequestLog.objects.filter(created_at__gte=now - timedelta(hours=hours))
    totals = window.aggregate(
        n=Count("id"), failovers=Count("id", filter=Q(failover=True)), routing=Avg("routing_ms")
    )
    rows: list[dict[str, Any]] = [
        dict(row)
        for row in window.exclude(instance=None)
        .values("instance__instance_id", "instance__instance_name", "instance__provider_type")
        .annotate(
            n=Count("id"),
            failovers=Count("id", filter=Q(failover=True)),
            failed=Count("id", filter=Q(status__in=FAILED_REQUESTS)),
            avg=Avg("total_latency_ms"),
        )
        .order_by("-n")[:limit]
    ]
    for row in rows:
        row["share"] = row["n"] / totals["n"] if totals["n"] else 0.0
    recent_failovers = list(
        window.filter(failover=True)
        .select_related("instance", "original_instance")
        .order_by("-created_at", "-id")[:15]
    )
    return {"totals": totals, "rows": rows, "failovers": recent_failovers, "hours": hours}


def breakers_not_closed(*, limit: int = 50) -> list[tuple[AIInstance, str]]:
    """Active instances whose breaker is open or half-open. One SQL query for the ids, one read of
    the shared state for them all, one query for the few that are not closed."""
    ids = [str(iid) for iid in AIInstance.objects.filter(is_active=True).values_list("instance_id", flat=True)]
    if not ids:
        return []
    now = time.time()
    phases = {iid: str(s.phase_at(now)) for iid, s in get_state_store().breaker_states(ids).items()}
    tripped = [iid for iid, phase in phases.items() if phase != "closed"][:limit]
    if not tripped:
        return []
    instances = AIInstance.objects.filter(instance_id__in=tripped).order_by("instance_name")
    return [(instance, phases[str(instance.instance_id)]) for instance in instances]


# --- alerts ---------------------------------------------------------------------------------------


def alert_page(*, status: str, page: int | str | None) -> Page:
    return Paginator(alert_list(status=status or None), PAGE_SIZE).get_page(page)


def alert_status_counts() -> dict[str, int]:
    counts = dict(Alert.objects.values_list("status").annotate(n=Count("id")).order_by())
    return {status: counts.get(status, 0) for status in AlertStatus.values}


# --- configuration --------------------------------------------------------------------------------


def _flatten(tree: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(tree, dict) and tree:
        rows: list[tuple[str, Any]] = []
        for key in sorted(tree):
            rows += _flatten(tree[key], f"{prefix}.{key}" if prefix else str(key))
        return rows
    return [(prefix, tree)]


def config_rows() -> list[dict[str, str]]:
    """Every effective leaf with the layer it comes from; values of secret-looking paths masked."""
    tree, sources = config_effective_with_sources()
    rows = []
    for path, value in _flatten(tree):
        secret = any(word in path.lower().rsplit(".", 1)[-1] for word in SECRET_WORDS)
        shown = "••••••" if secret and value else json.dumps(value, default=str)
        rows.append({"path": path, "value": shown, "source": sources.get(path, "default")})
    return rows

