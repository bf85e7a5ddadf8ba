"""manage.py simulate_providers: serve the simulated provider in the foreground."""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

import uvicorn
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from simulator.server import SimulatorApp, add_arguments, behaviour_from_options, uvicorn_config


def root_url(host: str, port: int) -> str:
    """The address clients use: a wildcard bind is reached over loopback."""
    if host in {"", "0.0.0.0", "::"}:  # noqa: S104 - choosing the address to advertise, not binding
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class Command(BaseCommand):
    help = (
        "Run the simulated LLM provider (OpenAI, ZAI, Perplexity, Anthropic and vLLM shapes) for tests, demos and "
        "benchmarks. Instances live under /sim/<name>/v1; behaviour flags set every instance's defaults and "
        "PUT /_control/instances/<name> overrides them per instance. --demo-fleet also registers the demo fleet "
        "(simulator/demo.py) when the registry is empty and INSTANCE_MANAGER_DEMO is not false."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_arguments(parser)
        parser.add_argument(
            "--demo-fleet",
            action="store_true",
            help="Before serving: register the demo fleet if the registry has no instance at all "
            "(INSTANCE_MANAGER_DEMO=false turns that off), and give the demo instances their behaviours.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            app = SimulatorApp(behaviour_from_options(options), seed=options.get("seed"))
        except ValueError as exc:  # an out-of-range behaviour flag
            raise CommandError(str(exc)) from exc
        if options.get("demo_fleet"):
            self._demo_fleet(app, root_url(options["host"], options["port"]))
        config = uvicorn_config(app, host=options["host"], port=options["port"], log_level=options["log_level"])
        uvicorn.Server(config).run()

    def _demo_fleet(self, app: SimulatorApp, url: str) -> None:
        """Never fatal: under `make run` a failing simulator would stop web, worker and beat with it."""
        from simulator.demo import demo_behaviours_apply, demo_fleet_register, demo_instances_elsewhere

        count = demo_behaviours_apply(app)
        self.stdout.write(f"Demo fleet: behaviours set for {count} simulated instances (simulator/demo.py)")
        try:
            outcome = demo_fleet_register(root_url=url)
            elsewhere = demo_instances_elsewhere(root_url=url)
        except (DatabaseError, ValidationError) as exc:
            self.stderr.write(f"Demo fleet: not registered: {exc}")
            self.stderr.flush()
            return
        self.stdout.write(f"Demo fleet: {outcome.message}")
        if elsewhere:
            self.stderr.write(
                f"Demo fleet: {len(elsewhere)} demo instance(s) point at another address than {url} "
                f"(was SIMULATOR_PORT changed?): {', '.join(elsewhere)}"
            )
            self.stderr.flush()
        self.stdout.flush()  # before uvicorn takes over: honcho shows it at once
