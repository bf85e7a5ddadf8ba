"""Celery tasks of auto-scaling: they take ids, load fresh rows and call one service."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from ishchat.locks import lease
from ishchat.queue import enqueue
from scaling import services

logger = logging.getLogger(__name__)

# Longer than any reap-and-drain run; a worker that dies lets it expire.
REAP_LEASE_SECONDS = 120


@shared_task(name="scaling.evaluate_all", ignore_result=True)
def scaling_evaluate_all() -> dict[str, Any]:
    """Periodic (default every 30 s): evaluate every enabled group, each under its own lease."""
    if not services.auto_scaling_globally_enabled():
        return {"skipped": "auto_scaling.enabled is off"}
    results = services.groups_evaluate()
    summary: dict[str, Any] = {"groups": len(results)}
    for result in results:
        summary[result["outcome"]] = summary.get(result["outcome"], 0) + 1
    if any(result["outcome"] not in ("no_change", "dry_run") for result in results):
        logger.info("scaling evaluated", extra=summary)
    return summary


@shared_task(name="scaling.apply_event", ignore_result=True)
def scaling_apply_event(event_id: int) -> str | None:
    """Carry out one event; a no-op if it is not pending and due (another worker has it, or its
    retry is not due yet). Retries are rows, picked up by scaling.reap_and_drain."""
    event = services.group_apply_event(event_id=event_id)
    return event.status if event else None


@shared_task(name="scaling.reap_and_drain", ignore_result=True)
def scaling_reap_and_drain() -> dict[str, Any] | None:
    """Periodic: hand back events a dead worker left in_progress, queue the due ones (retries
    included), and move drained pool instances to standby. Overlapping runs are skipped."""
    with lease("scaling-reap-and-drain", ttl_seconds=REAP_LEASE_SECONDS) as held:
        if not held:
            return None
        due = services.scaling_events_reap()
        for event_id in due:
            enqueue(scaling_apply_event, event_id)
        parked = services.pool_drain()
    if due or parked:
        logger.info("scaling reap and drain", extra={"queued": len(due), "parked": parked})
    return {"queued": len(due), "parked": parked}
