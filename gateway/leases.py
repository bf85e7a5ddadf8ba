"""Leases for calls a client makes to the provider itself: the source document's own flow.

    POST /api/instances/select-instance {"model_name": ..., "lease": true}
        -> the selected instance, "lease_id" and "lease_ttl_seconds"
    (the client calls the provider)
    POST /api/instances/{instance_id}/release {"lease_id": ..., "success": true, "latency_ms": 850, "tokens": 412}

A lease is the gateway's own in-flight lease (Router.admit, store.begin): it counts in the
instance's load (routing, capacity, the published current_load that scaling reads) until it is
released or its TTL passes, and selecting with `lease: true` is refused by an instance at
capacity, behind an open breaker or over its rate limit just as a gateway request is. Releasing
it feeds the outcome to the breaker, the latency estimate and the token limit exactly as a
gateway request's end does (store.finish), and writes a RequestLog row (request_id
lease-<token>), so the request rate, p95 and error rate count these calls too. A lease can be
released once: a second release, or one after the TTL, is refused (409) and feeds nothing. A
refused key the client reports (`auth`) counts as a plain failure: the key may be the client's,
so it never marks the instance unhealthy for everyone.

The lease id is signed (django.core.signing, SECRET_KEY): it names the instance, the pool and
whether the lease is a half-open breaker probe, so a client cannot forge one or move it to
another instance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from configuration.selectors import config_value
from gateway.proxy import request_status
from gateway.routing import Route, Routed, Router
from instances.balancer.breaker import Outcome, outcome_for_error
from instances.balancer.state import Lease, LeaseNotFound
from instances.models import AIInstance, RequestLog
from instances.providers.base import ErrorKind
from ishchat.errors import ConflictError

SALT = "ishchat.gateway.lease"
MAX_LEASE_SECONDS = 3600
# A reported 429 cools the instance for every client: a client may not make that longer than this.
MAX_REPORTED_RETRY_AFTER = 120


@dataclass(frozen=True, slots=True)
class Leased:
    routed: Routed
    lease_id: str
    ttl_seconds: float


def lease_take(router: Router, route: Route, *, ttl_seconds: float | None = None, **select: Any) -> Leased:
    """Select an instance of `route` and take an in-flight lease on it for `ttl_seconds`
    (default load_balancer.lease_ttl_seconds). NoEligibleInstance when none can take one."""
    ttl = float(ttl_seconds or config_value("load_balancer.lease_ttl_seconds"))
    routed, lease = router.admit(route, lease_seconds=lambda _item: ttl, **select)
    payload = [lease.instance_id, lease.pool, lease.token, int(lease.probe)]
    return Leased(routed, signing.dumps(payload, salt=SALT), ttl)


def lease_release(
    *,
    instance: AIInstance,
    lease_id: str,
    success: bool = True,
    error: str | None = None,
    latency_ms: float | None = None,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    retry_after: float | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """Give a select-instance lease back with the call's outcome (see the module docstring).

    `error`: a provider error kind (ErrorKind: timeout, rate_limited, server_error, ...) when the
    call failed; a failure without one counts as server_error. Returns what was recorded."""
    try:
        instance_id, pool, token, probe = signing.loads(lease_id, salt=SALT)
    except (signing.BadSignature, ValueError, TypeError) as exc:
        raise ValidationError({"lease_id": ["Not a lease this manager handed out."]}) from exc
    if instance_id != str(instance.instance_id):
        raise ValidationError({"lease_id": ["This lease is for another instance."]})
    kind = None if success else (error or ErrorKind.SERVER_ERROR)
    if success and error:
        raise ValidationError({"error": ["A successful call has no error; send success: false with it."]})
    router = Router()
    provider, _, model = pool.partition("/")
    route = Route(None if provider == "*" else provider, model)
    members = router.snapshot.pool(route.provider_type, route.model_name)
    item = router.snapshot.by_id.get(instance_id)
    lease = Lease(
        instance_id=instance_id,
        pool=pool,
        token=token,
        probe=bool(probe),
        tpm_limit=item.candidate.tpm_limit if item is not None else None,
    )
    tokens = prompt_tokens + completion_tokens
    outcome = outcome_for_error(kind)
    if outcome is Outcome.AUTH_FAILURE:
        # The client called the provider with its own credentials: a refused key may be the
        # client's, so it counts as a plain failure and never marks the instance unhealthy.
        outcome = Outcome.FAILURE
    # The row first, in a transaction the lease's end completes: a database outage fails the row
    # and leaves the lease live (the client's retry can release it), a lease already gone rolls
    # the row back.
    with transaction.atomic():
        RequestLog.objects.create(
            request_id=f"lease-{token}",
            instance=instance,
            provider_type=instance.provider_type,
            model_name=instance.model_name,
            status=request_status(kind),
            total_latency_ms=latency_ms,
            upstream_latency_ms=latency_ms,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=tokens,
            error="" if kind is None else f"reported by the client: {kind}",
            created_at=timezone.now(),
        )
        try:
            event = router.store.finish(
                lease,
                outcome=outcome,
                now=time.time() if now is None else now,
                breaker=router.policy_for(route, members, None).breaker,
                pool_size=len(members),
                latency_ms=latency_ms if kind in (None, ErrorKind.TIMEOUT) else None,
                tokens=tokens,
                retry_after=retry_after,
                require_live=True,
            )
        except LeaseNotFound:
            raise ConflictError("The lease expired or was already released; nothing was recorded.") from None
    return {
        "released": True,
        "instance_id": instance_id,
        "outcome": str(outcome),
        "breaker_event": event.value if event is not None else None,
    }


__all__ = ["MAX_LEASE_SECONDS", "MAX_REPORTED_RETRY_AFTER", "Leased", "lease_release", "lease_take"]
