from __future__ import annotations

import logging

from celery import shared_task

from instances.health.services import health_sweep

logger = logging.getLogger(__name__)


@shared_task(name="instances.health_sweep", ignore_result=True)
def health_sweep_task() -> dict[str, object]:
    """Beat runs this every few seconds; each instance is checked when its own interval is due.

    Runs may overlap (a slow one, or several workers): they share the due instances through
    per-instance claims (instances.health.services)."""
    report = health_sweep()
    summary: dict[str, object] = {
        "due": report.due,
        "claimed": report.claimed,
        "checks": report.checks,
        "stale": report.stale,
        "transitions": report.transitions,
        "seconds": report.seconds,
    }
    if report.checks or report.stale:
        logger.info("health sweep", extra=summary)
    return summary
