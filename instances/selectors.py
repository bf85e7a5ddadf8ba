"""Reads of the registry, shaped so no view or serializer runs N+1 queries."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import Avg, Count, Q, QuerySet, Sum
from django.http import Http404

from instances.balancer.breaker import BreakerConfig, BreakerState, Phase
from instances.choices import InstanceStatus, ProviderType
from instances.models import AIInstance, LoadPublication

# A published load older than this is missing: a few missed publications (gateway/load.py
# publishes every second), well inside scaling's 60 s window.
LOAD_STALE_SECONDS = 10.0


def load_publications_fresh(*, now: datetime) -> QuerySet[LoadPublication]:
    """The web processes that published the instances' load (current_load) lately; none: the counts are missing."""
    return LoadPublication.objects.filter(published_at__gte=now - timedelta(seconds=LOAD_STALE_SECONDS))


def instance_list(
    *,
    provider_type: str | None = None,
    status: str | None = None,
    model_name: str | None = None,
    group_id: int | None = None,
    region: str | None = None,
    include_inactive: bool = False,
) -> QuerySet[AIInstance]:
    queryset = AIInstance.objects.select_related("group")
    if not include_inactive:
        queryset = queryset.filter(is_active=True)
    if provider_type:
        queryset = queryset.filter(provider_type=provider_type)
    if status:
        queryset = queryset.filter(status=status)
    if model_name:
        queryset = queryset.filter(model_name=model_name)
    if group_id is not None:
        queryset = queryset.filter(group_id=group_id)
    if region:
        queryset = queryset.filter(region=region)
    return queryset.order_by("id")


def instance_get(instance_id: str | uuid.UUID) -> AIInstance:
    """The instance with this public id, deregistered ones included; Http404 otherwise."""
    try:
        key = instance_id if isinstance(instance_id, uuid.UUID) else uuid.UUID(str(instance_id))
    except ValueError:
        raise Http404(f"No instance {instance_id!r}.") from None
    try:
        return AIInstance.objects.select_related("group").get(instance_id=key)
    except AIInstance.DoesNotExist:
        raise Http404(f"No instance {instance_id!r}.") from None


def system_status() -> dict[str, Any]:
    """Counts the seed's GET /api/instances/status reports, in three queries."""
    active = AIInstance.objects.filter(is_active=True)
    by_status = {row["status"]: row["n"] for row in active.values("status").annotate(n=Count("id"))}
    by_provider = {
        row["provider_type"]: {
            "total": row["total"],
            "healthy": row["healthy"],
            "current_load": row["load"] or 0,
            "capacity": row["capacity"] or 0,
        }
        for row in active.values("provider_type").annotate(
            total=Count("id"),
            healthy=Count("id", filter=Q(status=InstanceStatus.HEALTHY)),
            load=Sum("current_load"),
            capacity=Sum("max_concurrent_requests"),
        )
    }
    totals = active.aggregate(
        load=Sum("current_load"), capacity=Sum("max_concurrent_requests"), avg_score=Avg("health_score")
    )
    total = sum(by_status.values())
    capacity = totals["capacity"] or 0
    return {
        "total_instances": total,
        "instances_by_status": {status: by_status.get(status, 0) for status in InstanceStatus.values},
        "instances_by_provider": {
            provider: by_provider.get(provider, {"total": 0, "healthy": 0, "current_load": 0, "capacity": 0})
            for provider in ProviderType.values
        },
        "total_load": totals["load"] or 0,
        "total_capacity": capacity,
        "utilization": round((totals["load"] or 0) / capacity, 4) if capacity else 0.0,
        "average_health_score": round(totals["avg_score"], 4) if totals["avg_score"] is not None else None,
    }


def breaker_view(state: BreakerState, now: float, config: BreakerConfig | None = None) -> dict[str, Any]:
    """One breaker as the API shows it: the phase at `now` (an open breaker past its time reads half_open)."""
    config = config or BreakerConfig()
    phase = state.phase_at(now)
    calls, failures = state.window_totals(now, config)
    return {
        "phase": phase.value,
        "consecutive_failures": state.consecutive_failures,
        "ejections": state.ejections,
        "open_until": datetime.fromtimestamp(state.open_until, tz=UTC) if phase is Phase.OPEN else None,
        "cooling_until": datetime.fromtimestamp(state.cooling_until, tz=UTC) if state.cooling_until > now else None,
        "window_calls": calls,
        "window_failures": failures,
    }
