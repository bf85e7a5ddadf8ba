"""Health checks: run them against providers, store results, move statuses.

Detection stays apart from effects: a status change is recorded here as a
StatusTransition row; alerts (and later routing and scaling) act on those rows.

A sweep has no fleet-wide lock: each instance is claimed (a conditional UPDATE)
just before its checks start, for as long as their deadlines allow plus
CLAIM_MARGIN_SECONDS, and released when its results are stored. Sweeps may
therefore overlap (another worker's, or the next beat's): they share the due
instances between them, a slow provider holds one check slot until its
deadline and nothing else, and a worker that dies takes only its in-flight
claims with it, which lapse within one check deadline.
"""

from __future__ import annotations

import asyncio
import logging
import math
import queue
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from configuration.selectors import config_value
from instances.choices import CheckType, InstanceStatus
from instances.health.checks import CheckContext, CheckResult, check_deadline, run_check
from instances.health.status import HealthState, Thresholds, next_status
from instances.lb_settings import LBSettingsResolver
from instances.models import AIInstance, HealthCheck, StatusTransition
from instances.providers.base import ProviderTarget
from instances.providers.transport import build_client
from instances.services import instance_api_key, routing_changed
from ishchat.errors import ConflictError

logger = logging.getLogger(__name__)

# A claim outlives its checks' deadlines by this much: the time to store their results.
CLAIM_MARGIN_SECONDS = 5.0
_NOT_SWEPT = (InstanceStatus.STANDBY, InstanceStatus.MAINTENANCE, InstanceStatus.STOPPED)
_CADENCE_KEYS = {
    CheckType.LATENCY: "health_checks.latency_interval",
    CheckType.LOAD: "health_checks.load_interval",
    CheckType.COMPREHENSIVE: "health_checks.comprehensive_interval",
}


@dataclass(slots=True)
class SweepReport:
    due: int = 0
    claimed: int = 0
    checks: int = 0
    stale: int = 0
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
    *, instance_id: int, result: CheckResult, thresholds: Thresholds, started_at: datetime | None = None
) -> tuple[HealthCheck | None, StatusTransition | None]:
    """Store one result and apply it to the instance's status (one transaction, row locked).

    `started_at` is when the check began; it becomes the check's time. A result whose check began
    before the instance's latest recorded one is stale (a newer check finished first) and is
    dropped: (None, None).
    """
    now = started_at or timezone.now()
    with transaction.atomic():
        instance = AIInstance.objects.select_for_update().get(pk=instance_id)
        if instance.last_health_check_at is not None and now < instance.last_health_check_at:
            return None, None
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
            api_exercised=result.api_exercised,
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


@dataclass(frozen=True, slots=True)
class _Job:
    instance: AIInstance
    target: ProviderTarget
    context: CheckContext
    types: list[str]
    thresholds: Thresholds
    next_at: datetime
    due: dict[str, str]


@dataclass(frozen=True, slots=True)
class _Outcome:
    job: _Job
    result: CheckResult | None  # None: the job is done, every result of it handed back
    started_at: datetime


