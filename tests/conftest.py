"""Fixtures shared by the whole suite: API clients and a valid registration body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from accounts.choices import Access
from accounts.services import api_key_create
from simulator.testing import sim_server, sim_server_session  # noqa: F401  (the simulated provider, suite-wide)


@pytest.fixture(autouse=True)
def _clear_cache() -> None:
    """Throttle counters, config versions and shared state must not leak between tests."""
    from django.core.cache import cache

    from configuration.selectors import config_cache_clear

    cache.clear()
    config_cache_clear()


@pytest.fixture(autouse=True)
def _fresh_routing_state(settings: Any) -> Iterator[None]:
    """Each test gets an empty routing snapshot and its own balancer keys
    (in process, or a private prefix in Redis)."""
    import uuid

    from gateway.registry import reset_registry_snapshot
    from instances.balancer import state

    settings.BALANCER_KEY_PREFIX = f"test:{uuid.uuid4().hex[:12]}:lb:"
    state._store = None
    reset_registry_snapshot()
    yield
    state._store = None
    reset_registry_snapshot()


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


@pytest.fixture
def api_client() -> APIClient:
    """A client holding the deployment key (full access)."""
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=settings.BACKEND_API_KEY)
    return client


@pytest.fixture
def read_only_client(db: None) -> APIClient:
    _, plain = api_key_create(name="dashboard reader", access=Access.READ_ONLY)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plain}")
    return client


@pytest.fixture
def registration() -> dict[str, Any]:
    """The seed's registration body."""
    return {
        "provider_type": "zai",
        "model_name": "glm-4",
        "instance_name": "production-zai-1",
        "endpoint_url": "https://api.zhipu.ai/v4",
        "api_key": "your-api-key-0123456789",
        "max_concurrent_requests": 10,
        "temperature": 0.7,
        "max_tokens": 1000,
    }
