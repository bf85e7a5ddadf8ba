"""Writes of auto-scaling. The API, the admin actions, the Celery tasks and the management command
all call these; none re-implements them.

Detection and effects stay apart: ``group_evaluate`` decides (``scaling.engine.decide``) and records
the decision as the group's ``last_decision`` and, for an action, a pending ScalingEvent;
``group_apply_event`` carries one event out through the group's backend, later, in a worker.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import F, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from ishchat.errors import ConflictError
from ishchat.locks import lease, lease_acquire, lease_release
from ishchat.models import Lease
from ishchat.queue import enqueue_on_commit
from scaling import selectors
from scaling.backends import BackendError, ScaleRequest, backend_for
from scaling.backends.pool import drain_step
from scaling.choices import ScalingBackend, ScalingEventStatus, ScalingTrigger
from scaling.engine import (
    Decision,
    Direction,
    GroupState,
    ScalingPolicy,
    ScheduledWindow,
    TriggerTargets,
    advance_state,
    decide,
    decide_manual,
)
from scaling.engine.decision import MISSING_BLOCK_SECONDS
from scaling.engine.policy import parse_moment
from scaling.engine.simulation import (
    PolicySpec,
    RunResult,
    SimConfig,
    Trace,
    hpa_reference_policy,
    simulate,
    trace_from_rows,
)
from scaling.metrics import metric_window, request_rate_history
from scaling.models import ProviderGroup, ScalingEvent

logger = logging.getLogger(__name__)

# ProviderGroup columns that make up the engine's ScalingPolicy (same names there).
POLICY_FIELDS = (
    "min_instances",
    "max_instances",
    "target_utilization",
    "scale_up_threshold",
    "scale_down_threshold",
    "tolerance",
    "scale_up_cooldown",
    "scale_down_cooldown",
    "scale_down_stabilization_seconds",
    "scale_up_limit_percent",
    "scale_up_limit_instances",
    "scale_down_limit_percent",
    "triggers",
    "predictive_mode",
    "instance_capacity_rpm",
    "forecast_horizon_seconds",
    "forecast_season_minutes",
    "forecast_seasonality",
    "schedules",
)
DESCRIPTIVE_FIELDS = ("group_name", "provider_type", "model_name", "description")
SETTABLE_FIELDS = frozenset({*DESCRIPTIVE_FIELDS, *POLICY_FIELDS, "auto_scaling_enabled", "backend",
                             "backend_settings"})
# New groups take these from the configuration (auto_scaling.*) unless given.
CONFIGURED_DEFAULTS = (
    "min_instances",
    "max_instances",
    "scale_up_threshold",
    "scale_down_threshold",
    "scale_up_cooldown",
    "scale_down_cooldown",
    "scale_down_stabilization_seconds",
)

# Sizes that keep one evaluation bounded in time; the engine's rules do not cap them.
MAX_FORECAST_HORIZON_SECONDS = 86_400
MAX_WINDOW_MINUTES = 366 * 1440

# Applying an event: attempt n that fails waits RETRY_BASE_SECONDS * 2**(n-1) (30, 60, 120 s);
# the MAX_ATTEMPTS-th failure is final.
MAX_ATTEMPTS = 4
RETRY_BASE_SECONDS = 30
# A worker applying an event holds the lease scaling-event-<id> for APPLY_CLAIM_SECONDS and renews it
# every APPLY_CLAIM_SECONDS / 3 while the backend runs: an in_progress event whose lease lapsed belongs to
# a worker that died (SIGKILL, OOM, lost host), and the next reaper run hands it on.
APPLY_CLAIM_SECONDS = 10.0
# An event in_progress this long is handed on even if its claim is still renewed (a hung apply).
STALE_IN_PROGRESS = timedelta(minutes=5)
# Manual scaling pauses automatic scaling this long unless the call says otherwise.
DEFAULT_MANUAL_PAUSE_SECONDS = 900
EVALUATE_LEASE_SECONDS = 120
# Backends whose new replicas register themselves: until they do, they count as starting.
DEFAULT_STARTUP_GRACE_SECONDS = 600


def _configured(path: str, default: Any) -> Any:
    """config_value(path), or ``default`` where the configuration schema does not know the path."""
    from configuration.selectors import config_value

    try:
        value = config_value(path)
    except (KeyError, ValueError):
        return default
    return default if value is None else value


def auto_scaling_globally_enabled() -> bool:
    """auto_scaling.enabled: off stops every automatic action (evaluations still report)."""
    return bool(_configured("auto_scaling.enabled", True))


def manual_pause_seconds() -> int:
    return int(_configured("auto_scaling.manual_pause_seconds", DEFAULT_MANUAL_PAUSE_SECONDS))


def retry_delay(attempts: int) -> timedelta:
    """Wait after the ``attempts``-th failed attempt: 30 s * 2^(attempts - 1)."""
    return timedelta(seconds=RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0))


# --- policy -------------------------------------------------------------------------------------

def policy_of(group: ProviderGroup) -> ScalingPolicy:
    return ScalingPolicy.from_dict({name: getattr(group, name) for name in POLICY_FIELDS})


def group_simulation(
    *,
    group: ProviderGroup,
    trace: Trace | None = None,
    history_days: float | None = None,
    capacity_rpm: float | None = None,
    startup_seconds: tuple[float, float] = (60.0, 130.0),
    seed: int = 7,
    keep_events: bool = False,
    max_days: float = 30.0,
) -> tuple[Trace, SimConfig, list[RunResult]]:
    """What the group's policy, and the Kubernetes HPA v2 defaults beside it, would have done on
    `trace`, or on the group's own requests of the last `history_days` (scaling.engine.simulation).
    Changes nothing. ValidationError when the inputs cannot make a simulation."""
    capacity = capacity_rpm or group.instance_capacity_rpm
    if not capacity or not math.isfinite(capacity) or capacity <= 0:
        raise ValidationError({"capacity_rpm": ["Set the group's instance_capacity_rpm or give a capacity."]})
    bounds = {"min_instances": group.min_instances, "max_instances": group.max_instances}
    if trace is None:
        if history_days is None or not math.isfinite(history_days) or not 0 < history_days <= max_days:
            raise ValidationError({"history_days": [f"More than 0, at most {max_days:g}."]})
        history = request_rate_history(group=group, now=timezone.now(), minutes=int(history_days * 1440))
        first = next((index for index, value in enumerate(history) if value is not None), None)
        if first is None:
            raise ValidationError(
                {"history_days": [f"No recorded requests of {group.group_name} in the last {history_days:g} days."]}
            )
        rows = [(60.0 * index, value or 0.0) for index, value in enumerate(history[first:])]
        trace = trace_from_rows(f"{group.group_name}: recorded traffic, last {history_days:g} days", rows, **bounds)
    low, high = startup_seconds
    config = SimConfig(capacity_rpm=capacity, startup_min_s=low, startup_max_s=high, seed=seed)
    policy = policy_of(group)
    specs = [
        PolicySpec(f"group {group.group_name}"[:30], policy),
        PolicySpec("hpa-v2 defaults", hpa_reference_policy(target_utilization=policy.target_utilization)),
    ]
    return trace, config, [simulate(trace, spec, config, keep_events=keep_events) for spec in specs]


def group_policy_warnings(group: ProviderGroup) -> list[str]:
    """Valid but probably unintended settings of the group's policy (ScalingPolicy.warnings), and
    triggers whose metric the group's provider type cannot publish. Shown by the API, the admin and
    the dashboard; none of them stops the policy from being saved."""
    from instances.providers.registry import adapter_for

    try:
        notes = policy_of(group).warnings()
    except (TypeError, ValueError):
        return []  # an invalid policy: its errors say more (_policy_errors)
    if (group.triggers or {}).get("queue_length") is not None and not adapter_for(
        group.provider_type
    ).publishes_queue_metrics:
        notes.append(
            f"triggers.queue_length: {group.provider_type} instances publish no queue length (only vLLM-style "
            f"openai_compatible servers do), so this trigger never has data; after "
            f"{MISSING_BLOCK_SECONDS // 60} minutes without it, it stops blocking scale-down"
        )
    return notes


def _field_of(problem: str) -> str:
    """Which request field a ScalingPolicy.errors() message is about."""
    head = problem.split(" ", 1)[0]
    if head.startswith("triggers."):
        return "triggers"
    if problem.startswith("schedule "):
        return "schedules"
    if head in POLICY_FIELDS:
        return head
    if "step limit" in problem:
        return "scale_up_limit_instances"
    return "non_field_errors"


def _policy_errors(group: ProviderGroup) -> dict[str, list[str]]:
    """The engine's verdict on the group's policy (ScalingPolicy.errors), by field."""
    errors: dict[str, list[str]] = {}
    try:
        TriggerTargets.from_dict(group.triggers if isinstance(group.triggers, dict) else {"?": group.triggers})
    except (ValueError, TypeError) as exc:
        errors["triggers"] = [str(exc)]
    if not isinstance(group.schedules, list):
        errors["schedules"] = ["A list of scheduled windows is required."]
    else:
        for position, item in enumerate(group.schedules):
            try:
                ScheduledWindow.from_dict(item)
            except (ValueError, TypeError) as exc:
                errors.setdefault("schedules", []).append(f"schedule {position}: {exc}")
    if errors:
        return errors
    try:
        problems = policy_of(group).errors()
    except (ValueError, TypeError, AttributeError) as exc:
        return {"non_field_errors": [f"Invalid policy: {exc}"]}
    for problem in problems:
        errors.setdefault(_field_of(problem), []).append(problem)
    if group.forecast_horizon_seconds > MAX_FORECAST_HORIZON_SECONDS:
        errors.setdefault("forecast_horizon_seconds", []).append(
            f"forecast_horizon_seconds must be at most {MAX_FORECAST_HORIZON_SECONDS}"
        )
    durations = [item.get("duration_minutes") for item in group.schedules]
    if any(isinstance(minutes, int) and minutes > MAX_WINDOW_MINUTES for minutes in durations):
        errors.setdefault("schedules", []).append(f"duration_minutes must be at most {MAX_WINDOW_MINUTES}")
    return errors


def _validate(group: ProviderGroup) -> None:
    errors = _policy_errors(group)
    if errors:
        raise ValidationError(errors)
    group.full_clean(validate_unique=False)


def _clean_backend_settings(backend: str, raw: Any, *, previous: dict[str, Any]) -> dict[str, Any]:
    try:
        implementation = backend_for(backend)
    except BackendError as exc:
        raise ValidationError({"backend": [str(exc)]}) from None
    if not isinstance(raw, dict):
        raise ValidationError({"backend_settings": ["An object of settings is required."]})
    return implementation.clean_settings(raw, previous=previous)


def public_backend_settings(group: ProviderGroup) -> dict[str, Any]:
    """The settings as the API and admin show them: secrets never."""
    try:
        return backend_for(group.backend).public_settings(group.backend_settings or {})
    except BackendError:
        return {}


def _ensure_name_free(group_name: str, *, exclude_pk: int | None = None) -> None:
    taken = ProviderGroup.objects.filter(group_name=group_name)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise ConflictError(f"A provider group named {group_name!r} already exists.", field="group_name")


def _save(group: ProviderGroup, *, update_fields: list[str] | None = None) -> None:
    """Save (only the changed columns when updating); a lost race on the unique name becomes a 409."""
    try:
        with transaction.atomic():
            group.save(update_fields=update_fields)
    except IntegrityError as exc:
        if "group_name" in str(exc):
            raise ConflictError(f"A provider group named {group.group_name!r} already exists.",
                                field="group_name") from exc
        raise


def _cancel_pending(group: ProviderGroup, *, why: str, now: datetime, automatic_only: bool = False) -> int:
    pending = ScalingEvent.objects.filter(group=group, status=ScalingEventStatus.PENDING)
    if automatic_only:
        pending = pending.exclude(trigger=ScalingTrigger.MANUAL)
    return pending.update(status=ScalingEventStatus.CANCELLED, error=why[:2000], completed_at=now)


# --- groups -------------------------------------------------------------------------------------

def _prepared_new(group_name: str, provider_type: str, fields: dict[str, Any]) -> ProviderGroup:
    """An unsaved, validated group (ValidationError otherwise)."""
    unknown = set(fields) - SETTABLE_FIELDS
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
    values: dict[str, Any] = {name: _configured(f"auto_scaling.{name}", None) for name in CONFIGURED_DEFAULTS}
    values = {name: value for name, value in values.items() if value is not None}
    values.update(fields)
    backend = values.pop("backend", ScalingBackend.POOL)
    raw_settings = values.pop("backend_settings", {})
    group = ProviderGroup(group_name=group_name, provider_type=provider_type, backend=backend, **values)
    group.backend_settings = _clean_backend_settings(backend, raw_settings, previous={})
    group.desired_instances = group.min_instances
    _validate(group)
    return group


def _prepared_change(group: ProviderGroup, changes: dict[str, Any]) -> tuple[ProviderGroup, list[str]]:
    """A validated copy of ``group`` with ``changes`` applied, and the columns to save."""
    unknown = set(changes) - SETTABLE_FIELDS
    if unknown:
        raise ValidationError({name: ["This field cannot be changed here."] for name in sorted(unknown)})
    changes = dict(changes)
    changed = copy.copy(group)
    backend_changed = "backend" in changes and changes["backend"] != group.backend
    if backend_changed or "backend_settings" in changes:
        changed.backend = changes.pop("backend", group.backend)
        changed.backend_settings = _clean_backend_settings(
            changed.backend, changes.pop("backend_settings", {}), previous={} if backend_changed else
            dict(group.backend_settings)
        )
    changes.pop("backend", None)
    for name, value in changes.items():
        setattr(changed, name, value)
    _validate(changed)
    return changed, [*changes, "backend", "backend_settings", "updated_at"]


def group_validate(*, group: ProviderGroup | None, changes: dict[str, Any]) -> None:
    """Would group_create (group None) or group_update accept this? ValidationError if not (admin forms)."""
    if group is None:
        values = dict(changes)
        _prepared_new(values.pop("group_name", ""), values.pop("provider_type", ""), values)
    else:
        _prepared_change(group, changes)


def group_create(*, group_name: str, provider_type: str, **fields: Any) -> ProviderGroup:
    """A new group. Policy fields not given come from the configuration (auto_scaling.*), the rest
    from the model; desired starts at min_instances. Duplicate name: ConflictError (409)."""
    group = _prepared_new(group_name, provider_type, fields)
    _ensure_name_free(group_name)
    _save(group)
    return group


def _apply_changes(group: ProviderGroup, changes: dict[str, Any], *, now: datetime) -> ProviderGroup:
    changed, update_fields = _prepared_change(group, changes)
    if changed.group_name != group.group_name:
        _ensure_name_free(changed.group_name, exclude_pk=group.pk)
    with transaction.atomic():
        _save(changed, update_fields=update_fields)
        if changed.backend != group.backend or changed.backend_settings != group.backend_settings:
            _cancel_pending(changed, why="Cancelled: the group's backend settings changed.", now=now)
        elif group.auto_scaling_enabled and not changed.auto_scaling_enabled:
            _cancel_pending(changed, why="Cancelled: auto-scaling was disabled.", now=now, automatic_only=True)
    return changed


def group_update(*, group: ProviderGroup, changes: dict[str, Any], now: datetime | None = None) -> ProviderGroup:
    """PATCH: any settable field; the resulting policy must pass ScalingPolicy.errors()."""
    return _apply_changes(group, changes, now=now or timezone.now())


def group_configure_autoscaling(
    *, group: ProviderGroup, enabled: bool | None = None, now: datetime | None = None, **policy: Any
) -> ProviderGroup:
    """The seed's POST .../auto-scaling: ``enabled`` plus policy, backend and backend settings;
    fields not given keep their values. A bad policy changes nothing (ValidationError)."""
    changes = dict(policy)
    if enabled is not None:
        changes["auto_scaling_enabled"] = enabled
    return _apply_changes(group, changes, now=now or timezone.now())


def group_resume(*, group: ProviderGroup) -> ProviderGroup:
    """End a manual pause now: automatic scaling resumes at the next evaluation."""
    ProviderGroup.objects.filter(pk=group.pk).update(paused_until=None)
    group.paused_until = None
    return group


def group_delete(*, group: ProviderGroup) -> None:
    """Delete the group and its events; its instances stay registered, outside any group."""
    group.delete()


# --- evaluation ---------------------------------------------------------------------------------

def _recommendations(group: ProviderGroup) -> list[tuple[datetime, int]]:
    """The stabilization window's recommendations, carried over from the last decision."""
    kept = []
    for item in (group.last_decision or {}).get("recommendations", ()):
        try:
            moment, count = item
            kept.append((parse_moment(moment), int(count)))
        except (TypeError, ValueError):
            continue
    return kept


