"""Reads of the monitoring app: the numbers a performance report is made of, and stored reports."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db.models import Count, FloatField, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404

from monitoring.models import PerformanceReport
from monitoring.rollups import rank_positions

QUANTILES = (0.50, 0.95, 0.99)
UP = ("healthy", "degraded")


def report_list() -> QuerySet[PerformanceReport]:
    """Newest first, without the (large) body."""
    return PerformanceReport.objects.defer("body").order_by("-generated_at", "-id")


def report_get(report_id: int) -> PerformanceReport:
    return get_object_or_404(PerformanceReport, pk=report_id)


def _latency() -> Coalesce:
    return Coalesce("upstream_latency_ms", "total_latency_ms", output_field=FloatField())


def _percentiles(successes: QuerySet[Any], group: str | None, counts: dict[Any, int]) -> dict[Any, dict[float, float]]:
    """Nearest-rank percentiles per group, read from one stream sorted by the database:
    memory holds the wanted positions, never the latencies."""
    order = [group, "latency_ms"] if group else ["latency_ms"]
    fields = [group, "latency_ms"] if group else ["latency_ms"]
    stream = successes.order_by(*order).values_list(*fields).iterator(chunk_size=5000)
    result: dict[Any, dict[float, float]] = defaultdict(dict)
    current, index, wanted = object(), 0, {}
    for row in stream:
        key = row[0] if group else None
        if key != current:
            current, index, wanted = key, 0, rank_positions(counts.get(key, 0), QUANTILES)
        for q in wanted.get(index, ()):
            result[key][q] = float(row[-1])
        index += 1
    return result


def report_data(*, start: datetime, end: datetime) -> dict[str, Any]:
    """Raw numbers of [start, end): request aggregates per (provider, model, instance), latency
    percentiles per instance, provider and overall, health checks, alerts opened, scaling events.
    A fixed number of queries whatever the window holds."""
    from alerts.models import Alert
    from instances.models import AIInstance, HealthCheck, RequestLog
    from scaling.choices import ScalingEventStatus
    from scaling.models import ScalingEvent

    window = RequestLog.objects.filter(created_at__gte=start, created_at__lt=end)
    requests = list(
        window.values("provider_type", "model_name", "instance_id")
        .annotate(
            requests=Count("id"),
            successes=Count("id", filter=Q(status="success")),
            timeouts=Count("id", filter=Q(status="timeout")),
            prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
            completion_tokens=Coalesce(Sum("completion_tokens"), 0),
        )
        .order_by()
    )
    successes = window.filter(status="success").annotate(latency_ms=_latency()).filter(latency_ms__isnull=False)
    sample_counts = list(
        successes.values("provider_type", "instance_id")
        .annotate(n=Count("id"))
        .values_list("provider_type", "instance_id", "n")
        .order_by()
    )
    by_instance: dict[Any, int] = defaultdict(int)
    by_provider: dict[Any, int] = defaultdict(int)
    for provider, instance_id, n in sample_counts:
        by_instance[instance_id] += n
        by_provider[provider] += n
    checks = {
        row["instance_id"]: (row["total"], row["up"])
        for row in HealthCheck.objects.filter(checked_at__gte=start, checked_at__lt=end)
        .values("instance_id")
        .annotate(total=Count("id"), up=Count("id", filter=Q(status__in=UP)))
        .order_by()
    }
    alerts = list(
        Alert.objects.filter(opened_at__gte=start, opened_at__lt=end)
        .values("instance_id", "instance__provider_type", "group__provider_type")
        .annotate(n=Count("id"))
        .order_by()
    )
    scaling = list(
        ScalingEvent.objects.filter(created_at__gte=start, created_at__lt=end)
        .exclude(status=ScalingEventStatus.SKIPPED)  # actions only: a cooldown's record is not one
        .values("group__provider_type", "direction")
        .annotate(n=Count("id"))
        .order_by()
    )
    seen = {row["instance_id"] for row in requests} | set(checks) | {a["instance_id"] for a in alerts}
    instances = {
        row["id"]: row
        for row in AIInstance.objects.filter(Q(is_active=True) | Q(pk__in=[i for i in seen if i is not None]))
        .values("id", "instance_id", "instance_name", "provider_type", "model_name", "status")
        .order_by()
    }
    return {
        "requests": requests,
        "percentiles": {
            "instance": _percentiles(successes, "instance_id", by_instance),
            "provider": _percentiles(successes, "provider_type", by_provider),
            "total": _percentiles(successes, None, {None: sum(by_instance.values())}).get(None, {}),
        },
        "latency_samples": {"instance": dict(by_instance), "provider": dict(by_provider)},
        "checks": checks,
        "alerts": alerts,
        "scaling": scaling,
        "instances": instances,
    }
