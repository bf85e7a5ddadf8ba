"""Two evaluations at once (PostgreSQL: real row locks and a real unique index).
Beat guards overlap with a lease, but the service must be safe without it."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections

from alerts import services
from alerts.models import Alert
from instances.choices import InstanceStatus
from instances.models import StatusTransition
from instances.services import instance_set_status
from tests.alerts.conftest import make_instance

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs row locks; SQLite serialises writers"),
]

WORKERS = 4


def test_concurrent_evaluations_consume_each_transition_once_and_open_each_alert_once():
    for _ in range(30):
        instance = make_instance()
        instance_set_status(instance=instance, status=InstanceStatus.UNHEALTHY, reason="down", source="health")
        instance_set_status(instance=instance, status=InstanceStatus.HEALTHY, reason="up", source="health")
    for _ in range(10):
        make_instance(status=InstanceStatus.UNHEALTHY)

    start = threading.Barrier(WORKERS)
    summaries: list[dict[str, int]] = []
    errors: list[BaseException] = []

    def evaluate() -> Any:
        try:
            start.wait()
            summaries.append(services.alerts_evaluate())
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=evaluate) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert sum(s["transitions"] for s in summaries) == 60
    assert sum(s["flapped"] for s in summaries) == 30
    assert StatusTransition.objects.filter(processed_at__isnull=True).count() == 0
    assert Alert.objects.filter(status="resolved").count() == 30
    assert Alert.objects.filter(status="open").count() == 10
    assert sum(s["opened"] for s in summaries) == 10
