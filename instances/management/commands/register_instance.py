"""manage.py register_instance: register an instance from a shell or a deploy script."""

from __future__ import annotations

import os
import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from instances import services
from instances.choices import ProviderType
from instances.management.commands._common import HelpFormatter, command_error
from ishchat.errors import ConflictError


class Command(BaseCommand):
    help = """Register an AI instance and print its instance_id.

The provider key is never a command-line value (it would land in the shell
history and in `ps`): name an environment variable with --api-key-env, or pipe
it in with --api-key-stdin. Without either, the provider's key from the
environment (e.g. ZAI_API_KEY) is used when the instance is called.

  ID=$(ZAI_KEY=... manage.py register_instance --provider zai --model glm-4 \\
         --name prod-1 --endpoint https://api.z.ai/api/paas/v4 --api-key-env ZAI_KEY)
  pass show zai | manage.py register_instance ... --api-key-stdin
"""
    # Tests (and callers embedding the command) may hand in their own stdin.
    stealth_options = ("stdin",)

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = HelpFormatter
        # No prefix matching: a mistyped `--api-key VALUE` must fail, not pass for something else.
        parser.allow_abbrev = False
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--provider", required=True, choices=ProviderType.values, help="Provider type.")
        parser.add_argument("--model", required=True, help="Model name, e.g. glm-4.")
        parser.add_argument("--name", required=True, help="Instance name, unique among active instances.")
        parser.add_argument("--endpoint", required=True, help="Base URL (http or https).")
        key = parser.add_mutually_exclusive_group()
        key.add_argument("--api-key-env", metavar="VAR", help="Read the provider key from this environment variable.")
        key.add_argument("--api-key-stdin", action="store_true", help="Read the provider key from stdin.")
        parser.add_argument("--max-concurrent", type=int, help="Max concurrent requests (capacity).")
        parser.add_argument("--weight", type=int, help="Relative share of traffic (0 drains).")
        parser.add_argument("--priority", type=int, help="0 is served first; higher tiers are fallbacks.")
        parser.add_argument("--group", type=int, metavar="ID", help="Provider group id.")
        parser.add_argument("--region", help="Region label, e.g. eu-west.")
        parser.add_argument("--tag", action="append", default=[], metavar="T", help="A tag; repeat for more.")
        parser.add_argument("--timeout", type=float, metavar="S", help="Request timeout in seconds.")
        parser.add_argument("--temperature", type=float, help="Default temperature (0..2).")
        parser.add_argument("--max-tokens", type=int, help="Default max_tokens.")
        parser.add_argument("--requests-per-minute", type=int, metavar="N", help="Overrides the provider's RPM limit.")
        parser.add_argument("--tokens-per-minute", type=int, metavar="N", help="Overrides the provider's TPM limit.")

    def handle(self, *args: Any, **options: Any) -> None:
        api_key = self._api_key(options)
        optional = {
            "max_concurrent_requests": options["max_concurrent"],
            "weight": options["weight"],
            "priority": options["priority"],
            "region": options["region"],
            "timeout": options["timeout"],
            "temperature": options["temperature"],
            "max_tokens": options["max_tokens"],
            "requests_per_minute": options["requests_per_minute"],
            "tokens_per_minute": options["tokens_per_minute"],
        }
        if options["tag"]:
            optional["tags"] = options["tag"]
        try:
            instance = services.instance_register(
                provider_type=options["provider"],
                model_name=options["model"],
                instance_name=options["name"],
                endpoint_url=options["endpoint"],
                api_key=api_key,
                group_id=options["group"],
                **{name: value for name, value in optional.items() if value is not None},
            )
        except (ValidationError, ConflictError) as exc:
            raise command_error(exc) from None
        self.stdout.write(str(instance.instance_id))

    def _api_key(self, options: dict[str, Any]) -> str | None:
        if options["api_key_env"]:
            name = options["api_key_env"]
            value = os.environ.get(name, "").strip()
            if not value:
                raise CommandError(f"--api-key-env: the environment variable {name} is not set or empty.")
            return value
        if options["api_key_stdin"]:
            stdin = options.get("stdin") or sys.stdin
            value = stdin.readline().strip()
            if not value:
                raise CommandError("--api-key-stdin: no key on standard input.")
            return value
        return None
