"""manage.py rotate_encryption_key: re-encrypt stored provider keys with the newest key."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from instances import services
from instances.management.commands._common import HelpFormatter
from ishchat.crypto import DecryptionError, KeyConfigError


class Command(BaseCommand):
    help = """Re-encrypt every stored provider API key with the first FIELD_ENCRYPTION_KEY.

FIELD_ENCRYPTION_KEY is a comma-separated list: the first key encrypts, every
key decrypts. To rotate:

  1. Generate a key:
       python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"
  2. Prepend it: FIELD_ENCRYPTION_KEY=<new>,<old>   and restart every process
     (web, worker, beat) so all of them can read both.
  3. Run this command: every stored key is re-encrypted with <new>.
  4. Drop the old key: FIELD_ENCRYPTION_KEY=<new>   and restart again.

Safe to re-run. If a stored key cannot be decrypted with any configured key
it stops with an error: do not drop the old key until this command succeeds.
"""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = HelpFormatter
        return parser

    def handle(self, *args: Any, **options: Any) -> None:
        keys = settings.FIELD_ENCRYPTION_KEYS
        if not keys:
            raise CommandError("FIELD_ENCRYPTION_KEY is not set.")
        try:
            rotated = services.instances_rotate_encryption()
        except KeyConfigError as exc:
            raise CommandError(str(exc)) from None
        except DecryptionError as exc:
            raise CommandError(
                f"{exc} Put the key it was encrypted with back into FIELD_ENCRYPTION_KEY (after the new one) "
                "and run this again; keys re-encrypted so far stay readable with the new key."
            ) from None
        noun = "key" if rotated == 1 else "keys"
        self.stdout.write(f"Re-encrypted {rotated} stored provider {noun} with the first FIELD_ENCRYPTION_KEY.")
        if len(keys) == 1:
            self.stdout.write("Only one key is configured: to rotate to a new one, prepend it first (see --help).")
