"""Shared bits of the registry's management commands."""

from __future__ import annotations

from argparse import RawDescriptionHelpFormatter

from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, DjangoHelpFormatter

from ishchat.errors import ConflictError


class HelpFormatter(DjangoHelpFormatter, RawDescriptionHelpFormatter):
    """Keeps the line breaks of a command's help (numbered procedures)."""


def command_error(exc: ValidationError | ConflictError) -> CommandError:
    """A service's error as one readable line per field, for a non-zero exit."""
    if isinstance(exc, ConflictError):
        return CommandError(exc.message)
    if hasattr(exc, "error_dict"):
        lines = [
            f"{name}: {' '.join(messages)}" if name not in ("__all__", "non_field_errors") else " ".join(messages)
            for name, messages in exc.message_dict.items()
        ]
        return CommandError("; ".join(lines))
    return CommandError(" ".join(exc.messages))
