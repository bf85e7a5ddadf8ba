"""manage.py simulate_scaling: what would this group's policy do on this traffic?"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scaling import services
from scaling.engine.simulation import HEADER, format_row, read_trace_csv
from scaling.models import ProviderGroup


class Command(BaseCommand):
    help = (
        "Replay a load trace against a group's scaling policy (and the Kubernetes HPA v2 defaults as a "
        "reference) in the scaling simulator, and print the same figures as bench/scaling_sim.py. The trace "
        "is a CSV file (--trace: columns timestamp, requests_per_minute) or the group's own recorded traffic "
        "(--history-days). Nothing is changed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--group", required=True, help="Group id or name.")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--trace", help="CSV file: timestamp (ISO 8601 or seconds), requests_per_minute.")
        source.add_argument("--history-days", type=float, help="Replay the group's requests of the last N days.")
        parser.add_argument(
            "--capacity-rpm", type=float, help="Requests per minute one instance serves at 100 %% utilisation "
            "(default: the group's instance_capacity_rpm).",
        )  # fmt: skip
        parser.add_argument("--startup-seconds", default="60-130", help="A new instance's start-up delay, min-max.")
        parser.add_argument("--seed", type=int, default=7, help="Seed of the start-up delays.")
        parser.add_argument("--events", action="store_true", help="Print every scaling action with its reason.")

    def handle(self, *args: Any, **options: Any) -> None:
        group = _group(options["group"])
        try:
            low, high = (float(part) for part in options["startup_seconds"].split("-", 1))
        except ValueError:
            raise CommandError("--startup-seconds is min-max in seconds, e.g. 60-130.") from None
        if not 0 <= low <= high:
            raise CommandError("--startup-seconds: 0 <= min <= max.")
        try:
            trace = None
            if options["trace"]:
                bounds = {"min_instances": group.min_instances, "max_instances": group.max_instances}
                trace = read_trace_csv(options["trace"], **bounds)
            trace, config, results = services.group_simulation(
                group=group, trace=trace, history_days=options["history_days"], capacity_rpm=options["capacity_rpm"],
                startup_seconds=(low, high), seed=options["seed"], keep_events=options["events"],
            )  # fmt: skip
        except OSError as exc:
            raise CommandError(f"Cannot read {options['trace']}: {exc.strerror}") from None
        except ValidationError as exc:
            raise CommandError("; ".join(m for messages in exc.message_dict.values() for m in messages)) from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{trace.name}: {trace.duration_s / 3600:.1f} h, {config.capacity_rpm:g} req/min per instance at 100 %, "
            f"start-up {low:g}-{high:g} s, eval every {config.eval_interval_s} s"
        )
        self.stdout.write(HEADER)
        for result in results:
            self.stdout.write(format_row(result))
            for at, direction, old, new, reason in result.events:
                self.stdout.write(f"    t={at:>7.0f}s {direction:<4} {old:>3} -> {new:<3} {reason}")


def _group(value: str) -> ProviderGroup:
    group = ProviderGroup.objects.filter(pk=int(value)).first() if value.isdigit() else None
    group = group or ProviderGroup.objects.filter(group_name=value).first()
    if group is None:
        raise CommandError(f"No provider group {value!r} (give its id or name).")
    return group
