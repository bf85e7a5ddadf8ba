"""Health checks: run them against providers, store results, move statuses.

Detection stays apart from effects: a status change is recorded here as a
StatusTransition row; alerts (and later routing and scaling) act on those rows.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from configuration.selectors import config_value
from instances.choices import CheckType, InstanceStatus
from instances.health.checks import CheckContext, CheckResult, run_check
from instances.health.status import HealthState, Thresholds, next_status
from instances.lb_settings import LBSettingsResolver
from instances.models import AIInstance, HealthCheck, StatusTransition
from instances.providers.base import ProviderTarget
from instances.providers.transport import build_client
from instances.services import instance_api_key, routing_changed
from ishchat.errors import ConflictError
from ishchat.locks import lease

logger = logging.getLogger(__name__)

SWEEP_LEASE = "health-sweep"
SWEEP_LEASE_SECONDS = 300
CLAIM_SECONDS = 120
_CLAIM_CHUNK = 500
_NOT_SWEPT = (InstanceStatus.STANDBY, InstanceStatus.MAINTENANCE, InstanceStatus.STOPPED)
_CADENCE_KEYS = {
    CheckType.LATENCY: "health_checks.latency_interval",
    CheckType.LOAD: "health_checks.load_interval",
    CheckType.COMPREHENSIVE: "health_checks.comprehensive_interval",
}


@dataclass(slots=True)
class SweepReport:
    skipped: str = ""
    due: int = 0
    claimed: int = 0
    checks: int = 0
    transitions: int = 0
    seconds: float = 0.0
    results: list[dict[str, Any]] = field(default_factory=list)


def _target(instance: AIInstance) -> ProviderTarget:
    return ProviderTarget(
        provider_type=instance.provider_type,
        endpoint_url=instance.endpoint_url,
        api_key=instance_api_key(instance),
        model_name=instance.model_name,
        timeout=instance.timeout,
    )


def _context(instance: AIInstance) -> CheckContext:
    thresholds = config_value("monitoring.alert_thresholds")
    return CheckContext(
        current_load=instance.current_load,
        max_concurrent_requests=instance.max_concurrent_requests,
        response_time_warning_ms=float(thresholds["response_time_warning"]),
        response_time_critical_ms=float(thresholds["response_time_critical"]),
        latency_samples=config_value("health_checks.latency_samples"),
    )


def health_record(
    *, instance_id: int, result: CheckResult, thresholds: Thresholds, now: datetime | None = None
) -> tuple[HealthCheck, StatusTransition | None]:
    """Store one result and apply it to the instance's status (one transaction, row locked)."""
    now = now or timezone.now()
    with transaction.atomic():
        instance = AIInstance.objects.select_for_update().get(pk=instance_id)
        check = HealthCheck.objects.create(
            instance=instance,
            check_type=result.check_type,
            status=result.status,
            score=min(1.0, max(0.0, result.score)),
            response_time_ms=result.response_time_ms,
            issues=result.issues,
            details=result.details,
            error_kind=result.error_kind,
            checked_at=now,
        )
        decision = next_status(
            HealthState(
                status=instance.status,
                consecutive_successes=instance.consecutive_successes,
                consecutive_failures=instance.consecutive_failures,
                streak_status=instance.streak_status,
                streak_length=instance.streak_length,
                health_score=instance.health_score,
            ),
            result_status=result.status,
            result_score=check.score,
            auth_failure=result.auth_failure,
            thresholds=thresholds,
            summary="; ".join(result.issues[:2]),
        )
        state = decision.state
        old_status = instance.status
        instance.status = state.status
        instance.consecutive_successes = state.consecutive_successes
        instance.consecutive_failures = state.consecutive_failures
        instance.streak_status = state.streak_status
        instance.streak_length = state.streak_length
        instance.health_score = state.health_score
        instance.last_health_check_at = now
        instance.last_check_issues = result.issues
        if result.response_time_ms is not None:
            instance.last_response_time_ms = result.response_time_ms
        update = [
            "status",
            "consecutive_successes",
            "consecutive_failures",
            "streak_status",
            "streak_length",
            "health_score",
            "last_health_check_at",
            "last_check_issues",
            "last_response_time_ms",
            "updated_at",
        ]
        transition = None
        if decision.changed:
            instance.status_reason = decision.reason[:500]
            update.append("status_reason")
            transition = StatusTransition.objects.create(
                instance=instance,
                old_status=old_status,
                new_status=state.status,
                reason=f"{result.check_type} check: {decision.reason}"[:500],
                source="health_check",
            )
            routing_changed()
        instance.save(update_fields=update)
    return check, transition


