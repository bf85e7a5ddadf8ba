"""Helpers for driving the async adapters from plain pytest tests against the simulator."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx

from instances.providers import ProviderTarget, build_client
from simulator.testing import SimulatorClient

T = TypeVar("T")

MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "Say hello."}]


def call(operation: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run one adapter operation on a fresh event loop with a fresh shared-style client."""

    async def main() -> T:
        async with build_client() as client:
            return await operation(client)

    return asyncio.run(main())


async def collect(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [chunk async for chunk in chunks]


def target_for(
    sim: SimulatorClient,
    name: str,
    provider: str,
    *,
    api_key: str = "sk-test-key-0123456789",
    model: str = "sim-model",
    timeout: float = 5.0,
) -> ProviderTarget:
    return ProviderTarget(
        provider_type=provider,
        endpoint_url=sim.base_url(name, provider),
        api_key=api_key,
        model_name=model,
        timeout=timeout,
    )


def closed_port() -> int:
    """A loopback port nothing listens on: bound then released, so connecting is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
