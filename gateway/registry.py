"""A per-process snapshot of the routable registry, so routing reads no
database on the request path.

The snapshot is rebuilt when it is older than MAX_AGE_SECONDS or when the
registry version in the shared cache moved (every registry write bumps it:
instances.services.routing_changed). Instances are indexed by pool — (provider_type,
model_name) — so a selection only looks at the instances that serve the
requested model, however large the fleet.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

from django.core.cache import cache

from configuration.selectors import config_value
from instances.balancer.candidates import Candidate
from instances.models import AIInstance
from instances.services import REGISTRY_VERSION_KEY
from ishchat import crypto
from ishchat.outage import CACHE_OUTAGE, DATABASE_OUTAGE

MAX_AGE_SECONDS = 5.0
VERSION_CHECK_SECONDS = 0.5
# Statuses the balancer can ever route to (the candidate filter decides per request).
_ROUTABLE_FIELDS = (
    "pk",
    "instance_id",
    "instance_name",
    "provider_type",
    "model_name",
    "endpoint_url",
    "api_key_encrypted",
    "timeout",
    "max_stream_seconds",
    "status",
    "weight",
    "priority",
    "max_concurrent_requests",
    "last_response_time_ms",
    "health_score",
    "region",
    "group_id",
    "requests_per_minute",
    "tokens_per_minute",
    "temperature",
    "max_tokens",
)


@dataclass(frozen=True, slots=True)
class RoutableInstance:
    """What the gateway needs to call one instance, beside its Candidate."""

    pk: int
    instance_id: str
    name: str
    provider_type: str
    model_name: str
    endpoint_url: str
    api_key_encrypted: str = field(repr=False)
    timeout: float
    temperature: float
    max_tokens: int
    candidate: Candidate
    max_stream_seconds: int | None = None  # None: load_balancer.max_stream_seconds

    @property
    def pool(self) -> str:
        return f"{self.provider_type}/{self.model_name}"


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    version: object
    built_at: float
    by_pool: dict[tuple[str, str], tuple[RoutableInstance, ...]]
    by_model: dict[str, tuple[tuple[str, str], ...]]
    by_id: dict[str, RoutableInstance]

    def pool(self, provider_type: str | None, model_name: str) -> tuple[RoutableInstance, ...]:
        """Instances serving `model_name`, of one provider or (provider_type None) of any."""
        if provider_type:
            return self.by_pool.get((provider_type, model_name), ())
        return tuple(item for key in self.by_model.get(model_name, ()) for item in self.by_pool[key])

    @property
    def models(self) -> list[tuple[str, str]]:
        return sorted(self.by_pool)


def _rate_limits(provider_type: str) -> tuple[int | None, int | None, int | None]:
    limits = config_value(f"providers.{provider_type}.rate_limits")
    return limits.get("requests_per_minute"), limits.get("tokens_per_minute"), limits.get("requests_burst")


def build_snapshot(version: object = None) -> RegistrySnapshot:
    """One query over the active registry; deregistered instances are never routed."""
    by_pool: dict[tuple[str, str], list[RoutableInstance]] = defaultdict(list)
    by_id: dict[str, RoutableInstance] = {}
    provider_limits: dict[str, tuple[int | None, int | None, int | None]] = {}
    for row in AIInstance.objects.filter(is_active=True).order_by("pk").values(*_ROUTABLE_FIELDS):
        provider = row["provider_type"]
        if provider not in provider_limits:
            provider_limits[provider] = _rate_limits(provider)
        default_rpm, default_tpm, rpm_burst = provider_limits[provider]
        instance_id = str(row["instance_id"])
        candidate = Candidate(
            instance_id=instance_id,
            name=row["instance_name"],
            status=row["status"],
            weight=row["weight"],
            priority=row["priority"],
            max_concurrent=row["max_concurrent_requests"],
            # Live load comes from the balancer's leases, never from this row's current_load (a stale
            # number there must not block routing); the last health-check latency seeds the latency
            # estimate until gateway traffic measures one.
            latency_ewma_ms=row["last_response_time_ms"],
            health_score=row["health_score"],
            region=row["region"],
            group_id=row["group_id"],
            rpm_limit=row["requests_per_minute"] or default_rpm,
            tpm_limit=row["tokens_per_minute"] or default_tpm,
            rpm_burst=rpm_burst,
        )
        item = RoutableInstance(
            pk=row["pk"],
            instance_id=instance_id,
            name=row["instance_name"],
            provider_type=provider,
            model_name=row["model_name"],
            endpoint_url=row["endpoint_url"],
            api_key_encrypted=row["api_key_encrypted"],
            timeout=row["timeout"],
            max_stream_seconds=row["max_stream_seconds"],
            temperature=row["temperature"],
            max_tokens=row["max_tokens"],
            candidate=candidate,
        )
        by_pool[(provider, row["model_name"])].append(item)
        by_id[instance_id] = item
    by_model: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for key in sorted(by_pool):
        by_model[key[1]].append(key)
    return RegistrySnapshot(
        version=version,
        built_at=time.monotonic(),
        by_pool={key: tuple(items) for key, items in by_pool.items()},
        by_model={model: tuple(keys) for model, keys in by_model.items()},
        by_id=by_id,
    )


class _Holder:
    def __init__(self) -> None:
        self.snapshot: RegistrySnapshot | None = None
        self.checked_at = 0.0
        self.lock = threading.Lock()


_holder = _Holder()


def registry_snapshot(*, fresh: bool = False) -> RegistrySnapshot:
    """The current snapshot; rebuilt when stale, when the registry changed, or when `fresh`."""
    now = time.monotonic()
    snapshot = _holder.snapshot
    recent = snapshot is not None and now - snapshot.built_at < MAX_AGE_SECONDS
    if snapshot is not None and not fresh and recent and now - _holder.checked_at < VERSION_CHECK_SECONDS:
        return snapshot
    with _holder.lock:
        snapshot = _holder.snapshot
        # Cache unreachable: a version equal to no other, so the snapshot is rebuilt from the
        # database at every check (at most every VERSION_CHECK_SECONDS) until the cache is back.
        version = CACHE_OUTAGE.call(lambda: cache.get(REGISTRY_VERSION_KEY), fallback=object)
        _holder.checked_at = time.monotonic()
        if (
            fresh
            or snapshot is None
            or snapshot.version != version
            or time.monotonic() - snapshot.built_at >= MAX_AGE_SECONDS
        ):
            previous = snapshot
            if previous is None:
                snapshot = build_snapshot(version)
            else:  # database unreachable: route on the last snapshot, the database retried every RETRY_SECONDS
                snapshot = DATABASE_OUTAGE.call(lambda: build_snapshot(version), fallback=lambda: previous)
            _holder.snapshot = snapshot
        return snapshot


def reset_registry_snapshot() -> None:
    """Drop the cached snapshot (tests)."""
    _holder.snapshot = None
    _holder.checked_at = 0.0


_KEYS: dict[str, str] = {}


def api_key_for(item: RoutableInstance) -> str:
    """The decrypted provider key, cached per ciphertext so the hot path decrypts once."""
    from django.conf import settings

    if not item.api_key_encrypted:
        return settings.PROVIDER_API_KEYS.get(item.provider_type, "")
    key = _KEYS.get(item.api_key_encrypted)
    if key is None:
        key = crypto.decrypt(item.api_key_encrypted)
        if len(_KEYS) > 100_000:
            _KEYS.clear()
        _KEYS[item.api_key_encrypted] = key
    return key
