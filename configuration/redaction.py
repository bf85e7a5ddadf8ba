"""Which configuration keys are secrets, and hiding their values in exports and API responses."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"

# A whole word at the end of the key: `zai_api_key`, `webhook_secret`, `token`,
# but not `tokens_per_minute` or `max_tokens`.
_SECRET_KEY = re.compile(r"(?:^|_)(?:api_key|secret_key|private_key|secret|password|token)$")


def is_secret_key(name: str) -> bool:
    return bool(_SECRET_KEY.search(name.lower().replace("-", "_")))


def redact(value: Any) -> Any:
    """A copy of `value` with every secret key's non-empty value replaced by REDACTED."""
    if isinstance(value, dict):
        return {
            key: REDACTED if is_secret_key(str(key)) and item not in (None, "") else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def drop_redacted(value: Any) -> Any:
    """A copy without the secret keys whose value is REDACTED, so importing an export keeps the real secret."""
    if isinstance(value, dict):
        return {
            key: drop_redacted(item)
            for key, item in value.items()
            if not (is_secret_key(str(key)) and item == REDACTED)
        }
    return value
