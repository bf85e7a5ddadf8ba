"""manage.py simulate_providers: serve the simulated provider in the foreground."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from simulator.server import add_arguments, run


class Command(BaseCommand):
    help = (
        "Run the simulated LLM provider (OpenAI, ZAI, Perplexity, Anthropic and vLLM shapes) for tests, demos and "
        "benchmarks. Instances live under /sim/<name>/v1; behaviour flags set every instance's defaults and "
        "PUT /_control/instances/<name> overrides them per instance."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run(options)
        except ValueError as exc:  # an out-of-range behaviour flag
            raise CommandError(str(exc)) from exc
