"""The OpenAI-compatible gateway: authentication, validation, routing with failover, streaming, accounting.

One implementation behind two front doors: the raw ASGI app that serves /v1/
in production (gateway/asgi.py) and the Django views (gateway/views.py). Both
hand over headers and body and get a `Reply` back.

Failover, per request:

1. The model resolves to routes (resolve_model): an alias's models in order,
   `provider/model`, or a bare model served by any provider.
2. On each route, at most 1 + max_failover_attempts upstream attempts (1 when
   failover_enabled is off), each on an instance not tried before by this
   request: select with the tried instances excluded, then store.begin
   (in-flight lease, breaker, rate limit). An instance that refuses at begin
   is excluded and another selected, without spending an attempt.
3. Every attempt ends with store.finish: the breaker outcome, the latency
   estimate and the tokens used. A success answers. A fault of the instance
   (connection, timeout, 429, 5xx, 404, a bad or redirected reply, and
   401/403, which also marks that instance unhealthy: a key is per instance)
   moves on to another instance after a 20-80 ms jittered pause. A fault of
   the request (400, 413) answers at once: another instance would refuse it too.
4. When a route has no eligible instance left or its attempts are spent, the
   next route (the alias's next fallback model).
5. Nothing left: 502 naming every attempt and its error, or 503 with the
   balancer's reason when no attempt could be made.

A stream follows the same steps until its first chunk has arrived; from then
on it is committed to that instance: a later error ends the stream with an
error event and `data: [DONE]`.

Deadlines, per attempt (transport.Deadline; the provider's read timeout only
bounds each read): a completion has the instance's `timeout` for the whole
reply; a stream has it until its first chunk and its maximum duration
(the instance's `max_stream_seconds`, else load_balancer.max_stream_seconds)
for the whole stream. A miss is a `timeout`: a breaker failure, and failover
until the first chunk; a stream cut at its maximum duration ends with an error
event and `data: [DONE]`. The in-flight lease lasts exactly the attempt's
deadline, taken before the lease, so it never lapses while the attempt runs;
the attempt's end releases it. When every attempt timed out the answer is 504.

A client that leaves (the front door cancels the work) is logged once, as
`client_closed`, whatever the request was doing.

Latency fed to the peak-EWMA estimate: the whole reply for a completion,
time to first chunk for a stream, the time waited for a timeout. Errors that
come back fast (refused connections, 5xx, 429) feed the breaker but not the
estimate, where they would make a failing instance look fast.

Nothing here writes to the database on the request path: RequestLog rows go
to gateway.logbuffer; the only database access is the cached API-key lookup,
the routing snapshot refresh (both in a thread, at most every 0.5 s for the
snapshot) and marking an instance unhealthy after an auth failure.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import random
import re
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.utils import timezone

from configuration.selectors import config_value
from gateway.auth import Authenticator, fresh_connection
from gateway.clients import ClientPool
from gateway.logbuffer import RequestLogBuffer, request_log_buffer
from gateway.registry import RegistrySnapshot, RoutableInstance, api_key_for, registry_snapshot
from gateway.routing import NoEligibleInstance, Route, Routed, Router, resolve_model
from instances.balancer.breaker import BreakerEvent, Outcome, outcome_for_error
from instances.balancer.candidates import DEGRADED, HEALTHY
from instances.balancer.state import Lease
from instances.choices import RequestStatus
from instances.lb_settings import LBSettings, LBSettingsResolver
from instances.providers import ErrorKind, ProviderError, ProviderTarget, Usage, adapter_for
from instances.providers.openai import parse_usage
from instances.providers.transport import Deadline
from ishchat import jsonsafe
from ishchat.errors import ServiceUnavailableError
from ishchat.outage import DATABASE_ERRORS, DATABASE_OUTAGE
from ishchat.request_context import set_request_id

logger = logging.getLogger(__name__)

R = TypeVar("R")

BACKOFF_SECONDS = (0.02, 0.08)
ROUTING_REFRESH_SECONDS = 0.5
MAX_BODY_BYTES = 8 * 1024 * 1024
CLIENT_CLOSED_STATUS = 499  # nginx's code for "the client went away first"; only ever logged

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
_IDS = random.Random()  # request ids need to be unique, not secret: no system call per request
os.register_at_fork(after_in_child=_IDS.seed)  # forked workers must not repeat each other's ids
# Body fields the gateway consumes; everything else goes to the provider as is.
_OWN_FIELDS = frozenset(
    {"model", "messages", "stream", "stream_options", "temperature"}
    | {"max_tokens", "max_completion_tokens", "session_id"}
)
_JSON_HEADERS = {"content-type": "application/json"}
_STREAM_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache", "x-accel-buffering": "no"}
_DONE = b"data: [DONE]\n\n"


# --- Replies and errors -------------------------------------------------------


@dataclass(slots=True)
class Reply:
    """What a front door sends: a JSON body, or a server-sent-event stream of bytes."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    stream: StreamBody | None = None


