"""Writes of the monitoring app: per-minute rollups, retention, stored reports."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Max, Model, QuerySet
from django.utils import timezone

from configuration.selectors import config_value
from monitoring import metrics, reports, selectors
from monitoring.models import MetricBaseline, PerformanceReport
from monitoring.rollups import Bucket, floor_minute

logger = logging.getLogger(__name__)

# Requests are logged when they finish: minutes this recent are recomputed at every run,
# so a long request logged late into a closed minute is still counted.
ROLLUP_LOOKBACK = timedelta(minutes=10)
# One run rolls up at most this many minutes; the next run resumes after them.
ROLLUP_MAX_MINUTES = 240
ROLLUP_WRITE_BATCH = 500
RETENTION_BATCH = 2000
ROLLUP_FIELDS = [
    "request_count",
    "success_count",
    "failure_count",
    "timeout_count",
    "avg_response_ms",
    "p50_response_ms",
    "p95_response_ms",
    "p99_response_ms",
    "prompt_tokens",
    "completion_tokens",
    "error_rate",
    "estimated_cost",
]


# --- Rollups -------------------------------------------------------------------------


def metrics_rollup(*, now: datetime | None = None, max_minutes: int = ROLLUP_MAX_MINUTES) -> int:
    """Roll the closed minutes not rolled up yet into InstanceMetrics; returns the buckets written.

    1. Recompute the ROLLUP_LOOKBACK minutes up to the newest stored bucket (rows logged late);
    2. skip straight to the first request after that bucket (or after the retention horizon);
    3. recompute up to `max_minutes` closed minutes from there (metrics_rollup_range).
    Stateless and idempotent: every bucket is recomputed from scratch and upserted, so running it
    twice writes the same rows; step 2 starts at a minute holding a request, so each run advances.
    """
    from instances.models import InstanceMetrics, RequestLog

    now = now or timezone.now()
    end = floor_minute(now)
    written = 0
    latest = InstanceMetrics.objects.aggregate(latest=Max("bucket_start"))["latest"]
    if latest is not None:
        resume = latest + timedelta(minutes=1)
        written += metrics_rollup_range(start=latest - ROLLUP_LOOKBACK, end=min(end, resume))
    else:
        resume = end - timedelta(days=config_value("monitoring.retention_days"))
    first = (
        RequestLog.objects.filter(instance__isnull=False, created_at__gte=resume, created_at__lt=end)
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )
    if first is not None:
        start = floor_minute(first)
        written += metrics_rollup_range(start=start, end=min(end, start + timedelta(minutes=max_minutes)))
    return written


def metrics_rollup_range(*, start: datetime, end: datetime) -> int:
    """Recompute every (instance, minute) bucket of [start, end) from RequestLog and upsert it.

    One pass over the window's requests sorted by (instance, time) (requestlog_instance_time_idx):
    a bucket is complete when the next row belongs to another instance or minute, so memory holds
    one bucket's latencies and ROLLUP_WRITE_BATCH rows to write.
    """
    from instances.models import InstanceMetrics, RequestLog

    pricing = config_value("pricing") or {}
    rows = (
        RequestLog.objects.filter(instance__isnull=False, created_at__gte=start, created_at__lt=end)
        .order_by("instance_id", "created_at")
        .values_list(
            "instance_id",
            "instance__model_name",
            "created_at",
            "status",
            "upstream_latency_ms",
            "total_latency_ms",
            "prompt_tokens",
            "completion_tokens",
        )
    )
    pending: list[InstanceMetrics] = []
    written = 0
    key: tuple[int, datetime] | None = None
    model = ""
    bucket = Bucket()

    def close() -> None:
        nonlocal written
        if key is None:
            return
        price = pricing.get(model)
        cost = metrics.estimated_cost(bucket.prompt_tokens, bucket.completion_tokens, price)
        pending.append(
            InstanceMetrics(instance_id=key[0], bucket_start=key[1], period_seconds=60, **bucket.summary(cost))
        )
        if len(pending) >= ROLLUP_WRITE_BATCH:
            written += _upsert(pending)

    for instance_id, model_name, created_at, status, upstream, total, prompt, completion in rows.iterator(
        chunk_size=2000
    ):
        minute = floor_minute(created_at)
        if (instance_id, minute) != key:
            close()
            key, model, bucket = (instance_id, minute), model_name, Bucket()
        latency = upstream if upstream is not None else total
        bucket.add(status=status, latency_ms=latency, prompt_tokens=prompt, completion_tokens=completion)
    close()
    written += _upsert(pending)
    return written


def _upsert(pending: list[Any]) -> int:
    from instances.models import InstanceMetrics

    if not pending:
        return 0
    InstanceMetrics.objects.bulk_create(
        pending, update_conflicts=True, unique_fields=["instance", "bucket_start"], update_fields=ROLLUP_FIELDS
    )
    count = len(pending)
    pending.clear()
    return count


# --- Retention -----------------------------------------------------------------------


def retention_enforce(
    *, days_to_keep: int | None = None, now: datetime | None = None, batch_size: int = RETENTION_BATCH
) -> dict[str, int]:
    """Delete what is older than `days_to_keep` (default monitoring.retention_days), in batches:
    request logs, health checks, per-minute metrics, processed status transitions, resolved alerts.

    Counters must never go down: before a batch of request logs or health checks goes, its counts
    are added to MetricBaseline in the same transaction (monitoring.metrics sums both).
    """
    from alerts.models import Alert
    from instances.models import HealthCheck, InstanceMetrics, RequestLog, StatusTransition

    days = days_to_keep if days_to_keep is not None else config_value("monitoring.retention_days")
    if days < 1:
        raise ValueError("days_to_keep must be at least 1")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted = {
        "request_logs": _delete_in_batches(
            RequestLog.objects.filter(created_at__lt=cutoff), batch_size, fold=metrics.request_samples
        ),
        "health_checks": _delete_in_batches(
            HealthCheck.objects.filter(checked_at__lt=cutoff), batch_size, fold=metrics.health_check_samples
        ),
        "instance_metrics": _delete_in_batches(InstanceMetrics.objects.filter(bucket_start__lt=cutoff), batch_size),
        "status_transitions": _delete_in_batches(
            StatusTransition.objects.filter(created_at__lt=cutoff, processed_at__isnull=False), batch_size
        ),
        "alerts": _delete_in_batches(Alert.objects.filter(status="resolved", resolved_at__lt=cutoff), batch_size),
    }
    metrics.collector().invalidate()
    logger.info("retention: deleted rows older than %s days", days, extra={"deleted": deleted, "cutoff": cutoff})
    return {"days_to_keep": days, "cutoff": cutoff, **deleted}  # type: ignore[dict-item]


def _delete_in_batches(
    queryset: QuerySet[Any],
    batch_size: int,
    *,
    fold: Callable[[QuerySet[Any]], Mapping[metrics.Key, float]] | None = None,
) -> int:
    model: type[Model] = queryset.model
    total = 0
    while True:
        with transaction.atomic():
            ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
            if not ids:
                return total
            batch = model._default_manager.filter(pk__in=ids)
            if fold is not None:
                _baseline_add(fold(batch))
            batch.delete()
            total += len(ids)


def _baseline_add(samples: Mapping[metrics.Key, float]) -> None:
    for (sample, labels), value in samples.items():
        if not value:
            continue
        key = metrics.labels_key(labels)
        updated = MetricBaseline.objects.filter(sample=sample, labels=key).update(value=F("value") + value)
        if not updated:
            MetricBaseline.objects.create(sample=sample, labels=key, value=value)


# --- Reports ---------------------------------------------------------------------------


def report_build(*, end: datetime | None = None, window: timedelta = timedelta(hours=24)) -> dict[str, Any]:
    """The report of [end - window, end) compared with the window before it."""
    if window <= timedelta(0):
        raise ValueError("the window must be positive")
    end = end or timezone.now()
    start, previous_start = end - window, end - 2 * window
    return reports.build_report(
        current=selectors.report_data(start=start, end=end),
        previous=selectors.report_data(start=previous_start, end=start),
        start=start,
        end=end,
        previous_start=previous_start,
        generated_at=timezone.now(),
        pricing=config_value("pricing") or {},
    )


def report_create(
    *, end: datetime | None = None, window: timedelta = timedelta(hours=24), trigger: str = "scheduled"
) -> PerformanceReport:
    body = report_build(end=end, window=window)
    report = PerformanceReport(
        window_start=datetime.fromisoformat(body["window"]["start"]),
        window_end=datetime.fromisoformat(body["window"]["end"]),
        generated_at=datetime.fromisoformat(body["generated_at"]),
        trigger=trigger,
        body=body,
    )
    report.full_clean()
    report.save()
    return report
