"""Two sweeps at the same time against one database: no instance is ever checked twice.

Threads, each with its own database connection, stand for two workers; the
sweeps' own locking (each instance's claim) is what is tested.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from django.db import connection

from instances.health.services import SweepReport, health_sweep
from instances.models import AIInstance, HealthCheck
from instances.services import instance_register

from .conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def register(sim_server, count: int, latency_ms: float) -> list[int]:
    pks = []
    for index in range(count):
        name = f"concurrent-{index}"
        sim_server.configure(name, latency_ms=latency_ms)
        instance = instance_register(
            provider_type="openai",
            model_name="sim-model",
            instance_name=name,
            endpoint_url=sim_server.base_url(name),
            api_key="sk-integration-000000000000",
        )
        pks.append(instance.pk)
    return pks


def in_thread(target, results: list) -> threading.Thread:
    def run() -> None:
        try:
            results.append(target())
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def checks_per_instance() -> Counter[int]:
    return Counter(HealthCheck.objects.values_list("instance_id", flat=True))


def test_two_sweeps_started_together_check_every_instance_exactly_once(sim_server):
    pks = register(sim_server, 20, latency_ms=200)
    barrier = threading.Barrier(2)
    spans: list[tuple[float, float, SweepReport]] = []

    def sweep() -> tuple[float, float, SweepReport]:
        barrier.wait(timeout=10)
        started = time.monotonic()
        report = health_sweep()
        return started, time.monotonic(), report

    threads = [in_thread(sweep, spans) for _ in range(2)]
    for thread in threads:
        thread.join(timeout=60)

    assert len(spans) == 2
    assert max(start for start, _, _ in spans) < min(end for _, end, _ in spans), "the sweeps did not overlap"
    assert checks_per_instance() == Counter(dict.fromkeys(pks, 1))
    reports = [report for _, _, report in spans]
    assert sum(report.claimed for report in reports) == len(pks)
    assert sum(report.checks for report in reports) == len(pks)


def test_a_second_sweep_leaves_the_instances_a_running_sweep_claimed_alone(sim_server):
    pks = register(sim_server, 10, latency_ms=1500)
    first: list[SweepReport] = []
    thread = in_thread(health_sweep, first)
    wait_for(
        lambda: AIInstance.objects.filter(health_claim_token__isnull=False).count() == len(pks),
        timeout=10,
        what="the first sweep's claims",
    )

    second = health_sweep()
    thread.join(timeout=60)

    assert (second.due, second.claimed, second.checks) == (len(pks), 0, 0)
    assert first[0].checks == len(pks)
    assert checks_per_instance() == Counter(dict.fromkeys(pks, 1))
    assert not AIInstance.objects.filter(health_claim_token__isnull=False).exists()
