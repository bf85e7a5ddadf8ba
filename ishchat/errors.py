"""Domain errors raised by services and mapped to HTTP by ishchat.api."""

from __future__ import annotations


class ConflictError(Exception):
    """The write would break a uniqueness rule (HTTP 409)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ServiceUnavailableError(Exception):
    """Nothing can serve the request right now (HTTP 503)."""

    def __init__(self, message: str, *, code: str = "unavailable", details: dict | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or {}
