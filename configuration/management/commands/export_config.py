"""Write the configuration to a file or stdout, secrets redacted."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import yaml
from django.core.management.base import BaseCommand, CommandError, CommandParser

from configuration.redaction import redact
from configuration.schema import PathError, nest, parse_path
from configuration.selectors import config_runtime_overrides, effective_config
from ishchat.logging import StdoutIsDataMixin


class Command(StdoutIsDataMixin, BaseCommand):
    help = "Export the effective configuration (default) or only the runtime overrides, secrets redacted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="File to write; stdout when omitted.")
        parser.add_argument(
            "--format", choices=["json", "yaml"], help="Default: from the --output extension, else json."
        )
        which = parser.add_mutually_exclusive_group()
        which.add_argument("--effective", action="store_true", help="Every key after precedence (default).")
        which.add_argument("--runtime", action="store_true", help="Only the runtime overrides stored in the database.")

    def handle(self, *args: Any, **options: Any) -> None:
        document = redact(_runtime_document() if options["runtime"] else effective_config())
        output = options["output"]
        fmt = options["format"] or ("yaml" if output and output.lower().endswith((".yaml", ".yml")) else "json")
        if fmt == "yaml":
            text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
        else:
            text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if output:
            try:
                pathlib.Path(output).write_text(text, encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"Cannot write {output}: {exc}") from None
            self.stderr.write(f"Configuration written to {output}")
        else:
            self.stdout.write(text, ending="")


def _runtime_document() -> dict[str, Any]:
    """The stored overrides as a nested document; rows that no longer name a setting are left out."""
    values = {}
    for text, value in config_runtime_overrides().items():
        try:
            values[parse_path(text)] = value
        except PathError:
            continue
    return nest(values)
