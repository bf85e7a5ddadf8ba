"""The Django views of gateway/urls.py: the same gateway behind Django's middleware and URL routing
(runserver, WSGI, or an ASGI set-up without the raw front door)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import StreamingHttpResponse
from django.test import AsyncClient

from gateway import proxy
from gateway.logbuffer import RequestLogBuffer
from gateway.proxy import Gateway
from instances.models import RequestLog

pytestmark = [pytest.mark.django_db, pytest.mark.urls("gateway.urls")]

AUTH = {"Authorization": f"Bearer {settings.BACKEND_API_KEY}"}


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Gateway:
    """A fresh process gateway for the views (they use default_gateway())."""
    fresh = Gateway(log_buffer=RequestLogBuffer(background=False))
    monkeypatch.setattr(proxy, "_default", fresh)
    return fresh


def post(body: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    async def call() -> tuple[int, dict[str, str], bytes]:
        response = await AsyncClient().post(
            "/v1/chat/completions",
            json.dumps(body),
            content_type="application/json",
            headers=AUTH if headers is None else headers,
        )
        if isinstance(response, StreamingHttpResponse):
            content = b"".join([part async for part in response.streaming_content])
        else:
            content = response.content
        return response.status_code, dict(response.headers), content

    return async_to_sync(call)()


def test_a_completion_through_the_django_view(gateway, fleet, sim_server):
    instance = fleet("a")

    status, headers, content = post({"model": "sim-model", "messages": [{"role": "user", "content": "hi"}]})

    assert status == 200, content
    assert json.loads(content)["object"] == "chat.completion"
    assert headers["x-instance-id"] == str(instance.instance_id)
    assert float(headers["x-overhead-ms"]) >= 0
    gateway.log_buffer.flush()
    assert RequestLog.objects.get().status == "success"


def test_a_stream_through_the_django_view(gateway, fleet):
    fleet("a")

    status, headers, content = post(
        {"model": "sim-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    )

    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert content.rstrip().endswith(b"data: [DONE]")


def test_the_django_view_refuses_a_missing_key_the_same_way(gateway, fleet):
    fleet("a")

    status, _, content = post({"model": "sim-model", "messages": []}, headers={})

    assert status == 401
    assert json.loads(content)["error"]["code"] == "invalid_api_key"


def test_models_through_the_django_view(gateway, fleet):
    fleet("a")

    async def call() -> tuple[int, bytes]:
        response = await AsyncClient().get("/v1/models", headers=AUTH)
        return response.status_code, response.content

    status, content = async_to_sync(call)()

    assert status == 200
    assert [entry["id"] for entry in json.loads(content)["data"]] == ["sim-model"]
