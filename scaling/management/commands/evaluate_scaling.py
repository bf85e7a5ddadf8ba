from __future__ import annotations

import json
from typing import cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scaling import services
from scaling.models import ProviderGroup


class Command(BaseCommand):
    help = (
        "Evaluate auto-scaling now and print each decision's reason: every group with auto-scaling enabled, "
        "or the --group ones (enabled or not; a disabled group is evaluated but not acted on)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--group", type=int, action="append", dest="groups", help="Group id (repeatable).")
        parser.add_argument("--dry-run", action="store_true", help="Decide and print; record and change nothing.")
        parser.add_argument("--json", action="store_true", help="Print the decisions as JSON lines.")

    def handle(self, *args: object, **options: object) -> None:
        # argparse: type=int, action="append" -> a list of ints, or None without --group.
        group_ids = cast("list[int] | None", options["groups"])
        if group_ids:
            known = set(ProviderGroup.objects.filter(pk__in=group_ids).values_list("pk", flat=True))
            missing = [str(group_id) for group_id in group_ids if group_id not in known]
            if missing:
                raise CommandError(f"No provider group with id {', '.join(missing)}.")
        results = services.groups_evaluate(group_ids=group_ids, dry_run=bool(options["dry_run"]))
        if not results:
            self.stdout.write("No provider group has auto-scaling enabled.")
        failed = 0
        for result in results:
            if options["json"]:
                self.stdout.write(json.dumps({k: v for k, v in result.items() if k != "inputs"}, default=str))
                continue
            name = result.get("group_name", f"group {result['group_id']}")
            event = f" [event {result['event_id']}]" if result.get("event_id") else ""
            self.stdout.write(f"{name}: {result['outcome']}{event}: {result['reason']}")
            failed += result["outcome"] in ("error", "locked")
        if failed:
            raise CommandError(f"{failed} group(s) could not be evaluated.")
