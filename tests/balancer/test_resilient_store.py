"""Routing survives a Redis outage: the balancer falls back to this process's state."""

from __future__ import annotations

import pytest

from instances.balancer.breaker import BreakerConfig, Outcome
from instances.balancer.candidates import Candidate
from instances.balancer.state import InProcessStateStore, RedisStateStore, ResilientStateStore

UNREACHABLE = "redis://127.0.0.1:1/0"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_calls_fall_back_while_redis_is_down_and_retry_later(caplog):
    clock = Clock()
    fallback = InProcessStateStore(prefix="t:")
    store = ResilientStateStore(RedisStateStore(UNREACHABLE, prefix="t:"), fallback, retry_seconds=5, clock=clock)

    turns = [store.next_turn("pool") for _ in range(3)]

    assert turns == [0, 1, 2]  # the in-process counter took over
    assert store.degraded
    assert "Redis unreachable" in caplog.text
    clock.now = 6.0
    assert not store.degraded
    store.next_turn("pool")  # tries Redis again, falls back again
    assert store.degraded


def test_a_request_is_admitted_and_finished_without_redis():
    store = ResilientStateStore(RedisStateStore(UNREACHABLE, prefix="t:"), InProcessStateStore(prefix="t:"))
    config = BreakerConfig()

    admission = store.begin(Candidate(instance_id="a"), pool="p", now=100.0, breaker=config, lease_seconds=30)

    assert admission.admitted
    store.finish(admission.lease, outcome=Outcome.SUCCESS, now=101.0, breaker=config, pool_size=1, latency_ms=12.0)
    assert store.snapshot([Candidate(instance_id="a")], now=102.0, breaker=config)["a"].in_flight == 0


@pytest.mark.django_db
def test_select_instance_answers_when_redis_is_down(api_client, settings, sim_server):
    from gateway.registry import reset_registry_snapshot
    from instances.balancer import state
    from instances.models import AIInstance
    from instances.services import instance_register

    instance = instance_register(
        provider_type="openai",
        model_name="sim-model",
        instance_name="a",
        endpoint_url=sim_server.base_url("a"),
    )
    AIInstance.objects.filter(pk=instance.pk).update(status="healthy", health_score=1.0)
    reset_registry_snapshot()
    settings.REDIS_URL = UNREACHABLE
    state._store = None

    response = api_client.post("/api/instances/select-instance", {"model_name": "sim-model"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["selected_instance"]["instance_name"] == "a"
