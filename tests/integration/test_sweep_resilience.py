"""Health sweeps that one slow provider or one dead worker cannot stall.

1. A provider trickling its reply a byte at a time (every read within the timeout) holds only
   its own check, until the check's deadline; the other instances' results are stored while
   it still runs (a sweep thread against the real database, results watched from the test's
   own connection).
2. A Celery worker SIGKILLed in the middle of a sweep: another worker's sweeps (sent every
   INTERVAL seconds, as beat would) check the whole fleet within one health-check interval.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from configuration.selectors import config_value
from instances.health.services import CLAIM_MARGIN_SECONDS, SweepReport, health_sweep
from instances.models import AIInstance, HealthCheck
from instances.services import instance_register
from instances.tasks import health_sweep_task

from .conftest import Process, child_env, wait_for
from .test_scaling_worker_loss import _broker, _send, _start_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

INTERVAL = 2.0  # how often this test sends a sweep, playing beat


def register(sim_server, name: str, *, timeout: float, **behaviour: float) -> AIInstance:
    sim_server.configure(name, **behaviour)
    return instance_register(
        provider_type="openai",
        model_name="sim-model",
        instance_name=name,
        endpoint_url=sim_server.base_url(name),
        api_key="sk-integration-000000000000",
        timeout=timeout,
    )


def checked(pks: list[int]) -> set[int]:
    return set(HealthCheck.objects.filter(instance_id__in=pks).values_list("instance_id", flat=True))


def test_a_trickling_provider_holds_only_its_own_check_until_its_deadline(sim_server):
    trickler = register(sim_server, "trickler", timeout=3.0, trickle_ms=500)  # each read well within 3 s
    fast = [register(sim_server, f"fast-{index}", timeout=3.0, latency_ms=50).pk for index in range(4)]
    reports: list[SweepReport] = []

    def sweep() -> None:
        try:
            reports.append(health_sweep(check_types=["basic"]))
        finally:
            connection.close()

    thread = threading.Thread(target=sweep, daemon=True)  # a stalled sweep must not outlive a failed test
    started = time.monotonic()
    thread.start()
    wait_for(lambda: checked(fast) == set(fast), timeout=1.5, what="the fast instances' results")
    fast_recorded_in = time.monotonic() - started
    assert thread.is_alive(), "the sweep was over before the trickling check's deadline"
    thread.join(timeout=20)
    sweep_seconds = time.monotonic() - started

    assert not thread.is_alive()
    check = HealthCheck.objects.get(instance=trickler)
    assert (check.status, check.error_kind) == ("unhealthy", "timeout")
    assert "3 s deadline" in check.issues[0]
    assert check.response_time_ms is not None and 3000 <= check.response_time_ms < 4000
    assert sweep_seconds < 3.0 + 2.0
    assert reports[0].checks == 5
    print(
        f"fast results stored within {fast_recorded_in:.2f} s; trickling check ended at {check.response_time_ms:.0f} ms"
    )


def test_a_worker_killed_mid_sweep_leaves_the_fleet_unchecked_for_at_most_one_interval(
    tmp_path: Path, sim_server
) -> None:
    timeout = 3.0
    # Twelve instances answering after 20 s: the first worker's sweep claims ten (the concurrency)
    # and waits on them (each check ends at its 3 s deadline) when it is killed.
    pks = [register(sim_server, f"fleet-{index}", timeout=timeout, latency_ms=20_000).pk for index in range(12)]
    concurrency = config_value("global.instance_manager.max_concurrent_health_checks")
    interval = config_value("load_balancer.health_check_interval")
    broker_env, broker = _broker(tmp_path)
    env = child_env(CELERY_TASK_ALWAYS_EAGER="false", **broker_env)
    workers = [_start_worker(name, env, tmp_path) for name in ("sweeper-a", "sweeper-b")]
    try:
        _send(health_sweep_task, broker)
        wait_for(
            lambda: AIInstance.objects.filter(health_claim_token__isnull=False).count() >= min(concurrency, len(pks)),
            timeout=30,
            what="the first sweep's claims",
        )
        first = next(worker for worker in workers if "Task instances.health_sweep[" in worker.log())
        second = next(worker for worker in workers if worker is not first)
        os.killpg(first.popen.pid, signal.SIGKILL)
        first.popen.wait(timeout=10)
        killed_at = time.monotonic()
        assert not checked(pks), "the first worker stored results before it was killed"
        for index in range(len(pks)):
            sim_server.configure(f"fleet-{index}", latency_ms=10)

        recovered_in = _sweep_until_checked(pks, broker, second, deadline=killed_at + interval + 15.0) - killed_at
    finally:
        for worker in workers:
            worker.stop()
        with broker.channel() as channel:  # sweeps still queued when the fleet was checked
            channel.queue_purge("celery")
        broker.release()

    assert HealthCheck.objects.filter(instance_id__in=pks, status="healthy").count() >= len(pks)
    # The dead worker's claims lapse after their checks' deadline and margin; the next sweep takes them.
    assert recovered_in <= min(interval, timeout + CLAIM_MARGIN_SECONDS + INTERVAL + 10.0), recovered_in
    print(f"fleet checked {recovered_in:.1f} s after the kill (claim {timeout + CLAIM_MARGIN_SECONDS:g} s)")


def _sweep_until_checked(pks: list[int], broker, worker: Process, *, deadline: float) -> float:
    """Send a sweep every INTERVAL until every instance has a result; the time they all had one."""
    while True:
        _send(health_sweep_task, broker)
        time.sleep(INTERVAL)
        if checked(pks) == set(pks):
            return time.monotonic()
        if worker.popen.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{len(checked(pks))} of {len(pks)} instances checked after the kill:\n{worker.log()[-3000:]}")
