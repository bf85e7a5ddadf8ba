"""provider_type -> adapter. Adapters hold no state, so one shared instance per provider serves every caller."""

from __future__ import annotations

from .anthropic import AnthropicAdapter
from .base import ProviderAdapter
from .openai import OpenAIAdapter
from .openai_compatible import OpenAICompatibleAdapter
from .perplexity import PerplexityAdapter
from .zai import ZAIAdapter

_ADAPTERS: dict[str, ProviderAdapter] = {
    adapter.provider_type: adapter
    for adapter in (
        OpenAIAdapter(),
        ZAIAdapter(),
        PerplexityAdapter(),
        AnthropicAdapter(),
        OpenAICompatibleAdapter(),
    )
}


def adapter_for(provider_type: str) -> ProviderAdapter:
    """The adapter for a ProviderType value; an unknown type is a programming or data error, so it raises."""
    try:
        return _ADAPTERS[provider_type]
    except KeyError:
        known = ", ".join(sorted(_ADAPTERS))
        raise ValueError(f"No adapter for provider type {provider_type!r} (known: {known}).") from None
