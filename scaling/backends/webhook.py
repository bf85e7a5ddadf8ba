"""The webhook backend: tell an operator's endpoint how many replicas the group should have.

POST, JSON body (keys sorted, compact)::

    {"event_id": 42, "group": {"id": 3, "name": "zai-production"}, "current": 2, "desired": 4,
     "direction": "up", "trigger": "utilization", "reason": "scale up 2 -> 4; ...", "timestamp": 1767225600}

signed like the alert webhooks when the group has a secret::

    X-ISHChat-Timestamp: <unix seconds>
    X-ISHChat-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

Any 2xx is success; anything else (3xx included: redirects are not followed, so the signed body
never lands somewhere the operator did not configure) is a BackendError and the event is retried.
Delivery is at least once: a receiver deduplicates by event_id. The replicas the operator starts
register themselves with group_id; stopped ones deregister.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from django.core.exceptions import ValidationError

from instances.endpoints import validate_endpoint_url
from ishchat import crypto
from scaling.backends.base import (
    BackendError,
    ScaleRequest,
    ScaleResult,
    clean_float,
    clean_int,
    clean_str,
    reject_unknown,
    settings_error,
)

if TYPE_CHECKING:
    from scaling.models import ProviderGroup

SIGNATURE_HEADER = "X-ISHChat-Signature"
TIMESTAMP_HEADER = "X-ISHChat-Timestamp"
USER_AGENT = "ishchat-scaling/1.0"
DEFAULT_TIMEOUT_SECONDS = 10.0
# How long replicas asked for may take to register before they stop counting as starting.
DEFAULT_STARTUP_GRACE_SECONDS = 600
ERROR_BODY_BYTES = 300


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def payload(request: ScaleRequest, *, now: datetime) -> dict[str, Any]:
    return {
        "event_id": request.event_id,
        "group": {"id": request.group_id, "name": request.group_name},
        "current": request.current,
        "desired": request.desired,
        "direction": request.direction,
        "trigger": request.trigger,
        "reason": request.reason,
        "timestamp": int(now.timestamp()),
    }


class WebhookBackend:
    name = "webhook"

    def clean_settings(self, raw: dict[str, Any], *, previous: dict[str, Any]) -> dict[str, Any]:
        """``secret``: absent keeps the stored one, "" clears it, text replaces it (stored encrypted)."""
        reject_unknown(raw, ("url", "secret", "timeout_seconds", "startup_grace_seconds"))
        url = clean_str(raw, "url", required=True, max_length=1000)
        try:
            url = validate_endpoint_url(url)
        except ValidationError as exc:
            raise settings_error(f"url: {' '.join(exc.messages)}") from None
        cleaned: dict[str, Any] = {
            "url": url,
            "timeout_seconds": clean_float(raw, "timeout_seconds", default=DEFAULT_TIMEOUT_SECONDS, low=0, high=60),
            "startup_grace_seconds": clean_int(
                raw, "startup_grace_seconds", default=DEFAULT_STARTUP_GRACE_SECONDS, low=0, high=86_400
            ),
        }
        if "secret" in raw:
            secret = clean_str(raw, "secret", required=False, max_length=500)
            if secret:
                cleaned["secret_encrypted"] = crypto.encrypt(secret)
        elif previous.get("secret_encrypted"):
            cleaned["secret_encrypted"] = previous["secret_encrypted"]
        return cleaned

    def public_settings(self, stored: dict[str, Any]) -> dict[str, Any]:
        shown = {key: value for key, value in stored.items() if key != "secret_encrypted"}
        shown["secret_set"] = bool(stored.get("secret_encrypted"))
        return shown

    def scale(self, group: ProviderGroup, request: ScaleRequest, *, now: datetime) -> ScaleResult:
        settings = group.backend_settings
        url = settings.get("url")
        if not url:
            raise BackendError("The webhook backend has no url.")
        body = json.dumps(payload(request, now=now), separators=(",", ":"), sort_keys=True).encode()
        timestamp = str(int(now.timestamp()))
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, TIMESTAMP_HEADER: timestamp}
        if settings.get("secret_encrypted"):
            try:
                secret = crypto.decrypt(settings["secret_encrypted"])
            except crypto.DecryptionError as exc:
                raise BackendError(str(exc)) from None
            headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
        timeout = float(settings.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
        try:
            with (
                httpx.Client(timeout=timeout, follow_redirects=False) as client,
                client.stream("POST", url, content=body, headers=headers) as response,
            ):
                status_code = response.status_code
                if not response.is_success:
                    snippet = _read_some(response, ERROR_BODY_BYTES).strip()
                    raise BackendError(f"HTTP {status_code}" + (f": {snippet}" if snippet else ""),
                                       details={"status_code": status_code})
        except httpx.HTTPError as exc:
            raise BackendError(f"{type(exc).__name__}: {exc}") from None
        return ScaleResult(f"webhook answered HTTP {status_code}", {"status_code": status_code})


def _read_some(response: httpx.Response, limit: int) -> str:
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit].decode(errors="replace")
