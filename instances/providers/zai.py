"""Zhipu's ZAI (GLM) API: the OpenAI shape under https://open.bigmodel.cn/api/paas/v4.

GLM reasoning models put their thinking in `reasoning_content`, which the
shared OpenAI parsing already reads.
"""

from __future__ import annotations

from .openai import OpenAIAdapter


class ZAIAdapter(OpenAIAdapter):
    provider_type = "zai"
    default_base_url = "https://open.bigmodel.cn/api/paas/v4"
    max_tokens_field = "max_tokens"
    # GLM streams end with a usage-bearing chunk unasked; stream_options is not part of its API.
    stream_usage_option = False
