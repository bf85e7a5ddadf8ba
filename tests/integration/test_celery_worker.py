"""The health sweep as beat runs it: enqueued on the real broker, run by a real worker process."""

from __future__ import annotations

import pytest

from instances.choices import CheckStatus
from instances.models import AIInstance, HealthCheck
from instances.services import instance_register
from instances.tasks import health_sweep_task

from .conftest import wait_for

pytestmark = pytest.mark.integration


def test_a_worker_process_runs_the_enqueued_sweep_against_the_simulator(celery_worker, sim_server):
    sim_server.configure("worker-swept", latency_ms=20)
    instance = instance_register(
        provider_type="openai",
        model_name="sim-model",
        instance_name="worker-swept",
        endpoint_url=sim_server.base_url("worker-swept"),
        api_key="sk-integration-000000000000",
    )

    celery_worker.enqueue(health_sweep_task)

    checks = wait_for(
        lambda: list(HealthCheck.objects.filter(instance=instance)),
        timeout=30,
        what="HealthCheck row from the worker",
        process=celery_worker.process,
    )
    assert [(check.check_type, check.status) for check in checks] == [("basic", CheckStatus.HEALTHY)]
    assert sim_server.stats("worker-swept")["by_endpoint"] == {"models": 1}
    wait_for(
        lambda: (
            "Task instances.health_sweep[" in celery_worker.process.log() and "succeeded" in celery_worker.process.log()
        ),
        timeout=10,
        what="the worker's log of the task",
        process=celery_worker.process,
    )
    instance.refresh_from_db()
    assert instance.last_health_check_at is not None
    assert instance.next_health_check_at is not None
    assert instance.health_claim_token is None
    assert AIInstance.objects.count() == 1
