"""Queueing Celery tasks from a request without letting a broker outage fail it.

Every task queued from a write is backed by a row that a periodic task also picks
up (a pending ScalingEvent: scaling.reap_and_drain; a pending Notification:
alerts.notifications_retry_due). So a publish that cannot reach the broker loses
nothing but time: the write is already committed, the request answers as usual,
and the periodic task queues the row again once the broker is back. While the
broker is down, publishes are skipped without waiting for its timeout
(ishchat.outage: one log line per outage).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import kombu.exceptions
from django.db import transaction

from ishchat.outage import CACHE_ERRORS, Outage

BROKER_OUTAGE = Outage("Celery broker", errors=(kombu.exceptions.KombuError, *CACHE_ERRORS))


def enqueue(task: Any, *args: Any) -> bool:
    """`task.delay(*args)`; False when the broker is unreachable (the message is not sent)."""

    def publish() -> bool:
        task.delay(*args)
        return True

    return BROKER_OUTAGE.call(publish, fallback=lambda: False)


def enqueue_on_commit(task: Any, *args: Any) -> None:
    """Queue `task(*args)` once the current transaction commits (at once outside one)."""
    transaction.on_commit(partial(enqueue, task, *args))
