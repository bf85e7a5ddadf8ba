from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from gateway.registry import reset_registry_snapshot
from instances.models import AIInstance
from instances.services import instance_register


@pytest.fixture
def fleet(db: None, sim_server: Any) -> Callable[..., AIInstance]:
    """Register an instance served by the simulated provider, routable at once (status healthy unless given)."""

    def make(
        name: str,
        *,
        provider: str = "openai",
        model: str = "sim-model",
        status: str = "healthy",
        health_score: float | None = 1.0,
        **options: Any,
    ) -> AIInstance:
        instance = instance_register(
            provider_type=provider,
            model_name=model,
            instance_name=name,
            endpoint_url=sim_server.base_url(name, provider=provider),
            api_key=options.pop("api_key", "sk-test-key-000000000000"),
            **options,
        )
        AIInstance.objects.filter(pk=instance.pk).update(status=status, health_score=health_score)
        instance.refresh_from_db()
        reset_registry_snapshot()
        return instance

    return make
