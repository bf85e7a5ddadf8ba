"""What a scaling backend is: validated settings and one idempotent operation.

``scale(group, request, now)`` brings the group to ``request.desired`` instances and returns what
it did; it raises BackendError when it could not (the event is then retried with backoff, then
failed). Backends are idempotent towards the target, so a retried or resumed event never adds
capacity twice: the pool counts its instances again, Kubernetes sets replicas, the webhook sends
the target (receivers deduplicate by event_id).

Settings are stored in ``ProviderGroup.backend_settings``. ``clean_settings`` validates what an
operator sends and returns what to store (secrets encrypted); ``public_settings`` is what the API
and the admin may show (secrets never).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from django.core.exceptions import ValidationError

if TYPE_CHECKING:
    from scaling.models import ProviderGroup


class BackendError(Exception):
    """The backend could not reach the target; ``details`` says what it did do."""

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


@dataclass(frozen=True, slots=True)
class ScaleRequest:
    event_id: int
    group_id: int
    group_name: str
    direction: str
    trigger: str
    current: int  # the count the decision saw
    desired: int
    reason: str


@dataclass(slots=True)
class ScaleResult:
    note: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"note": self.note, **self.details}


class Backend(Protocol):
    name: str

    def clean_settings(self, raw: dict[str, Any], *, previous: dict[str, Any]) -> dict[str, Any]: ...

    def public_settings(self, stored: dict[str, Any]) -> dict[str, Any]: ...

    def scale(self, group: ProviderGroup, request: ScaleRequest, *, now: datetime) -> ScaleResult: ...


# --- settings validation helpers ------------------------------------------------------------------

def settings_error(message: str) -> ValidationError:
    return ValidationError({"backend_settings": [message]})


def reject_unknown(raw: dict[str, Any], allowed: Iterable[str]) -> None:
    unknown = sorted(set(raw) - set(allowed))
    if unknown:
        raise settings_error(f"Unknown setting(s): {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}.")


def clean_int(raw: dict[str, Any], name: str, *, default: int, low: int, high: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise settings_error(f"{name} must be a whole number from {low} to {high}.")
    return value


def clean_float(raw: dict[str, Any], name: str, *, default: float, low: float, high: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low < value <= high:
        raise settings_error(f"{name} must be a number in ({low:g}, {high:g}].")
    return float(value)


def clean_str(raw: dict[str, Any], name: str, *, required: bool, max_length: int = 500) -> str:
    value = raw.get(name, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or "\x00" in value or len(value) > max_length:
        raise settings_error(f"{name} must be text of at most {max_length} characters.")
    value = value.strip()
    if required and not value:
        raise settings_error(f"{name} is required.")
    return value


def clean_bool(raw: dict[str, Any], name: str, *, default: bool) -> bool:
    value = raw.get(name, default)
    if not isinstance(value, bool):
        raise settings_error(f"{name} must be true or false.")
    return value
