"""Request body bounds per path, checked in front of Django before a body is read.

Django's ASGI handler reads a whole body (spooling it to disk past
FILE_UPLOAD_MAX_MEMORY_SIZE) before any view or authentication runs: an
unauthenticated 1 GiB body was written to disk before its 401. `BodyLimit`
wraps Django's application (ishchat/asgi.py) and answers 413 in the API's
error shape, `{"detail": ..., "code": "request_too_large"}`:

1. at once, without reading, when Content-Length declares more than the path's bound;
2. otherwise it counts the bytes as Django receives them; past the bound Django
   is told the client went away (it stops reading and answers nothing) and the
   413 is sent instead.

The 413 closes the connection: the rest of the body is never read.

/v1/chat/completions and /v1/models never get here: the gateway's front door
(gateway/asgi.py) serves them and bounds their bodies itself
(gateway.proxy.MAX_BODY_BYTES).

This module is imported by ishchat/settings.py (DATA_UPLOAD_MAX_MEMORY_SIZE), so
it imports nothing from Django.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]  # Django's ASGIHandler among others

KiB = 1024
MiB = 1024 * KiB
# The API's JSON bodies (the largest, PATCH /api/config, is a few KiB) and the admin's and dashboard's forms
# (none uploads files). Also Django's own bound on form data (DATA_UPLOAD_MAX_MEMORY_SIZE), for servers
# without this wrapper (runserver, WSGI). Below FILE_UPLOAD_MAX_MEMORY_SIZE (2.5 MB): never spooled to disk.
MAX_BODY_BYTES = 1 * MiB
# Everything else Django serves (/health, /metrics, /docs, /api/schema/, a 404) takes no body.
OTHER_BODY_BYTES = 64 * KiB
BODY_LIMITS: tuple[tuple[str, int], ...] = (
    ("/api/", MAX_BODY_BYTES),
    ("/admin/", MAX_BODY_BYTES),
    ("/dashboard/", MAX_BODY_BYTES),
)


def body_limit(path: str) -> int:
    """The most bytes of body a request to `path` may send."""
    for prefix, limit in BODY_LIMITS:
        if path.startswith(prefix):
            return limit
    return OTHER_BODY_BYTES


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses a malformed Content-Length before this runs
    return None


async def send_too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"The request body exceeds {limit} bytes.", "code": "request_too_large"}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class BodyLimit:
    """ASGI middleware: `BodyLimit(django_application)`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await send_too_large(send, limit)
            return
        received = 0
        exceeded = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, bounded_receive, tracking_send)
        if exceeded and not started:
            await send_too_large(send, limit)
