"""The metric window of a group, built from the database for ``scaling.engine.decide``.

Over the ``window_seconds`` before ``now`` (instances "serving" = active and healthy/degraded):

* utilization = sum(current_load) / sum(max_concurrent_requests) of the serving instances.
  current_load is the one load signal (live leases: gateway requests, select-instance leases,
  reported load), published every second by the web processes (gateway/load.py); with no
  publication in the last LOAD_STALE_SECONDS (instances.selectors) it is missing (None), never a stale number or 0.
* queue_length = sum over serving instances of ``num_requests_waiting`` from their latest load
  check inside the window (vLLM publishes it); None when none reported one.
* request_rate = requests of the group's instances in the window, per minute (client
  disconnects excluded).
* error_rate = (errors + timeouts) / requests; p95_ms = nearest-rank p95 of the successful
  requests' latency (upstream when recorded, else total). A window without any request reports
  error rate 0 and p95 0: an idle group is under no pressure, so an idle group with these triggers
  can still scale down. Requests without a successful one leave p95 missing.
* request_rate_history (predictive groups only): requests per complete minute, oldest first, over
  the last ``history_minutes``: InstanceMetrics rollups where they exist, RequestLog counts for
  the minutes after the latest rollup; minutes before any data are None.

At most four queries whatever the group size, two more for a predictive group's history.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Exists, OuterRef, Q, Subquery, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Coalesce, TruncMinute

from instances.choices import CheckType, InstanceStatus, RequestStatus
from instances.models import AIInstance, HealthCheck, InstanceMetrics, RequestLog
from instances.selectors import load_publications_fresh
from scaling.engine import MetricWindow, PredictiveMode
from scaling.engine.forecast import HISTORY_MINUTES
from scaling.models import ProviderGroup

WINDOW_SECONDS = 60
SERVING = (InstanceStatus.HEALTHY, InstanceStatus.DEGRADED)
_FAILED = (RequestStatus.ERROR, RequestStatus.TIMEOUT)


def _fleet(group: ProviderGroup, since: datetime, now: datetime) -> tuple[float | None, float | None]:
    """(utilisation, queue length) of the serving instances, in one query."""
    latest_load = HealthCheck.objects.filter(
        instance=OuterRef("pk"), check_type=CheckType.LOAD, checked_at__gt=since, checked_at__lte=now
    ).order_by("-checked_at", "-id")
    published = load_publications_fresh(now=now)
    rows = list(
        AIInstance.objects.filter(group=group, is_active=True, status__in=SERVING)
        .annotate(waiting=Subquery(latest_load.annotate(
            waiting=KeyTextTransform("num_requests_waiting", "details")).values("waiting")[:1]),
            fresh=Exists(published))
        .values_list("current_load", "max_concurrent_requests", "waiting", "fresh")
    )
    if not rows:
        return None, None
    utilization = None
    if rows[0][3]:
        capacity = sum(max(1, capacity) for _, capacity, _, _ in rows)
        utilization = sum(load for load, _, _, _ in rows) / capacity
    waiting = [float(value) for _, _, value, _ in rows if value not in (None, "", "null")]
    return utilization, (sum(waiting) if waiting else None)


def _requests(group: ProviderGroup, since: datetime, now: datetime) -> tuple[int, float | None, float | None]:
    """(requests, error rate, p95 ms) of the group's instances in (since, now]: two queries at most."""
    logs = RequestLog.objects.filter(instance__group=group, created_at__gt=since, created_at__lte=now).exclude(
        status=RequestStatus.CLIENT_CLOSED
    )
    timed = logs.filter(status=RequestStatus.SUCCESS).annotate(
        latency=Coalesce("upstream_latency_ms", "total_latency_ms")
    ).filter(latency__isnull=False)
    totals = logs.aggregate(total=Count("id"), failed=Count("id", filter=Q(status__in=_FAILED)))
    total = totals["total"]
    if not total:
        return 0, 0.0, 0.0
    samples = timed.count()
    p95 = None
    if samples:
        rank = (95 * samples + 99) // 100  # nearest rank: ceil(0.95 n)
        p95 = timed.order_by("latency", "id").values_list("latency", flat=True)[rank - 1]
    return total, totals["failed"] / total, p95


def _history(group: ProviderGroup, now: datetime, minutes: int) -> list[float | None]:
    """Requests per complete minute, oldest first (see the module docstring)."""
    end = now.replace(second=0, microsecond=0)
    start = end - timedelta(minutes=minutes)
    per_minute: dict[datetime, float] = {
        row["bucket_start"]: float(row["requests"])
        for row in InstanceMetrics.objects.filter(
            instance__group=group, period_seconds=60, bucket_start__gte=start, bucket_start__lt=end
        )
        .order_by()
        .values("bucket_start")
        .annotate(requests=Sum("request_count"))
    }
    logs_from = max(per_minute) + timedelta(minutes=1) if per_minute else start
    if logs_from < end:
        rows = (
            RequestLog.objects.filter(instance__group=group, created_at__gte=logs_from, created_at__lt=end)
            .exclude(status=RequestStatus.CLIENT_CLOSED)
            .annotate(minute=TruncMinute("created_at"))
            .order_by()
            .values("minute")
            .annotate(requests=Count("id"))
        )
        for row in rows:
            per_minute[row["minute"]] = float(row["requests"])
    if not per_minute:
        return [None] * minutes
    first = min(per_minute)
    history: list[float | None] = []
    for step in range(minutes):
        minute = start + timedelta(minutes=step)
        history.append(per_minute.get(minute, 0.0) if minute >= first else None)
    return history


def request_rate_history(*, group: ProviderGroup, now: datetime, minutes: int) -> list[float | None]:
    """The group's requests per complete minute over the last ``minutes``, oldest first (None
    before any data): what ``manage.py simulate_scaling --history-days`` replays."""
    return _history(group, now, minutes)


def metric_window(*, group: ProviderGroup, now: datetime, window_seconds: int = WINDOW_SECONDS,
                  history_minutes: int | None = None) -> MetricWindow:
    """The group's MetricWindow at ``now``; history only for predictive groups unless asked for."""
    since = now - timedelta(seconds=window_seconds)
    utilization, queue_length = _fleet(group, since, now)
    total, error_rate, p95 = _requests(group, since, now)
    if history_minutes is None:
        history_minutes = 0 if group.predictive_mode == PredictiveMode.OFF else HISTORY_MINUTES
    history = _history(group, now, history_minutes) if history_minutes else []
    return MetricWindow(
        utilization=utilization,
        p95_ms=p95,
        error_rate=error_rate,
        queue_length=queue_length,
        request_rate=total * 60.0 / window_seconds,
        request_rate_history=history,
        reporting_instances=None,
        window_seconds=window_seconds,
    )


__all__ = ["HISTORY_MINUTES", "WINDOW_SECONDS", "metric_window", "request_rate_history"]
