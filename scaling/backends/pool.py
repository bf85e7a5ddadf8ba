"""The standby pool: a group's registered instances beyond the active count wait in ``standby``.

Scale up (to ``desired``): instances being drained come back first (they are warm), then standby
ones, best first (highest health score, lowest latency, highest weight). Each must pass a basic
health check before it is routed to again: healthy -> ``healthy``; degraded -> ``starting``, so
the health sweeps decide with their anti-flap thresholds. One that fails stays where it was and
the next is tried. Too few passing candidates: what could be activated stays active and the
event fails (and is retried) with the shortfall.

Scale down: instances still ``starting`` go back to standby first (they serve nothing), then the
least useful serving ones (lowest health score, highest latency, lowest weight, fewest in-flight
requests) are set ``draining``: the balancer sends them nothing new, in-flight requests finish.
``drain_step`` (periodic) moves a drained instance to standby once its load is 0 or its
``drain_timeout_seconds`` (default 120) have passed.

Counts come from the instances' statuses every time, so a retried or resumed event only does
what is still missing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from django.db import transaction
from django.db.models import OuterRef, Subquery

from instances.choices import CheckStatus, InstanceStatus
from instances.health.services import health_check_instance
from instances.models import AIInstance, StatusTransition
from instances.services import instance_set_status
from ishchat.errors import ConflictError
from scaling.backends.base import BackendError, ScaleRequest, ScaleResult, clean_int, reject_unknown

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    from scaling.models import ProviderGroup

logger = logging.getLogger(__name__)

SOURCE = "scaling"
DEFAULT_DRAIN_TIMEOUT_SECONDS = 120
SERVING = (InstanceStatus.HEALTHY, InstanceStatus.DEGRADED)


class _DrainSource(TypedDict):
    drain_source: str | None  # source of the latest move to draining (see _drains_by_scaling)


def _usefulness(instance: AIInstance) -> tuple[float, float, int, int]:
    """Higher sorts as more useful: health score, then low latency, then weight, then spare capacity."""
    score = -1.0 if instance.health_score is None else instance.health_score
    latency = instance.last_response_time_ms if instance.last_response_time_ms is not None else float("inf")
    return (score, -latency, instance.weight, -instance.current_load)


def _move(instance: AIInstance, *, expected: str, status: str, reason: str) -> bool:
    """instance_set_status, unless the instance left ``expected`` meanwhile (a sweep, an operator)."""
    with transaction.atomic():
        fresh = AIInstance.objects.select_for_update().filter(pk=instance.pk, is_active=True).first()
        if fresh is None or fresh.status != expected:
            return False
        instance_set_status(instance=fresh, status=status, reason=reason, source=SOURCE)
    return True


def _drains_by_scaling() -> Subquery:
    """The source of an instance's latest move to draining (annotate with OuterRef("pk"))."""
    latest_drain = StatusTransition.objects.filter(
        instance=OuterRef("pk"), new_status=InstanceStatus.DRAINING
    ).order_by("-created_at", "-id")
    return Subquery(latest_drain.values("source")[:1])


