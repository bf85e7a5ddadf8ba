"""Provider adapters: talk to OpenAI, ZAI, Perplexity, Anthropic and self-hosted OpenAI-compatible servers.

Plain dataclasses in and out, no ORM: usable from async views, Celery tasks and
benchmarks alike. Typical use::

    async with build_client() as client:
        adapter = adapter_for(target.provider_type)
        listing = await adapter.list_models(client, target)
"""

from .base import (
    ChatResult,
    ErrorKind,
    ModelListing,
    ProviderAdapter,
    ProviderError,
    ProviderTarget,
    ServerMetrics,
    Usage,
)
from .registry import adapter_for
from .transport import build_client

__all__ = [
    "ChatResult",
    "ErrorKind",
    "ModelListing",
    "ProviderAdapter",
    "ProviderError",
    "ProviderTarget",
    "ServerMetrics",
    "Usage",
    "adapter_for",
    "build_client",
]
