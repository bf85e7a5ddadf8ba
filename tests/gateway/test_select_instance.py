"""POST /api/instances/select-instance: the balancer's advice, with its reasons."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

pytestmark = pytest.mark.django_db

URL = "/api/instances/select-instance"


def select(client, **body):
    return client.post(URL, {"provider_type": "openai", "model_name": "sim-model", **body}, format="json")


def test_it_answers_the_seeds_shape(api_client, fleet):
    fleet("a")
    fleet("b")

    response = select(api_client, strategy="health_based", min_health_score=0.7)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) >= {
        "selected_instance",
        "selection_reason",
        "alternative_instances",
        "total_healthy_instances",
        "load_balancing_time_ms",
    }
    assert body["selected_instance"]["instance_name"] in {"a", "b"}
    assert body["selected_instance"]["api_key_set"] is True
    assert body["total_healthy_instances"] == 2
    assert body["selection_reason"].startswith("health_based")
    assert len(body["alternative_instances"]) == 1
    assert body["load_balancing_time_ms"] >= 0


def test_round_robin_cycles_through_the_pool(api_client, fleet):
    names = ["a", "b", "c"]
    for name in names:
        fleet(name)

    picked = [select(api_client, strategy="round_robin").json()["selected_instance"]["instance_name"] for _ in range(9)]

    assert Counter(picked) == {"a": 3, "b": 3, "c": 3}
    assert picked[:3] == picked[3:6] == picked[6:]


def test_weighted_holds_its_proportions_and_weight_zero_drains(api_client, fleet):
    fleet("heavy", weight=300)
    fleet("light", weight=100)
    fleet("drained", weight=0)

    picked = Counter(
        select(api_client, strategy="weighted").json()["selected_instance"]["instance_name"] for _ in range(40)
    )

    assert picked == {"heavy": 30, "light": 10}


def test_session_affinity_keeps_a_session_on_one_instance(api_client, fleet):
    for name in "abcd":
        fleet(name)

    picks = {select(api_client, session_id="user-42").json()["selected_instance"]["instance_name"] for _ in range(5)}
    header = api_client.post(URL, {"model_name": "sim-model"}, format="json", HTTP_X_SESSION_ID="user-42").json()[
        "selected_instance"
    ]["instance_name"]

    assert len(picks) == 1
    assert header in picks


def test_exclude_group_and_region_narrow_the_candidates(api_client, fleet):
    from scaling.models import ProviderGroup

    group = ProviderGroup.objects.create(group_name="g1", provider_type="openai")
    a = fleet("a", region="eu")
    fleet("b", region="us", group_id=group.pk)

    assert select(api_client, exclude=[str(a.instance_id)]).json()["selected_instance"]["instance_name"] == "b"
    assert select(api_client, region="eu").json()["selected_instance"]["instance_name"] == "a"
    assert select(api_client, group_id=group.pk).json()["selected_instance"]["instance_name"] == "b"


def test_degraded_instances_serve_only_when_nothing_healthy_remains(api_client, fleet):
    fleet("slow", status="degraded", health_score=0.5)
    fast = fleet("fast")

    assert select(api_client).json()["selected_instance"]["instance_name"] == "fast"
    fast.delete()
    from gateway.registry import reset_registry_snapshot

    reset_registry_snapshot()
    assert select(api_client).json()["selected_instance"]["instance_name"] == "slow"


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ([], "none_registered"),
        ([("a", "unhealthy"), ("b", "unhealthy")], "all_unhealthy"),
        ([("a", "maintenance")], "all_not_serving"),
    ],
)
def test_no_candidate_is_503_with_the_reason(api_client, fleet, setup, code):
    for name, status in setup:
        fleet(name, status=status)

    response = select(api_client)

    assert response.status_code == 503
    assert response.json()["code"] == code
    assert response.json()["detail"]


def test_a_low_min_health_score_excludes_weak_instances(api_client, fleet):
    fleet("weak", health_score=0.4)

    response = select(api_client, min_health_score=0.7)

    assert response.status_code == 503
    assert response.json()["code"] == "all_low_score"


@pytest.mark.parametrize(
    "body",
    [
        {"strategy": "fastest"},
        {"min_health_score": 1.5},
        {"exclude": ["not-a-uuid"]},
        {"provider_type": "mistral"},
        {"model_name": ""},
        {"surprise": 1},
    ],
)
def test_bad_bodies_are_400(api_client, fleet, body):
    fleet("a")
    assert select(api_client, **body).status_code == 400


def test_all_seven_strategies_choose(api_client, fleet):
    for name in "abc":
        fleet(name)
    for strategy in [
        "round_robin",
        "weighted",
        "least_connections",
        "least_response_time",
        "random",
        "health_based",
        "power_of_two",
    ]:
        response = select(api_client, strategy=strategy)
        assert response.status_code == 200, (strategy, response.content)
        assert response.json()["strategy"] == strategy
        assert response.json()["selection_reason"]


def test_a_read_only_key_may_not_select_since_selection_moves_shared_state(read_only_client, fleet):
    fleet("a")
    assert select(read_only_client).status_code == 403


def test_unknown_model_is_503_none_registered(api_client):
    response = api_client.post(URL, {"model_name": f"nothing-{uuid.uuid4().hex}"}, format="json")
    assert (response.status_code, response.json()["code"]) == (503, "none_registered")
