"""Scaling backends: how a scale action changes something real (see base.py)."""

from __future__ import annotations

from scaling.backends.base import Backend, BackendError, ScaleRequest, ScaleResult
from scaling.backends.kubernetes import KubernetesBackend
from scaling.backends.pool import PoolBackend
from scaling.backends.webhook import WebhookBackend
from scaling.choices import ScalingBackend

BACKENDS: dict[str, Backend] = {
    ScalingBackend.POOL: PoolBackend(),
    ScalingBackend.WEBHOOK: WebhookBackend(),
    ScalingBackend.KUBERNETES: KubernetesBackend(),
}


def backend_for(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise BackendError(f"Unknown scaling backend {name!r}.") from None


__all__ = ["BACKENDS", "Backend", "BackendError", "ScaleRequest", "ScaleResult", "backend_for"]
