from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from instances.models import AIInstance
from instances.services import instance_register


@pytest.fixture
def make_instance(db: None, sim_server: Any) -> Callable[..., AIInstance]:
    """Register an instance served by the simulated provider under `name`."""

    def make(name: str, *, provider: str = "openai", model: str = "sim-model", **options: Any) -> AIInstance:
        return instance_register(
            provider_type=provider,
            model_name=model,
            instance_name=name,
            endpoint_url=sim_server.base_url(name, provider=provider),
            api_key=options.pop("api_key", "sk-test-key-000000000000"),
            **options,
        )

    return make
