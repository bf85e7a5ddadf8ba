"""manage.py simulate_scaling: what would this group's policy do on this traffic?"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from scaling import services
from scaling.engine.simulation import (
    HEADER,
    PolicySpec,
    SimConfig,
    Trace,
    format_row,
    hpa_reference_policy,
    read_trace_csv,
    simulate,
    trace_from_rows,
)
from scaling.metrics import request_rate_history
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
        capacity = options["capacity_rpm"] or group.instance_capacity_rpm
        if not capacity or capacity <= 0:
            raise CommandError("Give --capacity-rpm: the group has no instance_capacity_rpm.")
        try:
            low, high = (float(part) for part in options["startup_seconds"].split("-", 1))
        except ValueError:
            raise CommandError("--startup-seconds is min-max in seconds, e.g. 60-130.") from None
        if not 0 <= low <= high:
            raise CommandError("--startup-seconds: 0 <= min <= max.")
        bounds = {"min_instances": group.min_instances, "max_instances": group.max_instances}
        trace = _trace(group, options, bounds)
        config = SimConfig(capacity_rpm=capacity, startup_min_s=low, startup_max_s=high, seed=options["seed"])
        policy = services.policy_of(group)
        specs = [
            PolicySpec(f"group {group.group_name}"[:30], policy),
            PolicySpec("hpa-v2 defaults", hpa_reference_policy(target_utilization=policy.target_utilization)),
        ]
        self.stdout.write(
            f"{trace.name}: {trace.duration_s / 3600:.1f} h, {capacity:g} req/min per instance at 100 %, "
            f"start-up {low:g}-{high:g} s, eval every {config.eval_interval_s} s"
        )
        self.stdout.write(HEADER)
        for spec in specs:
            result = simulate(trace, spec, config, keep_events=options["events"])
            self.stdout.write(format_row(result))
            for at, direction, old, new, reason in result.events:
                self.stdout.write(f"    t={at:>7.0f}s {direction:<4} {old:>3} -> {new:<3} {reason}")


def _group(value: str) -> ProviderGroup:
    group = ProviderGroup.objects.filter(pk=int(value)).first() if value.isdigit() else None
    group = group or ProviderGroup.objects.filter(group_name=value).first()
    if group is None:
        raise CommandError(f"No provider group {value!r} (give its id or name).")
    return group


def _trace(group: ProviderGroup, options: dict[str, Any], bounds: dict[str, int]) -> Trace:
    if options["trace"]:
        try:
            return read_trace_csv(options["trace"], **bounds)
        except OSError as exc:
            raise CommandError(f"Cannot read {options['trace']}: {exc.strerror}") from None
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    days = options["history_days"]
    if not 0 < days <= 30:
        raise CommandError("--history-days: more than 0, at most 30.")
    minutes = int(days * 1440)
    history = request_rate_history(group=group, now=timezone.now(), minutes=minutes)
    first = next((index for index, value in enumerate(history) if value is not None), None)
    if first is None:
        raise CommandError(f"Group {group.group_name!r} has no recorded requests in the last {days:g} days.")
    rows = [(60.0 * index, value or 0.0) for index, value in enumerate(history[first:])]
    return trace_from_rows(f"{group.group_name}: recorded traffic, last {days:g} days", rows, **bounds)
