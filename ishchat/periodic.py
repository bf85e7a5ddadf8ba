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
    DefaultTask(
        "scaling: evaluate groups",
        "scaling.evaluate_all",
        30,
        "Evaluates every provider group with auto-scaling enabled (each under its own lease) and records "
        "actions and cooldown-skipped actions as scaling events.",
    ),
    DefaultTask(
        "scaling: retries, stale actions and drains",
        "scaling.reap_and_drain",
        # Every 10 s, so an apply whose worker died resumes within its claim (10 s) plus this,
        # inside one scaling evaluation interval.
        10,
        "Queues scaling events whose retry is due, hands back those a dead worker left in progress, and moves "
        "drained pool instances to standby.",
    ),
]
DEFAULT_TASKS += [
    DefaultTask(
        "monitoring: roll up request logs",
        "monitoring.metrics_rollup",
        60,
        "Rolls closed minutes of RequestLog into per-instance per-minute InstanceMetrics (idempotent, resumable).",
    ),
    DefaultTask(
        "monitoring: enforce retention",
        "monitoring.retention_enforce",
        3600,
        "Deletes request logs, health checks, metrics, processed transitions and resolved alerts "
        "older than monitoring.retention_days, in batches.",
    ),
    DefaultTask(
        "monitoring: daily performance report",
        "monitoring.performance_report_daily",
        86400,
        "Stores the performance report of the last 24 hours (GET /api/reports).",
    ),
]
