"""An instance's own maximum stream duration, through the registry API: set at registration,
changed and cleared (back to load_balancer.max_stream_seconds) by PATCH, range-checked."""

from __future__ import annotations

import pytest

from instances.models import AIInstance

pytestmark = pytest.mark.django_db


def test_registration_and_patch_set_and_clear_the_maximum_stream_duration(api_client, registration):
    created = api_client.post("/api/instances/register", {**registration, "max_stream_seconds": 120}, format="json")
    assert created.status_code == 201, created.content
    instance_id = created.json()["instance_id"]
    assert created.json()["max_stream_seconds"] == 120

    patched = api_client.patch(f"/api/instances/{instance_id}", {"max_stream_seconds": None}, format="json")

    assert patched.status_code == 200, patched.content
    assert patched.json()["max_stream_seconds"] is None
    assert AIInstance.objects.get(instance_id=instance_id).max_stream_seconds is None


@pytest.mark.parametrize("value", [0, 86_401, "long"])
def test_a_maximum_stream_duration_out_of_range_is_refused(api_client, registration, value):
    response = api_client.post("/api/instances/register", {**registration, "max_stream_seconds": value}, format="json")

    assert response.status_code == 400
    assert "max_stream_seconds" in str(response.json())