def _missing_since(group: ProviderGroup, now: datetime) -> dict[str, datetime]:
    """Since when each trigger's metric has been missing, carried over from the last decision when
    that decision is recent: after a gap in evaluations (auto-scaling off, the worker or beat
    down) nobody watched the metric, so its gap starts again rather than ending a block at once."""
    decision = group.last_decision or {}
    interval = float(_configured("auto_scaling.evaluation_interval", 30))
    try:
        evaluated_at = parse_moment(decision["evaluated_at"])
    except (KeyError, TypeError, ValueError):
        return {}
    if (now - evaluated_at).total_seconds() > 3 * interval:
        return {}
    kept = {}
    for name, moment in (decision.get("missing_since") or {}).items():
        try:
            kept[str(name)] = parse_moment(moment)
        except (TypeError, ValueError):
            continue
    return kept


def _state(group: ProviderGroup, counts: dict[str, int], now: datetime) -> GroupState:
    """Serving instances are active; ``starting`` ones count as capacity. For webhook and kubernetes,
    replicas asked for in the last startup_grace_seconds that have not registered yet count as
    starting too, so the same load is not answered twice."""
    active, starting = counts["active_instances"], counts["starting_instances"]
    if group.backend != ScalingBackend.POOL and group.last_scale_up_at is not None:
        grace = group.backend_settings.get("startup_grace_seconds", DEFAULT_STARTUP_GRACE_SECONDS)
        if now - group.last_scale_up_at < timedelta(seconds=grace):
            starting += max(0, group.desired_instances - active - starting)
    return GroupState(
        active=active,
        starting=starting,
        desired=group.desired_instances,
        last_scale_up_at=group.last_scale_up_at,
        last_scale_down_at=group.last_scale_down_at,
        paused_until=group.paused_until,
        recent_recommendations=_recommendations(group),
        missing_since=_missing_since(group, now),
    )


