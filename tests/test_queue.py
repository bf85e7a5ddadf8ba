"""Queueing a task never fails the write that queued it: a broker that refuses connections costs the message only."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
from celery import Celery
from django.db import transaction

from ishchat import queue
from ishchat.outage import Outage
from tests.integration.conftest import free_port


@pytest.fixture
def unreachable_task() -> Iterator[object]:
    """A task of a Celery app whose Redis broker refuses connections (nothing listens on its port)."""
    app = Celery("unreachable", broker=f"redis://127.0.0.1:{free_port()}/0", set_as_current=False)
    app.conf.broker_connection_timeout = 0.5
    app.conf.task_publish_retry_policy = {"max_retries": 0}

    @app.task(name="tests.unreachable")
    def unreachable(value: int) -> None:  # pragma: no cover - never runs
        pass

    yield unreachable
    app.close()


@pytest.fixture
def fresh_outage(monkeypatch: pytest.MonkeyPatch) -> Outage:
    outage = Outage("Celery broker", errors=queue.BROKER_OUTAGE.errors)
    monkeypatch.setattr(queue, "BROKER_OUTAGE", outage)
    return outage


def test_a_publish_to_an_unreachable_broker_returns_false_and_logs_one_line(
    unreachable_task: object, fresh_outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="ishchat.outage")

    assert queue.enqueue(unreachable_task, 1) is False
    began = time.monotonic()
    assert queue.enqueue(unreachable_task, 2) is False  # skipped while the outage is fresh: no timeout paid
    assert time.monotonic() - began < 0.1

    assert fresh_outage.down
    assert [r.getMessage() for r in caplog.records].count(caplog.records[0].getMessage()) == 1
    assert "Celery broker unreachable" in caplog.records[0].getMessage()


@pytest.mark.django_db(transaction=True)
def test_a_commit_whose_queued_task_cannot_be_published_still_succeeds(
    unreachable_task: object, fresh_outage: Outage
) -> None:
    from ishchat.models import Lease

    with transaction.atomic():
        Lease.objects.create(name="written-before-the-publish", owner="test", expires_at="2030-01-01T00:00:00Z")
        queue.enqueue_on_commit(unreachable_task, 1)

    assert Lease.objects.filter(name="written-before-the-publish").exists()
    assert fresh_outage.down
