"""Celery tasks of alerting: they take ids, load fresh rows and call one service."""

from __future__ import annotations

import logging

from celery import shared_task

from alerts import services
from ishchat.locks import lease
from ishchat.queue import enqueue

logger = logging.getLogger(__name__)

# Longer than any evaluation; a worker that dies lets it expire.
EVALUATE_LEASE_SECONDS = 120


@shared_task(name="alerts.evaluate", ignore_result=True)
def alerts_evaluate() -> dict[str, int] | None:
    """Periodic: run the rules once. Overlapping runs are skipped, not queued."""
    with lease("alerts-evaluate", ttl_seconds=EVALUATE_LEASE_SECONDS) as held:
        if not held:
            logger.info("alerts evaluation skipped: another one is running")
            return None
        return services.alerts_evaluate()


@shared_task(name="alerts.notification_deliver", ignore_result=True)
def alert_notification_deliver(notification_id: int) -> str | None:
    """Send one notification; a no-op if it is not pending and due (another worker has it,
    or its retry is not due yet). Retries are rows, picked up by alerts_notifications_retry_due."""
    notification = services.notification_deliver(notification_id=notification_id)
    return notification.status if notification else None


@shared_task(name="alerts.notifications_retry_due", ignore_result=True)
def alert_notifications_retry_due() -> int:
    """Periodic: queue every notification whose (re)try is due."""
    due = services.notifications_due()
    for notification_id in due:
        enqueue(alert_notification_deliver, notification_id)
    return len(due)