def _event_record(
    group: ProviderGroup, decision: Decision, record: dict[str, Any], *, status: str, actor: str = ""
) -> ScalingEvent | None:
    """Store an action (pending) or a skipped one; None if the group already has an open action."""
    event = ScalingEvent(
        group=group, status=status, backend=group.backend, decision=record, actor=actor[:200],
        **decision.event_fields(),
    )
    event.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            event.save()
    except IntegrityError:  # scalingevent_one_open_per_group: another action got there first
        if selectors.scaling_event_open(group.pk) is None:
            raise
        return None
    return event


def _held_since_last_action(group: ProviderGroup, decision: Decision) -> ScalingEvent | None:
    """The skipped event already recorded for this direction since the group's last action: a
    cooldown holds the same action back at every evaluation until it ends, and one record of it
    is enough (the group's last_decision shows every evaluation)."""
    last_action = ScalingEvent.objects.filter(group=group).exclude(status=ScalingEventStatus.SKIPPED).order_by("-pk")
    return (
        ScalingEvent.objects.filter(group=group, status=ScalingEventStatus.SKIPPED, direction=decision.direction,
                                    pk__gt=Coalesce(Subquery(last_action.values("pk")[:1]), 0))
        .order_by("-pk")
        .first()
    )


def _enqueue_apply(event: ScalingEvent) -> None:
    from scaling.tasks import scaling_apply_event

    enqueue_on_commit(scaling_apply_event, event.pk)


