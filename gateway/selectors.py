"""Reads for the load-balancer dashboards: traffic over a time window from
RequestLog, live balancer state (breakers, in-flight, latency estimates) from
the shared state store, and the LoadBalancerConfig rows.

Every read runs a fixed number of queries whatever the number of instances or
log rows: aggregates and GROUP BY for the counts, one MGET-style store read for
the live state, the per-process registry snapshot for the instance list.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Avg, Count, F, FloatField, Q, QuerySet
from django.db.models.expressions import Window
from django.db.models.functions import RowNumber
from django.http import Http404
from django.utils import timezone

from gateway.registry import RoutableInstance, registry_snapshot
from instances.balancer.breaker import BreakerConfig, Phase
from instances.balancer.state import RuntimeState, StateStore, get_state_store
from instances.choices import RequestStatus
from instances.models import LoadBalancerConfig, RequestLog
from instances.selectors import breaker_view

DEFAULT_WINDOW_MINUTES = 60
MAX_WINDOW_MINUTES = 7 * 24 * 60

# Requests that count against the instance that answered. client_closed is the
# client's doing and is reported on its own, in neither column.
FAILED_STATUSES = (RequestStatus.ERROR, RequestStatus.TIMEOUT, RequestStatus.RATE_LIMITED)

# Off PostgreSQL, percentiles are computed in Python from the most recent
# LATENCY_SAMPLE_CAP latencies of each instance in the window (one query with
# ROW_NUMBER() OVER (PARTITION BY instance ORDER BY created_at DESC)), so the
# memory a report takes is at most cap x instances floats however busy the
# window was. On PostgreSQL, percentile_cont runs in the database over every row.
LATENCY_SAMPLE_CAP = 2000

PERCENTILES = {"p50_ms": 0.50, "p95_ms": 0.95, "p99_ms": 0.99}


@dataclass(frozen=True, slots=True)
class TimeWindow:
    minutes: int
    start: datetime
    end: datetime


def _window(minutes: int, now: datetime | None) -> TimeWindow:
    end = now or timezone.now()
    return TimeWindow(minutes=minutes, start=end - timedelta(minutes=minutes), end=end)


def _logs(window: TimeWindow, *, provider_type: str | None, model_name: str | None) -> QuerySet[RequestLog]:
    logs = RequestLog.objects.filter(created_at__gt=window.start, created_at__lte=window.end)
    if provider_type:
        logs = logs.filter(provider_type=provider_type)
    if model_name:
        logs = logs.filter(model_name=model_name)
    return logs


def _rate(part: int, total: int) -> float | None:
    return round(part / total, 4) if total else None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _epoch_to_datetime(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def _routed_instances(*, provider_type: str | None, model_name: str | None) -> list[RoutableInstance]:
    """The active instances as the balancer sees them (the per-process snapshot: no query when warm)."""
    snapshot = registry_snapshot()
    items: Iterable[RoutableInstance] = snapshot.by_id.values()
    if provider_type:
        items = (item for item in items if item.provider_type == provider_type)
    if model_name:
        items = (item for item in items if item.model_name == model_name)
    return sorted(items, key=lambda item: (item.provider_type, item.model_name, item.name))


# --- GET /api/instances/load-balancer/metrics ----------------------------------


def lb_metrics(
    *,
    window_minutes: int = DEFAULT_WINDOW_MINUTES,
    provider_type: str | None = None,
    model_name: str | None = None,
    now: datetime | None = None,
    store: StateStore | None = None,
) -> dict[str, Any]:
    """Traffic totals and rates over the window, and each active instance's live state
    and activity. Three queries (totals; requests by answering instance; failovers
    by original instance) plus the registry snapshot and one store read."""
    window = _window(window_minutes, now)
    logs = _logs(window, provider_type=provider_type, model_name=model_name)
    status_counts = {f"n_{status}": Count("id", filter=Q(status=status)) for status in RequestStatus.values}
    totals = logs.aggregate(
        total=Count("id"),
        failover=Count("id", filter=Q(failover=True)),
        avg_routing=Avg("routing_ms"),
        avg_latency=Avg("total_latency_ms"),
        **status_counts,
    )
    by_status = {status: totals[f"n_{status}"] for status in RequestStatus.values}
    total = totals["total"]
    successful = by_status[RequestStatus.SUCCESS]
    failed = sum(by_status[status] for status in FAILED_STATUSES)

    answered: dict[int, Mapping[str, Any]] = {
        row["instance_id"]: row
        for row in logs.filter(instance__isnull=False)
        .values("instance_id")
        .annotate(
            requests=Count("id"),
            successes=Count("id", filter=Q(status=RequestStatus.SUCCESS)),
            failures=Count("id", filter=Q(status__in=FAILED_STATUSES)),
            failovers_in=Count("id", filter=Q(failover=True)),
        )
    }
    failed_over_from = {
        row["original_instance_id"]: row["n"]
        for row in logs.filter(failover=True, original_instance__isnull=False)
        .values("original_instance_id")
        .annotate(n=Count("id"))
    }

    instances = _routed_instances(provider_type=provider_type, model_name=model_name)
    store = store or get_state_store()
    clock = time.time()
    config = BreakerConfig()
    runtime = store.snapshot([item.candidate for item in instances], now=clock, breaker=config)
    rows = []
    phases: dict[str, int] = {phase.value: 0 for phase in Phase}
    for item in instances:
        state = runtime[item.instance_id]
        activity = answered.get(item.pk, {})
        row = _instance_runtime(item, state, clock, config)
        row.update(
            activations=activity.get("requests", 0),
            successes=activity.get("successes", 0),
            failures=activity.get("failures", 0),
            failovers_in=activity.get("failovers_in", 0),
            failed_over_from=failed_over_from.get(item.pk, 0),
        )
        phases[row["breaker"]["phase"]] += 1
        rows.append(row)

    return {
        "time_window_minutes": window.minutes,
        "window_start": window.start,
        "window_end": window.end,
        "total_requests": total,
        "successful_requests": successful,
        "failed_requests": failed,
        "failover_requests": totals["failover"],
        "client_closed_requests": by_status[RequestStatus.CLIENT_CLOSED],
        "success_rate": _rate(successful, total),
        "failure_rate": _rate(failed, total),
        "failover_rate": _rate(totals["failover"], total),
        "requests_by_status": by_status,
        "average_routing_ms": _round(totals["avg_routing"]),
        "average_total_latency_ms": _round(totals["avg_latency"]),
        "total_in_flight": sum(row["in_flight"] for row in rows),
        "total_capacity": sum(row["max_concurrent_requests"] for row in rows),
        "breakers_by_phase": phases,
        "instances": rows,
    }


def _instance_runtime(item: RoutableInstance, state: RuntimeState, now: float, config: BreakerConfig) -> dict[str, Any]:
    candidate = item.candidate
    # One load signal (instances.balancer.state): live leases fleet-wide, reported load included.
    return {
        "instance_id": item.instance_id,
        "instance_name": item.name,
        "provider_type": item.provider_type,
        "model_name": item.model_name,
        "status": candidate.status,
        "current_load": state.in_flight,
        "in_flight": state.in_flight,
        "max_concurrent_requests": candidate.max_concurrent,
        "utilization": round(state.in_flight / candidate.max_concurrent, 4),
        "latency_ms": _round(state.latency_ms, 2),
        "success_rate": _round(state.success_rate, 4),
        "rate_limited": state.rate_limited,
        "breaker": breaker_view(state.breaker, now, config),
    }


# --- GET /api/instances/load-balancer/utilization --------------------------------


class PercentileCont(Aggregate):
    """PostgreSQL's percentile_cont(fraction) WITHIN GROUP (ORDER BY expression): linear interpolation."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression: str, fraction: float, **extra: Any) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be within 0..1")
        super().__init__(expression, fraction=repr(float(fraction)), **extra)


