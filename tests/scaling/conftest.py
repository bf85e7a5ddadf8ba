"""Fixtures of the auto-scaling tests: a fixed clock, a webhook receiver and the Kubernetes
stand-in, on loopback. Helpers that make rows live in tests/scaling/support.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from tests.scaling.k8s_standin import KubeStandIn, running_standin
from tests.support.webhook import WebhookReceiver, webhook_receiver


@pytest.fixture
def now() -> datetime:
    """The evaluation clock: a little after rows created with real timestamps."""
    return timezone.now() + timedelta(seconds=1)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    with webhook_receiver("/hooks/scale") as receiver:
        yield receiver


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    with running_standin() as standin:
        yield standin
