"""HTTP plumbing shared by the adapters: bounded reads, SSE, and mapping every failure to ProviderError.

The rules live here once so no adapter can forget them: redirects are never
followed (a 3xx from an API is a misconfiguration, and following it would send
the key to another host), bodies are read up to a bound, connect and read
timeouts come from the target, and no error message carries the API key.

A read timeout bounds each read, not the call: a provider trickling a byte at
a time passes every read and never finishes. A caller bounds the whole call
with a Deadline (the gateway's attempts do; a health check may too).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from .base import ErrorKind, ProviderError, ProviderTarget

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Bound on a non-streamed reply; a chat reply or model listing is far below it."""

MAX_EVENT_BYTES = 1024 * 1024
"""Bound on one server-sent event, so a stream without line breaks cannot grow without limit."""

_MESSAGE_LIMIT = 300
_ERROR_BODY_BYTES = 64 * 1024  # enough for any error JSON; the rest is dropped
USER_AGENT = "ishchat-instance-manager/1.0"


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One verifying SSL context for every client: httpx would load the CA bundle
    again for each new client (~30 ms), which matters to pools of small clients."""
    return httpx.create_ssl_context(trust_env=False)


def build_client(*, max_connections: int = 1000, max_keepalive_connections: int = 200) -> httpx.AsyncClient:
    """A client to share across many calls (one per process or event loop).

    Per-request timeouts come from each target, so the client's own is only a
    backstop. trust_env is off: proxy variables or .netrc meant for something
    else must not silently reroute or re-authenticate provider traffic.
    """
    return httpx.AsyncClient(
        follow_redirects=False,
        trust_env=False,
        verify=shared_ssl_context(),
        timeout=httpx.Timeout(30.0),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive_connections,
            keepalive_expiry=30.0,
        ),
        headers={"user-agent": USER_AGENT},
    )


def redact(text: str, secret: str) -> str:
    return text.replace(secret, "[redacted]") if secret else text


def fail(
    target: ProviderTarget,
    kind: ErrorKind,
    message: str,
    *,
    status_code: int | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Build the ProviderError with the key scrubbed from the message: every raise goes through here."""
    message = redact(message, target.api_key)
    if len(message) > _MESSAGE_LIMIT:
        message = message[: _MESSAGE_LIMIT - 1] + "…"
    return ProviderError(kind, message, status_code=status_code, retry_after=retry_after)


class Deadline:
    """A total deadline for a provider call, `seconds` after `start` on the monotonic clock.

    `async with deadline.bound(target):` runs a block until the deadline; past it the
    block is cancelled (its connection closed) and a `timeout` ProviderError raised
    with `miss` as its message. A cancellation from outside (a client gone) passes
    through untouched. Inside an async generator bound each step (`anext`), never a
    block spanning a `yield`: a cancellation there would land in the consumer's code.
    """

    __slots__ = ("at", "miss", "seconds", "start")

    def __init__(self, seconds: float, *, miss: str, start: float | None = None) -> None:
        self.seconds = seconds
        self.start = time.monotonic() if start is None else start
        self.at = self.start + seconds
        self.miss = miss

    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    @asynccontextmanager
    async def bound(self, target: ProviderTarget) -> AsyncIterator[None]:
        scope = asyncio.timeout(self.remaining())
        try:
            async with scope:
                yield
        except TimeoutError:
            if not scope.expired():
                raise
            raise fail(target, ErrorKind.TIMEOUT, self.miss) from None