def percentile_cont(ordered: Sequence[float], fraction: float) -> float | None:
    """percentile_cont over an ascending sequence, as PostgreSQL computes it:

    r = fraction * (n - 1);  value = x[floor(r)] + (r - floor(r)) * (x[ceil(r)] - x[floor(r)])
    """
    if not ordered:
        return None
    rank = fraction * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


def latency_samples(logs: QuerySet[RequestLog], *, cap: int) -> dict[int, list[float]]:
    """Each instance's most recent `cap` latencies in the window, ascending: one bounded query."""
    ranked = (
        logs.filter(instance__isnull=False, total_latency_ms__isnull=False)
        .annotate(recency=Window(RowNumber(), partition_by=[F("instance_id")], order_by=F("created_at").desc()))
        .filter(recency__lte=cap)
        .values_list("instance_id", "total_latency_ms")
    )
    samples: dict[int, list[float]] = defaultdict(list)
    for instance_pk, latency in ranked:
        if latency is not None:  # filtered out above; for the type checker
            samples[instance_pk].append(latency)
    for values in samples.values():
        values.sort()
    return samples


def lb_utilization(
    *,
    window_minutes: int = DEFAULT_WINDOW_MINUTES,
    provider_type: str | None = None,
    model_name: str | None = None,
    now: datetime | None = None,
    sample_cap: int = LATENCY_SAMPLE_CAP,
    exact: bool | None = None,
) -> dict[str, Any]:
    """Per instance: requests, successes, failures and latency percentiles over the window.

    Percentiles are exact (percentile_cont in the database) on PostgreSQL; on
    other databases (SQLite) they come from each instance's most recent
    `sample_cap` latencies (see LATENCY_SAMPLE_CAP). `exact` forces one way
    (False works everywhere; True needs PostgreSQL). Instances that served no
    request in the window and are still active are listed with zero counts.
    """
    window = _window(window_minutes, now)
    logs = _logs(window, provider_type=provider_type, model_name=model_name)
    exact = connection.vendor == "postgresql" if exact is None else exact
    aggregates: dict[str, Any] = {
        "requests": Count("id"),
        "successes": Count("id", filter=Q(status=RequestStatus.SUCCESS)),
        "failures": Count("id", filter=Q(status__in=FAILED_STATUSES)),
        "latency_count": Count("total_latency_ms"),
        "average_ms": Avg("total_latency_ms"),
    }
    if exact:
        aggregates.update({name: PercentileCont("total_latency_ms", q) for name, q in PERCENTILES.items()})
    grouped = (
        logs.filter(instance__isnull=False)
        .values(
            "instance_id",
            "instance__instance_id",
            "instance__instance_name",
            "instance__provider_type",
            "instance__model_name",
        )
        .annotate(**aggregates)
        .order_by()
    )
    samples = {} if exact else latency_samples(logs, cap=sample_cap)

    rows: dict[str, dict[str, Any]] = {}
    row: dict[str, Any]
    for row in grouped:  # type: ignore[assignment]  # annotate(**aggregates) is beyond the stubs' TypedDict
        instance_id = str(row["instance__instance_id"])
        entry = {
            "instance_id": instance_id,
            "instance_name": row["instance__instance_name"],
            "provider_type": row["instance__provider_type"],
            "model_name": row["instance__model_name"],
            "requests": row["requests"],
            "successes": row["successes"],
            "failures": row["failures"],
            "success_rate": _rate(row["successes"], row["requests"]),
            "failure_rate": _rate(row["failures"], row["requests"]),
            "average_ms": _round(row["average_ms"]),
        }
        if exact:
            entry.update({name: _round(row[name]) for name in PERCENTILES})
            entry["latency_samples"] = row["latency_count"]
        else:
            ordered = samples.get(row["instance_id"], [])
            entry.update({name: _round(percentile_cont(ordered, q)) for name, q in PERCENTILES.items()})
            entry["latency_samples"] = len(ordered)
        rows[instance_id] = entry
    for item in _routed_instances(provider_type=provider_type, model_name=model_name):
        if item.instance_id not in rows:
            rows[item.instance_id] = {
                "instance_id": item.instance_id,
                "instance_name": item.name,
                "provider_type": item.provider_type,
                "model_name": item.model_name,
                "requests": 0,
                "successes": 0,
                "failures": 0,
                "success_rate": None,
                "failure_rate": None,
                "average_ms": None,
                **dict.fromkeys(PERCENTILES),
                "latency_samples": 0,
            }
    ordered_rows = sorted(rows.values(), key=lambda r: (-r["requests"], r["provider_type"], r["instance_name"]))
    return {
        "time_window_minutes": window.minutes,
        "window_start": window.start,
        "window_end": window.end,
        "percentiles": "exact" if exact else "sampled",
        "latency_sample_cap": None if exact else sample_cap,
        "instances": ordered_rows,
    }


