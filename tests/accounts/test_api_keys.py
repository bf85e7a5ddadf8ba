"""API key authentication, access levels and per-key throttling."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.choices import Access
from accounts.models import ProjectAPIKey
from accounts.services import api_key_create, api_key_revoke
from instances.models import AIInstance

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    ["/api/instances", "/api/instances/status", "/api/config", "/api/instances/00000000-0000-0000-0000-000000000000"],
)
def test_every_api_endpoint_needs_a_key(anon_client, path):
    response = anon_client.get(path)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_wrong_key_is_401(registration):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY="not-a-real-key")
    assert client.get("/api/instances").status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Bearer abcdefgh.ijklmnop")
    assert client.post("/api/instances/register", registration, format="json").status_code == 401
    assert AIInstance.objects.count() == 0


def test_the_backend_key_works_as_bearer_and_header(settings):
    for header in (
        {"HTTP_AUTHORIZATION": f"Bearer {settings.BACKEND_API_KEY}"},
        {"HTTP_X_API_KEY": settings.BACKEND_API_KEY},
    ):
        client = APIClient()
        client.credentials(**header)
        assert client.get("/api/instances").status_code == 200


def test_a_read_only_key_reads_but_gets_403_on_writes(read_only_client, registration):
    assert read_only_client.get("/api/instances").status_code == 200

    response = read_only_client.post("/api/instances/register", registration, format="json")

    assert response.status_code == 403
    assert AIInstance.objects.count() == 0


def test_created_keys_are_stored_only_as_hashes_and_can_be_revoked(registration):
    api_key, plain = api_key_create(name="ci", access=Access.FULL)
    stored = ProjectAPIKey.objects.get(pk=api_key.pk)
    assert plain.split(".")[1] not in stored.hashed_key
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=plain)
    assert client.post("/api/instances/register", registration, format="json").status_code == 201

    api_key_revoke(api_key=stored)

    assert client.get("/api/instances").status_code == 401


def test_create_api_key_command_prints_the_key_once(capsys):
    call_command("create_api_key", "deploy-bot", "--read-only")

    out = capsys.readouterr().out
    plain = out.strip().splitlines()[-1]
    key = ProjectAPIKey.objects.get(pk=ProjectAPIKey.objects.get_from_key(plain).pk)
    assert (key.name, key.access) == ("deploy-bot", Access.READ_ONLY)


def test_requests_over_the_per_key_rate_get_429_with_retry_after(api_client, settings):
    settings.API_RATE_LIMIT = "3/min"

    codes = [api_client.get("/api/instances").status_code for _ in range(4)]
    limited = api_client.get("/api/instances")

    assert codes == [200, 200, 200, 429]
    assert int(limited.headers["Retry-After"]) > 0
    other_key = APIClient()
    other_key.credentials(HTTP_X_API_KEY=api_key_create(name="other")[1])
    assert other_key.get("/api/instances").status_code == 200


def test_health_needs_no_key_and_reports_components(anon_client):
    response = anon_client.get("/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "healthy"
    assert {name: c["status"] for name, c in body["components"].items()} == {
        "database": "up",
        "cache": "up",
        "broker": "up",
    }


def test_health_is_degraded_naming_the_cache_when_only_the_cache_is_down(anon_client, settings):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    response = anon_client.get("/health")

    assert response.status_code == 200  # the process still serves; 503 is for the database
    assert response.json()["status"] == "degraded"
    assert response.json()["failed"] == ["cache"]


def test_the_admin_creates_a_key_through_the_service_and_shows_it_once(admin_client):
    response = admin_client.post(
        "/admin/accounts/projectapikey/add/", {"name": "grafana", "access": "read_only"}, follow=True
    )

    assert response.status_code == 200
    key = ProjectAPIKey.objects.get(name="grafana")
    shown = [str(m) for m in response.context["messages"] if "cannot be shown again" in str(m)]
    assert len(shown) == 1
    plain = shown[0].split(" is: ")[1].split(" ")[0]
    assert ProjectAPIKey.objects.get_from_key(plain).pk == key.pk
    assert key.access == Access.READ_ONLY
    assert plain not in admin_client.get(f"/admin/accounts/projectapikey/{key.pk}/change/").content.decode()


def test_the_admin_revoke_action_revokes(admin_client):
    api_key, _ = api_key_create(name="old")

    admin_client.post(
        "/admin/accounts/projectapikey/", {"action": "revoke_keys", "_selected_action": [api_key.pk]}, follow=True
    )

    assert ProjectAPIKey.objects.get(pk=api_key.pk).revoked