class PoolBackend:
    name = "pool"

    def clean_settings(self, raw: dict[str, Any], *, previous: dict[str, Any]) -> dict[str, Any]:
        reject_unknown(raw, ("drain_timeout_seconds",))
        return {
            "drain_timeout_seconds": clean_int(
                raw, "drain_timeout_seconds", default=DEFAULT_DRAIN_TIMEOUT_SECONDS, low=0, high=86_400
            )
        }

    def public_settings(self, stored: dict[str, Any]) -> dict[str, Any]:
        return {"drain_timeout_seconds": stored.get("drain_timeout_seconds", DEFAULT_DRAIN_TIMEOUT_SECONDS)}

    def scale(self, group: ProviderGroup, request: ScaleRequest, *, now: datetime) -> ScaleResult:
        members = list(
            AIInstance.objects.filter(group=group, is_active=True).annotate(drain_source=_drains_by_scaling())
            .order_by("pk")
        )
        serving = [m for m in members if m.status in SERVING]
        starting = [m for m in members if m.status == InstanceStatus.STARTING]
        current = len(serving) + len(starting)
        if request.desired > current:
            return self._scale_up(members, request, current)
        if request.desired < current:
            return self._scale_down(serving, starting, request, current)
        return ScaleResult(f"already at {current}", {"activated": [], "drained": [], "parked": []})

    def _scale_up(
        self, members: Sequence[WithAnnotations[AIInstance, _DrainSource]], request: ScaleRequest, current: int
    ) -> ScaleResult:
        needed = request.desired - current
        # Scaling's own drains come back first; an operator's drain is left alone.
        draining = sorted(
            (m for m in members if m.status == InstanceStatus.DRAINING and m.drain_source == SOURCE),
            key=_usefulness,
            reverse=True,
        )
        standby = sorted((m for m in members if m.status == InstanceStatus.STANDBY), key=_usefulness, reverse=True)
        activated: list[str] = []
        rejected: list[dict[str, Any]] = []
        for candidate in [*draining, *standby]:
            if len(activated) == needed:
                break
            try:
                check = health_check_instance(instance=candidate, check_type="basic")
            except ConflictError as exc:  # a sweep holds it right now; try the next one
                rejected.append({"instance": candidate.instance_name, "why": str(exc)})
                continue
            if check.status not in (CheckStatus.HEALTHY, CheckStatus.DEGRADED):
                rejected.append({"instance": candidate.instance_name, "why": f"basic check {check.status}: "
                                 + ("; ".join(check.issues[:2]) or check.error_kind or "no detail")})
                continue
            status = InstanceStatus.HEALTHY if check.status == CheckStatus.HEALTHY else InstanceStatus.STARTING
            reason = (f"scaling event {request.event_id}: activated after a {check.status} basic check "
                      f"({request.current} -> {request.desired})")
            if not _move(candidate, expected=candidate.status, status=status, reason=reason):
                rejected.append({"instance": candidate.instance_name, "why": "its status changed meanwhile"})
                continue
            activated.append(candidate.instance_name)
        details = {"activated": activated, "rejected": rejected, "drained": [], "parked": []}
        if len(activated) < needed:
            raise BackendError(
                f"activated {len(activated)} of {needed} needed: "
                + (f"{len(rejected)} candidate(s) failed verification, " if rejected else "")
                + "no other standby instance in the group",
                details=details,
            )
        return ScaleResult(f"activated {', '.join(activated)}", details)

    def _scale_down(self, serving: Sequence[AIInstance], starting: Sequence[AIInstance], request: ScaleRequest,
                    current: int) -> ScaleResult:
        excess = current - request.desired
        reason = f"scaling event {request.event_id}: scale down {request.current} -> {request.desired}"
        parked: list[str] = []
        drained: list[str] = []
        for instance in [*starting, *sorted(serving, key=_usefulness)]:
            if len(parked) + len(drained) == excess:
                break
            if instance.status == InstanceStatus.STARTING:
                if _move(instance, expected=instance.status, status=InstanceStatus.STANDBY, reason=reason):
                    parked.append(instance.instance_name)
            elif _move(instance, expected=instance.status, status=InstanceStatus.DRAINING, reason=reason):
                drained.append(instance.instance_name)
        note = "; ".join(part for part in (
            f"draining {', '.join(drained)}" if drained else "",
            f"back to standby {', '.join(parked)}" if parked else "",
        ) if part)
        return ScaleResult(note, {"activated": [], "rejected": [], "drained": drained, "parked": parked})


def drain_step(*, now: datetime) -> list[str]:
    """Move instances that scaling set draining to standby once idle or past their group's drain timeout.

    Only drains started by scaling (the latest transition to draining has source "scaling"):
    an operator's drain stays the operator's. One query, plus one write per instance moved.
    """
    latest_drain = StatusTransition.objects.filter(
        instance=OuterRef("pk"), new_status=InstanceStatus.DRAINING
    ).order_by("-created_at", "-id")
    candidates = (
        AIInstance.objects.filter(is_active=True, status=InstanceStatus.DRAINING, group__isnull=False)
        .select_related("group")
        .annotate(
            drain_source=_drains_by_scaling(),
            drain_started_at=Subquery(latest_drain.values("created_at")[:1]),
        )
        .filter(drain_source=SOURCE)
        .order_by("pk")
    )
    moved = []
    for instance in candidates:
        group = instance.group
        assert group is not None
        timeout = group.backend_settings.get("drain_timeout_seconds", DEFAULT_DRAIN_TIMEOUT_SECONDS)
        started = instance.drain_started_at
        timed_out = started is not None and now - started >= timedelta(seconds=timeout)
        if instance.current_load == 0 or timed_out:
            why = "drained (no requests in flight)" if instance.current_load == 0 else (
                f"drain timeout {timeout} s with {instance.current_load} request(s) still in flight")
            standby = InstanceStatus.STANDBY
            if _move(instance, expected=InstanceStatus.DRAINING, status=standby, reason=f"scaling: {why}"):
                moved.append(instance.instance_name)
    return moved
