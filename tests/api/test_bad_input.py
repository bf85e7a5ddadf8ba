"""Inputs that used to end in a 500 at /api (or, on SQLite, be stored where PostgreSQL refuses them)
are a 400 in the API's JSON shape, and nothing is written. Run on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from instances.models import AIInstance
from instances.services import instance_register
from instances.validators import MAX_METADATA_DEPTH

pytestmark = pytest.mark.django_db

REGISTER = "/api/instances/register"


def nested(depth: int) -> str:
    """`depth` arrays inside each other, as JSON text."""
    return "[" * depth + "]" * depth


def with_metadata(registration: dict[str, Any], metadata_json: str) -> str:
    """The registration body with `metadata` spliced in as raw JSON text (ensure_ascii: escapes stay escapes)."""
    return json.dumps(registration)[:-1] + f', "metadata": {metadata_json}}}'


BAD_BODIES = {
    # DRF's JSONParser recursed until RecursionError.
    "100k-deep JSON": lambda r: json.dumps(r)[:-1] + f', "x": {nested(100_000)}}}',
    # PostgreSQL's jsonb refuses NUL ("unsupported Unicode escape sequence"); SQLite stored it.
    "a NUL in a metadata key": lambda r: with_metadata(r, '{"own\\u0000er": "team-a"}'),
    "a NUL in a metadata value": lambda r: with_metadata(r, '{"owner": "team\\u0000a"}'),
    "3,000-deep metadata": lambda r: with_metadata(r, '{"a": ' + nested(3000) + "}"),
    # Not valid Unicode: psycopg cannot encode it for PostgreSQL; SQLite stored it.
    "a lone surrogate in a metadata value": lambda r: with_metadata(r, '{"owner": "team-\\ud800"}'),
}


def post(client: APIClient, raw: str) -> Any:
    return client.generic("POST", REGISTER, raw, content_type="application/json")


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_input_is_a_400_and_writes_nothing(api_client: APIClient, registration: dict[str, Any], body: Any) -> None:
    response = post(api_client, body(registration))

    assert response.status_code == 400, response.content[:500]
    assert response["content-type"] == "application/json"
    assert "JSON parse error" in response.json()["detail"]
    assert not AIInstance.objects.exists()


def test_metadata_deeper_than_the_bound_is_refused_by_the_field(
    api_client: APIClient, registration: dict[str, Any]
) -> None:
    """Within the parser's bound (64) but beyond the metadata's: the field says so."""
    deep = '{"a": ' + nested(MAX_METADATA_DEPTH) + "}"
    shallow = '{"a": ' + nested(MAX_METADATA_DEPTH - 1) + "}"

    refused = post(api_client, with_metadata(registration, deep))
    accepted = post(api_client, with_metadata(registration, shallow))

    assert refused.status_code == 400 and "deeper than" in refused.json()["metadata"][0]
    assert accepted.status_code == 201, accepted.content


@pytest.mark.parametrize(
    "metadata",
    [{"own\x00er": "team-a"}, {"owner": ["team\x00a"]}, {"owner": "team-\ud800"}],
    ids=["NUL in a key", "NUL in a nested value", "lone surrogate"],
)
def test_the_service_refuses_metadata_the_database_cannot_store(metadata: dict[str, Any]) -> None:
    """What the admin, the dashboard and the tasks write goes through the same validator as the API."""
    with pytest.raises(ValidationError) as error:
        instance_register(
            provider_type="openai",
            model_name="gpt-4o",
            instance_name="a",
            endpoint_url="https://api.openai.com/v1",
            api_key="sk-test-key-000000000000",
            metadata=metadata,
        )

    assert "metadata" in error.value.message_dict
    assert not AIInstance.objects.exists()
