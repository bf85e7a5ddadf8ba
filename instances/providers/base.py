"""The common interface of the provider adapters: inputs, results, errors.

Everything here is a plain dataclass so that health checks, the gateway, Celery
tasks and benchmarks can share the adapters without touching the ORM: callers
load an instance, build a ProviderTarget (with the key already decrypted) and
get plain results back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import httpx

Message = Mapping[str, Any]
"""One OpenAI-format chat message ({"role": ..., "content": ...})."""


class ErrorKind(StrEnum):
    """What went wrong, in the terms callers act on (retry elsewhere, cool down, mark unhealthy)."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    SERVER_ERROR = "server_error"
    BAD_REQUEST = "bad_request"
    BAD_RESPONSE = "bad_response"
    TOO_LARGE = "too_large"  # the provider's reply (or one stream event) exceeds the transport's bound
    REDIRECT = "redirect"


# Transient failures: the same call may well succeed if made again. Which kinds are the
# instance's fault (breaker, failover) is instances.balancer.breaker.outcome_for_error's table.
RETRYABLE_KINDS = frozenset({ErrorKind.TIMEOUT, ErrorKind.CONNECTION, ErrorKind.RATE_LIMITED, ErrorKind.SERVER_ERROR})


class ProviderError(Exception):
    """The one error every adapter raises, whatever the transport or provider said.

    `message` is safe to store and show: it never contains the API key.
    `retry_after` is in seconds, from Retry-After / retry-after-ms when the
    provider sent one.
    """

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        *,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        """Survive pickling (Celery results, process pools): Exception's default would lose the keyword fields."""
        return (
            type(self),
            (self.kind, self.message),
            {"status_code": self.status_code, "retry_after": self.retry_after},
        )

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS

    def __str__(self) -> str:
        status = f" (HTTP {self.status_code})" if self.status_code is not None else ""
        return f"{self.kind}{status}: {self.message}"


@dataclass(frozen=True, slots=True)
class ProviderTarget:
    """Where and how to call one instance. endpoint_url is the API base, e.g. https://api.openai.com/v1."""

    provider_type: str
    endpoint_url: str
    api_key: str = field(default="", repr=False)
    model_name: str = ""
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A non-streamed completion.

    `raw` is the provider's own JSON; `openai_response` is the same reply in the
    OpenAI chat.completion shape (the same object for OpenAI-shaped providers),
    which is what the gateway returns to its clients.
    """

    content: str
    finish_reason: str | None
    usage: Usage
    reasoning: bool
    model: str
    raw: dict[str, Any] = field(repr=False)
    openai_response: dict[str, Any] = field(repr=False)
    latency_ms: float

    @property
    def reasoning_only(self) -> bool:
        """The whole token budget went on thinking: a healthy reply from a reasoning model, not an error."""
        return self.reasoning and not self.content and self.finish_reason == "length"


@dataclass(frozen=True, slots=True)
class ModelListing:
    ids: tuple[str, ...]
    latency_ms: float


@dataclass(frozen=True, slots=True)
class ServerMetrics:
    """A self-hosted server's own view of its load (vLLM's Prometheus gauges); None where not exported.

    gpu_cache_usage_perc is a fraction in 0..1, as vLLM reports it despite the name.
    """

    num_requests_running: float | None
    num_requests_waiting: float | None
    gpu_cache_usage_perc: float | None
    latency_ms: float


class ProviderAdapter(ABC):
    """One provider's HTTP dialect. Adapters are stateless; registry.adapter_for hands out shared instances."""

    provider_type: ClassVar[str]
    default_base_url: ClassVar[str | None]
    # Whether server_metrics can report a queue (vLLM's num_requests_waiting): the queue-length
    # scaling trigger has data only for such providers.
    publishes_queue_metrics: ClassVar[bool] = False
    # False where the provider has no models endpoint: probe with a 1-token chat instead.
    supports_model_listing: ClassVar[bool] = True

    @abstractmethod
    async def list_models(self, client: httpx.AsyncClient, target: ProviderTarget) -> ModelListing:
        """The model ids the endpoint serves; the cheapest authenticated call, so it doubles as a probe."""

    @abstractmethod
    async def chat(
        self,
        client: httpx.AsyncClient,
        target: ProviderTarget,
        messages: Sequence[Message],
        *,
        max_tokens: int | None,
        temperature: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ChatResult:
        """One completion of target.model_name. `extra` holds further OpenAI-style parameters (top_p, stop, ...)."""

    @abstractmethod
    def stream_chat(
        self,
        client: httpx.AsyncClient,
        target: ProviderTarget,
        messages: Sequence[Message],
        *,
        max_tokens: int | None,
        temperature: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """OpenAI chat.completion.chunk dicts; the last one carries `usage` (with empty `choices`).

        Errors before the first chunk surface on the first iteration, so a caller
        can fail over until it has forwarded something. Close the iterator
        (contextlib.aclosing) when abandoning it early, to free the connection.
        """

    async def server_metrics(self, client: httpx.AsyncClient, target: ProviderTarget) -> ServerMetrics | None:
        """The server's own queue figures; hosted APIs do not publish any."""
        return None