class StreamBody:
    """A committed stream's bytes. Its relay generator has already been started (the first
    item taken), so `aclose()` always runs the relay's cleanup (lease, upstream connection,
    RequestLog row), even when the front door never sends a byte of it."""

    def __init__(self, first: bytes, relay: AsyncGenerator[bytes, None]) -> None:
        self._first: bytes | None = first
        self._relay = relay

    def __aiter__(self) -> StreamBody:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await self._relay.__anext__()

    async def aclose(self) -> None:
        self._first = None
        await self._relay.aclose()


class GatewayError(Exception):
    """An answer in OpenAI's error shape: {"error": {"message", "type", "param", "code", ...}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.code = code
        self.param = param
        self.details = dict(details or {})
        self.headers = dict(headers or {})

    def payload(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.error_type, "param": self.param, "code": self.code}
        return {"error": error | self.details}

    def reply(self, headers: Mapping[str, str]) -> Reply:
        return Reply(self.status, _JSON_HEADERS | self.headers | dict(headers), body=dumps(self.payload()))


def dumps(payload: Any) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _sse(payload: Any) -> bytes:
    return b"data: " + dumps(payload) + b"\n\n"


# --- The request body ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    temperature: float | None
    max_tokens: int | None
    extra: dict[str, Any]
    session_id: str | None
    include_usage: bool  # the client asked for the usage chunk at the end of a stream


def _invalid(message: str, param: str | None = None) -> GatewayError:
    return GatewayError(400, message, param=param, code="invalid_request")


def _number(body: Mapping[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2:
        raise _invalid(f"`{name}` must be a number between 0 and 2.", name)
    return float(value)


def _positive_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(f"`{name}` must be a positive integer.", name)
    return value


def _loggable(value: str | None, name: str) -> None:
    """A field the RequestLog row stores: a NUL would make PostgreSQL refuse the row, so it is refused here."""
    if value and "\x00" in value:
        raise _invalid(f"`{name}` must not contain NUL characters.", name)


def parse_chat_request(raw: bytes, headers: Mapping[str, str]) -> ChatRequest:
    """Validate a chat.completions body; GatewayError (400) says what is wrong.

    The session is body `session_id`, else the X-Session-ID header, else OpenAI's `user`.
    """
    try:
        body = jsonsafe.loads(raw, allow_nul=True)  # content goes upstream as is; the logged fields are checked
    except jsonsafe.JSONRefused as exc:
        raise _invalid(f"The body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _invalid("The body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _invalid("`model` is required.", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _invalid("`messages` must be a non-empty array.", "messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid(f"messages[{index}] must be an object with `role` and `content`.", f"messages[{index}]")
        role = message.get("role")
        if not isinstance(role, str) or not role:
            raise _invalid(f"messages[{index}].role is required.", f"messages[{index}].role")
        content = message.get("content")
        calls_a_tool = bool(message.get("tool_calls") or message.get("function_call"))
        if not (isinstance(content, str | list) or (content is None and calls_a_tool)):
            raise _invalid(
                f"messages[{index}].content must be a string or an array of content parts.",
                f"messages[{index}].content",
            )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("`stream` must be a boolean.", "stream")
    stream_options = body.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise _invalid("`stream_options` must be an object.", "stream_options")
    max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    session = body.get("session_id") or headers.get("x-session-id") or body.get("user")
    if session is not None and not isinstance(session, str):
        raise _invalid("`session_id` and `user` must be strings.", "session_id")
    _loggable(model, "model")
    _loggable(session, "session_id" if body.get("session_id") else "user")
    return ChatRequest(
        model=model.strip(),
        messages=messages,
        stream=stream,
        temperature=_number(body, "temperature"),
        max_tokens=max_tokens,
        extra={key: value for key, value in body.items() if key not in _OWN_FIELDS},
        session_id=session or None,
        include_usage=bool(stream_options.get("include_usage")),
    )


# --- Routing context, refreshed off the event loop ----------------------------


@dataclass(frozen=True, slots=True)
class RoutingContext:
    """Everything routing reads on the request path, built in a thread: the registry
    snapshot, a Router whose settings are resolved, every model name's routes,
    the balancing settings per pool. Using it touches no database and no configuration."""

    router: Router
    routes: Mapping[str, tuple[Route, ...]]
    settings: Mapping[tuple[str, str], LBSettings]
    aliases: Mapping[str, list[str]]
    checked_at: float
    max_stream_seconds: int  # load_balancer.max_stream_seconds: an instance's own overrides it

    @property
    def snapshot(self) -> RegistrySnapshot:
        return self.router.snapshot

    def routes_for(self, model: str) -> tuple[Route, ...]:
        return self.routes.get(model) or (Route(None, model),)

    def settings_for(self, route: Route, pool: tuple[RoutableInstance, ...]) -> LBSettings:
        return self.settings[(route.provider_type or pool[0].provider_type, route.model_name)]


def build_routing_context(previous: RoutingContext | None = None) -> RoutingContext:
    """Synchronous (database, cache, configuration): call it from a thread."""
    fresh_connection()
    snapshot = registry_snapshot()
    aliases = config_value("load_balancer.model_aliases")
    max_stream_seconds = config_value("load_balancer.max_stream_seconds")
    now = time.monotonic()
    if (
        previous is not None
        and previous.snapshot is snapshot
        and previous.aliases == aliases
        and previous.max_stream_seconds == max_stream_seconds
    ):
        return replace(previous, checked_at=now)
    router = Router(snapshot=snapshot)
    resolver = LBSettingsResolver()
    settings = {key: resolver.get(*key) for key in snapshot.by_pool}
    for key, pool in snapshot.by_pool.items():
        router.policy_for(Route(*key), pool, None)  # resolves and caches the pool's settings inside the router
    names = set(snapshot.by_model) | {f"{p}/{m}" for p, m in snapshot.by_pool} | set(aliases)
    routes = {name: tuple(resolve_model(name, snapshot)) for name in names}
    return RoutingContext(
        router=router,
        routes=routes,
        settings=settings,
        aliases=aliases,
        checked_at=now,
        max_stream_seconds=max_stream_seconds,
    )


class RoutingCache:
    """The current RoutingContext; past `refresh_seconds` one request refreshes it in a
    thread while concurrent ones keep using the previous one. When a refresh fails (database
    or cache unreachable) the previous context keeps serving."""

    def __init__(self, *, refresh_seconds: float = ROUTING_REFRESH_SECONDS) -> None:
        self.refresh_seconds = refresh_seconds
        self._context: RoutingContext | None = None
        self._refreshing = False

    async def current(self) -> RoutingContext:
        context = self._context
        if context is not None and (self._refreshing or time.monotonic() - context.checked_at < self.refresh_seconds):
            return context
        self._refreshing = True
        try:
            context = await sync_to_async(build_routing_context, thread_sensitive=True)(self._context)
        except Exception:
            if self._context is None:
                raise
            # The database or cache is unreachable: keep routing on the registry last seen.
            logger.warning("Routing refresh failed; routing on the previous registry snapshot", exc_info=True)
            context = replace(self._context, checked_at=time.monotonic())
        finally:
            self._refreshing = False
        self._context = context
        return context

    def invalidate(self) -> None:
        self._context = None


# --- One proxied request ------------------------------------------------------


@dataclass(slots=True)
class Attempt:
    instance: RoutableInstance
    error: ProviderError | None = None

    def describe(self) -> dict[str, Any]:
        error = self.error
        return {
            "instance": self.instance.name,
            "instance_id": self.instance.instance_id,
            "model": self.instance.pool,
            "error": str(error.kind) if error else None,
            "status_code": error.status_code if error else None,
        }


@functools.lru_cache(maxsize=4096)
def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _target(item: RoutableInstance) -> ProviderTarget:
    return ProviderTarget(
        provider_type=item.provider_type,
        endpoint_url=item.endpoint_url,
        api_key=api_key_for(item),
        model_name=item.model_name,
        timeout=item.timeout,
    )


def _instance_fault(error: ProviderError) -> bool:
    """Whether another instance may do better: the breaker blames the instance, not the request."""
    return outcome_for_error(error.kind) is not Outcome.SUCCESS


def request_status(error_kind: str | None) -> str:
    """The RequestLog status of a call that ended with this provider error kind (None: no error)."""
    if error_kind is None:
        return RequestStatus.SUCCESS
    if error_kind == ErrorKind.TIMEOUT:
        return RequestStatus.TIMEOUT
    if error_kind == ErrorKind.RATE_LIMITED:
        return RequestStatus.RATE_LIMITED
    return RequestStatus.ERROR


class _Proxy:
    """The state of one chat request through the failover loop (steps in the module docstring)."""

    def __init__(
        self, gateway: Gateway, context: RoutingContext, request: ChatRequest, request_id: str, started: float
    ) -> None:
        self.gateway = gateway
        self.context = context
        self.request = request
        self.request_id = request_id
        self.started = started
        self.created_at = timezone.now()
        self.attempts: list[Attempt] = []
        self.unavailable: list[tuple[Route, NoEligibleInstance]] = []
        self.routing_ms = 0.0
        self.upstream_ms = 0.0
        self.pause_first = False
        self.logged = False  # the RequestLog row is written once, however the request ends

    # -- the loop --

    async def run(self) -> Reply:
        try:
            return await self._run()
        except asyncio.CancelledError:  # the client left: the front door cancelled the work
            if not self.logged:
                self._log(RequestStatus.CLIENT_CLOSED, CLIENT_CLOSED_STATUS, error="client closed")
            raise

    async def _run(self) -> Reply:
        request = self.request
        tried: set[str] = set()
        routes = self.context.routes_for(request.model)
        if not any(self.context.snapshot.pool(r.provider_type, r.model_name) for r in routes):
            raise GatewayError(
                404, f"The model `{request.model}` does not exist or no instance serves it.", code="model_not_found"
            )
        for route in routes:
            pool = self.context.snapshot.pool(route.provider_type, route.model_name)
            if not pool:
                continue
            settings = self.context.settings_for(route, pool)
            budget = 1 + settings.max_failover_attempts if settings.failover_enabled else 1
            for _ in range(budget):
                admitted = await self._admit(route, tried)
                if admitted is None:
                    break
                routed, lease, deadline = admitted
                tried.add(routed.instance.instance_id)
                attempt = Attempt(routed.instance)
                self.attempts.append(attempt)
                if request.stream:
                    reply = await self._open_stream(routed, lease, attempt, deadline)
                else:
                    reply = await self._complete(routed, lease, attempt, deadline)
                if reply is not None:
                    return reply
                assert attempt.error is not None
                if not _instance_fault(attempt.error):
                    return self._error_reply(self._request_fault(attempt.error))
                self.pause_first = True
        return self._error_reply(self._nothing_left())

    async def _admit(self, route: Route, tried: set[str]) -> tuple[Routed, Lease, Deadline] | None:
        """Select an instance of the route not tried yet and take its lease for the attempt's
        deadline; None when none is eligible."""
        if self.pause_first:  # after a failure: a short jittered pause before choosing again
            self.pause_first = False
            await asyncio.sleep(self.gateway.rng.uniform(*self.gateway.backoff))
        began = time.perf_counter()
        try:
            return await self._store_call(self._select_and_begin, route, tried)
        except NoEligibleInstance as exc:
            self.unavailable.append((route, exc))
            return None
        finally:
            self.routing_ms += (time.perf_counter() - began) * 1000

    def _select_and_begin(self, route: Route, tried: set[str]) -> tuple[Routed, Lease, Deadline]:
        """Synchronous (the shared state): select and take the lease (Router.admit).

        The deadline starts before the lease, and the lease lasts as long: it cannot lapse
        while the attempt runs."""
        deadlines: dict[str, Deadline] = {}

        def lease_seconds(item: RoutableInstance) -> float:
            deadlines[item.instance_id] = deadline = self._attempt_deadline(item)
            return deadline.seconds

        routed, lease = self.context.router.admit(
            route, lease_seconds=lease_seconds, session_id=self.request.session_id, exclude=frozenset(tried)
        )
        return routed, lease, deadlines[routed.instance.instance_id]

    def _attempt_deadline(self, item: RoutableInstance) -> Deadline:
        """The whole attempt's deadline: the instance's timeout for a reply, its maximum duration for a stream."""
        if self.request.stream:
            seconds = item.max_stream_seconds or self.context.max_stream_seconds
            return Deadline(seconds, miss=f"The stream ran past its maximum duration of {seconds:g} s and was cut.")
        return Deadline(item.timeout, miss=f"No complete reply within the instance's {item.timeout:g} s timeout.")

    async def _store_call(self, function: Callable[..., R], *args: Any) -> R:
        """A shared-state call: on the event loop, or in a worker thread (Gateway.state_in_thread)."""
        if self.gateway.state_in_thread:
            return await asyncio.to_thread(function, *args)
        return function(*args)

    async def _settle(
        self,
        routed: Routed,
        lease: Lease,
        error: ProviderError | None,
        *,
        latency_ms: float | None,
        tokens: int = 0,
    ) -> BreakerEvent | None:
        """store.finish for one attempt: breaker outcome, latency, tokens; the in-flight lease ends."""
        return await self._store_call(self._finish, routed, lease, error, latency_ms, tokens)

    def _finish(
        self, routed: Routed, lease: Lease, error: ProviderError | None, latency_ms: float | None, tokens: int
    ) -> BreakerEvent | None:
        return self.context.router.store.finish(
            lease,
            outcome=outcome_for_error(error.kind if error else None),
            now=time.time(),
            breaker=routed.policy.breaker,
            pool_size=routed.pool_size,
            latency_ms=latency_ms,
            tokens=tokens,
            retry_after=error.retry_after if error else None,
        )

    async def _settle_cancelled(self, routed: Routed, lease: Lease, latency_ms: float | None = None) -> None:
        """The client left (or a bug): the lease ends. The balancer has no neutral outcome, so this
        reports a success: the instance did nothing wrong."""
        await self._settle(routed, lease, None, latency_ms=latency_ms)

    async def _after_attempt(self, routed: Routed, error: ProviderError | None, event: BreakerEvent | None) -> None:
        """What an attempt's end calls for: a log line, an instance marked unhealthy, a breaker change noted."""
        item = routed.instance
        if error is not None:
            logger.info("Upstream %s (%s) failed: %s", item.name, item.pool, error)
        if event is BreakerEvent.AUTH_FAILURE:
            await self.gateway.mark_unhealthy(item, f"gateway: the provider refused the key ({error})")
        elif event in (BreakerEvent.OPENED, BreakerEvent.REOPENED, BreakerEvent.CLOSED):
            cause = f" after: {error}" if error is not None else ""
            logger.warning("Circuit breaker of %s (%s) %s%s", item.name, item.pool, event.value, cause)

    @staticmethod
    def _latency_for(error: ProviderError | None, elapsed_ms: float) -> float | None:
        if error is None or error.kind is ErrorKind.TIMEOUT or not _instance_fault(error):
            return elapsed_ms
        return None

    # -- one attempt, not streamed --

    async def _complete(self, routed: Routed, lease: Lease, attempt: Attempt, deadline: Deadline) -> Reply | None:
        item, request = routed.instance, self.request
        target = _target(item)
        began = time.perf_counter()
        try:
            async with deadline.bound(target), self.gateway.clients.client(_origin(item.endpoint_url)) as client:
                result = await adapter_for(item.provider_type).chat(
                    client,
                    target,
                    request.messages,
                    max_tokens=request.max_tokens or item.max_tokens,
                    temperature=request.temperature if request.temperature is not None else item.temperature,
                    extra=request.extra,
                )
        except ProviderError as exc:
            elapsed_ms = (time.perf_counter() - began) * 1000
            self.upstream_ms += elapsed_ms
            attempt.error = exc
            event = await self._settle(routed, lease, exc, latency_ms=self._latency_for(exc, elapsed_ms))
            await self._after_attempt(routed, exc, event)
            return None
        except BaseException:  # the client left (cancelled), or a bug: the lease must end either way
            self.upstream_ms += (time.perf_counter() - began) * 1000
            await self._settle_cancelled(routed, lease)
            raise
        self.upstream_ms += result.latency_ms
        event = await self._settle(routed, lease, None, latency_ms=result.latency_ms, tokens=result.usage.total_tokens)
        await self._after_attempt(routed, None, event)
        body = dumps(result.openai_response)
        headers = self._headers(item)
        self._log(RequestStatus.SUCCESS, 200, usage=result.usage)
        return Reply(200, _JSON_HEADERS | headers, body=body)

    # -- one attempt, streamed --

    async def _open_stream(self, routed: Routed, lease: Lease, attempt: Attempt, deadline: Deadline) -> Reply | None:
        """Wait for the first chunk (failing over until then); then commit to this instance."""
        item, request = routed.instance, self.request
        target = _target(item)
        first_seconds = min(item.timeout, deadline.seconds)
        first_deadline = Deadline(
            first_seconds,
            miss=f"No first chunk within the instance's {first_seconds:g} s timeout.",
            start=deadline.start,
        )
        exits = AsyncExitStack()
        began = time.perf_counter()
        try:
            client = await exits.enter_async_context(self.gateway.clients.client(_origin(item.endpoint_url)))
            # Every adapter's stream_chat is an async generator: closing it frees the connection.
            upstream = cast(
                AsyncGenerator[dict[str, Any], None],
                adapter_for(item.provider_type).stream_chat(
                    client,
                    target,
                    request.messages,
                    max_tokens=request.max_tokens or item.max_tokens,
                    temperature=request.temperature if request.temperature is not None else item.temperature,
                    extra=request.extra,
                ),
            )
            exits.push_async_callback(upstream.aclose)
            try:
                async with first_deadline.bound(target):
                    first = await anext(upstream)
            except StopAsyncIteration:
                raise ProviderError(ErrorKind.BAD_RESPONSE, "The stream ended before its first chunk.") from None
        except ProviderError as exc:
            await exits.aclose()
            elapsed_ms = (time.perf_counter() - began) * 1000
            self.upstream_ms += elapsed_ms
            attempt.error = exc
            event = await self._settle(routed, lease, exc, latency_ms=self._latency_for(exc, elapsed_ms))
            await self._after_attempt(routed, exc, event)
            return None
        except BaseException:
            self.upstream_ms += (time.perf_counter() - began) * 1000
            await self._settle_cancelled(routed, lease)
            await exits.aclose()
            raise
        first_ms = (time.perf_counter() - began) * 1000
        relay = self._relay(routed, lease, attempt, upstream, first, exits, began, first_ms, deadline)
        first_bytes = await anext(relay)  # from here on, closing the relay settles the attempt
        headers = self._headers(item, upstream_ms=self.upstream_ms + first_ms)
        return Reply(200, _STREAM_HEADERS | headers, stream=StreamBody(first_bytes, relay))

    async def _relay(
        self,
        routed: Routed,
        lease: Lease,
        attempt: Attempt,
        upstream: AsyncIterator[dict[str, Any]],
        first: dict[str, Any],
        exits: AsyncExitStack,
        began: float,
        first_ms: float,
        deadline: Deadline,
    ) -> AsyncGenerator[bytes, None]:
        """The committed stream: chunks as SSE, usage counted, the lease ended however it stops,
        cut when it runs past its maximum duration."""
        include_usage = self.request.include_usage
        target = _target(routed.instance)
        usage: Any = None
        finished = False
        try:
            chunk: dict[str, Any] | None = first
            while chunk is not None:
                if chunk.get("usage"):
                    usage = chunk["usage"]
                if chunk.get("choices") or include_usage or not chunk.get("usage"):
                    yield _sse(chunk)
                async with deadline.bound(target):  # each step, never across the yield
                    chunk = await anext(upstream, None)
            finished = True
        except ProviderError as exc:
            attempt.error = exc
            finished = True
        finally:
            await exits.aclose()
            self.upstream_ms += (time.perf_counter() - began) * 1000
            counted = parse_usage(usage)
            if finished:
                error = attempt.error
                event = await self._settle(routed, lease, error, latency_ms=first_ms, tokens=counted.total_tokens)
                if error is not None:
                    if error.kind is ErrorKind.TIMEOUT and not deadline.remaining():
                        item = routed.instance
                        logger.warning("Stream from %s (%s) cut: %s", item.name, item.pool, error.message)
                    self._log(request_status(error.kind), 200, usage=counted, error=f"after the first chunk: {error}")
                else:
                    self._log(RequestStatus.SUCCESS, 200, usage=counted)
                await self._after_attempt(routed, error, event)
            else:  # the client went away (GeneratorExit, CancelledError) or a bug
                await self._settle_cancelled(routed, lease, latency_ms=first_ms)
                self._log(RequestStatus.CLIENT_CLOSED, CLIENT_CLOSED_STATUS, usage=counted, error="client closed")
        if attempt.error is not None:
            error = attempt.error
            yield _sse({"error": {"message": str(error), "type": "upstream_error", "param": None, "code": error.kind}})
        yield _DONE

    # -- answers --

    def _headers(self, item: RoutableInstance | None, *, upstream_ms: float | None = None) -> dict[str, str]:
        upstream = self.upstream_ms if upstream_ms is None else upstream_ms
        overhead = max(0.0, (time.perf_counter() - self.started) * 1000 - upstream)
        headers = {"x-request-id": self.request_id, "x-overhead-ms": f"{overhead:.2f}"}
        if item is not None:
            headers["x-instance-id"] = item.instance_id
        return headers

    def _request_fault(self, error: ProviderError) -> GatewayError:
        """The provider refused the request itself (400, 413): say so, as OpenAI would."""
        status = error.status_code if error.status_code and 400 <= error.status_code < 500 else 400
        return GatewayError(
            status,
            error.message,
            code=str(error.kind),
            details={"tried": [attempt.describe() for attempt in self.attempts]},
        )

    def _nothing_left(self) -> GatewayError:
        tried = [attempt.describe() for attempt in self.attempts]
        reasons = "; ".join(f"{route.model_name}: {exc.message}" for route, exc in self.unavailable)
        if not self.attempts:
            exc = self.unavailable[0][1]
            return GatewayError(
                503,
                f"No instance can serve `{self.request.model}` now ({reasons}).",
                error_type="service_unavailable",
                code=exc.code,
                details={"tried": tried, "reasons": {r.model_name: e.code for r, e in self.unavailable}},
            )
        listed = ", ".join(
            f"{a.instance.name} ({a.instance.pool}): {a.error.kind}"
            + (f" HTTP {a.error.status_code}" if a.error and a.error.status_code else "")
            for a in self.attempts
            if a.error is not None
        )
        message = f"Every upstream attempt failed: {listed}."
        if reasons:
            message += f" Then no eligible instance: {reasons}."
        headers: dict[str, str] = {}
        errors = [a.error for a in self.attempts if a.error is not None]
        if errors and all(e.kind is ErrorKind.RATE_LIMITED for e in errors):
            waits = [e.retry_after for e in errors if e.retry_after is not None]
            headers["retry-after"] = str(max(1, round(min(waits)))) if waits else "1"
        status, code = 502, "upstream_failed"
        if errors and all(e.kind is ErrorKind.TIMEOUT for e in errors):
            status, code = 504, "upstream_timeout"
        return GatewayError(
            status, message, error_type="upstream_error", code=code, details={"tried": tried}, headers=headers
        )

    def _error_reply(self, error: GatewayError) -> Reply:
        last = self.attempts[-1] if self.attempts else None
        self._log(
            request_status(last.error.kind if last and last.error else None) if last else RequestStatus.ERROR,
            error.status,
            error=error.message,
        )
        return error.reply(self._headers(None))

    def _log(self, status: str, status_code: int, *, usage: Usage | None = None, error: str = "") -> None:
        self.logged = True
        final = self.attempts[-1].instance if self.attempts else None
        first = self.attempts[0].instance if self.attempts else None
        failover = len(self.attempts) > 1
        usage = usage or Usage()
        self.gateway.log_buffer.add(
            {
                "request_id": self.request_id,
                "instance_id": final.pk if final else None,
                "original_instance_id": first.pk if failover and first else None,
                "provider_type": final.provider_type if final else "",
                "model_name": (final.model_name if final else self.request.model)[:200],
                "status": status,
                "status_code": status_code,
                "is_stream": self.request.stream,
                "total_latency_ms": round((time.perf_counter() - self.started) * 1000, 3),
                "upstream_latency_ms": round(self.upstream_ms, 3) if self.attempts else None,
                "routing_ms": round(self.routing_ms, 3),
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "total_tokens": usage.total_tokens,
                "failover": failover,
                "attempts": len(self.attempts),
                "session_id": (self.request.session_id or "")[:200],
                "error": error,
                "created_at": self.created_at,
            }
        )


