"""GET/PATCH /api/config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from configuration.selectors import config_runtime_overrides

pytestmark = pytest.mark.django_db

URL = "/api/config"


@pytest.fixture(autouse=True)
def _seed_like_file(config_file: Any) -> Path:
    return config_file({"load_balancer": {"strategy": "health_based", "health_check_interval": 30}})


def _patch(client: APIClient, body: Any) -> Any:
    return client.patch(URL, data=json.dumps(body), content_type="application/json")


def test_get_returns_the_effective_configuration_and_its_sources(api_client: APIClient) -> None:
    response = api_client.get(URL)
    assert response.status_code == 200
    body = response.json()
    assert body["effective"]["load_balancer"]["strategy"] == "health_based"
    assert body["effective"]["providers"]["openai"]["base_url"] == "https://api.openai.com/v1"
    assert body["sources"]["load_balancer.strategy"] == "file"
    assert body["sources"]["load_balancer.healthy_threshold"] == "default"


def test_the_url_has_no_trailing_slash(api_client: APIClient) -> None:
    assert api_client.get(URL + "/").status_code == 404


def test_patch_changes_values_and_answers_with_the_new_configuration(api_client: APIClient) -> None:
    response = _patch(api_client, {"load_balancer": {"strategy": "least_connections", "breaker": {"open_seconds": 15}}})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["effective"]["load_balancer"]["strategy"] == "least_connections"
    assert body["sources"]["load_balancer.strategy"] == "runtime"
    assert body["sources"]["load_balancer.breaker.open_seconds"] == "runtime"
    assert config_runtime_overrides()["load_balancer.strategy"] == "least_connections"
    assert api_client.get(URL).json()["effective"]["load_balancer"]["breaker"]["open_seconds"] == 15


def test_patch_with_null_reverts_to_the_file(api_client: APIClient) -> None:
    _patch(api_client, {"load_balancer": {"strategy": "random"}})
    response = _patch(api_client, {"load_balancer": {"strategy": None}})
    assert response.status_code == 200
    assert response.json()["sources"]["load_balancer.strategy"] == "file"
    assert config_runtime_overrides() == {}


@pytest.mark.parametrize(
    ("body", "error_key"),
    [
        ({"load_balancer": {"strategy": "fastest"}}, "load_balancer.strategy"),
        ({"load_balancer": {"strategyy": "random"}}, "load_balancer.strategyy"),
        ({"load_balancer": {"health_check_interval": "30"}}, "load_balancer.health_check_interval"),
        ({"load_balancer": {"health_check_interval": -5}}, "load_balancer.health_check_interval"),
        ({"auto_scaling": {"min_instances": 11}}, "auto_scaling.max_instances"),
        ({"providers": {"bedrock": {"enabled": True}}}, "providers.bedrock"),
        ([{"load_balancer": {}}], "non_field_errors"),
        ("random", "non_field_errors"),
    ],
)
def test_patch_refuses_bad_input_with_errors_by_path_and_writes_nothing(
    api_client: APIClient, body: Any, error_key: str
) -> None:
    # A valid change alongside proves the request is all or nothing.
    if isinstance(body, dict):
        body = {**body, "monitoring": {"retention_days": 7}}
    response = _patch(api_client, body)
    assert response.status_code == 400
    assert error_key in response.json(), response.json()
    assert config_runtime_overrides() == {}


def test_patch_with_an_empty_or_malformed_body_is_400(api_client: APIClient) -> None:
    assert api_client.patch(URL, data="", content_type="application/json").status_code == 400
    assert api_client.patch(URL, data="{not json", content_type="application/json").status_code == 400
    assert config_runtime_overrides() == {}


def test_the_api_needs_a_key(anon_client: APIClient) -> None:
    assert anon_client.get(URL).status_code == 401
    assert _patch(anon_client, {"load_balancer": {"strategy": "random"}}).status_code == 401
    assert config_runtime_overrides() == {}


def test_a_read_only_key_may_read_but_not_change(read_only_client: APIClient) -> None:
    assert read_only_client.get(URL).status_code == 200
    assert _patch(read_only_client, {"load_balancer": {"strategy": "random"}}).status_code == 403
    assert config_runtime_overrides() == {}


def test_the_x_api_key_header_with_the_backend_key_may_change(client: Any) -> None:
    response = client.patch(
        URL,
        data=json.dumps({"health_checks": {"latency_samples": 4}}),
        content_type="application/json",
        headers={"X-API-Key": settings.BACKEND_API_KEY},
    )
    assert response.status_code == 200
    assert config_runtime_overrides() == {"health_checks.latency_samples": 4}


def test_the_openapi_schema_describes_request_and_response(api_client: APIClient) -> None:
    schema = api_client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/api/config"]["patch"]
    request = operation["requestBody"]["content"]["application/json"]["schema"]
    assert request["properties"]["load_balancer"]["properties"]["strategy"]["enum"][0] == "round_robin"
    assert "400" in operation["responses"]
    get = schema["paths"]["/api/config"]["get"]
    assert "200" in get["responses"]
