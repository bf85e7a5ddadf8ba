"""Structured JSON logs with secrets redacted before they are written."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from ishchat.request_context import current_request_id

# Anything that looks like a bearer token or provider key is masked, whatever
# logged it (our code, httpx, Django's request logger).
_SECRET_PATTERNS = [
    re.compile(r"(?i)(authorization|x-api-key|api[_-]?key|password|secret)(\"?\s*[:=]\s*\"?)([^\s\",}]+)"),
    re.compile(r"(?i)bearer\s+[A-Za-z0-9._\-]{8,}"),
    re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}"),
]


def redact(text: str) -> str:
    text = _SECRET_PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}[redacted]", text)
    text = _SECRET_PATTERNS[1].sub("Bearer [redacted]", text)
    return _SECRET_PATTERNS[2].sub("sk-[redacted]", text)


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    _RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id:
            payload["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in self._RESERVED and not key.startswith("_"):
                payload[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(payload, default=str))


def logs_to_stderr() -> None:
    """Move console logging from stdout to stderr, for commands whose stdout is data."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


class StdoutIsDataMixin:
    """For management commands that print JSON/CSV/tables on stdout: their logs
    (system checks included, which run before handle()) go to stderr instead."""

    def execute(self, *args: Any, **options: Any) -> Any:
        logs_to_stderr()
        return super().execute(*args, **options)  # type: ignore[misc]
