"""The gateway's production front door: a raw ASGI app for /v1/chat/completions and
/v1/models, in front of Django's ASGI application, which serves everything else.

Why not Django's views: under ASGI every request through Django's synchronous
middleware stack (settings.MIDDLEWARE) hops to a thread and back, and Django
runs each request in its own thread-sensitive context; bench/gateway_bench.py
measures what that costs against the targets. This app does only what the
gateway needs: read the body, hand it to gateway.proxy (the one implementation
of authentication, validation and proxying, which the Django views in
gateway/views.py call too), send the reply, and cancel the work when the
client disconnects, so in-flight leases are given back at once.

It also answers the ASGI lifespan protocol (Django cannot): at shutdown it
writes the queued RequestLog rows.

This module imports the models, so it is imported once Django is set up:

    # ishchat/asgi.py
    django_application = get_asgi_application()
    from gateway.asgi import GatewayApp  # noqa: E402
    application = GatewayApp(django_application)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from gateway.proxy import MAX_BODY_BYTES, Gateway, GatewayError, Reply, default_gateway

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]  # Django's ASGIHandler among others

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
_ALLOWED = {CHAT_PATH: "POST", MODELS_PATH: "GET"}


class _Disconnected(Exception):
    pass


class GatewayApp:
    def __init__(self, app: ASGIApp | None = None, *, gateway: Gateway | None = None) -> None:
        self.app = app
        self._gateway = gateway

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            self._gateway = default_gateway()
        return self._gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in _ALLOWED:
            await self._serve(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        else:
            await _send_reply(send, GatewayError(404, "Not found.", code="not_found").reply({}))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await asyncio.to_thread(self.gateway.log_buffer.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        gateway = self.gateway
        request_id = gateway.request_id(headers)
        path, method = scope["path"], scope["method"]
        refusal = _front_door_refusal(scope, headers)
        if refusal is not None:
            await _send_reply(send, refusal.reply({"x-request-id": request_id}))
            return
        if method != _ALLOWED[path]:
            error = GatewayError(405, f"Use {_ALLOWED[path]} for {path}.", code="method_not_allowed")
            await _send_reply(send, error.reply({"x-request-id": request_id, "allow": _ALLOWED[path]}))
            return
        try:
            body = await _read_body(receive)
        except _Disconnected:
            return
        except GatewayError as error:
            await _send_reply(send, error.reply({"x-request-id": request_id}))
            return

        async def respond() -> None:
            if path == CHAT_PATH:
                reply = await gateway.chat_completions(headers, body, request_id, started)
            else:
                reply = await gateway.models(headers, request_id, started)
            await _send_reply(send, reply)

        # The work runs beside a watch on the connection: a disconnect cancels it, so an upstream
        # call or stream stops and its lease ends now, not when the provider finishes.
        work = asyncio.ensure_future(respond())
        watch = asyncio.ensure_future(_wait_for_disconnect(receive))
        try:
            await asyncio.wait((work, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if not work.cancelled():
            work.result()  # a bug surfaces in the server's log


def _front_door_refusal(scope: Scope, headers: dict[str, str]) -> GatewayError | None:
    """What Django's middleware would refuse, checked here since /v1 bypasses it:
    a Host outside ALLOWED_HOSTS, and plain HTTP when INSTANCE_MANAGER_HTTPS is on
    (an API refuses rather than redirects: a redirected POST loses its body)."""
    host, _port = split_domain_port(headers.get("host", ""))
    if not host or not validate_host(host, settings.ALLOWED_HOSTS):
        return GatewayError(400, "Invalid Host header.", code="invalid_host")
    forwarded_https = settings.SECURE_PROXY_SSL_HEADER and headers.get("x-forwarded-proto") == "https"
    if settings.SECURE_SSL_REDIRECT and scope.get("scheme") != "https" and not forwarded_https:
        return GatewayError(403, "HTTPS is required.", code="https_required")
    return None


async def _read_body(receive: Receive) -> bytes:
    chunks = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunks += message.get("body", b"")
        if len(chunks) > MAX_BODY_BYTES:
            raise GatewayError(413, f"The body exceeds {MAX_BODY_BYTES} bytes.", code="request_too_large")
        if not message.get("more_body", False):
            return bytes(chunks)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send_reply(send: Send, reply: Reply) -> None:
    raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in reply.headers.items()]
    if reply.stream is None:
        raw.append((b"content-length", str(len(reply.body)).encode()))
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
        await send({"type": "http.response.body", "body": reply.body, "more_body": False})
        return
    stream = reply.stream
    try:
        await send({"type": "http.response.start", "status": reply.status, "headers": raw})
        async for chunk in stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        await stream.aclose()