def _public(record: dict[str, Any], group: ProviderGroup, *, dry_run: bool) -> dict[str, Any]:
    return {**record, "group_id": group.pk, "group_name": group.group_name, "dry_run": dry_run,
            "paused_until": group.paused_until}


def group_evaluate(*, group_id: int, dry_run: bool = False, now: datetime | None = None) -> dict[str, Any]:
    """Evaluate one group now and return the decision (``Decision.to_dict()`` plus what was done).

    1. Lock: a lease ``scaling-group-<id>`` (a second evaluator gets ConflictError) and the group's
       row; a dry run takes neither and writes nothing.
    2. Build the policy from the group, the MetricWindow (scaling.metrics) and the GroupState
       (instance counts, cooldown times, paused_until, the stabilization window's
       recommendations from the last decision), and call ``scaling.engine.decide``.
    3. Record: an action as a pending ScalingEvent, applied after commit by scaling.apply_event;
       an action a cooldown held back as a skipped ScalingEvent; every decision, with its inputs,
       as the group's ``last_decision`` (``outcome`` says what happened: acted, skipped_cooldown,
       paused, waiting (an earlier action is still open), disabled, no_change, dry_run).
    4. Carry the state on (``advance_state``): cooldown times move only when an action was recorded.
    """
    now = now or timezone.now()
    if dry_run:
        return _evaluate(group_id, dry_run=True, now=now)
    with lease(f"scaling-group-{group_id}", ttl_seconds=EVALUATE_LEASE_SECONDS) as held:
        if not held:
            raise ConflictError(f"Provider group {group_id} is being evaluated right now; try again shortly.")
        return _evaluate(group_id, dry_run=False, now=now)


