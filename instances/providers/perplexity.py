"""Perplexity's Sonar API: the OpenAI shape at https://api.perplexity.ai, without a models endpoint."""

from __future__ import annotations

from typing import Any

import httpx

from .base import ModelListing, ProviderTarget
from .openai import OpenAIAdapter, message_text

_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


class PerplexityAdapter(OpenAIAdapter):
    provider_type = "perplexity"
    default_base_url = "https://api.perplexity.ai"
    supports_model_listing = False
    max_tokens_field = "max_tokens"
    # Perplexity puts usage in its stream chunks unasked.
    stream_usage_option = False

    async def list_models(self, client: httpx.AsyncClient, target: ProviderTarget) -> ModelListing:
        raise NotImplementedError("Perplexity has no models endpoint; probe it with a 1-token chat call.")

    def split_reasoning(self, target: ProviderTarget, message: dict[str, Any]) -> tuple[str, str | None]:
        """Sonar reasoning models inline their thinking as a leading <think>...</think> block.

        An unclosed block means the budget ran out while thinking: nothing visible yet.
        """
        content = message_text(target, message.get("content"))
        if not content.lstrip().startswith(_THINK_OPEN):
            return content, None
        thinking, closed, rest = content.lstrip().removeprefix(_THINK_OPEN).partition(_THINK_CLOSE)
        return (rest.lstrip() if closed else ""), thinking.strip()
