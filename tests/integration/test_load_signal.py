"""One truth about load, end to end with real processes: requests in flight through /v1 of a
uvicorn web process and leases taken through its select-instance raise the group's utilisation as
a Celery worker's scaling round sees it, and the engine scales up (the pool backend activates a
standby); when they end (one lease released, the other left to lapse at its TTL) the worker scales
down; a reported load lapses at its TTL, so a stale
report never blocks routing beyond it.

The web process publishes the live leases into current_load every second (gateway/load.py); the
worker reads nothing else. Runs on the embedded default and on PostgreSQL + Redis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from tests.integration.conftest import (
    STARTUP_SECONDS,
    Process,
    Worker,
    child_env,
    free_port,
    health_ok,
    healthy_instances,
    running_worker,
    wait_for,
    web_command,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MODEL = "load-signal-model"
SLOTS = 4  # max_concurrent_requests of each serving instance
SLOW_MS = 6000  # each /v1 request stays in flight this long
LEASE_TTL = 3  # load_balancer.lease_ttl_seconds, set through the API


@dataclass
class Stack:
    web: Process
    client: httpx.Client
    worker: Worker
    group_id: int
    serving: list[str]


@pytest.fixture
def stack(sim_server, tmp_path: Path) -> Iterator[Stack]:
    from instances.models import AIInstance
    from scaling.models import ProviderGroup

    group = ProviderGroup.objects.create(
        group_name="load-signal", provider_type="openai", model_name=MODEL, min_instances=1, max_instances=3,
        desired_instances=2, auto_scaling_enabled=True, target_utilization=0.6, scale_up_threshold=0.8,
        scale_down_threshold=0.3, scale_up_cooldown=0, scale_down_cooldown=0, scale_down_stabilization_seconds=0,
    )  # fmt: skip
    serving = healthy_instances(sim_server, MODEL, ("busy-a", "busy-b"), max_concurrent_requests=SLOTS)
    for name in ("busy-a", "busy-b"):
        sim_server.configure(name, latency_ms=SLOW_MS)
    spare = healthy_instances(sim_server, MODEL, ("spare",), max_concurrent_requests=SLOTS)
    AIInstance.objects.filter(instance_id__in=serving + spare).update(group=group)
    AIInstance.objects.filter(instance_id__in=spare).update(status="standby")

    env = child_env(
        CELERY_TASK_ALWAYS_EAGER="true",  # the worker applies the event it records inline (the pool backend)
        INSTANCE_MANAGER_API_RATE_LIMIT="100000/min",
        INSTANCE_MANAGER_LOG_DIR=str(tmp_path / "logs"),
    )
    env.pop("INSTANCE_MANAGER_METRICS_PORT", None)
    port = free_port()
    web = Process.start("web", web_command(port), env, tmp_path / "web.log")
    headers = {"X-API-Key": settings.BACKEND_API_KEY}
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30.0, trust_env=False)
    try:
        wait_for(partial(health_ok, str(client.base_url)), timeout=STARTUP_SECONDS, what="the web process",
                 process=web)  # fmt: skip
        patched = client.patch("/api/config", json={"load_balancer": {"lease_ttl_seconds": LEASE_TTL}})
        assert patched.status_code == 200, patched.text
        with running_worker(tmp_path, CELERY_TASK_ALWAYS_EAGER="true", INSTANCE_MANAGER_LOG_DIR=str(tmp_path)) as w:
            yield Stack(web, client, w, group.pk, serving)
    finally:
        client.close()
        web.stop()


def _published_load(instance_ids: list[str]) -> int:
    from instances.models import AIInstance

    return sum(AIInstance.objects.filter(instance_id__in=instance_ids).values_list("current_load", flat=True))


def _evaluate(stack: Stack, after_event: int) -> dict:
    """One scaling round in the worker process; the group's last decision once it is newer than `after_event`."""
    from scaling.models import ProviderGroup
    from scaling.tasks import scaling_evaluate_all

    before = ProviderGroup.objects.get(pk=stack.group_id).last_evaluated_at
    stack.worker.enqueue(scaling_evaluate_all)

    def evaluated() -> dict | None:
        group = ProviderGroup.objects.get(pk=stack.group_id)
        return group.last_decision if group.last_evaluated_at != before else None

    return wait_for(evaluated, timeout=30, what="the worker's scaling round", process=stack.worker.process)