def _evaluate(group_id: int, *, dry_run: bool, now: datetime) -> dict[str, Any]:
    with transaction.atomic():
        queryset = ProviderGroup.objects.filter(pk=group_id)
        group = (queryset if dry_run else queryset.select_for_update()).get()
        state = _state(group, selectors.group_counts_of(group.pk), now)
        decision = decide(policy_of(group), metric_window(group=group, now=now), state, now)
        record = decision.to_dict()
        if dry_run:
            return _public({**record, "outcome": "dry_run", "event_id": None}, group, dry_run=True)

        enabled = group.auto_scaling_enabled and auto_scaling_globally_enabled()
        open_event = selectors.scaling_event_open(group.pk)
        event: ScalingEvent | None = None
        acted = False
        if decision.would_act or decision.skipped_by_cooldown:
            if not enabled:
                outcome = "disabled"
            elif open_event is not None:
                outcome, event = "waiting", open_event
            elif not decision.would_act and (held := _held_since_last_action(group, decision)) is not None:
                outcome, event = "skipped_cooldown", held  # one record per cooldown period, not one per evaluation
            else:
                status = ScalingEventStatus.PENDING if decision.would_act else ScalingEventStatus.SKIPPED
                event = _event_record(group, decision, record, status=status)
                if event is None:
                    outcome, event = "waiting", selectors.scaling_event_open(group.pk)
                elif decision.would_act:
                    outcome, acted = "acted", True
                    _enqueue_apply(event)
                else:
                    outcome = "skipped_cooldown"
        elif decision.paused and decision.direction != Direction.NONE:
            outcome = "paused"
        else:
            outcome = "no_change"

        stored = {**record, "outcome": outcome, "event_id": event.pk if event else None}
        fields: dict[str, Any] = {"last_decision": stored, "last_evaluated_at": now}
        if acted:
            carried = advance_state(state, decision)
            fields.update(last_scale_up_at=carried.last_scale_up_at, last_scale_down_at=carried.last_scale_down_at)
        ProviderGroup.objects.filter(pk=group.pk).update(**fields)
        for name, value in fields.items():
            setattr(group, name, value)
    if acted or outcome == "skipped_cooldown":
        logger.info("scaling decision", extra={"group": group.group_name, "outcome": outcome,
                                               "reason": decision.reason, "event_id": stored["event_id"]})
    return _public(stored, group, dry_run=False)


