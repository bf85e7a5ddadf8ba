"""Writes to LoadBalancerConfig. The API and the admin both call these.

A row is checked in full before it is saved: the ranges in LB_CONFIG_LIMITS
(the model's validators leave most upper bounds open), breaker_max_open_seconds
>= breaker_open_seconds, then the model's own full_clean (choices, validators).
A second row for the same (provider_type, model_name) is a ConflictError (409),
also when a concurrent writer wins the race to the unique constraint.

Every write bumps the registry version once it commits (routing_changed), so
each process's routing snapshot, and with it the gateway's routing context,
which caches the settings per pool, rebuilds within a second and applies the
change. select-instance reads the table for each request anyway.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from instances.models import LoadBalancerConfig
from instances.services import routing_changed
from ishchat.errors import ConflictError

# Inclusive ranges of the numeric settings; the API's serializer takes its bounds from here.
LB_CONFIG_LIMITS: dict[str, tuple[int | float, int | float]] = {
    "health_check_interval": (1, 86_400),
    "healthy_threshold": (1, 100),
    "unhealthy_threshold": (1, 100),
    "min_health_score": (0.0, 1.0),
    "max_failover_attempts": (0, 10),
    "breaker_failure_threshold": (1, 1000),
    "breaker_failure_rate": (0.01, 1.0),
    "breaker_min_calls": (1, 10_000),
    "breaker_open_seconds": (1, 86_400),
    "breaker_max_open_seconds": (1, 86_400),
    "breaker_half_open_probes": (1, 100),
    "max_ejection_share": (0.0, 1.0),
    "session_ttl_seconds": (1, 30 * 86_400),
}

# What create and update may set; id and timestamps are the database's.
LB_CONFIG_FIELDS = frozenset(
    {
        "provider_type",
        "model_name",
        "strategy",
        "failover_enabled",
        "session_affinity",
        "is_active",
        *LB_CONFIG_LIMITS,
    }
)


def lb_config_check(config: LoadBalancerConfig) -> None:
    """Raise ValidationError (by field) unless the row may be saved; uniqueness is left to the write."""
    errors: dict[str, list[str]] = {}
    try:
        # Choices and the model's validators; also converts values to the fields' types.
        config.full_clean(validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        errors.update(exc.message_dict)
    for name, (low, high) in LB_CONFIG_LIMITS.items():
        value = getattr(config, name)
        if name not in errors and not low <= value <= high:
            errors[name] = [f"Must be between {low} and {high}."]
    if (
        "breaker_open_seconds" not in errors
        and "breaker_max_open_seconds" not in errors
        and config.breaker_max_open_seconds < config.breaker_open_seconds
    ):
        errors["breaker_max_open_seconds"] = [
            f"Must be at least breaker_open_seconds ({config.breaker_open_seconds}): "
            "the open time doubles from one up to the other."
        ]
    if errors:
        raise ValidationError(errors)


def _ensure_scope_free(config: LoadBalancerConfig) -> None:
    taken = LoadBalancerConfig.objects.filter(provider_type=config.provider_type, model_name=config.model_name)
    if config.pk is not None:
        taken = taken.exclude(pk=config.pk)
    if taken.exists():
        raise ConflictError(_scope_taken(config), field="model_name")


def _scope_taken(config: LoadBalancerConfig) -> str:
    return f"A load balancer config for {config} already exists."


def _save(config: LoadBalancerConfig) -> None:
    lb_config_check(config)
    _ensure_scope_free(config)
    try:
        with transaction.atomic():
            config.save()
            routing_changed()
    except IntegrityError as exc:
        if "unique_lb_config_scope" in str(exc) or "model_name" in str(exc):
            raise ConflictError(_scope_taken(config), field="model_name") from exc
        raise


def _unknown(fields: Any) -> None:
    unknown = set(fields) - LB_CONFIG_FIELDS
    if unknown:
        raise ValidationError({name: ["This field cannot be set."] for name in sorted(unknown)})


def lb_config_create(*, provider_type: str, model_name: str = "", **settings: Any) -> LoadBalancerConfig:
    """A new row for (provider_type, model_name); blank model_name covers all the provider's models."""
    _unknown(settings)
    config = LoadBalancerConfig(provider_type=provider_type, model_name=model_name, **settings)
    _save(config)
    return config


def lb_config_update(*, config: LoadBalancerConfig, changes: dict[str, Any]) -> LoadBalancerConfig:
    """Apply a partial update; nothing is written unless the whole row stays valid."""
    _unknown(changes)
    original = {name: getattr(config, name) for name in changes}
    for name, value in changes.items():
        setattr(config, name, value)
    try:
        _save(config)
    except (ValidationError, ConflictError):
        # The caller's object goes back to what is stored.
        for name, value in original.items():
            setattr(config, name, value)
        raise
    return config


def lb_config_delete(*, config: LoadBalancerConfig) -> None:
    """Remove the row; its scope falls back to the provider's row or the configuration file."""
    with transaction.atomic():
        config.delete()
        routing_changed()