def join_url(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path.lstrip("/")


def check_header_value(target: ProviderTarget, value: str) -> str:
    """A key with characters HTTP cannot carry is the operator's mistake; say so without echoing it."""
    if not value.isascii() or any(ch in value for ch in "\r\n\0"):
        raise fail(target, ErrorKind.AUTH, "The API key contains characters an HTTP header cannot carry.")
    return value


def parse_retry_after(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds to wait, from retry-after-ms (OpenAI), or Retry-After as seconds or an HTTP date."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
        return max(0.0, seconds)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _upstream_message(body: bytes) -> str:
    """The human part of an error body: OpenAI's and Anthropic's {"error": {"message"}} or the text itself."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text or "(empty body)"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    if isinstance(error, str):
        return error
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return data["message"]
    return text


def status_kind(status_code: int) -> ErrorKind:
    if 300 <= status_code < 400:
        return ErrorKind.REDIRECT
    if status_code in (401, 403):
        return ErrorKind.AUTH
    if status_code == 404:
        return ErrorKind.NOT_FOUND
    if status_code == 408:
        return ErrorKind.TIMEOUT
    if status_code == 429:
        return ErrorKind.RATE_LIMITED
    if status_code >= 500:
        return ErrorKind.SERVER_ERROR
    return ErrorKind.BAD_REQUEST


async def read_bounded(response: httpx.Response, target: ProviderTarget, limit: int = MAX_BODY_BYTES) -> bytes:
    """The (decoded) body, refusing more than `limit` bytes before holding them all in memory."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and "content-encoding" not in response.headers and int(declared) > limit:
        raise fail(target, ErrorKind.TOO_LARGE, f"Reply of {declared} bytes exceeds the {limit}-byte bound.")
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise fail(target, ErrorKind.TOO_LARGE, f"Reply exceeds the {limit}-byte bound.")
    return bytes(body)


async def _raise_for_status(response: httpx.Response, target: ProviderTarget) -> None:
    status = response.status_code
    if status < 300:
        return
    if status < 400:
        location = response.headers.get("location", "(no Location header)")
        raise fail(
            target,
            ErrorKind.REDIRECT,
            f"Endpoint answered {status} redirecting to {location}; redirects are not followed, fix endpoint_url.",
            status_code=status,
        )
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) >= _ERROR_BODY_BYTES:
            break
    raise fail(
        target,
        status_kind(status),
        _upstream_message(bytes(body[:_ERROR_BODY_BYTES])),
        status_code=status,
        retry_after=parse_retry_after(response.headers),
    )


def _transport_error(target: ProviderTarget, exc: httpx.HTTPError) -> ProviderError:
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return fail(target, ErrorKind.TIMEOUT, f"No answer within {target.timeout:g} s ({type(exc).__name__}).")
    if isinstance(exc, httpx.DecodingError):
        return fail(target, ErrorKind.BAD_RESPONSE, f"Undecodable reply body: {detail}")
    if isinstance(exc, httpx.LocalProtocolError):
        return fail(target, ErrorKind.BAD_REQUEST, f"Request could not be sent: {detail}")
    return fail(target, ErrorKind.CONNECTION, f"{type(exc).__name__}: {detail}")


@asynccontextmanager
async def open_response(
    client: httpx.AsyncClient,
    target: ProviderTarget,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    json_body: Mapping[str, Any] | None = None,
) -> AsyncIterator[httpx.Response]:
    """A 2xx response with its body still unread; anything else is raised as ProviderError.

    Transport errors raised while the caller reads the body (a reset mid-stream,
    a read timeout between chunks) are mapped here too.
    """
    request = client.build_request(method, url, headers=headers, json=json_body, timeout=httpx.Timeout(target.timeout))
    try:
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            await _raise_for_status(response, target)
            yield response
        finally:
            await response.aclose()
    except httpx.HTTPError as exc:
        raise _transport_error(target, exc) from None


async def request_json(
    client: httpx.AsyncClient,
    target: ProviderTarget,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    json_body: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], float]:
    """The decoded JSON object of a non-streamed call and the call's latency in milliseconds."""
    started = time.perf_counter()
    async with open_response(client, target, method, url, headers=headers, json_body=json_body) as response:
        body = await read_bounded(response, target)
    latency_ms = (time.perf_counter() - started) * 1000.0
    return parse_json_object(target, body), latency_ms


def parse_json_object(target: ProviderTarget, body: bytes | str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except ValueError:
        snippet = body[:80].decode("utf-8", "replace") if isinstance(body, bytes) else body[:80]
        raise fail(target, ErrorKind.BAD_RESPONSE, f"Reply is not JSON: {snippet!r}") from None
    if not isinstance(data, dict):
        raise fail(target, ErrorKind.BAD_RESPONSE, f"Reply is JSON but not an object: {type(data).__name__}.")
    return data


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    event: str
    data: str


async def iter_sse(response: httpx.Response, target: ProviderTarget) -> AsyncIterator[ServerSentEvent]:
    """Server-sent events per the WHATWG format (event:/data: lines, a blank line ends an event)."""
    buffer = bytearray()
    event = ""
    data: list[str] = []
    data_size = 0
    async for chunk in response.aiter_bytes():
        buffer += chunk
        start = 0
        while (newline := buffer.find(b"\n", start)) >= 0:
            line = buffer[start:newline].rstrip(b"\r").decode("utf-8", errors="replace")
            start = newline + 1
            if not line:
                if data:
                    yield ServerSentEvent(event or "message", "\n".join(data))
                event, data, data_size = "", [], 0
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
                data_size += len(value)
        del buffer[:start]
        if len(buffer) + data_size > MAX_EVENT_BYTES:
            raise fail(target, ErrorKind.TOO_LARGE, f"A stream event exceeds the {MAX_EVENT_BYTES}-byte bound.")
    if data:  # the spec drops an unterminated last event; keeping it tolerates servers that omit the blank line
        yield ServerSentEvent(event or "message", "\n".join(data))
