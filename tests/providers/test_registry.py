"""Every provider type the registry accepts has an adapter, and the shared client is safe by default."""

from __future__ import annotations

import asyncio

import pytest

from instances.choices import ProviderType
from instances.providers import adapter_for, build_client


@pytest.mark.parametrize("provider_type", ProviderType.values)
def test_every_provider_type_has_its_adapter(provider_type: str) -> None:
    assert adapter_for(provider_type).provider_type == provider_type


def test_an_unknown_provider_type_is_refused() -> None:
    with pytest.raises(ValueError, match="mistral"):
        adapter_for("mistral")


@pytest.mark.parametrize(
    ("provider_type", "base_url"),
    [
        ("openai", "https://api.openai.com/v1"),
        ("zai", "https://open.bigmodel.cn/api/paas/v4"),
        ("perplexity", "https://api.perplexity.ai"),
        ("anthropic", "https://api.anthropic.com/v1"),
        ("openai_compatible", None),
    ],
)
def test_default_base_urls_are_the_providers_public_apis(provider_type: str, base_url: str | None) -> None:
    assert adapter_for(provider_type).default_base_url == base_url


def test_the_shared_client_follows_no_redirects_and_ignores_proxy_environment() -> None:
    async def inspect() -> tuple[bool, bool]:
        async with build_client() as client:
            return client.follow_redirects, client.trust_env

    assert asyncio.run(inspect()) == (False, False)
