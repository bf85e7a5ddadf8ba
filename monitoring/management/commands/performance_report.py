"""`manage.py performance_report --since 24h --format json|csv|html [--output FILE] [--store]`."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ishchat.logging import StdoutIsDataMixin
from monitoring import reports, services

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """ "90m", "24h", "7d" -> timedelta; anything else (or zero) is an error."""
    match = _DURATION.match(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 30m, 24h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


class Command(StdoutIsDataMixin, BaseCommand):
    help = "Performance report of the last window (default 24h) against the window before it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", default="24h", help="Window length: 30m, 24h, 7d ... (default 24h).")
        parser.add_argument("--format", choices=reports.FORMATS, default="json")
        parser.add_argument("--output", help="Write to this file instead of stdout.")
        parser.add_argument("--store", action="store_true", help="Also store it (GET /api/reports).")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            window = parse_duration(options["since"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["store"]:
            body = services.report_create(window=window, trigger="command").body
        else:
            body = services.report_build(window=window)
        text = reports.render(body, options["format"])
        if options["output"]:
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stderr.write(f"report written to {options['output']}")
        else:
            self.stdout.write(text, ending="" if text.endswith("\n") else "\n")
