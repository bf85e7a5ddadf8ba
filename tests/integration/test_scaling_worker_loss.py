"""A Celery worker SIGKILLed in the middle of a scaling apply: another worker finishes the event
within the claim's lifetime plus one reaper interval (instead of the old fixed 5 minutes).

Real processes on both sides: two `celery worker` processes on the configured broker (Redis, or the
filesystem transport in a private folder), the webhook backend calling a loopback receiver that hangs
for the first worker, and this test playing beat (scaling.reap_and_drain every INTERVAL seconds).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from kombu import Connection

from scaling import services
from scaling.models import ProviderGroup, ScalingEvent
from scaling.tasks import scaling_apply_event, scaling_reap_and_drain
from tests.support.webhook import WebhookReceiver, webhook_receiver

from .conftest import STARTUP_SECONDS, Process, child_env, wait_for

pytestmark = pytest.mark.integration

INTERVAL = 2.0  # the reaper's (beat's) interval in this test


def _broker(tmp_path: Path) -> tuple[dict[str, str], Connection]:
    """Environment for the workers and a connection to send on: Redis, or a private filesystem folder
    (so the workers' default queue takes nobody else's tasks)."""
    if settings.REDIS_URL:
        return {}, Connection(settings.CELERY_BROKER_URL)
    var_dir = tmp_path / "var"
    folders = {sub: var_dir / "broker" / sub for sub in ("queue", "processed", "control")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    options = {
        "data_folder_in": str(folders["queue"]),
        "data_folder_out": str(folders["queue"]),
        "processed_folder": str(folders["processed"]),
        "control_folder": str(folders["control"]),
        "store_processed": False,
    }
    return {"INSTANCE_MANAGER_VAR_DIR": str(var_dir)}, Connection("filesystem://", transport_options=options)


def _start_worker(name: str, env: dict[str, str], tmp_path: Path) -> Process:
    command = [
        sys.executable, "-m", "celery", "-A", "ishchat", "worker", "--loglevel=INFO", "--pool=solo",
        "--hostname", f"{name}-{os.getpid()}@%h", "--without-mingle", "--without-gossip", "--without-heartbeat",
    ]  # fmt: skip
    process = Process.start(name, command, env, tmp_path / f"{name}.log", signal.SIGQUIT)
    wait_for(lambda: " ready." in process.log(), timeout=STARTUP_SECONDS, what=f"{name} ready", process=process)
    return process


def _send(task: Any, connection: Connection, *args: Any) -> None:
    app = task.app
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        task.apply_async(args=args, connection=connection)
    finally:
        app.conf.task_always_eager = eager


@pytest.fixture
def hanging_webhook() -> Iterator[WebhookReceiver]:
    with webhook_receiver("/hooks/scale") as receiver:
        yield receiver


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_apply_is_replaced_within_one_claim_and_one_interval(
    tmp_path: Path, hanging_webhook: WebhookReceiver
) -> None:
    broker_env, connection = _broker(tmp_path)
    env = child_env(CELERY_TASK_ALWAYS_EAGER="false", **broker_env)
    group = ProviderGroup.objects.create(group_name="worker-loss", provider_type="openai", desired_instances=1)
    group = services.group_configure_autoscaling(
        group=group, backend="webhook", backend_settings={"url": hanging_webhook.url}
    )
    event = ScalingEvent.objects.create(
        group=group, direction="up", trigger="manual", reason="worker loss test", old_count=1, new_count=3,
        backend="webhook",
    )  # fmt: skip
    hanging_webhook.delay_seconds = 120.0  # the first worker hangs inside the backend call

    first = _start_worker("worker-a", env, tmp_path)
    second: Process | None = None
    try:
        _send(scaling_apply_event, connection, event.pk)
        wait_for(lambda: hanging_webhook.received, timeout=30, what="the first worker's webhook", process=first)
        event.refresh_from_db()
        assert event.status == "in_progress"

        second = _start_worker("worker-b", env, tmp_path)
        hanging_webhook.delay_seconds = 0.0
        os.killpg(first.popen.pid, signal.SIGKILL)
        first.popen.wait(timeout=10)
        killed_at = time.monotonic()

        bound = services.APPLY_CLAIM_SECONDS + INTERVAL
        deadline = killed_at + bound + 10.0  # slack: the second worker's task round trips on a loaded machine
        while True:
            _send(scaling_reap_and_drain, connection)  # what beat does every interval
            time.sleep(INTERVAL)
            event.refresh_from_db()
            if event.status == "completed" or time.monotonic() > deadline:
                break
        recovered_in = time.monotonic() - killed_at
    finally:
        first.stop()
        if second is not None:
            second.stop()
        connection.release()

    assert event.status == "completed", (event.status, event.error, second.log() if second else "")
    assert event.attempts == 2 and len(hanging_webhook.received) == 2
    group.refresh_from_db()
    assert group.desired_instances == 3
    # Detected once the claim lapsed, resumed at the next reaper run: claim + one interval (+ slack).
    assert recovered_in <= bound + 10.0, recovered_in
    print(f"recovered {recovered_in:.1f} s after the kill (claim {services.APPLY_CLAIM_SECONDS:g} s)")
