"""Reads of auto-scaling, shaped so no view, serializer or task runs N+1 queries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import TruncHour
from django.http import Http404

from instances.choices import InstanceStatus
from scaling.choices import OPEN_EVENT_STATUSES, ScalingDirection, ScalingEventStatus
from scaling.models import ProviderGroup, ScalingEvent

# Instance counts shown per group, by status of its registered (active) instances.
MEMBER_COUNTS: dict[str, tuple[str, ...]] = {
    "active_instances": (InstanceStatus.HEALTHY, InstanceStatus.DEGRADED),
    "starting_instances": (InstanceStatus.STARTING,),
    "standby_instances": (InstanceStatus.STANDBY,),
    "draining_instances": (InstanceStatus.DRAINING,),
    "unhealthy_instances": (InstanceStatus.UNHEALTHY,),
}


def _with_member_counts(queryset: QuerySet[ProviderGroup]) -> QuerySet[ProviderGroup]:
    registered = Q(instances__is_active=True)
    return queryset.annotate(
        total_instances=Count("instances", filter=registered),
        **{
            name: Count("instances", filter=registered & Q(instances__status__in=statuses))
            for name, statuses in MEMBER_COUNTS.items()
        },
    )


def member_counts(group: ProviderGroup) -> dict[str, int]:
    """The annotated counts of a group from group_list/group_get/group_for_update."""
    return {name: getattr(group, name) for name in ("total_instances", *MEMBER_COUNTS)}


def group_list() -> QuerySet[ProviderGroup]:
    """Every group with its instance counts, by name (one query per page)."""
    return _with_member_counts(ProviderGroup.objects.all()).order_by("group_name", "id")


def group_get(group_id: int | str) -> ProviderGroup:
    """The group with its instance counts; Http404 otherwise."""
    try:
        return _with_member_counts(ProviderGroup.objects.all()).get(pk=int(group_id))
    except (ProviderGroup.DoesNotExist, ValueError, OverflowError, TypeError):
        raise Http404(f"No provider group {group_id!r}.") from None


def group_counts_of(group_id: int) -> dict[str, int]:
    """Instance counts of one group (one query)."""
    group = _with_member_counts(ProviderGroup.objects.filter(pk=group_id)).get()
    return member_counts(group)


def group_ids_enabled() -> list[int]:
    # Served by group_autoscaling_idx.
    return list(ProviderGroup.objects.filter(auto_scaling_enabled=True).order_by("id").values_list("id", flat=True))


def scaling_event_open(group_id: int) -> ScalingEvent | None:
    """The group's pending or in-progress event (at most one: scalingevent_one_open_per_group)."""
    return ScalingEvent.objects.filter(group_id=group_id, status__in=OPEN_EVENT_STATUSES).order_by("id").first()


def scaling_event_list(
    *, group_id: int, status: str | None = None, direction: str | None = None
) -> QuerySet[ScalingEvent]:
    """A group's events, newest first (scalingevent_group_time_idx)."""
    queryset = ScalingEvent.objects.filter(group_id=group_id)
    if status:
        queryset = queryset.filter(status=status)
    if direction:
        queryset = queryset.filter(direction=direction)
    return queryset.order_by("-created_at", "-id")


def scaling_metrics(*, now: datetime, hours: int = 24) -> dict[str, Any]:
    """GET /api/instances/auto-scaling/metrics: events by direction and hour, success rate, managed groups.

    Three queries: group totals, events grouped by (hour, direction, status), the managed groups.
    Success rate = completed / (completed + failed) over the actions of the period (skipped,
    cancelled and still open ones excluded); None without any finished action.
    """
    since = now - timedelta(hours=hours)
    groups = ProviderGroup.objects.aggregate(
        total=Count("id"),
        enabled=Count("id", filter=Q(auto_scaling_enabled=True)),
        paused=Count("id", filter=Q(paused_until__gt=now)),
    )
    rows = (
        ScalingEvent.objects.filter(created_at__gt=since, created_at__lte=now)
        .annotate(hour=TruncHour("created_at"))
        .order_by()
        .values("hour", "direction", "status")
        .annotate(n=Count("id"))
    )
    by_hour: dict[datetime, dict[str, int]] = {}
    by_direction: dict[str, int] = {ScalingDirection.UP: 0, ScalingDirection.DOWN: 0}
    by_status: dict[str, int] = dict.fromkeys(ScalingEventStatus.values, 0)
    for row in rows:
        hour = by_hour.setdefault(row["hour"], {"up": 0, "down": 0, "skipped": 0, "failed": 0})
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]
        if row["status"] == ScalingEventStatus.SKIPPED:
            hour["skipped"] += row["n"]
            continue
        if row["status"] == ScalingEventStatus.FAILED:
            hour["failed"] += row["n"]
        if row["direction"] in by_direction and row["status"] != ScalingEventStatus.CANCELLED:
            by_direction[row["direction"]] += row["n"]
            hour[row["direction"]] += row["n"]
    finished = by_status[ScalingEventStatus.COMPLETED] + by_status[ScalingEventStatus.FAILED]
    managed = (
        _with_member_counts(ProviderGroup.objects.filter(auto_scaling_enabled=True))
        .annotate(last_direction=KeyTextTransform("direction", "last_decision"))
        .defer("last_decision", "backend_settings", "schedules", "triggers")
        .order_by("group_name", "id")
    )
    return {
        "since": since,
        "until": now,
        "hours": hours,
        "groups": {"total": groups["total"], "auto_scaling_enabled": groups["enabled"], "paused": groups["paused"]},
        "events": {"by_direction": by_direction, "by_status": by_status},
        "success_rate": round(by_status[ScalingEventStatus.COMPLETED] / finished, 4) if finished else None,
        "by_hour": [{"hour": hour, **counts} for hour, counts in sorted(by_hour.items())],
        "managed_groups": [
            {
                "id": group.pk,
                "group_name": group.group_name,
                "backend": group.backend,
                "min_instances": group.min_instances,
                "max_instances": group.max_instances,
                "desired_instances": group.desired_instances,
                "active_instances": group.active_instances,  # type: ignore[attr-defined]  # annotated
                "standby_instances": group.standby_instances,  # type: ignore[attr-defined]
                "paused_until": group.paused_until,
                "last_evaluated_at": group.last_evaluated_at,
                "last_direction": group.last_direction,
            }
            for group in managed
        ],
    }
