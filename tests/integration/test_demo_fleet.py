"""What `make run` starts: the Procfile's simulator process registers the demo fleet and serves it."""

from __future__ import annotations

import sys

import httpx
import pytest

from instances.choices import CheckStatus, CheckType
from instances.health.services import health_sweep
from instances.models import AIInstance
from simulator.demo import DEMO_FLEET, DEMO_TAG

from .conftest import Process, child_env, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def start_simulator(port: int, log_name: str, tmp_path) -> tuple[Process, dict]:
    """Start the Procfile's simulator command; returns it and the slow demo instance's behaviour once it answers."""
    command = [sys.executable, "manage.py", "simulate_providers", "--port", str(port), "--demo-fleet"]
    process = Process.start("simulate_providers", command, child_env(INSTANCE_MANAGER_DEMO="true"), tmp_path / log_name)
    url = f"http://127.0.0.1:{port}/_control/instances/anthropic-haiku-us"

    def behaviour() -> dict | None:
        try:
            return httpx.get(url, timeout=1.0).json()["behaviour"]
        except httpx.TransportError:
            return None

    return process, wait_for(behaviour, timeout=30, what="the simulator answering", process=process)


def test_the_simulator_process_registers_the_demo_fleet_once_and_serves_it(tmp_path):
    port = free_port()
    first, _ = start_simulator(port, "first.log", tmp_path)
    try:
        instances = list(AIInstance.objects.all())
        report = health_sweep(check_types=[CheckType.BASIC])
    finally:
        first.stop()

    assert len(instances) == len(DEMO_FLEET)
    assert all(DEMO_TAG in instance.tags for instance in instances)
    assert all(instance.endpoint_url.startswith(f"http://127.0.0.1:{port}/sim/") for instance in instances)
    status = {result["instance_name"]: result["status"] for result in report.results}
    assert status["openai-gpt-4o-eu"] == CheckStatus.HEALTHY
    assert status["anthropic-haiku-us"] == CheckStatus.DEGRADED
    assert status["ollama-qwen2.5-workstation"] == CheckStatus.UNHEALTHY
    assert "registered 10 demo instances" in first.log()

    second, behaviour = start_simulator(port, "second.log", tmp_path)
    second.stop()

    assert AIInstance.objects.count() == len(DEMO_FLEET)
    assert behaviour["latency_ms"] == 2400  # behaviours come back on every start
    assert "the registry already has 10 instance(s)" in second.log()