# No client pool carries more than this many checks at once: httpcore's pool
# bookkeeping is quadratic in its connections (encode/httpcore#1035), and one
# shared pool turned the sweep CPU-bound above ~50 concurrent checks
# (bench/README.md, "Health sweep").
CHECKS_PER_CLIENT = 16


async def _run_all(
    jobs: Sequence[tuple[int, ProviderTarget, CheckContext, list[str]]], concurrency: int
) -> list[tuple[int, list[CheckResult]]]:
    """Check every instance, `concurrency` instances at a time: that many workers take jobs
    from one queue, worker w using client w % k of k = ceil(concurrency / CHECKS_PER_CLIENT)."""
    pending = deque(enumerate(jobs))
    results: list[tuple[int, list[CheckResult]]] = [(pk, []) for pk, *_ in jobs]
    workers = max(1, min(concurrency, len(jobs)))
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                build_client(max_connections=CHECKS_PER_CLIENT, max_keepalive_connections=CHECKS_PER_CLIENT)
            )
            for _ in range(math.ceil(workers / CHECKS_PER_CLIENT))
        ]

        async def worker(client: httpx.AsyncClient) -> None:
            while pending:
                index, (pk, target, context, types) = pending.popleft()
                results[index] = (pk, [await run_check(client, target, kind, context) for kind in types])

        await asyncio.gather(*(worker(clients[number % len(clients)]) for number in range(workers)))
    return results


def _claim(ids: Iterable[int], *, now: datetime) -> tuple[uuid.UUID, list[AIInstance]]:
    """Claim instances with one conditional UPDATE per chunk; rows another worker holds are left alone."""
    token = uuid.uuid4()
    free = Q(health_claim_token__isnull=True) | Q(health_check_claimed_until__lt=now)
    id_list = list(ids)
    for start in range(0, len(id_list), _CLAIM_CHUNK):
        AIInstance.objects.filter(pk__in=id_list[start : start + _CLAIM_CHUNK]).filter(free).update(
            health_claim_token=token, health_check_claimed_until=now + timedelta(seconds=CLAIM_SECONDS)
        )
    return token, list(AIInstance.objects.filter(health_claim_token=token).order_by("pk"))


def _types_due(
    instance: AIInstance, requested: Sequence[str] | None, now: datetime, rng: random.Random
) -> tuple[list[str], dict[str, str]]:
    """Basic runs every interval; the others on their own cadence, first spread at random over it."""
    if requested:
        return list(requested), dict(instance.health_check_due)
    types = [CheckType.BASIC.value]
    due = dict(instance.health_check_due)
    for check_type, key in _CADENCE_KEYS.items():
        cadence = config_value(key)
        when = due.get(check_type)
        if when is None:
            due[check_type] = (now + timedelta(seconds=rng.uniform(0, cadence))).isoformat()
        elif datetime.fromisoformat(when) <= now:
            types.append(check_type.value)
            due[check_type] = (now + timedelta(seconds=cadence)).isoformat()
    return types, due


