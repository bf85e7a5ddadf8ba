"""manage.py deregister_instance: stop routing to an instance for good; history stays."""

from __future__ import annotations

import sys
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import Http404

from instances import selectors, services


class Command(BaseCommand):
    help = (
        "Deregister an instance by its instance_id: it stops receiving traffic and cannot be re-enabled; "
        "its health checks, request logs and status history are kept. Asks for confirmation unless --yes."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("instance_id", help="The instance's UUID (see list_instances).")
        parser.add_argument("--yes", action="store_true", help="Do not ask for confirmation.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            instance = selectors.instance_get(options["instance_id"])
        except Http404:
            raise CommandError(f"No instance with instance_id {options['instance_id']!r}.") from None
        if not instance.is_active:
            self.stdout.write(f"{instance.instance_name} ({instance.instance_id}) is already deregistered.")
            return
        if not options["yes"]:
            self._confirm(instance.instance_name, options.get("stdin"))
        try:
            services.instance_deregister(instance=instance, actor="manage.py deregister_instance")
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        self.stdout.write(f"Deregistered {instance.instance_name} ({instance.instance_id}).")

    def _confirm(self, name: str, stdin: Any) -> None:
        if stdin is None:
            if not sys.stdin.isatty():
                raise CommandError("Not a terminal: pass --yes to deregister without confirmation.")
            stdin = sys.stdin
        prompt = f"Deregister {name}? It stops receiving traffic for good. Type 'yes' to continue: "
        self.stdout.write(prompt, ending="")
        self.stdout.flush()
        if stdin.readline().strip().lower() != "yes":
            raise CommandError("Cancelled; nothing changed.")
