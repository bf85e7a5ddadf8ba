import json
from typing import cast

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import Http404

from instances.choices import CheckType
from instances.health.services import health_sweep
from instances.selectors import instance_get
from ishchat.logging import StdoutIsDataMixin


class Command(StdoutIsDataMixin, BaseCommand):
    help = "Run one health sweep in the foreground and print the results."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--instance", action="append", help="Only this instance_id (repeatable).")
        parser.add_argument(
            "--type",
            dest="check_type",
            action="append",
            choices=CheckType.values,
            help="Run these check types (repeatable); default: what is due.",
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")

    def handle(self, *args: object, **options: object) -> None:
        instance_ids = None
        if options["instance"]:
            try:
                instance_ids = [instance_get(value).pk for value in cast(list[str], options["instance"])]
            except Http404 as exc:
                raise CommandError(str(exc)) from exc
        report = health_sweep(instance_ids=instance_ids, check_types=options["check_type"], force=True)  # type: ignore[arg-type]
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "checks": report.checks,
                        "transitions": report.transitions,
                        "seconds": report.seconds,
                        "results": report.results,
                    },
                    default=str,
                )
            )
            return
        for row in report.results:
            issues = "; ".join(row["issues"]) or "-"
            change = f" -> {row['new_status']}" if row["new_status"] else ""
            latency = f"{row['response_time_ms']:.0f} ms" if row["response_time_ms"] is not None else "-"
            self.stdout.write(
                f"{row['instance_name']:<30} {row['check_type']:<13} {row['status']:<9} "
                f"score {row['score']:.2f}  {latency:>8}{change}  {issues}"
            )
        self.stdout.write(
            f"{report.checks} checks of {report.claimed} instances in {report.seconds:.2f} s, "
            f"{report.transitions} status changes"
        )