def health_sweep(
    *,
    now: datetime | None = None,
    instance_ids: Sequence[int] | None = None,
    check_types: Sequence[str] | None = None,
    force: bool = False,
    rng: random.Random | None = None,
) -> SweepReport:
    """Check every due instance once. Sweeps never overlap (a lease) and an
    instance is never checked by two workers at once (a claim token)."""
    started = timezone.now()
    now = now or started
    rng = rng or random.Random()
    report = SweepReport()
    with lease(SWEEP_LEASE, ttl_seconds=SWEEP_LEASE_SECONDS) as held:
        if not held:
            report.skipped = "another sweep is running"
            return report
        candidates = AIInstance.objects.filter(is_active=True).exclude(status__in=_NOT_SWEPT)
        if instance_ids is not None:
            candidates = candidates.filter(pk__in=instance_ids)
        if not force:
            candidates = candidates.filter(Q(next_health_check_at__isnull=True) | Q(next_health_check_at__lte=now))
        due_ids = list(candidates.order_by("next_health_check_at", "pk").values_list("pk", flat=True))
        report.due = len(due_ids)
        if not due_ids:
            return report
        token, claimed = _claim(due_ids, now=now)
        report.claimed = len(claimed)
        try:
            _sweep_claimed(claimed, check_types, now, rng, report)
        finally:
            AIInstance.objects.filter(health_claim_token=token).update(
                health_claim_token=None, health_check_claimed_until=None
            )
    report.seconds = round((timezone.now() - started).total_seconds(), 3)
    return report


def _sweep_claimed(
    claimed: list[AIInstance], check_types: Sequence[str] | None, now: datetime, rng: random.Random, report: SweepReport
) -> None:
    resolver = LBSettingsResolver()
    jitter = config_value("health_checks.jitter_seconds")
    jobs = []
    schedule: dict[int, tuple[datetime, dict[str, str]]] = {}
    for instance in claimed:
        types, due = _types_due(instance, check_types, now, rng)
        interval = resolver.get(instance.provider_type, instance.model_name).health_check_interval
        schedule[instance.pk] = (now + timedelta(seconds=interval + rng.uniform(0, jitter)), due)
        jobs.append((instance.pk, _target(instance), _context(instance), types))
    concurrency = config_value("global.instance_manager.max_concurrent_health_checks")
    outcomes = asyncio.run(_run_all(jobs, concurrency))
    by_pk = {instance.pk: instance for instance in claimed}
    for pk, results in outcomes:
        instance = by_pk[pk]
        settings_ = resolver.get(instance.provider_type, instance.model_name)
        thresholds = Thresholds(settings_.healthy_threshold, settings_.unhealthy_threshold)
        for result in results:
            _, transition = health_record(instance_id=pk, result=result, thresholds=thresholds, now=now)
            report.checks += 1
            report.transitions += transition is not None
            report.results.append(
                {
                    "instance_id": str(instance.instance_id),
                    "instance_name": instance.instance_name,
                    "check_type": result.check_type,
                    "status": result.status,
                    "score": result.score,
                    "response_time_ms": result.response_time_ms,
                    "issues": result.issues,
                    "new_status": transition.new_status if transition else None,
                }
            )
        next_at, due = schedule[pk]
        AIInstance.objects.filter(pk=pk).update(next_health_check_at=next_at, health_check_due=due)


def health_check_instance(*, instance: AIInstance, check_type: str, now: datetime | None = None) -> HealthCheck:
    """Run one check now (API, dashboard, admin), claiming the instance like a sweep does."""
    if check_type not in CheckType.values:
        raise ValueError(f"unknown check type {check_type!r}")
    now = now or timezone.now()
    token, claimed = _claim([instance.pk], now=now)
    if not claimed:
        raise ConflictError("A health check of this instance is already running; try again shortly.")
    try:
        settings_ = LBSettingsResolver().get(instance.provider_type, instance.model_name)

        async def run() -> CheckResult:
            async with build_client(max_connections=4) as client:
                return await run_check(client, _target(claimed[0]), check_type, _context(claimed[0]))

        result = asyncio.run(run())
        check, _ = health_record(
            instance_id=instance.pk,
            result=result,
            thresholds=Thresholds(settings_.healthy_threshold, settings_.unhealthy_threshold),
            now=now,
        )
    finally:
        AIInstance.objects.filter(pk=instance.pk, health_claim_token=token).update(
            health_claim_token=None, health_check_claimed_until=None
        )
    return check