# --- GET /api/instances/load-balancer/breakers -------------------------------------


def lb_breakers(
    *,
    phase: str | None = None,
    provider_type: str | None = None,
    model_name: str | None = None,
    store: StateStore | None = None,
) -> dict[str, Any]:
    """Every active instance's breaker, read from the shared store in one call."""
    instances = _routed_instances(provider_type=provider_type, model_name=model_name)
    store = store or get_state_store()
    states = store.breaker_states([item.instance_id for item in instances])
    now = time.time()
    config = BreakerConfig()
    by_phase: dict[str, int] = {value.value: 0 for value in Phase}
    results = []
    for item in instances:
        view = breaker_view(states[item.instance_id], now, config)
        by_phase[view["phase"]] += 1
        if phase and view["phase"] != phase:
            continue
        results.append(
            {
                "instance_id": item.instance_id,
                "instance_name": item.name,
                "provider_type": item.provider_type,
                "model_name": item.model_name,
                "status": item.candidate.status,
                **view,
            }
        )
    return {"count": len(results), "by_phase": by_phase, "results": results}


# --- LoadBalancerConfig --------------------------------------------------------------


def lb_config_list(*, provider_type: str | None = None) -> QuerySet[LoadBalancerConfig]:
    configs = LoadBalancerConfig.objects.all()
    if provider_type:
        configs = configs.filter(provider_type=provider_type)
    return configs.order_by("provider_type", "model_name", "id")


def lb_config_get(config_id: int) -> LoadBalancerConfig:
    try:
        return LoadBalancerConfig.objects.get(pk=config_id)
    except LoadBalancerConfig.DoesNotExist:
        raise Http404(f"No load balancer config {config_id}.") from None
