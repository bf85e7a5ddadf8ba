"""The default periodic tasks. Created when missing, never overwritten: the
operator owns them once they exist (edit intervals or disable them in the admin)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DefaultTask:
    name: str
    task: str
    every_seconds: int
    description: str


DEFAULT_TASKS = [
    DefaultTask(
        "health: sweep due instances",
        "instances.health_sweep",
        10,
        "Checks every instance whose health_check_interval has elapsed "
        "(basic; latency/load/comprehensive on their own cadence).",
    ),
    DefaultTask(
        "alerts: evaluate rules",
        "alerts.evaluate",
        30,
        "Runs the alert rules; opens, updates, escalates and resolves alerts; consumes status transitions.",
    ),
    DefaultTask(
        "alerts: retry due notifications",
        "alerts.notifications_retry_due",
        30,
        "Queues notifications whose retry is due and hands back any a dead worker left in 'sending'.",
    ),
]