class _CheckRunner:
    """Runs jobs' checks on an event loop in a thread of its own, each job in one of `concurrency`
    slots (slot s uses client s % k of k = ceil(concurrency / CHECKS_PER_CLIENT)), and hands every
    result back as soon as it is in. The caller's thread keeps the database work: its connection
    is the one that claims and records, in the order results arrive."""

    def __init__(self, concurrency: int, clock: Callable[[], datetime]) -> None:
        self.concurrency = concurrency
        self._clock = clock
        self._outcomes: queue.SimpleQueue[_Outcome | BaseException] = queue.SimpleQueue()
        self._started = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: asyncio.Queue[_Job | None] | None = None
        self._thread = threading.Thread(target=self._serve, name="health-checks", daemon=True)

    def __enter__(self) -> _CheckRunner:
        self._thread.start()
        self._started.wait()
        if not self._thread.is_alive():  # it could not even open its clients
            self._thread.join()
            self.next_outcome()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop: checks still running (only when the caller failed) are cancelled."""
        if self._thread.is_alive():
            self._put(None)
        self._thread.join()

    def submit(self, job: _Job) -> None:
        self._put(job)

    def next_outcome(self) -> _Outcome:
        item = self._outcomes.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def _put(self, job: _Job | None) -> None:
        assert self._loop is not None and self._jobs is not None
        self._loop.call_soon_threadsafe(self._jobs.put_nowait, job)

    def _serve(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # the caller waits on the queue: tell it instead of hanging
            self._outcomes.put(exc)
        finally:
            self._started.set()

    async def _main(self) -> None:
        self._loop, self._jobs = asyncio.get_running_loop(), asyncio.Queue()
        slots = deque(range(self.concurrency))
        running: set[asyncio.Task[None]] = set()
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    build_client(max_connections=CHECKS_PER_CLIENT, max_keepalive_connections=CHECKS_PER_CLIENT)
                )
                for _ in range(math.ceil(self.concurrency / CHECKS_PER_CLIENT))
            ]
            self._started.set()
            try:
                while (job := await self._jobs.get()) is not None:
                    slot = slots.popleft()
                    task = asyncio.create_task(self._run(job, clients[slot % len(clients)], slot, slots))
                    running.add(task)
                    task.add_done_callback(running.discard)
            finally:
                for task in running:
                    task.cancel()
                await asyncio.gather(*running, return_exceptions=True)

    async def _run(self, job: _Job, client: httpx.AsyncClient, slot: int, slots: deque[int]) -> None:
        try:
            for check_type in job.types:
                started_at = self._clock()
                result = await run_check(client, job.target, check_type, job.context)
                self._outcomes.put(_Outcome(job, result, started_at))
        finally:
            slots.append(slot)  # before the caller hears the job is done and submits the next
            self._outcomes.put(_Outcome(job, None, self._clock()))


def _free(now: datetime) -> Q:
    return Q(health_claim_token__isnull=True) | Q(health_check_claimed_until__lt=now)


def _due(now: datetime) -> Q:
    return Q(next_health_check_at__isnull=True) | Q(next_health_check_at__lte=now)


def _claim_seconds(instance: AIInstance, types: Sequence[str], context: CheckContext) -> float:
    """How long a claim lasts: its checks' deadlines, one after the other, and the time to store them."""
    deadlines = (check_deadline(kind, timeout=instance.timeout, context=context) for kind in types)
    return sum(deadlines) + CLAIM_MARGIN_SECONDS


def _claim(claimable: QuerySet[AIInstance], *, token: uuid.UUID, now: datetime, seconds: float) -> bool:
    """Claim one instance with a conditional UPDATE; False when another worker holds it (or it is not claimable)."""
    until = now + timedelta(seconds=seconds)
    return claimable.filter(_free(now)).update(health_claim_token=token, health_check_claimed_until=until) == 1


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


def _sweepable(*, force: bool, now: datetime) -> QuerySet[AIInstance]:
    candidates = AIInstance.objects.filter(is_active=True).exclude(status__in=_NOT_SWEPT)
    return candidates if force else candidates.filter(_due(now))


def health_sweep(
    *,
    now: datetime | None = None,
    instance_ids: Sequence[int] | None = None,
    check_types: Sequence[str] | None = None,
    force: bool = False,
    rng: random.Random | None = None,
) -> SweepReport:
    """Check every due instance once, storing each result as it comes in.

    1. List the due instances (one query).
    2. Keep `max_concurrent_health_checks` instances in flight: claim the next one (skipped when
       another sweep holds it or has checked it meanwhile) and hand it to the check runner.
    3. Store each result as it arrives; when an instance's checks are all in, schedule its next
       check and release its claim in one UPDATE.
    The sweep's clock is `now` (default: the time it starts) plus the time elapsed since.
    """
    started = time.monotonic()
    origin = now or timezone.now()
    rng = rng or random.Random()

    def clock() -> datetime:
        return origin + timedelta(seconds=time.monotonic() - started)

    report = SweepReport()
    candidates = _sweepable(force=force, now=origin)
    if instance_ids is not None:
        candidates = candidates.filter(pk__in=instance_ids)
    pending = deque(candidates.order_by("next_health_check_at", "pk").values_list("pk", flat=True))
    report.due = len(pending)
    if pending:
        token = uuid.uuid4()
        try:
            _sweep(pending, token=token, force=force, check_types=check_types, clock=clock, rng=rng, report=report)
        finally:
            AIInstance.objects.filter(health_claim_token=token).update(
                health_claim_token=None, health_check_claimed_until=None
            )
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _sweep(
    pending: deque[int],
    *,
    token: uuid.UUID,
    force: bool,
    check_types: Sequence[str] | None,
    clock: Callable[[], datetime],
    rng: random.Random,
    report: SweepReport,
) -> None:
    resolver = LBSettingsResolver()
    jitter = config_value("health_checks.jitter_seconds")
    in_flight = 0
    with _CheckRunner(config_value("global.instance_manager.max_concurrent_health_checks"), clock) as runner:
        while pending or in_flight:
            while pending and in_flight < runner.concurrency:
                job = _claim_job(pending.popleft(), token, force, check_types, clock(), rng, resolver, jitter)
                if job is not None:
                    report.claimed += 1
                    in_flight += 1
                    runner.submit(job)
            if not in_flight:
                break
            outcome = runner.next_outcome()
            if outcome.result is None:
                in_flight -= 1
                AIInstance.objects.filter(pk=outcome.job.instance.pk, health_claim_token=token).update(
                    next_health_check_at=outcome.job.next_at,
                    health_check_due=outcome.job.due,
                    health_claim_token=None,
                    health_check_claimed_until=None,
                )
            else:
                _store(outcome.job, outcome.result, outcome.started_at, report)


