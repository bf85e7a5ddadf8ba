"""Only real secrets are redacted: tokens_per_minute is a limit, not a token."""

from __future__ import annotations

from typing import Any

import pytest

from configuration.redaction import REDACTED, drop_redacted, is_secret_key, redact


@pytest.mark.parametrize(
    "name",
    [
        "api_key",
        "zai_api_key",
        "OPENAI_API_KEY",
        "secret",
        "webhook_secret",
        "password",
        "db-password",
        "token",
        "auth_token",
        "secret_key",
    ],
)
def test_it_treats_keys_ending_in_a_secret_word_as_secrets(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize(
    "name",
    [
        "tokens_per_minute",
        "max_tokens",
        "token_limit",
        "secret_rotation_days",
        "api_key_set",
        "passwords_allowed",
        "keyboard",
        "myapi_keys",
        "tokenizer",
    ],
)
def test_it_leaves_other_keys_alone(name: str) -> None:
    assert not is_secret_key(name)


def test_redact_masks_secret_values_at_any_depth_and_keeps_the_rest() -> None:
    document: dict[str, Any] = {
        "providers": {"zai": {"api_key": "sk-live-123", "rate_limits": {"tokens_per_minute": 10000}}},
        "hooks": [{"secret": "s3cr3t", "url": "https://example.com"}],
        "unset": {"token": None},
    }
    assert redact(document) == {
        "providers": {"zai": {"api_key": REDACTED, "rate_limits": {"tokens_per_minute": 10000}}},
        "hooks": [{"secret": REDACTED, "url": "https://example.com"}],
        "unset": {"token": None},
    }
    assert document["providers"]["zai"]["api_key"] == "sk-live-123"  # a copy, not in place


def test_importing_a_redacted_export_drops_the_placeholders() -> None:
    assert drop_redacted({"a": {"api_key": REDACTED, "tokens_per_minute": 5}}) == {"a": {"tokens_per_minute": 5}}