def test_load_through_the_gateway_and_leases_scales_the_group_up_then_down(stack):
    from instances.models import AIInstance
    from scaling.models import ScalingEvent

    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hold"}], "max_tokens": 4}
    answers: list[int] = []

    def call() -> None:
        answers.append(stack.client.post("/v1/chat/completions", json=chat).status_code)

    threads = [threading.Thread(target=call) for _ in range(2 * SLOTS - 2)]
    for thread in threads:
        thread.start()
    leases = []
    for ttl in (90, 45):  # the seed's flow: select, then call the provider yourself
        taken = stack.client.post(
            "/api/instances/select-instance", json={"model_name": MODEL, "lease": True, "lease_ttl_seconds": ttl}
        )
        assert taken.status_code == 200, taken.text
        leases.append(taken.json())

    # 6 requests and 2 leases on 2 x 4 slots: the web process publishes 8 within about a second.
    wait_for(lambda: _published_load(stack.serving) == 2 * SLOTS, timeout=10, what="8 in flight published",
             process=stack.web)  # fmt: skip
    up = _evaluate(stack, after_event=0)

    assert up["inputs"]["window"]["utilization"] == pytest.approx(1.0), up
    assert (up["direction"], up["outcome"]) == ("up", "acted"), up
    event = ScalingEvent.objects.get(pk=up["event_id"])
    wait_for(lambda: ScalingEvent.objects.get(pk=event.pk).status == "completed", timeout=30,
             what="the scale-up applied", process=stack.worker.process)  # fmt: skip
    event.refresh_from_db()
    assert (event.old_count, event.new_count, event.result["activated"]) == (2, 3, ["spare"])
    assert AIInstance.objects.get(instance_name="spare").status in ("starting", "healthy")

    for thread in threads:
        thread.join(timeout=SLOW_MS / 1000 + 20)
    assert answers == [200] * len(threads)
    kept, _forgotten = leases  # one client releases its lease; the other crashed and never will
    instance_id = kept["selected_instance"]["instance_id"]
    released = stack.client.post(f"/api/instances/{instance_id}/release", json={"lease_id": kept["lease_id"]})
    assert released.status_code == 200, released.text

    every = [*stack.serving, str(AIInstance.objects.get(instance_name="spare").instance_id)]
    assert _published_load(every) >= 1  # the forgotten lease still counts until its 45 s TTL
    wait_for(lambda: _published_load(every) == 0, timeout=60, what="the forgotten lease lapsed", process=stack.web)
    down = _evaluate(stack, after_event=event.pk)

    assert down["inputs"]["window"]["utilization"] == pytest.approx(0.0), down
    assert (down["direction"], down["outcome"]) == ("down", "acted"), down


def test_a_stale_reported_load_blocks_routing_no_longer_than_its_ttl(stack):
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    for instance_id in stack.serving:  # a client says every slot is busy, then stops reporting
        reported = stack.client.put(f"/api/instances/{instance_id}/load", params={"current_load": SLOTS})
        assert reported.status_code == 200 and reported.json()["current_load"] == SLOTS, reported.text
    reported_at = time.monotonic()

    full = stack.client.post("/v1/chat/completions", json=chat)
    assert full.status_code == 503, full.text
    assert full.json()["error"]["code"] in ("all_at_capacity", "none_eligible"), full.text
    assert "capacity" in full.text, full.text

    wait_for(lambda: _published_load(stack.serving) == 0, timeout=LEASE_TTL + 5, what="the report lapsed",
             process=stack.web)  # fmt: skip
    assert time.monotonic() - reported_at >= LEASE_TTL - 0.5
    served = stack.client.post("/v1/chat/completions", json=chat, timeout=SLOW_MS / 1000 + 20)
    assert served.status_code == 200, served.text