# --- The gateway --------------------------------------------------------------


def _mark_unhealthy(pk: int, reason: str) -> None:
    from instances.models import AIInstance
    from instances.services import instance_set_status

    fresh_connection()
    instance = AIInstance.objects.filter(pk=pk, is_active=True).first()
    if instance is not None:
        instance_set_status(instance=instance, status="unhealthy", reason=reason, source="breaker")
        registry_snapshot(fresh=True)  # the next routing context leaves it out at once


@dataclass
class Gateway:
    """The gateway's long-lived parts; `default_gateway()` is the process's own."""

    routing: RoutingCache = field(default_factory=RoutingCache)
    clients: ClientPool = field(default_factory=ClientPool)
    log_buffer: RequestLogBuffer = field(default_factory=request_log_buffer)
    authenticator: Authenticator = field(default_factory=Authenticator)
    rng: random.Random = field(default_factory=random.Random)
    backoff: tuple[float, float] = BACKOFF_SECONDS
    # Shared-state calls in a worker thread instead of on the event loop. Off: with a local Redis
    # the thread hops cost more CPU than the blocked loop loses (bench/README.md "Gateway"); worth
    # measuring with a distant Redis, whose round trips would stall the loop.
    state_in_thread: bool = False

    @staticmethod
    def request_id(headers: Mapping[str, str]) -> str:
        """The caller's X-Request-ID when it is a sane token, else a new one; also set for the logs."""
        given = headers.get("x-request-id") or ""
        request_id = given if _REQUEST_ID.fullmatch(given) else f"{_IDS.getrandbits(128):032x}"
        set_request_id(request_id)
        return request_id

    async def chat_completions(
        self, headers: Mapping[str, str], body: bytes, request_id: str, started: float | None = None
    ) -> Reply:
        """POST /v1/chat/completions; `started` (perf_counter) is when the front door got the request."""
        started = time.perf_counter() if started is None else started
        return await self._answer(request_id, started, lambda: self._chat(headers, body, request_id, started))

    async def models(self, headers: Mapping[str, str], request_id: str, started: float | None = None) -> Reply:
        """GET /v1/models: the models an instance can serve now, then the configured aliases."""
        started = time.perf_counter() if started is None else started
        return await self._answer(request_id, started, lambda: self._models(headers, request_id, started))

    async def _answer(self, request_id: str, started: float, handler: Callable[[], Any]) -> Reply:
        try:
            reply: Reply = await handler()
            return reply
        except GatewayError as exc:
            error = exc
        except Exception as exc:
            if isinstance(exc, DATABASE_ERRORS) and DATABASE_OUTAGE.is_outage(exc):
                # no snapshot to route on yet, or the pool found no connection in time
                DATABASE_OUTAGE.failed(exc)
                error = GatewayError(
                    503,
                    "The database is unreachable; retry shortly.",
                    error_type="service_unavailable",
                    code="database_unavailable",
                )
            else:
                logger.exception("Gateway error")
                error = GatewayError(500, "The gateway failed to handle the request.", error_type="server_error")
        overhead = (time.perf_counter() - started) * 1000
        return error.reply({"x-request-id": request_id, "x-overhead-ms": f"{overhead:.2f}"})

    async def _authenticate(self, headers: Mapping[str, str]) -> None:
        try:
            principal = await self.authenticator.principal(headers)
        except ServiceUnavailableError as exc:  # the database cannot check a key it has not seen lately
            raise GatewayError(503, exc.message, error_type="service_unavailable", code=exc.code) from None
        if principal is None:
            raise GatewayError(
                401,
                "Missing or invalid API key: send `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
                code="invalid_api_key",
                headers={"www-authenticate": 'Bearer realm="gateway"'},
            )

    async def _chat(self, headers: Mapping[str, str], body: bytes, request_id: str, started: float) -> Reply:
        await self._authenticate(headers)
        request = parse_chat_request(body, headers)
        context = await self.routing.current()
        return await _Proxy(self, context, request, request_id, started).run()

    async def _models(self, headers: Mapping[str, str], request_id: str, started: float) -> Reply:
        await self._authenticate(headers)
        context = await self.routing.current()
        data: list[dict[str, Any]] = []
        for model, pools in sorted(context.snapshot.by_model.items()):
            providers = [
                provider
                for provider, name in pools
                if any(
                    item.candidate.status in (HEALTHY, DEGRADED) and item.candidate.weight > 0
                    for item in context.snapshot.by_pool[(provider, name)]
                )
            ]
            if providers:
                data.append({"id": model, "object": "model", "created": 0, "owned_by": ",".join(providers)})
        for alias, targets in sorted(context.aliases.items()):
            data.append({"id": alias, "object": "model", "created": 0, "owned_by": "alias", "fallbacks": targets})
        overhead = (time.perf_counter() - started) * 1000
        headers = _JSON_HEADERS | {"x-request-id": request_id, "x-overhead-ms": f"{overhead:.2f}"}
        return Reply(200, headers, body=dumps({"object": "list", "data": data}))

    async def mark_unhealthy(self, item: RoutableInstance, reason: str) -> None:
        """An instance whose key the provider refused: out of rotation until health checks clear it."""
        try:
            await sync_to_async(_mark_unhealthy, thread_sensitive=True)(item.pk, reason)
        except Exception:
            logger.exception("Could not mark %s unhealthy", item.name)
        self.routing.invalidate()


_default: Gateway | None = None


def default_gateway() -> Gateway:
    global _default
    if _default is None:
        _default = Gateway()
    return _default
