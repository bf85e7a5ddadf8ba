"""The auto-scaling API over HTTP: the seed's endpoints and bodies, 400s that write nothing,
409 on a taken name, 404s, read-only keys, and query counts that do not grow with the rows."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from instances.choices import InstanceStatus
from instances.models import AIInstance
from scaling.models import ProviderGroup, ScalingEvent
from tests.scaling.support import TRACKING, make_group, make_member

pytestmark = pytest.mark.django_db

GROUPS = "/api/instances/groups"
SEED_GROUP = {
    "group_name": "zai-production",
    "provider_type": "zai",
    "min_instances": 2,
    "max_instances": 10,
    "auto_scaling_enabled": True,
    "scale_up_threshold": 0.8,
}
SEED_AUTOSCALING = {
    "enabled": True,
    "min_instances": 2,
    "max_instances": 10,
    "scale_up_threshold": 0.8,
    "scale_down_threshold": 0.2,
}


def group_row(group_id: int) -> Mapping[str, Any]:
    return ProviderGroup.objects.filter(pk=group_id).values().get()


# --- create, read, update, delete -----------------------------------------------------------------

def test_the_seed_body_creates_a_group(api_client):
    response = api_client.post(GROUPS, SEED_GROUP, format="json")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["id"] == ProviderGroup.objects.get().pk
    assert (body["group_name"], body["provider_type"], body["auto_scaling_enabled"]) == (
        "zai-production", "zai", True)
    assert (body["min_instances"], body["desired_instances"], body["max_instances"]) == (2, 2, 10)
    assert (body["scale_up_threshold"], body["scale_down_threshold"], body["target_utilization"]) == (0.8, 0.54, 0.6)
    assert (body["scale_up_cooldown"], body["scale_down_cooldown"], body["scale_down_stabilization_seconds"]) == (
        0, 600, 300)
    assert (body["active_instances"], body["standby_instances"], body["total_instances"]) == (0, 0, 0)
    assert body["backend"] == "pool" and body["backend_settings"] == {"drain_timeout_seconds": 120}
    assert body["last_decision"] is None and body["paused_until"] is None


def test_a_taken_group_name_is_409(api_client):
    api_client.post(GROUPS, SEED_GROUP, format="json")

    response = api_client.post(GROUPS, {**SEED_GROUP, "provider_type": "openai"}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "conflict" and "group_name" in response.json()
    assert ProviderGroup.objects.count() == 1


BAD_POLICIES = [
    ({"min_instances": 5, "max_instances": 3}, "max_instances"),
    ({"scale_up_threshold": 0.2, "scale_down_threshold": 0.2}, "scale_up_threshold"),
    ({"scale_up_threshold": 0.1, "scale_down_threshold": 0.3}, "scale_up_threshold"),
    ({"scale_up_threshold": 1.2}, "scale_up_threshold"),
    ({"scale_down_threshold": 0}, "scale_down_threshold"),
    ({"target_utilization": 0}, "target_utilization"),
    ({"scale_up_cooldown": -1}, "scale_up_cooldown"),
    ({"scale_down_cooldown": -60}, "scale_down_cooldown"),
    ({"scale_down_stabilization_seconds": -1}, "scale_down_stabilization_seconds"),
    ({"backend": "terraform"}, "backend"),
    ({"backend": "webhook", "backend_settings": {"url": "gopher://x"}}, "backend_settings"),
    ({"backend": "kubernetes", "backend_settings": {"namespace": "ml"}}, "backend_settings"),
    ({"triggers": {"error_rate": 5}}, "triggers"),
    ({"triggers": {"p99": 100}}, "triggers"),
    ({"schedules": [{"name": "office", "cron": "0 9 * *", "end": "17:00", "min_instances": 4}]}, "schedules"),
    ({"schedules": [{"name": "office", "cron": "0 9 * * *", "min_instances": 4}]}, "schedules"),
    ({"predictive_mode": "psychic"}, "predictive_mode"),
    ({"replicas": 3}, "replicas"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_POLICIES)
def test_a_bad_group_is_400_and_nothing_is_created(api_client, fields, field):
    response = api_client.post(GROUPS, {**SEED_GROUP, **fields}, format="json")

    assert response.status_code == 400, response.json()
    assert field in response.json()
    assert not ProviderGroup.objects.exists()


@pytest.mark.parametrize(("fields", "field"), [*BAD_POLICIES, ({"min_instances": 11}, "max_instances")])
def test_a_bad_auto_scaling_policy_is_400_and_changes_nothing(api_client, fields, field):
    group_id = api_client.post(GROUPS, SEED_GROUP, format="json").json()["id"]
    before = group_row(group_id)

    response = api_client.post(f"{GROUPS}/{group_id}/auto-scaling", {**SEED_AUTOSCALING, **fields}, format="json")

    assert response.status_code == 400, response.json()
    assert field in response.json()
    assert group_row(group_id) == before


def test_the_seed_auto_scaling_body_and_the_rest_of_the_policy(api_client):
    group_id = api_client.post(GROUPS, {**SEED_GROUP, "auto_scaling_enabled": False}, format="json").json()["id"]

    response = api_client.post(
        f"{GROUPS}/{group_id}/auto-scaling",
        {
            **SEED_AUTOSCALING,
            "max_instances": 12,
            "scale_up_cooldown": 120,
            "scale_down_cooldown": 900,
            "scale_down_stabilization_seconds": 600,
            "target_utilization": 0.5,
            "triggers": {"response_time_p95_ms": 2500, "error_rate": 0.05, "queue_length": 4},
            "predictive_mode": "forecast_only",
            "schedules": [{"name": "office", "cron": "0 8 * * mon-fri", "end": "18:00", "min_instances": 4}],
        },
        format="json",
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["auto_scaling_enabled"], body["max_instances"], body["scale_up_cooldown"]) == (True, 12, 120)
    assert body["triggers"] == {"response_time_p95_ms": 2500.0, "error_rate": 0.05, "queue_length": 4.0,
                                "request_rate": None}
    assert body["schedules"][0]["name"] == "office" and body["schedules"][0]["end"] == "18:00"
    assert body["predictive_mode"] == "forecast_only"
    # Fields not given keep their values.
    again = api_client.post(f"{GROUPS}/{group_id}/auto-scaling", {"enabled": False}, format="json").json()
    assert (again["auto_scaling_enabled"], again["max_instances"], again["target_utilization"]) == (False, 12, 0.5)


def test_a_webhook_secret_is_write_only(api_client):
    group_id = api_client.post(GROUPS, SEED_GROUP, format="json").json()["id"]

    response = api_client.post(
        f"{GROUPS}/{group_id}/auto-scaling",
        {"backend": "webhook", "backend_settings": {"url": "http://127.0.0.1:9/scale", "secret": "top-secret-123"}},
        format="json",
    )

    assert response.status_code == 200
    text = json.dumps(response.json()) + json.dumps(api_client.get(f"{GROUPS}/{group_id}").json())
    assert "top-secret-123" not in text and "secret_encrypted" not in text
    assert response.json()["backend_settings"]["secret_set"] is True


def test_list_detail_patch_and_delete(api_client):
    group = make_group("alpha", **TRACKING)
    make_member(group, status=InstanceStatus.HEALTHY)
    make_member(group, status=InstanceStatus.STANDBY)
    spare = make_member(group, status=InstanceStatus.STANDBY)
    make_group("beta")

    listed = api_client.get(GROUPS).json()
    assert listed["count"] == 2 and [g["group_name"] for g in listed["results"]] == ["alpha", "beta"]
    detail = api_client.get(f"{GROUPS}/{group.pk}").json()
    assert (detail["active_instances"], detail["standby_instances"], detail["total_instances"]) == (1, 2, 3)

    patched = api_client.patch(f"{GROUPS}/{group.pk}", {"description": "zai in eu-west", "max_instances": 6},
                               format="json")
    assert patched.status_code == 200 and patched.json()["description"] == "zai in eu-west"
    assert patched.json()["max_instances"] == 6
    assert api_client.patch(f"{GROUPS}/{group.pk}", {"group_name": "beta"}, format="json").status_code == 409
    bad = api_client.patch(f"{GROUPS}/{group.pk}", {"min_instances": 7}, format="json")
    assert bad.status_code == 400 and ProviderGroup.objects.get(pk=group.pk).min_instances == 1

    assert api_client.delete(f"{GROUPS}/{group.pk}").status_code == 204
    spare.refresh_from_db()
    assert spare.group_id is None and spare.is_active
    assert AIInstance.objects.filter(is_active=True).count() == 3


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/instances/groups/999999"),
        ("patch", "/api/instances/groups/999999"),
        ("delete", "/api/instances/groups/999999"),
        ("post", "/api/instances/groups/999999/auto-scaling"),
        ("post", "/api/instances/groups/999999/evaluate"),
        ("post", "/api/instances/groups/999999/scale"),
        ("get", "/api/instances/groups/999999/scaling-events"),
        ("get", "/api/instances/groups/not-a-number"),
    ],
)
def test_unknown_groups_are_404(api_client, method, path):
    response = getattr(api_client, method)(path, {}, format="json")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")


def test_unknown_fields_and_query_parameters_are_400(api_client):
    group = make_group()

    assert api_client.post(GROUPS, {**SEED_GROUP, "colour": "red"}, format="json").status_code == 400
    assert api_client.post(f"{GROUPS}/{group.pk}/scale", {"desired_instances": 2, "force": True},
                           format="json").status_code == 400
    assert api_client.get(f"{GROUPS}/{group.pk}/scaling-events?page=2").status_code == 400
    assert api_client.post(f"{GROUPS}/{group.pk}/evaluate?dry_run=perhaps").status_code == 400
    assert not ProviderGroup.objects.exclude(pk=group.pk).exists()


# --- evaluate, scale, events, metrics -------------------------------------------------------------

def busy(**fields) -> ProviderGroup:
    group = make_group(**{**TRACKING, **fields})
    for _ in range(2):
        make_member(group, current_load=9)
    return group


def test_evaluate_returns_the_decision_and_a_dry_run_changes_nothing(api_client):
    group = busy()

    dry = api_client.post(f"{GROUPS}/{group.pk}/evaluate?dry_run=true")

    assert dry.status_code == 200, dry.json()
    body = dry.json()
    assert (body["dry_run"], body["outcome"], body["direction"], body["current"], body["desired"]) == (
        True, "dry_run", "up", 2, 3)
    assert body["reason"].startswith("scale up 2 -> 3") and "utilisation 0.90" in body["reason"]
    assert body["trigger"] == "utilization" and body["proposals"][0]["trigger"] == "utilization"
    assert "inputs" not in body
    assert not ScalingEvent.objects.exists() and group_row(group.pk)["last_decision"] == {}

    real = api_client.post(f"{GROUPS}/{group.pk}/evaluate").json()

    event = ScalingEvent.objects.get()
    assert (real["dry_run"], real["outcome"], real["event_id"]) == (False, "acted", event.pk)
    detail = api_client.get(f"{GROUPS}/{group.pk}").json()
    assert detail["last_decision"]["outcome"] == "acted" and detail["last_decision"]["desired"] == 3
    assert detail["last_scale_up_at"] is not None


def test_manual_scale_pauses_automation(api_client):
    group = busy(max_instances=5)

    response = api_client.post(f"{GROUPS}/{group.pk}/scale", {"desired_instances": 4, "reason": "launch day"},
                               format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["outcome"], body["trigger"], body["desired"]) == ("manual", "manual", 4)
    assert body["paused_until"] is not None
    event = ScalingEvent.objects.get()
    assert (event.trigger, event.new_count, event.actor) == ("manual", 4, "api:BACKEND_API_KEY")
    assert "launch day" in event.reason
    ScalingEvent.objects.filter(pk=event.pk).update(status="completed")
    assert api_client.post(f"{GROUPS}/{group.pk}/evaluate").json()["outcome"] == "paused"


def test_manual_scale_outside_the_bounds_is_400_and_changes_nothing(api_client):
    group = busy(min_instances=1, max_instances=3)

    response = api_client.post(f"{GROUPS}/{group.pk}/scale", {"desired_instances": 4}, format="json")

    assert response.status_code == 400 and "desired_instances" in response.json()
    assert group_row(group.pk)["paused_until"] is None and not ScalingEvent.objects.exists()


def test_scaling_events_are_paged_newest_first(api_client):
    group = make_group()
    for n in range(5):
        ScalingEvent.objects.create(group=group, direction="up", trigger="utilization", reason=f"r{n}",
                                    old_count=n, new_count=n + 1, status="completed")

    page = api_client.get(f"{GROUPS}/{group.pk}/scaling-events?limit=2&offset=1").json()

    assert (page["count"], page["limit"], page["offset"]) == (5, 2, 1)
    assert [item["reason"] for item in page["results"]] == ["r3", "r2"]
    assert api_client.get(f"{GROUPS}/{group.pk}/scaling-events?status=failed").json()["count"] == 0


def test_the_auto_scaling_metrics(api_client):
    group = make_group("managed")
    make_group("manual", auto_scaling_enabled=False)
    rows = [("up", "completed"), ("up", "completed"), ("down", "failed"), ("up", "skipped")]
    for direction, status in rows:
        ScalingEvent.objects.create(group=group, direction=direction, trigger="utilization", reason="x",
                                    old_count=1, new_count=2, status=status)
    ScalingEvent.objects.filter(status="failed").update(created_at=timezone.now() - timedelta(hours=2))

    body = api_client.get("/api/instances/auto-scaling/metrics").json()

    assert body["groups"] == {"total": 2, "auto_scaling_enabled": 1, "paused": 0}
    assert body["events"]["by_direction"] == {"up": 2, "down": 1}
    assert body["events"]["by_status"]["skipped"] == 1
    assert body["success_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert sum(hour["up"] for hour in body["by_hour"]) == 2 and len(body["by_hour"]) == 2
    assert [g["group_name"] for g in body["managed_groups"]] == ["managed"]
    assert api_client.get("/api/instances/auto-scaling/metrics?hours=1").json()["events"]["by_direction"] == {
        "up": 2, "down": 0}


# --- access ---------------------------------------------------------------------------------------

def test_a_read_only_key_reads_but_cannot_change_anything(read_only_client):
    group = make_group()

    assert read_only_client.get(GROUPS).status_code == 200
    assert read_only_client.get(f"{GROUPS}/{group.pk}").status_code == 200
    assert read_only_client.get(f"{GROUPS}/{group.pk}/scaling-events").status_code == 200
    assert read_only_client.get("/api/instances/auto-scaling/metrics").status_code == 200
    writes = [
        ("post", GROUPS, SEED_GROUP),
        ("patch", f"{GROUPS}/{group.pk}", {"description": "x"}),
        ("delete", f"{GROUPS}/{group.pk}", {}),
        ("post", f"{GROUPS}/{group.pk}/auto-scaling", {"enabled": False}),
        ("post", f"{GROUPS}/{group.pk}/evaluate?dry_run=true", {}),
        ("post", f"{GROUPS}/{group.pk}/scale", {"desired_instances": 2}),
    ]
    for method, path, body in writes:
        assert getattr(read_only_client, method)(path, body, format="json").status_code == 403, path
    assert ProviderGroup.objects.get().auto_scaling_enabled and not ScalingEvent.objects.exists()


def test_without_a_key_everything_is_401(anon_client):
    group = make_group()

    assert anon_client.get(GROUPS).status_code == 401
    assert anon_client.post(f"{GROUPS}/{group.pk}/evaluate").status_code == 401


# --- query counts ---------------------------------------------------------------------------------

def count_queries(client, path: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code == 200
    return len(queries)


def test_listing_groups_costs_the_same_queries_for_3_or_30(api_client):
    evaluated = make_group()
    make_member(evaluated, current_load=6)
    decision = api_client.post(f"{GROUPS}/{evaluated.pk}/evaluate").json()
    assert decision["outcome"] == "no_change"
    stored = group_row(evaluated.pk)["last_decision"]

    def add(n: int) -> None:
        for _ in range(n):
            group = make_group(last_decision=stored)
            make_member(group)
            make_member(group, status=InstanceStatus.STANDBY)

    add(3)
    few = count_queries(api_client, GROUPS)
    add(27)
    many = count_queries(api_client, GROUPS)

    assert few == many
    assert all(item["last_decision"]["outcome"] == "no_change" for item in api_client.get(GROUPS).json()["results"])


def test_listing_events_and_metrics_cost_the_same_queries_for_3_or_30(api_client):
    group = make_group()

    def add(n: int) -> None:
        for _ in range(n):
            ScalingEvent.objects.create(group=group, direction="up", trigger="utilization", reason="x",
                                        old_count=1, new_count=2, status="completed")
            make_group()

    add(3)
    few = (count_queries(api_client, f"{GROUPS}/{group.pk}/scaling-events"),
           count_queries(api_client, "/api/instances/auto-scaling/metrics"))
    add(27)
    many = (count_queries(api_client, f"{GROUPS}/{group.pk}/scaling-events"),
            count_queries(api_client, "/api/instances/auto-scaling/metrics"))

    assert few == many


def test_a_trigger_the_provider_cannot_publish_is_a_warning_in_the_api_admin_and_dashboard(api_client, client):
    from django.contrib.auth.models import User

    created = api_client.post(
        "/api/instances/groups",
        {"group_name": "hosted-queue", "provider_type": "openai", "triggers": {"queue_length": 5}},
        format="json",
    )
    assert created.status_code == 201, created.content
    warnings = created.json()["policy_warnings"]
    assert any("triggers.queue_length: openai instances publish no queue length" in w for w in warnings), warnings

    vllm = api_client.post(
        "/api/instances/groups",
        {"group_name": "vllm-queue", "provider_type": "openai_compatible", "triggers": {"queue_length": 5}},
        format="json",
    )
    assert not any("queue_length" in w for w in vllm.json()["policy_warnings"])

    User.objects.create_superuser("ops", "ops@example.com", "pw-for-tests-only")
    client.login(username="ops", password="pw-for-tests-only")
    group_id = created.json()["id"]
    page = client.get(f"/dashboard/groups/{group_id}/")
    assert page.status_code == 200
    assert "Policy warning: triggers.queue_length" in page.content.decode()
    admin = client.get(f"/admin/scaling/providergroup/{group_id}/change/")
    assert "openai instances publish no queue length" in admin.content.decode()


def test_the_forecast_season_is_part_of_the_policy_and_checked(api_client):
    group = make_group("seasonal")
    url = f"/api/instances/groups/{group.pk}/auto-scaling"

    ok = api_client.post(url, {"forecast_season_minutes": 600, "forecast_seasonality": "multiplicative"}, format="json")
    bad = api_client.post(url, {"forecast_season_minutes": 5000}, format="json")

    assert ok.status_code == 200, ok.content
    assert (ok.json()["forecast_season_minutes"], ok.json()["forecast_seasonality"]) == (600, "multiplicative")
    assert bad.status_code == 400 and "forecast_season_minutes" in bad.json()
    group.refresh_from_db()
    assert group.forecast_season_minutes == 600
