from __future__ import annotations

import logging

from celery import shared_task

from instances.health.services import health_sweep

logger = logging.getLogger(__name__)


@shared_task(name="instances.health_sweep", ignore_result=True)
def health_sweep_task() -> dict[str, object]:
    """Beat runs this every few seconds; each instance is checked when its own interval is due."""
    report = health_sweep()
    summary = {
        "skipped": report.skipped,
        "due": report.due,
        "claimed": report.claimed,
        "checks": report.checks,
        "transitions": report.transitions,
        "seconds": report.seconds,
    }
    if report.checks or report.skipped:
        logger.info("health sweep", extra=summary)
    return summary