def _claim_job(
    pk: int,
    token: uuid.UUID,
    force: bool,
    check_types: Sequence[str] | None,
    now: datetime,
    rng: random.Random,
    resolver: LBSettingsResolver,
    jitter: int,
) -> _Job | None:
    """The instance's checks, claimed for their deadlines; None when it is no longer ours to check."""
    instance = AIInstance.objects.filter(pk=pk).first()
    if instance is None:
        return None
    types, due = _types_due(instance, check_types, now, rng)
    context = _context(instance)
    claimable = _sweepable(force=force, now=now).filter(pk=pk)
    if not _claim(claimable, token=token, now=now, seconds=_claim_seconds(instance, types, context)):
        return None
    lb = resolver.get(instance.provider_type, instance.model_name)
    return _Job(
        instance=instance,
        target=_target(instance),
        context=context,
        types=types,
        thresholds=Thresholds(lb.healthy_threshold, lb.unhealthy_threshold),
        next_at=now + timedelta(seconds=lb.health_check_interval + rng.uniform(0, jitter)),
        due=due,
    )


def _store(job: _Job, result: CheckResult, started_at: datetime, report: SweepReport) -> None:
    check, transition = health_record(
        instance_id=job.instance.pk, result=result, thresholds=job.thresholds, started_at=started_at
    )
    if check is None:
        report.stale += 1
        logger.info(
            "stale health result dropped", extra={"instance": job.instance.instance_name, "check": result.check_type}
        )
        return
    report.checks += 1
    report.transitions += transition is not None
    report.results.append(
        {
            "instance_id": str(job.instance.instance_id),
            "instance_name": job.instance.instance_name,
            "check_type": result.check_type,
            "status": result.status,
            "score": result.score,
            "response_time_ms": result.response_time_ms,
            "issues": result.issues,
            "new_status": transition.new_status if transition else None,
        }
    )


def health_check_instance(*, instance: AIInstance, check_type: str, now: datetime | None = None) -> HealthCheck:
    """Run one check now (API, dashboard, admin), claiming the instance like a sweep does."""
    if check_type not in CheckType.values:
        raise ValueError(f"unknown check type {check_type!r}")
    now = now or timezone.now()
    token = uuid.uuid4()
    context = _context(instance)
    claimable = AIInstance.objects.filter(pk=instance.pk)
    if not _claim(claimable, token=token, now=now, seconds=_claim_seconds(instance, [check_type], context)):
        raise ConflictError("A health check of this instance is already running; try again shortly.")
    try:
        claimed = AIInstance.objects.get(pk=instance.pk)
        settings_ = LBSettingsResolver().get(claimed.provider_type, claimed.model_name)

        async def run() -> CheckResult:
            async with build_client(max_connections=4) as client:
                return await run_check(client, _target(claimed), check_type, _context(claimed))

        result = asyncio.run(run())
        check, _ = health_record(
            instance_id=instance.pk,
            result=result,
            thresholds=Thresholds(settings_.healthy_threshold, settings_.unhealthy_threshold),
            started_at=now,
        )
    finally:
        AIInstance.objects.filter(pk=instance.pk, health_claim_token=token).update(
            health_claim_token=None, health_check_claimed_until=None
        )
    if check is None:
        raise ConflictError("A newer health check of this instance was recorded meanwhile.")
    return check
