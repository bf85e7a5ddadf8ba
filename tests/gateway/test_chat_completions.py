"""POST /v1/chat/completions and GET /v1/models: authentication, validation, routing, provider shapes.

The gateway runs in process (its ASGI app, driven by httpx's ASGI transport,
on the test database); every upstream call goes over loopback to the simulated
provider. The helpers here are shared by the other gateway test modules.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from accounts.choices import Access
from accounts.services import api_key_create
from gateway.asgi import GatewayApp
from gateway.logbuffer import RequestLogBuffer
from gateway.proxy import Gateway
from gateway.registry import registry_snapshot
from instances.balancer.breaker import BreakerConfig, BreakerState
from instances.balancer.state import get_state_store
from instances.models import AIInstance, RequestLog

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Say something."}]


class GatewayClient:
    """The gateway's ASGI app called in process; RequestLog rows are written when flush() says so."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.app = GatewayApp(gateway=gateway)

    def request(self, method: str, path: str, *, key: str | None = "backend", **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key == "backend":
            headers.setdefault("Authorization", f"Bearer {settings.BACKEND_API_KEY}")
        elif key is not None:
            headers.setdefault("Authorization", f"Bearer {key}")

        async def call() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
                    return await client.request(method, path, headers=headers, **kwargs)
            finally:
                await self.gateway.clients.aclose()

        # async_to_sync: the gateway's thread-sensitive database calls run in this (the test's) thread.
        return async_to_sync(call)()

    def chat(
        self, *, key: str | None = "backend", headers: dict[str, str] | None = None, **body: Any
    ) -> httpx.Response:
        body.setdefault("model", "sim-model")
        body.setdefault("messages", MESSAGES)
        return self.request("POST", "/v1/chat/completions", key=key, json=body, headers=headers or {})

    def models(self, **kwargs: Any) -> httpx.Response:
        return self.request("GET", "/v1/models", **kwargs)

    def logs(self) -> list[RequestLog]:
        """Write the buffered RequestLog rows and return every row, oldest first."""
        self.gateway.log_buffer.flush()
        return list(RequestLog.objects.order_by("pk"))

    @staticmethod
    def in_flight(instance: AIInstance) -> int:
        """The instance's live in-flight leases in the shared state."""
        iid = str(instance.instance_id)
        candidate = registry_snapshot(fresh=True).by_id[iid].candidate
        return get_state_store().snapshot([candidate], now=time.time(), breaker=BreakerConfig())[iid].in_flight

    @staticmethod
    def breaker(instance: AIInstance) -> BreakerState:
        iid = str(instance.instance_id)
        return get_state_store().breaker_states([iid])[iid]


def new_gateway_client() -> GatewayClient:
    """A gateway of its own (routing context, clients, and a log buffer the test flushes: no writer thread)."""
    return GatewayClient(Gateway(log_buffer=RequestLogBuffer(background=False)))


@pytest.fixture
def gateway_client() -> GatewayClient:
    return new_gateway_client()


def sse_events(response: httpx.Response) -> list[Any]:
    """The `data:` payloads of an event stream, JSON-decoded ("[DONE]" kept as the string)."""
    events: list[Any] = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            events.append(data if data == "[DONE]" else json.loads(data))
    return events


def streamed_text(events: list[Any]) -> str:
    return "".join(
        choice["delta"].get("content") or ""
        for event in events
        if isinstance(event, dict)
        for choice in event.get("choices", [])
    )


# --- Authentication ---------------------------------------------------------------


def test_a_request_without_a_key_gets_an_openai_style_401(gateway_client, fleet):
    fleet("a")

    response = gateway_client.chat(key=None)

    assert response.status_code == 401
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"}
    assert error["code"] == "invalid_api_key"
    assert response.headers["x-request-id"]


def test_a_wrong_key_is_refused_and_never_reaches_a_provider(gateway_client, fleet, sim_server):
    fleet("a")

    response = gateway_client.chat(key="not-a-real-key-0123456789")

    assert response.status_code == 401
    assert sim_server.stats("a")["total"] == 0


def test_project_api_keys_work_as_bearer_and_x_api_key(gateway_client, fleet):
    fleet("a")
    _, plain = api_key_create(name="app", access=Access.READ_ONLY)

    bearer = gateway_client.chat(key=plain)
    header = gateway_client.chat(key=None, headers={"X-API-Key": plain})

    assert bearer.status_code == 200, bearer.text
    assert header.status_code == 200, header.text


def test_a_valid_key_is_cached_so_later_requests_skip_the_database(gateway_client, fleet, django_assert_num_queries):
    fleet("a")
    _, plain = api_key_create(name="app", access=Access.FULL)
    gateway_client.chat(key=plain)  # looks the key up once and warms the routing context

    with django_assert_num_queries(0):
        response = gateway_client.chat(key=plain)

    assert response.status_code == 200


# --- Validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": MESSAGES}, "model"),
        ({"model": "sim-model"}, "messages"),
        ({"model": "sim-model", "messages": []}, "messages"),
        ({"model": "sim-model", "messages": ["hello"]}, "messages[0]"),
        ({"model": "sim-model", "messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"model": "sim-model", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "sim-model", "messages": MESSAGES, "stream": "yes"}, "stream"),
        ({"model": "sim-model", "messages": MESSAGES, "temperature": 3}, "temperature"),
        ({"model": "sim-model", "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
    ],
)
def test_an_invalid_body_is_a_400_naming_the_field(gateway_client, fleet, sim_server, body, param):
    fleet("a")

    response = gateway_client.request("POST", "/v1/chat/completions", json=body)

    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    assert sim_server.stats("a")["total"] == 0


def test_a_body_that_is_not_json_is_a_400(gateway_client, fleet):
    fleet("a")

    response = gateway_client.request("POST", "/v1/chat/completions", content=b"{nope")

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_the_wrong_method_is_a_405(gateway_client):
    response = gateway_client.request("GET", "/v1/chat/completions")

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_an_unknown_model_is_a_404_model_not_found(gateway_client, fleet):
    fleet("a")

    response = gateway_client.chat(model="no-such-model")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"


# --- A completion -----------------------------------------------------------------


def test_a_completion_answers_in_openai_shape_with_the_gateway_headers(gateway_client, fleet, sim_server):
    instance = fleet("a")

    response = gateway_client.chat(headers={"X-Request-ID": "req-123"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"] > 0
    assert response.headers["x-request-id"] == "req-123"
    assert response.headers["x-instance-id"] == str(instance.instance_id)
    assert 0 <= float(response.headers["x-overhead-ms"]) < 1000
    assert sim_server.stats("a")["total"] == 1


def test_a_request_id_is_generated_when_none_or_a_malformed_one_is_sent(gateway_client, fleet):
    fleet("a")

    plain = gateway_client.chat()
    malformed = gateway_client.chat(headers={"X-Request-ID": "bad id with spaces"})

    assert len(plain.headers["x-request-id"]) == 32
    assert malformed.headers["x-request-id"] != "bad id with spaces"
    assert plain.headers["x-request-id"] != malformed.headers["x-request-id"]


def test_the_instance_settings_are_defaults_the_request_overrides(gateway_client, fleet, sim_server):
    fleet("a", temperature=0.3, max_tokens=5)

    gateway_client.chat()
    defaults = sim_server.stats("a")["last_request"]["body"]
    gateway_client.chat(temperature=1.5, max_tokens=7, top_p=0.5)
    overridden = sim_server.stats("a")["last_request"]["body"]

    assert defaults["temperature"] == 0.3
    assert defaults["max_completion_tokens"] == 5
    assert overridden["temperature"] == 1.5
    assert overridden["max_completion_tokens"] == 7
    assert overridden["top_p"] == 0.5
    assert "session_id" not in overridden


def test_the_provider_model_is_requested_whatever_name_routed_to_it(gateway_client, fleet, sim_server):
    fleet("a", model="sim-model")

    response = gateway_client.chat(model="openai/sim-model")

    assert response.status_code == 200
    assert sim_server.stats("a")["last_request"]["body"]["model"] == "sim-model"


def test_provider_slash_model_picks_that_providers_instances(gateway_client, fleet, sim_server):
    fleet("o", provider="openai", model="shared")
    fleet("z", provider="zai", model="shared")

    for _ in range(4):
        assert gateway_client.chat(model="zai/shared").status_code == 200

    assert sim_server.stats("z")["total"] == 4
    assert sim_server.stats("o")["total"] == 0


def test_the_request_log_row_is_written_by_the_buffer_not_the_request(gateway_client, fleet):
    instance = fleet("a")

    response = gateway_client.chat(session_id="s-1", headers={"X-Request-ID": "log-me"})
    assert RequestLog.objects.count() == 0  # nothing written on the request path
    (row,) = gateway_client.logs()

    assert response.status_code == 200
    assert row.request_id == "log-me"
    assert row.instance_id == instance.pk
    assert row.original_instance_id is None
    assert row.status == "success"
    assert row.status_code == 200
    assert row.is_stream is False
    assert row.failover is False
    assert row.attempts == 1
    assert row.session_id == "s-1"
    assert row.total_tokens == response.json()["usage"]["total_tokens"] > 0
    assert row.total_latency_ms >= row.upstream_latency_ms > 0
    assert row.routing_ms is not None


# --- Provider shapes --------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "zai", "perplexity", "openai_compatible", "anthropic"])
def test_every_provider_answers_in_openai_shape(gateway_client, fleet, sim_server, provider):
    fleet("p", provider=provider, model="m")

    response = gateway_client.chat(model="m")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] > 0
    assert sim_server.stats("p")["total"] == 1


def test_anthropic_gets_the_system_prompt_as_its_own_field(gateway_client, fleet, sim_server):
    fleet("claude", provider="anthropic", model="claude-x", max_tokens=64)

    response = gateway_client.chat(
        model="claude-x",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Hello"},
        ],
        stop="END",
    )

    assert response.status_code == 200, response.text
    sent = sim_server.stats("claude")["last_request"]
    assert sent["endpoint"] == "messages"
    assert sent["body"]["system"] == "You are terse."
    assert sent["body"]["messages"] == [{"role": "user", "content": "Hello"}]
    assert sent["body"]["max_tokens"] == 64
    assert sent["body"]["stop_sequences"] == ["END"]
    body = response.json()
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["prompt_tokens"] > 0


def test_anthropic_streams_become_openai_chunks(gateway_client, fleet):
    fleet("claude", provider="anthropic", model="claude-x")

    response = gateway_client.chat(
        model="claude-x",
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert streamed_text(chunks)
    assert any(c["choices"] and c["choices"][0]["finish_reason"] == "stop" for c in chunks)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


# --- Aliases and models -----------------------------------------------------------


@pytest.fixture
def aliases(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, list[str]]], None]:
    """Configure load_balancer.model_aliases through the environment layer."""
    from configuration.selectors import config_cache_clear

    def configure(mapping: dict[str, list[str]]) -> None:
        monkeypatch.setenv("INSTANCE_MANAGER_LOAD_BALANCER__MODEL_ALIASES", json.dumps(mapping))
        config_cache_clear()

    return configure


def test_an_alias_routes_to_its_first_model(gateway_client, fleet, sim_server, aliases):
    aliases({"smart": ["big-model", "small-model"]})
    fleet("big", model="big-model")
    fleet("small", model="small-model")

    response = gateway_client.chat(model="smart")

    assert response.status_code == 200, response.text
    assert sim_server.stats("big")["total"] == 1
    assert sim_server.stats("small")["total"] == 0


def test_models_lists_what_can_serve_now_and_the_aliases(gateway_client, fleet, aliases):
    aliases({"smart": ["big-model", "small-model"]})
    fleet("big", model="big-model")
    fleet("z", provider="zai", model="big-model")
    fleet("down", model="down-model", status="unhealthy")
    fleet("parked", model="parked-model", status="maintenance")

    response = gateway_client.models()

    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    by_id = {entry["id"]: entry for entry in body["data"]}
    assert set(by_id) == {"big-model", "smart"}
    assert by_id["big-model"]["owned_by"] == "openai,zai"
    assert by_id["smart"]["fallbacks"] == ["big-model", "small-model"]
    assert gateway_client.models(key=None).status_code == 401


def test_routing_keeps_the_last_registry_when_a_refresh_fails(fleet, sim_server, monkeypatch, caplog):
    from configuration.selectors import config_cache_clear
    from gateway.proxy import RoutingCache

    client = GatewayClient(
        Gateway(log_buffer=RequestLogBuffer(background=False), routing=RoutingCache(refresh_seconds=0))
    )
    fleet("a")
    assert client.chat().status_code == 200
    monkeypatch.setenv("INSTANCE_MANAGER_LOAD_BALANCER__MODEL_ALIASES", "{not json")
    config_cache_clear()  # the next refresh reads the broken configuration and fails

    response = client.chat()

    assert response.status_code == 200
    assert sim_server.stats("a")["total"] == 2
    assert "Routing refresh failed" in caplog.text


@pytest.mark.django_db(transaction=True)  # Django's own handler closes connections at request end
def test_the_front_door_hands_every_other_path_to_django(fleet):
    """gateway/asgi.py in front of Django's ASGI application, as ishchat/asgi.py mounts it."""
    from django.core.asgi import get_asgi_application

    gateway = Gateway(log_buffer=RequestLogBuffer(background=False))
    client = GatewayClient(gateway)
    client.app = GatewayApp(get_asgi_application(), gateway=gateway)
    fleet("a")

    health = client.request("GET", "/health", key=None)
    completion = client.chat()

    assert health.json()["components"]["database"]["status"] == "up"
    assert completion.status_code == 200