def groups_evaluate(
    *, group_ids: list[int] | None = None, dry_run: bool = False, now: datetime | None = None
) -> list[dict[str, Any]]:
    """Evaluate several groups (default: every enabled one), each under its own lease.

    A group another worker is evaluating is reported as ``locked``; one that fails is logged and
    reported as ``error``, and the others go on.
    """
    now = now or timezone.now()
    results = []
    for group_id in selectors.group_ids_enabled() if group_ids is None else group_ids:
        try:
            results.append(group_evaluate(group_id=group_id, dry_run=dry_run, now=now))
        except ProviderGroup.DoesNotExist:
            continue
        except ConflictError as exc:
            results.append({"group_id": group_id, "outcome": "locked", "reason": exc.message})
        except Exception as exc:
            logger.exception("scaling evaluation of group %s failed", group_id)
            results.append({"group_id": group_id, "outcome": "error", "reason": f"{type(exc).__name__}: {exc}"})
    return results


# --- manual scaling -----------------------------------------------------------------------------

def group_scale_manual(
    *,
    group: ProviderGroup,
    desired: int,
    reason: str = "",
    actor: str,
    pause_seconds: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Resize the group by hand, within its (scheduled) min/max, and pause automatic scaling for
    ``pause_seconds`` (default auto_scaling.manual_pause_seconds, else 900 s; 0: no pause).

    A pending automatic action is cancelled (superseded); one being applied right now is a
    ConflictError (409). The change is a ScalingEvent (trigger manual) applied like any other.
    """
    now = now or timezone.now()
    pause = manual_pause_seconds() if pause_seconds is None else pause_seconds
    if pause < 0:
        raise ValidationError({"pause_seconds": ["Must be zero or more."]})
    with transaction.atomic():
        group = ProviderGroup.objects.select_for_update().get(pk=group.pk)
        state = _state(group, selectors.group_counts_of(group.pk), now)
        try:
            text = f"{reason} (by {actor})" if reason else f"by {actor}"
            decision = decide_manual(policy_of(group), state, desired, now, text)
        except ValueError as exc:
            raise ValidationError({"desired_instances": [str(exc)]}) from None
        open_event = selectors.scaling_event_open(group.pk)
        if open_event is not None and open_event.status == ScalingEventStatus.IN_PROGRESS:
            raise ConflictError(
                f"Scaling event {open_event.pk} is being applied right now; try again when it has finished.",
                field="desired_instances",
            )
        _cancel_pending(group, why=f"Superseded by manual scaling to {desired} ({actor}).", now=now)
        record = decision.to_dict()
        event = None
        fields: dict[str, Any] = {"paused_until": now + timedelta(seconds=pause) if pause else None}
        if decision.direction != Direction.NONE:
            event = _event_record(group, decision, record, status=ScalingEventStatus.PENDING, actor=actor)
            assert event is not None  # the open one was cancelled above, in this transaction
            _enqueue_apply(event)
            fields["last_scale_up_at" if decision.direction == Direction.UP else "last_scale_down_at"] = now
        else:
            fields["desired_instances"] = desired
        stored = {**record, "outcome": "manual" if event else "no_change", "event_id": event.pk if event else None}
        fields["last_decision"] = stored
        ProviderGroup.objects.filter(pk=group.pk).update(**fields)
        for name, value in fields.items():
            setattr(group, name, value)
    return _public(stored, group, dry_run=False)


# --- carrying events out ------------------------------------------------------------------------

def group_apply_event(*, event_id: int, now: datetime | None = None) -> ScalingEvent | None:
    """Carry out one pending ScalingEvent through its group's backend; None if not ours to do.

    Claimed by a conditional UPDATE (pending and due -> in_progress, attempts + 1, started_at), so
    two workers never apply it twice. Success: completed, and the group's desired_instances
    becomes the event's new_count. Failure: back to pending with next_attempt_at after
    retry_delay (the periodic scaling.reap_and_drain picks it up), or failed after MAX_ATTEMPTS.
    Backends are idempotent towards the target, so a retry only does what is still missing.
    While the backend runs, the claim is kept alive (_claim_kept_alive) so that the reaper can tell a
    worker that died from one that is still working.
    """
    now = now or timezone.now()
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    claimed = ScalingEvent.objects.filter(due, pk=event_id, status=ScalingEventStatus.PENDING).update(
        status=ScalingEventStatus.IN_PROGRESS, started_at=now, attempts=F("attempts") + 1
    )
    if not claimed:
        return None
    with _claim_kept_alive(event_id):
        return _apply_claimed(event_id, now=now)


def _claim_name(event_id: int) -> str:
    return f"scaling-event-{event_id}"


@contextmanager
def _claim_kept_alive(event_id: int) -> Iterator[None]:
    """Hold the lease scaling-event-<id> while the body runs, renewed from a thread every
    APPLY_CLAIM_SECONDS / 3; released at the end. A worker that dies stops renewing it."""
    name, owner = _claim_name(event_id), uuid.uuid4().hex
    lease_acquire(name=name, owner=owner, ttl_seconds=APPLY_CLAIM_SECONDS)
    stop = threading.Event()

    def renew() -> None:
        try:
            while not stop.wait(APPLY_CLAIM_SECONDS / 3):
                try:
                    lease_acquire(name=name, owner=owner, ttl_seconds=APPLY_CLAIM_SECONDS)
                except DatabaseError as exc:  # the next renewal may succeed; the claim lapses if none does
                    logger.warning("renewing the claim of scaling event %s failed: %s", event_id, exc)
        finally:
            connections.close_all()  # this thread's own connections

    thread = threading.Thread(target=renew, name=f"scaling-claim-{event_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        lease_release(name=name, owner=owner)


def _apply_claimed(event_id: int, *, now: datetime) -> ScalingEvent:
    event = ScalingEvent.objects.select_related("group").get(pk=event_id)
    group = event.group
    error, details, final = "", {}, False
    if event.backend != group.backend:
        error, final = f"The group's backend changed from {event.backend} to {group.backend}.", True
    else:
        request = ScaleRequest(
            event_id=event.pk, group_id=group.pk, group_name=group.group_name, direction=event.direction,
            trigger=event.trigger, current=event.old_count, desired=event.new_count, reason=event.reason,
        )
        try:
            details = backend_for(event.backend).scale(group, request, now=now).as_dict()
        except BackendError as exc:
            error, details = str(exc) or type(exc).__name__, exc.details
        except Exception as exc:  # a bug in a backend must not leave the event in_progress
            logger.exception("scaling event %s crashed", event.pk)
            error = f"{type(exc).__name__}: {exc}"

    changes: dict[str, Any]
    if not error:
        changes = {"status": ScalingEventStatus.COMPLETED, "completed_at": now, "error": "", "result": details,
                   "next_attempt_at": None}
    elif final or event.attempts >= MAX_ATTEMPTS:
        changes = {"status": ScalingEventStatus.FAILED, "completed_at": now, "error": error[:2000], "result": details}
    else:
        changes = {"status": ScalingEventStatus.PENDING, "next_attempt_at": now + retry_delay(event.attempts),
                   "error": error[:2000], "result": details}
    with transaction.atomic():
        # Only our claim may finish it (the reaper may have handed a slow one on).
        finished = ScalingEvent.objects.filter(
            pk=event.pk, status=ScalingEventStatus.IN_PROGRESS, started_at=now
        ).update(**changes)
        if finished and not error:
            ProviderGroup.objects.filter(pk=group.pk).update(desired_instances=event.new_count)
    if error:
        logger.warning("scaling event failed", extra={"event_id": event.pk, "group": group.group_name,
                                                      "attempts": event.attempts, "error": error[:500]})
    event.refresh_from_db()
    return event


def scaling_events_lost(*, now: datetime) -> list[int]:
    """Ids of in_progress events whose worker is gone: claimed over APPLY_CLAIM_SECONDS ago (the lease
    is taken just after the claim) with no live claim lease, or in progress over STALE_IN_PROGRESS."""
    in_progress = ScalingEvent.objects.filter(
        status=ScalingEventStatus.IN_PROGRESS, started_at__lt=now - timedelta(seconds=APPLY_CLAIM_SECONDS)
    )
    candidates = dict(in_progress.values_list("pk", "started_at"))
    live = set(
        Lease.objects.filter(name__in=[_claim_name(pk) for pk in candidates], expires_at__gt=now).values_list(
            "name", flat=True
        )
    )
    return [
        pk
        for pk, started_at in candidates.items()
        if _claim_name(pk) not in live or started_at is None or started_at < now - STALE_IN_PROGRESS
    ]


def scaling_events_reap(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Ids of events to (re)apply now, after handing back those a dead worker left in_progress.

    A lost in_progress event (scaling_events_lost: its claim lapsed) goes back to pending, or to
    failed once it has used its attempts. Re-applying is safe: backends converge on the target.
    Run every evaluation interval, this resumes an apply within APPLY_CLAIM_SECONDS plus one interval
    of the worker's death.
    """
    now = now or timezone.now()
    lost = "The worker applying this stopped before it finished."
    stale = ScalingEvent.objects.filter(pk__in=scaling_events_lost(now=now), status=ScalingEventStatus.IN_PROGRESS)
    stale.filter(attempts__lt=MAX_ATTEMPTS).update(status=ScalingEventStatus.PENDING, next_attempt_at=now, error=lost)
    stale.filter(attempts__gte=MAX_ATTEMPTS).update(status=ScalingEventStatus.FAILED, completed_at=now, error=lost)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    return list(
        ScalingEvent.objects.filter(due, status=ScalingEventStatus.PENDING)
        .order_by("created_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def pool_drain(*, now: datetime | None = None) -> list[str]:
    """Draining instances (set by scaling) back to standby once idle or past the drain timeout."""
    return drain_step(now=now or timezone.now())
