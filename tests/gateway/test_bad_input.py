"""Inputs that used to end in a 500 at /v1/chat/completions are a 400 in OpenAI's error shape,
and nothing reaches the provider or the RequestLog."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from instances.models import AIInstance, RequestLog
from tests.gateway.test_chat_completions import GatewayClient, new_gateway_client

pytestmark = pytest.mark.django_db

MESSAGES = '[{"role": "user", "content": "hi"}]'
BAD_BODIES = {
    # json.loads recursed until RecursionError.
    "100k-deep JSON": f'{{"model": "sim-model", "messages": {MESSAGES}, "x": {"[" * 100_000}{"]" * 100_000}}}',
    # Parsed, then encoding the body for the provider failed (UnicodeEncodeError).
    "a lone surrogate in content": '{"model": "sim-model", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
    # A NUL in a logged field made PostgreSQL refuse the RequestLog row (and, before the writer isolated
    # rows, its whole batch).
    "a NUL in user": '{"model": "sim-model", "messages": ' + MESSAGES + ', "user": "alice\\u0000"}',
    "a NUL in session_id": '{"model": "sim-model", "messages": ' + MESSAGES + ', "session_id": "s\\u0000"}',
    "a NUL in model": '{"model": "sim-model\\u0000", "messages": ' + MESSAGES + "}",
}


@pytest.fixture
def gateway_client() -> GatewayClient:
    return new_gateway_client()


@pytest.mark.parametrize("raw", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_input_is_a_400_and_reaches_no_provider(
    raw: str, gateway_client: GatewayClient, fleet: Callable[..., AIInstance], sim_server: Any
) -> None:
    fleet("a")

    response = post(gateway_client, raw)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert sim_server.stats("a")["total"] == 0
    assert gateway_client.logs() == [] and RequestLog.objects.count() == 0


def test_only_a_lone_surrogate_and_a_nul_in_a_logged_field_are_refused(
    gateway_client: GatewayClient, fleet: Callable[..., AIInstance], sim_server: Any
) -> None:
    """Escaped astral characters (what ensure_ascii encoders send) are valid text, and a NUL in content
    is the provider's business: the gateway never stores content."""
    fleet("a")
    fine = '{"model": "sim-model", "messages": [{"role": "user", "content": "\\ud83d\\ude00 a\\u0000b"}]}'

    assert post(gateway_client, fine).status_code == 200
    assert post(gateway_client, BAD_BODIES["a lone surrogate in content"]).status_code == 400
    assert post(gateway_client, BAD_BODIES["a NUL in user"]).status_code == 400
    assert sim_server.stats("a")["total"] == 1


def post(client: GatewayClient, raw: str) -> Any:
    return client.request(
        "POST", "/v1/chat/completions", content=raw.encode(), headers={"content-type": "application/json"}
    )
