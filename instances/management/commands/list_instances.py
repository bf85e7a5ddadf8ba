"""manage.py list_instances: the registry as a table or as the API's JSON."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from instances import selectors
from instances.api.serializers import InstanceSerializer
from instances.choices import InstanceStatus, ProviderType
from instances.models import AIInstance
from ishchat.logging import StdoutIsDataMixin

_COLUMNS = ("NAME", "INSTANCE ID", "PROVIDER/MODEL", "STATUS", "LOAD/CAP", "SCORE")


class Command(StdoutIsDataMixin, BaseCommand):
    help = "List registered instances (active ones unless --all) as a table, or as JSON with --json."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--provider", choices=ProviderType.values, help="Only this provider type.")
        parser.add_argument("--status", choices=InstanceStatus.values, help="Only this status.")
        parser.add_argument("--all", action="store_true", help="Include deregistered instances.")
        parser.add_argument("--json", action="store_true", help="The API's JSON (public fields; never keys).")

    def handle(self, *args: Any, **options: Any) -> None:
        instances = list(
            selectors.instance_list(
                provider_type=options["provider"], status=options["status"], include_inactive=options["all"]
            )
        )
        if options["json"]:
            self.stdout.write(json.dumps(InstanceSerializer(instances, many=True).data, indent=2))
            return
        if not instances:
            self.stdout.write("No instances.")
            return
        rows = [_COLUMNS, *(self._row(instance) for instance in instances)]
        widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
        for row in rows:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())

    @staticmethod
    def _row(instance: AIInstance) -> tuple[str, ...]:
        status = instance.status if instance.is_active else f"{instance.status} (deregistered)"
        score = "-" if instance.health_score is None else f"{instance.health_score:.2f}"
        return (
            instance.instance_name,
            str(instance.instance_id),
            f"{instance.provider_type}/{instance.model_name}",
            status,
            f"{instance.current_load}/{instance.max_concurrent_requests}",
            score,
        )
