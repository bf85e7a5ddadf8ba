"""Reads for the health endpoints, bounded in queries whatever the fleet size."""

from __future__ import annotations

from typing import Any

from django.db.models import Avg, Count, Q, QuerySet

from instances.choices import InstanceStatus
from instances.models import AIInstance, HealthCheck


def health_status(instance: AIInstance) -> dict[str, Any]:
    latest = instance.health_checks.order_by("-checked_at", "-id").first()
    return {
        "instance_id": str(instance.instance_id),
        "instance_name": instance.instance_name,
        "status": instance.status,
        "status_reason": instance.status_reason,
        "score": instance.health_score,
        "issues": instance.last_check_issues,
        "response_time_ms": instance.last_response_time_ms,
        "last_check": instance.last_health_check_at,
        "last_check_type": latest.check_type if latest else None,
        "last_check_status": latest.status if latest else None,
        "next_check": instance.next_health_check_at,
        "consecutive_successes": instance.consecutive_successes,
        "consecutive_failures": instance.consecutive_failures,
    }


def health_history(instance: AIInstance, *, limit: int) -> QuerySet[HealthCheck]:
    return instance.health_checks.order_by("-checked_at", "-id")[:limit]


def health_summary() -> dict[str, Any]:
    """Fleet health in two queries; empty fleets and never-checked instances are fine."""
    active = AIInstance.objects.filter(is_active=True)
    totals = active.aggregate(
        total=Count("id"),
        healthy=Count("id", filter=Q(status=InstanceStatus.HEALTHY)),
        degraded=Count("id", filter=Q(status=InstanceStatus.DEGRADED)),
        unhealthy=Count("id", filter=Q(status=InstanceStatus.UNHEALTHY)),
        average_response=Avg("last_response_time_ms"),
    )
    reports = [
        {
            "instance_id": str(row["instance_id"]),
            "instance_name": row["instance_name"],
            "provider_type": row["provider_type"],
            "model_name": row["model_name"],
            "status": row["status"],
            "score": row["health_score"],
            "response_time_ms": row["last_response_time_ms"],
            "issues": row["last_check_issues"],
            "last_check": row["last_health_check_at"],
        }
        for row in active.order_by("id").values(
            "instance_id",
            "instance_name",
            "provider_type",
            "model_name",
            "status",
            "health_score",
            "last_response_time_ms",
            "last_check_issues",
            "last_health_check_at",
        )
    ]
    total = totals["total"]
    return {
        "total_instances": total,
        "healthy_instances": totals["healthy"],
        "degraded_instances": totals["degraded"],
        "unhealthy_instances": totals["unhealthy"],
        "other_instances": total - totals["healthy"] - totals["degraded"] - totals["unhealthy"],
        "overall_health_percentage": round(100.0 * totals["healthy"] / total, 2) if total else 0.0,
        "average_response_time": round(totals["average_response"], 2)
        if totals["average_response"] is not None
        else None,
        "instances": reports,
    }
