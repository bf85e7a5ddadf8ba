"""Celery tasks of monitoring: each takes a lease (no overlapping runs) and calls one service."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from ishchat.locks import lease
from monitoring import services

logger = logging.getLogger(__name__)

ROLLUP_LEASE_SECONDS = 300
RETENTION_LEASE = "monitoring-retention"
RETENTION_LEASE_SECONDS = 3600


@shared_task(name="monitoring.metrics_rollup", ignore_result=True)
def metrics_rollup() -> int | None:
    """Periodic: roll closed minutes of RequestLog into InstanceMetrics."""
    with lease("monitoring-rollup", ttl_seconds=ROLLUP_LEASE_SECONDS) as held:
        if not held:
            logger.info("metrics rollup skipped: another one is running")
            return None
        return services.metrics_rollup()


@shared_task(name="monitoring.retention_enforce", ignore_result=True)
def retention_enforce() -> dict[str, Any] | None:
    """Periodic: delete monitoring rows older than monitoring.retention_days."""
    with lease(RETENTION_LEASE, ttl_seconds=RETENTION_LEASE_SECONDS) as held:
        if not held:
            logger.info("retention skipped: another run is in progress")
            return None
        result = services.retention_enforce()
        return {key: value for key, value in result.items() if key != "cutoff"}


@shared_task(name="monitoring.performance_report_daily", ignore_result=True)
def performance_report_daily() -> int:
    """Periodic: store the report of the last 24 hours."""
    return services.report_create(trigger="scheduled").pk
