"""Load a JSON or YAML document into the runtime configuration, all or nothing."""

from __future__ import annotations

import getpass
import pathlib
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from configuration.layers import DocumentError, load_document
from configuration.services import config_import


class Command(BaseCommand):
    help = (
        "Import a configuration document (.json, .yaml, .yml) as runtime overrides. Only values that differ "
        "from env/file/defaults are stored; the whole result is validated first and nothing is written on error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The document to import, e.g. one written by export_config.")
        parser.add_argument(
            "--replace", action="store_true", help="Also remove every runtime override the document does not set."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            data = load_document(pathlib.Path(options["file"]))
        except DocumentError as exc:
            raise CommandError(str(exc)) from None
        try:
            change = config_import(data=data, updated_by=f"cli:{_user()}", replace=options["replace"])
        except ValidationError as exc:
            for path, messages in exc.message_dict.items():
                for message in messages:
                    self.stderr.write(f"  {path}: {message}")
            raise CommandError(f"{options['file']}: not imported, nothing was written.") from None
        except ImproperlyConfigured as exc:
            raise CommandError(f"Fix the deployment's configuration first: {exc}") from None
        for path in change.written:
            self.stdout.write(f"set     {path}")
        for path in change.removed:
            self.stdout.write(f"removed {path}")
        self.stdout.write(self.style.SUCCESS(f"Imported: {len(change.written)} set, {len(change.removed)} removed."))


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"
