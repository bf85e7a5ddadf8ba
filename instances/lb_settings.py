"""Effective balancing and health settings for one (provider, model).

A LoadBalancerConfig row naming the model wins over the provider's row with a
blank model, which wins over the configuration service (runtime > env > file >
defaults). Resolved in bulk so a sweep of thousands of instances reads the
table once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from configuration.selectors import config_value
from instances.models import LoadBalancerConfig


@dataclass(frozen=True, slots=True)
class LBSettings:
    strategy: str
    health_check_interval: int
    healthy_threshold: int
    unhealthy_threshold: int
    min_health_score: float
    failover_enabled: bool
    max_failover_attempts: int
    breaker_failure_threshold: int
    breaker_failure_rate: float
    breaker_min_calls: int
    breaker_open_seconds: int
    breaker_max_open_seconds: int
    breaker_half_open_probes: int
    max_ejection_share: float
    session_affinity: bool
    session_ttl_seconds: int
    source: str = "configuration"


def _from_configuration(provider_type: str) -> LBSettings:
    lb = config_value("load_balancer")
    breaker = lb["breaker"]
    provider_interval = config_value(f"providers.{provider_type}.health_check_interval", None)
    return LBSettings(
        strategy=lb["strategy"],
        health_check_interval=provider_interval or lb["health_check_interval"],
        healthy_threshold=lb["healthy_threshold"],
        unhealthy_threshold=lb["unhealthy_threshold"],
        min_health_score=lb["min_health_score"],
        failover_enabled=lb["failover_enabled"],
        max_failover_attempts=lb["max_failover_attempts"],
        breaker_failure_threshold=breaker["failure_threshold"],
        breaker_failure_rate=breaker["failure_rate"],
        breaker_min_calls=breaker["min_calls"],
        breaker_open_seconds=breaker["open_seconds"],
        breaker_max_open_seconds=breaker["max_open_seconds"],
        breaker_half_open_probes=breaker["half_open_probes"],
        max_ejection_share=breaker["max_ejection_share"],
        session_affinity=lb["session_affinity"],
        session_ttl_seconds=lb["session_ttl_seconds"],
    )


_ROW_FIELDS = [f.name for f in fields(LBSettings) if f.name != "source"]


def _from_row(row: LoadBalancerConfig) -> LBSettings:
    scope = f"{row.provider_type}/{row.model_name or '*'}"
    return LBSettings(**{name: getattr(row, name) for name in _ROW_FIELDS}, source=f"load_balancer_config {scope}")


class LBSettingsResolver:
    """Resolve settings for many (provider, model) pairs with one query."""

    def __init__(self) -> None:
        self._rows = {
            (row.provider_type, row.model_name): row for row in LoadBalancerConfig.objects.filter(is_active=True)
        }
        self._cache: dict[tuple[str, str], LBSettings] = {}

    def get(self, provider_type: str, model_name: str) -> LBSettings:
        key = (provider_type, model_name)
        if key not in self._cache:
            row = self._rows.get(key) or self._rows.get((provider_type, ""))
            self._cache[key] = _from_row(row) if row else _from_configuration(provider_type)
        return self._cache[key]


def lb_settings_for(provider_type: str, model_name: str) -> LBSettings:
    return LBSettingsResolver().get(provider_type, model_name)
