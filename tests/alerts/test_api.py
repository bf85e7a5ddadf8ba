"""GET /api/alerts, GET /api/alerts/{id}, POST /api/alerts/{id}/acknowledge."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts import services
from alerts.choices import AlertStatus, ChannelKind
from alerts.models import Alert, Notification
from instances.choices import InstanceStatus
from ishchat.api import MAX_OFFSET
from tests.alerts.conftest import add_check, make_group, make_instance

pytestmark = pytest.mark.django_db


def raise_alerts(count: int = 1, *, slow: bool = False) -> list[Alert]:
    group = make_group()
    for _ in range(count):
        instance = make_instance(status=InstanceStatus.UNHEALTHY, group=group)
        if slow:
            add_check(instance, at=timezone.now() - timedelta(seconds=30), response_time_ms=2500)
    services.alerts_evaluate()
    return list(Alert.objects.order_by("id"))


def test_the_list_is_newest_first_with_count_limit_offset(api_client):
    raise_alerts(3)

    response = api_client.get("/api/alerts?limit=2&offset=1")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["count"], body["limit"], body["offset"], len(body["results"])) == (4, 2, 1, 2)
    everything = api_client.get("/api/alerts").json()["results"]
    assert [row["id"] for row in everything] == sorted((row["id"] for row in everything), reverse=True)
    row = next(r for r in everything if r["rule"] == "instance_unhealthy")
    alert = Alert.objects.select_related("instance", "group").get(pk=row["id"])
    assert alert.instance is not None and alert.group is not None
    assert row["instance_id"] == str(alert.instance.instance_id)
    assert (row["instance_name"], row["group_id"], row["group_name"]) == (
        alert.instance.instance_name,
        alert.group_id,
        alert.group.group_name,
    )
    assert set(row) >= {"severity", "status", "dedup_key", "title", "message", "details", "value", "threshold"}
    assert {"opened_at", "last_seen_at", "acknowledged_at", "acknowledged_by", "resolved_at"} <= set(row)


def test_the_list_filters_by_status_severity_rule_and_instance(api_client):
    raise_alerts(2, slow=True)
    unhealthy = Alert.objects.filter(rule="instance_unhealthy").order_by("id")
    services.alert_acknowledge(alert=unhealthy[0], actor="api:test")
    instance = unhealthy[1].instance
    assert instance is not None
    instance_id = str(instance.instance_id)

    def ids(query: str) -> set[int]:
        response = api_client.get(f"/api/alerts?{query}")
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids("status=acknowledged") == {unhealthy[0].pk}
    assert ids("severity=warning") == set(Alert.objects.filter(rule="response_time").values_list("id", flat=True))
    assert ids("rule=group_no_healthy") == set(
        Alert.objects.filter(rule="group_no_healthy").values_list("id", flat=True)
    )
    assert ids(f"instance_id={instance_id}") == set(
        Alert.objects.filter(instance=unhealthy[1].instance).values_list("id", flat=True)
    )
    assert ids(f"instance_id={instance_id}&rule=response_time&status=open&severity=warning") == {
        Alert.objects.get(instance=unhealthy[1].instance, rule="response_time").pk
    }
    assert ids("status=resolved") == set()


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "offset=-1",
        "offset=x",
        "status=closed",
        "severity=info",
        "rule=disk_full",
        "instance_id=not-a-uuid",
        "colour=red",
    ],
)
def test_bad_filters_and_paging_are_400(api_client, query):
    response = api_client.get(f"/api/alerts?{query}")

    assert response.status_code == 400, response.content
    assert query.split("=")[0] in response.json()


def test_the_list_costs_the_same_queries_for_many_rows(api_client):
    raise_alerts(1)
    with CaptureQueriesContext(connection) as few:
        assert api_client.get("/api/alerts").status_code == 200
    raise_alerts(25, slow=True)
    with CaptureQueriesContext(connection) as many:
        response = api_client.get("/api/alerts")

    assert response.json()["count"] > 50
    assert len(many.captured_queries) == len(few.captured_queries) <= 2


def test_the_detail_shows_one_alert_and_unknown_ids_are_404(api_client):
    (alert, *_) = raise_alerts(1)

    response = api_client.get(f"/api/alerts/{alert.pk}")
    assert response.status_code == 200 and response.json()["id"] == alert.pk

    assert api_client.get("/api/alerts/999999").status_code == 404
    assert api_client.get("/api/alerts/99999999999999999999999").status_code == 404
    assert api_client.post("/api/alerts/999999/acknowledge").status_code == 404


def test_acknowledge_records_who_and_when_and_notifies_the_channels_that_heard(api_client):
    services.channel_create(name="log", kind=ChannelKind.LOG)
    alert = Alert.objects.get(rule="instance_unhealthy", pk__in=[a.pk for a in raise_alerts(1)])

    response = api_client.post(f"/api/alerts/{alert.pk}/acknowledge")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["acknowledged_by"]) == ("acknowledged", "api:BACKEND_API_KEY")
    assert body["acknowledged_at"] is not None
    assert Notification.objects.filter(alert=alert, event="acknowledged").count() == 1

    again = api_client.post(f"/api/alerts/{alert.pk}/acknowledge")
    assert again.status_code == 200 and again.json()["acknowledged_at"] == body["acknowledged_at"]
    assert Notification.objects.filter(alert=alert, event="acknowledged").count() == 1


def test_acknowledging_a_resolved_alert_is_409(api_client):
    (alert, *_) = raise_alerts(1)
    Alert.objects.filter(pk=alert.pk).update(status=AlertStatus.RESOLVED, resolved_at=timezone.now())

    response = api_client.post(f"/api/alerts/{alert.pk}/acknowledge")

    assert response.status_code == 409
    assert response.json()["code"] == "conflict"
    assert Alert.objects.get(pk=alert.pk).status == AlertStatus.RESOLVED


def test_a_key_is_needed_and_a_read_only_key_cannot_acknowledge(anon_client, read_only_client):
    (alert, *_) = raise_alerts(1)

    assert anon_client.get("/api/alerts").status_code == 401
    assert anon_client.post(f"/api/alerts/{alert.pk}/acknowledge").status_code == 401
    assert read_only_client.get("/api/alerts").status_code == 200
    assert read_only_client.get(f"/api/alerts/{alert.pk}").status_code == 200
    assert read_only_client.post(f"/api/alerts/{alert.pk}/acknowledge").status_code == 403
    assert Alert.objects.get(pk=alert.pk).status == AlertStatus.OPEN


def test_the_schema_documents_the_alert_endpoints(api_client):
    schema = api_client.get("/api/schema/?format=json").json()

    assert {"/api/alerts", "/api/alerts/{alert_id}", "/api/alerts/{alert_id}/acknowledge"} <= set(schema["paths"])
    acknowledge = schema["paths"]["/api/alerts/{alert_id}/acknowledge"]["post"]
    assert {"200", "401", "403", "404", "409"} <= set(acknowledge["responses"])


def test_paging_past_the_end_is_empty_and_out_of_range_offsets_are_400(api_client):
    raise_alerts(1)

    past = api_client.get(f"/api/alerts?offset={MAX_OFFSET}")
    assert past.status_code == 200 and past.json()["results"] == []
    assert api_client.get(f"/api/alerts?offset={MAX_OFFSET + 1}").status_code == 400
    assert api_client.get(f"/api/alerts?group_id={2**63}").status_code == 400
