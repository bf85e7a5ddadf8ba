"""Dashboard fixtures: a staff client, the dashboard's URLs, and fleets of any size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from instances.choices import InstanceStatus
from instances.models import AIInstance
from scaling.models import ProviderGroup

PROVIDER_KEY = "sk-dashboard-secret-key-4242424242"


@pytest.fixture
def staff(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("operator", password="pw-operator-1", is_staff=True)


@pytest.fixture
def staff_client(staff: Any) -> Client:
    client = Client()
    client.force_login(staff)
    return client


@pytest.fixture
def htmx_client(staff: Any) -> Client:
    client = Client(headers={"HX-Request": "true"})
    client.force_login(staff)
    return client


@pytest.fixture
def group(db: None) -> ProviderGroup:
    return ProviderGroup.objects.create(group_name="openai-pool", provider_type="openai", model_name="sim-model")


@pytest.fixture
def fleet(db: None, group: ProviderGroup) -> Callable[[int], list[AIInstance]]:
    """`n` instances in one INSERT (setup only; the code under test reads them)."""

    def make(n: int) -> list[AIInstance]:
        start = AIInstance.objects.count()
        statuses = [InstanceStatus.HEALTHY, InstanceStatus.DEGRADED, InstanceStatus.UNHEALTHY, InstanceStatus.STARTING]
        return AIInstance.objects.bulk_create(
            AIInstance(
                provider_type="openai",
                model_name=f"model-{i % 3}",
                instance_name=f"bulk-{start + i:05d}",
                endpoint_url="http://127.0.0.1:9/v1",
                status=statuses[i % len(statuses)],
                health_score=(i % 10) / 10,
                current_load=i % 7,
                group=group if i % 2 else None,
            )
            for i in range(n)
        )

    return make
