"""Writes to the registry. The API, admin actions, dashboard actions, Celery
tasks and management commands all call these; none re-implements them."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Case, F, PositiveIntegerField, Value, When
from django.utils import timezone

from configuration.selectors import config_value
from instances.choices import OPERATOR_STATUSES, InstanceStatus
from instances.endpoints import validate_endpoint_url
from instances.models import AIInstance, LoadPublication, StatusTransition
from ishchat import crypto
from ishchat.errors import ConflictError
from ishchat.outage import CACHE_OUTAGE
from scaling.models import ProviderGroup

# Fields PATCH and the admin may change directly (everything else has its own service).
UPDATABLE_FIELDS = frozenset(
    {
        "model_name",
        "instance_name",
        "endpoint_url",
        "region",
        "weight",
        "priority",
        "max_concurrent_requests",
        "requests_per_minute",
        "tokens_per_minute",
        "temperature",
        "max_tokens",
        "timeout",
        "max_stream_seconds",
        "tags",
        "metadata",
    }
)


def _set_api_key(instance: AIInstance, api_key: str) -> None:
    api_key = api_key.strip()
    if not api_key:
        instance.api_key_encrypted = ""
        instance.api_key_last4 = ""
        return
    instance.api_key_encrypted = crypto.encrypt(api_key)
    # Only a hint for operators; short keys show nothing at all.
    instance.api_key_last4 = api_key[-4:] if len(api_key) >= 12 else ""


def _group_or_error(group_id: int | None) -> ProviderGroup | None:
    if group_id is None:
        return None
    try:
        return ProviderGroup.objects.get(pk=group_id)
    except ProviderGroup.DoesNotExist:
        raise ValidationError({"group_id": [f"No provider group with id {group_id}."]}) from None


def _ensure_name_free(instance_name: str, *, exclude_pk: int | None = None) -> None:
    taken = AIInstance.objects.filter(instance_name=instance_name, is_active=True)
    if exclude_pk is not None:
        taken = taken.exclude(pk=exclude_pk)
    if taken.exists():
        raise ConflictError(f"An active instance named {instance_name!r} already exists.", field="instance_name")


# Bumped on every write that changes routing; gateway.registry rebuilds its
# per-process snapshot when it sees a new value.
REGISTRY_VERSION_KEY = "registry:version"


def _bump_registry_version() -> None:
    try:
        cache.incr(REGISTRY_VERSION_KEY)
    except ValueError:
        cache.set(REGISTRY_VERSION_KEY, 1, timeout=None)


def routing_changed() -> None:
    """Routing snapshots in every process rebuild once this transaction commits.

    With the cache unreachable the write still succeeds: snapshots then rebuild
    from the database (gateway.registry) and other processes catch up by age.
    """
    transaction.on_commit(lambda: CACHE_OUTAGE.call(_bump_registry_version, fallback=lambda: None))


def _save(instance: AIInstance, **save_kwargs: Any) -> None:
    """full_clean then save; a lost race on the unique name becomes a 409."""
    instance.full_clean(validate_unique=False, validate_constraints=False)
    try:
        with transaction.atomic():
            instance.save(**save_kwargs)
            routing_changed()
    except IntegrityError as exc:
        if "instance_name" in str(exc) or "unique_active_instance_name" in str(exc):
            raise ConflictError(
                f"An active instance named {instance.instance_name!r} already exists.", field="instance_name"
            ) from exc
        raise


def instance_register(
    *,
    provider_type: str,
    model_name: str,
    instance_name: str,
    endpoint_url: str,
    api_key: str | None = None,
    group_id: int | None = None,
    **options: Any,
) -> AIInstance:
    """Register an instance; it starts in `starting` until health checks promote it."""
    unknown = set(options) - UPDATABLE_FIELDS
    if unknown:
        raise ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
    try:
        endpoint_url = validate_endpoint_url(endpoint_url)
    except ValidationError as exc:
        raise ValidationError({"endpoint_url": exc.messages}) from None
    instance = AIInstance(
        provider_type=provider_type,
        model_name=model_name,
        instance_name=instance_name,
        endpoint_url=endpoint_url,
        group=_group_or_error(group_id),
        status=InstanceStatus.STARTING,
        **options,
    )
    if api_key:
        _set_api_key(instance, api_key)
    _ensure_name_free(instance_name)
    _save(instance)
    return instance


def instance_update(
    *,
    instance: AIInstance,
    changes: dict[str, Any],
    actor: str = "api",
) -> AIInstance:
    """Apply a partial update in one transaction. `api_key` sets a new key ("" clears
    it); `group_id` moves the instance (None removes it from its group); `status`
    is an operator status, recorded as a transition by `actor`."""
    changes = dict(changes)
    unknown = set(changes) - UPDATABLE_FIELDS - {"api_key", "group_id", "status"}
    if unknown:
        raise ValidationError({name: ["This field cannot be changed here."] for name in sorted(unknown)})
    if not instance.is_active:
        raise ValidationError({"non_field_errors": ["A deregistered instance cannot be changed."]})
    new_status = changes.pop("status", None)
    if new_status is not None and new_status not in OPERATOR_STATUSES:
        allowed = ", ".join(sorted(OPERATOR_STATUSES))
        raise ValidationError({"status": [f"Operators may set {allowed}; health checks set the rest."]})
    if "endpoint_url" in changes:
        try:
            changes["endpoint_url"] = validate_endpoint_url(changes["endpoint_url"])
        except ValidationError as exc:
            raise ValidationError({"endpoint_url": exc.messages}) from None
    if "group_id" in changes:
        instance.group = _group_or_error(changes.pop("group_id"))
    if "api_key" in changes:
        _set_api_key(instance, changes.pop("api_key") or "")
    if "instance_name" in changes and changes["instance_name"] != instance.instance_name:
        _ensure_name_free(changes["instance_name"], exclude_pk=instance.pk)
    for field, value in changes.items():
        setattr(instance, field, value)
    with transaction.atomic():
        _save(instance)
        if new_status is not None:
            instance_set_operator_status(instance=instance, status=new_status, actor=actor)
    return instance


def instance_set_load(*, instance: AIInstance, current_load: int, now: float | None = None) -> AIInstance:
    """A client's own in-flight count for the instance (requests it sends the provider itself).

    Stored as that many leases beside the gateway's (instances.balancer.state): they count
    for routing, capacity and scaling until load_balancer.lease_ttl_seconds pass without a new
    report, so a client that stops reporting cannot block the instance. The instance's
    current_load becomes the whole live count at once (gateway leases included).
    """
    from instances.balancer.state import get_state_store

    if current_load < 0:
        raise ValidationError({"current_load": ["Must be zero or more."]})
    if not instance.is_active:
        raise ValidationError({"non_field_errors": ["A deregistered instance has no load."]})
    now = time.time() if now is None else now
    store = get_state_store()
    instance_id = str(instance.instance_id)
    store.report_load(instance_id, current_load, now=now, ttl_seconds=config_value("load_balancer.lease_ttl_seconds"))
    live = store.in_flight([instance_id], now=now)[instance_id]
    instance_loads_publish(loads={instance.pk: live})
    instance.current_load = live
    return instance


def instance_loads_publish(
    *, loads: Mapping[int, int], publisher: str | None = None, now: datetime | None = None
) -> int:
    """Write the live in-flight counts {instance pk: count} into current_load, the copy that
    scaling, the dashboard, the API and the metrics read (gateway/load.py publishes every second).
    One UPDATE whatever the fleet, rows already right untouched; with `publisher` (the web
    process's name) its LoadPublication row records that the counts are fresh. Returns the rows
    changed."""
    by_count: dict[int, list[int]] = defaultdict(list)
    for pk, count in loads.items():
        by_count[count].append(pk)
    changed = 0
    if loads:
        count_of = Case(
            *(When(pk__in=pks, then=Value(count)) for count, pks in by_count.items()),
            default=F("current_load"),
            output_field=PositiveIntegerField(),
        )
        changed = (
            AIInstance.objects.filter(pk__in=list(loads), is_active=True)
            .exclude(current_load=count_of)
            .update(current_load=count_of)
        )
    if publisher is not None:
        now = now or timezone.now()
        if not LoadPublication.objects.filter(publisher=publisher).update(published_at=now, instances=len(loads)):
            LoadPublication.objects.update_or_create(
                publisher=publisher, defaults={"published_at": now, "instances": len(loads)}
            )
    return changed


def load_publications_prune(*, older_than: timedelta = timedelta(hours=1)) -> int:
    """Forget the publications of processes gone for `older_than`; returns the rows deleted."""
    deleted, _ = LoadPublication.objects.filter(published_at__lt=timezone.now() - older_than).delete()
    return deleted


def instance_set_status(*, instance: AIInstance, status: str, reason: str, source: str) -> AIInstance:
    """Move an instance to `status` and record the transition (no-op if unchanged)."""
    if status not in InstanceStatus.values:
        raise ValidationError({"status": [f"Unknown status {status!r}."]})
    if not instance.is_active:
        raise ValidationError({"non_field_errors": ["A deregistered instance cannot change status."]})
    old_status = instance.status
    if old_status == status:
        return instance
    with transaction.atomic():
        instance.status = status
        instance.status_reason = reason[:500]
        instance.save(update_fields=["status", "status_reason", "updated_at"])
        StatusTransition.objects.create(
            instance=instance, old_status=old_status, new_status=status, reason=reason[:500], source=source
        )
        routing_changed()
    return instance


def instance_set_operator_status(*, instance: AIInstance, status: str, actor: str) -> AIInstance:
    """An operator parks, drains or re-enables an instance (API, admin, dashboard)."""
    if status not in OPERATOR_STATUSES:
        allowed = ", ".join(sorted(OPERATOR_STATUSES))
        raise ValidationError({"status": [f"Operators may set {allowed}; health checks set the rest."]})
    return instance_set_status(instance=instance, status=status, reason=f"set by {actor}", source="operator")


def instance_enable(*, instance: AIInstance, actor: str) -> AIInstance:
    """Back into rotation: `starting` until the next health checks confirm it."""
    return instance_set_operator_status(instance=instance, status=InstanceStatus.STARTING, actor=actor)


def instance_deregister(*, instance: AIInstance, actor: str) -> AIInstance:
    """Stop routing to the instance for good; its history stays."""
    if not instance.is_active:
        return instance
    with transaction.atomic():
        old_status = instance.status
        instance.is_active = False
        instance.status = InstanceStatus.STOPPED
        instance.status_reason = f"deregistered by {actor}"
        instance.deregistered_at = timezone.now()
        instance.current_load = 0
        instance.save(
            update_fields=["is_active", "status", "status_reason", "deregistered_at", "current_load", "updated_at"]
        )
        StatusTransition.objects.create(
            instance=instance,
            old_status=old_status,
            new_status=InstanceStatus.STOPPED,
            reason=instance.status_reason,
            source="operator",
        )
        routing_changed()
    return instance


def instance_api_key(instance: AIInstance) -> str:
    """The key to call the provider with: the instance's own, else the provider's from the environment."""
    if instance.api_key_encrypted:
        return crypto.decrypt(instance.api_key_encrypted)
    return settings.PROVIDER_API_KEYS.get(instance.provider_type, "")


def instance_api_key_source(instance: AIInstance) -> str:
    if instance.api_key_encrypted:
        return "instance"
    if settings.PROVIDER_API_KEYS.get(instance.provider_type):
        return "environment"
    return "none"


def instances_rotate_encryption(*, batch_size: int = 500) -> int:
    """Re-encrypt every stored provider key with the first FIELD_ENCRYPTION_KEY."""
    rotated = 0
    queryset = AIInstance.objects.exclude(api_key_encrypted="").only("pk", "api_key_encrypted").order_by("pk")
    last_pk = 0
    while True:
        batch = list(queryset.filter(pk__gt=last_pk)[:batch_size])
        if not batch:
            return rotated
        with transaction.atomic():
            for instance in batch:
                new_token = crypto.rotate(instance.api_key_encrypted)
                AIInstance.objects.filter(pk=instance.pk).update(api_key_encrypted=new_token)
                rotated += 1
        last_pk = batch[-1].pk
