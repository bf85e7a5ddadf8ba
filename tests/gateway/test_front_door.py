"""The /v1 front door refuses what Django's middleware would: foreign hosts, plain HTTP under HTTPS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from asgiref.sync import async_to_sync

from gateway.asgi import GatewayApp
from gateway.logbuffer import RequestLogBuffer
from gateway.proxy import Gateway

pytestmark = pytest.mark.django_db


def call(host: str, *, scheme: str = "http", forwarded_proto: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = [(b"host", host.encode())]
    if forwarded_proto:
        headers.append((b"x-forwarded-proto", forwarded_proto.encode()))
    scope = {"type": "http", "path": "/v1/models", "method": "GET", "headers": headers, "scheme": scheme}
    sent: list[MutableMapping[str, Any]] = []

    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    app = GatewayApp(gateway=Gateway(log_buffer=RequestLogBuffer(background=False)))
    # async_to_sync: the gateway's thread-sensitive database calls run in the test's thread.
    async_to_sync(app)(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body)


def test_a_host_outside_allowed_hosts_is_refused():
    status, body = call("evil.example.com")

    assert status == 400
    assert body["error"]["code"] == "invalid_host"


def test_an_allowed_host_reaches_authentication():
    assert call("127.0.0.1:8000")[0] == 401


def test_plain_http_is_refused_when_https_is_required(settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

    assert call("localhost")[1]["error"]["code"] == "https_required"
    assert call("localhost", forwarded_proto="https")[0] == 401
    assert call("localhost", scheme="https")[0] == 401
