"""Health-sweep benchmark: can one sweep check 1,000 instances within one 30 s interval?

    python bench/health_sweep.py                      # scratch SQLite with the embedded default's settings
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/health_sweep.py
                                                      # a scratch database `<name>_bench_health_sweep` there
    python bench/health_sweep.py --concurrency 30 100 --profile

What it does:

1. Starts the simulated provider as its own process (`python -m simulator.server --latency-ms 100`),
   so its event loop does not share a core-bound loop with the sweep's.
2. Points Django at a scratch database: without DATABASE_URL, a temporary INSTANCE_MANAGER_VAR_DIR, which
   gives exactly the SQLite settings `make run` uses (WAL, synchronous=NORMAL, IMMEDIATE transactions);
   with a sqlite:// DATABASE_URL, a temporary file through that URL (dj-database-url's plain settings);
   with a PostgreSQL one, a scratch database on that server, dropped afterwards. Never the real database.
3. Registers the instances through `instance_register` (all five provider types in turn) and runs
   `health_sweep(check_types=["basic"], force=True)` `--rounds` times per concurrency, with
   global.instance_manager.max_concurrent_health_checks set through its environment variable.
4. Prints per sweep: seconds, checks/s, and where the caller's thread (the one that owns the database
   connection) spent its time while the checks ran on the runner's event loop. Measured by wrapping
   `_claim_job` and `health_record` of instances.health.services (measurement only):
       claim     reading each instance, building its job, the claim UPDATE
       record    storing results: health_record, one transaction per result, as each comes in;
                 the SQL statements it runs are counted and timed through connection.execute_wrapper
       first     seconds from the sweep's start to its first stored result (results are stored as
                 they arrive, not after the last check)
   --profile runs cProfile over the last sweep.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import platform
import pstats
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONCURRENCY_ENV = "INSTANCE_MANAGER_GLOBAL__INSTANCE_MANAGER__MAX_CONCURRENT_HEALTH_CHECKS"
PROVIDERS = ("openai", "anthropic", "zai", "perplexity", "openai_compatible")
SCRATCH_DB_SUFFIX = "_bench_health_sweep"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_simulator(latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator.server", "--port", str(port), "--latency-ms", str(latency_ms),
         "--log-level", "warning"],
        cwd=ROOT,
    )  # fmt: skip
    root = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{root}/_control/instances/probe", timeout=1.0).raise_for_status()
            return process, root
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit("the simulated provider did not start") from None
            time.sleep(0.1)


@dataclass
class ScratchDatabase:
    """Where the bench writes, and how to remove it afterwards."""

    description: str
    tmpdir: Path
    drop_postgres: tuple[str, str] | None = None  # (admin URL, database name)

    def remove(self) -> None:
        if self.drop_postgres:
            import psycopg

            admin_url, name = self.drop_postgres
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def prepare_environment() -> ScratchDatabase:
    """Environment for Django before it starts: scratch database, no .env, quiet logs, test secrets."""
    tmpdir = Path(tempfile.mkdtemp(prefix="ishchat-bench-"))
    os.environ["INSTANCE_MANAGER_DOTENV"] = "false"  # a developer's .env must not choose the database
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("FIELD_ENCRYPTION_KEY", "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMta2V5LTAwMDA=")
    os.environ.setdefault("BACKEND_API_KEY", "bench-only-backend-api-key-0123456789")
    os.environ["INSTANCE_MANAGER_LOG_LEVEL"] = "WARNING"
    os.environ["INSTANCE_MANAGER_LOG_DIR"] = str(tmpdir / "logs")
    os.environ["INSTANCE_MANAGER_VAR_DIR"] = str(tmpdir / "var")
    os.environ["DJANGO_SETTINGS_MODULE"] = "ishchat.settings"
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        return ScratchDatabase(f"SQLite, embedded default settings (WAL), {tmpdir}/var/db.sqlite3", tmpdir)
    if url.startswith("sqlite"):
        os.environ["DATABASE_URL"] = f"sqlite:///{tmpdir}/bench.sqlite3"
        return ScratchDatabase(f"SQLite via DATABASE_URL (dj-database-url defaults), {tmpdir}/bench.sqlite3", tmpdir)
    if url.startswith(("postgres://", "postgresql://")):
        import dj_database_url
        import psycopg

        name = f"{dj_database_url.parse(url)['NAME']}{SCRATCH_DB_SUFFIX}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        os.environ["DATABASE_URL"] = urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
        with psycopg.connect(url) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        version = row[0] if row else "?"
        return ScratchDatabase(f"PostgreSQL {version}, scratch database {name}", tmpdir, (url, name))
    raise SystemExit(f"unsupported DATABASE_URL scheme: {url.split(':', 1)[0]}")


@dataclass
class Phases:
    """Sums filled in by the wrappers around the sweep's internals."""

    started: float = 0.0
    first_result: float = 0.0
    claim: float = 0.0
    health_record: float = 0.0
    health_record_calls: int = 0
    recording: bool = False
    record_statements: int = 0
    record_sql_seconds: float = 0.0

    def sql(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        """A connection.execute_wrapper: counts health_record's statements and their round-trip time."""
        if not self.recording:
            return execute(sql, params, many, context)
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.record_sql_seconds += time.perf_counter() - started
            self.record_statements += 1


@dataclass
class SweepFigures:
    concurrency: int
    round: int
    checks: int
    seconds: float
    claim: float
    record: float
    first: float
    record_statements: int
    record_sql_seconds: float
    transitions: int
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.checks / self.seconds if self.seconds else 0.0

    def met(self, interval: float) -> bool:
        """Within the interval, and every (healthy) instance judged healthy: results inflated by a
        starved event loop would mark healthy instances degraded, so a fast but wrong sweep fails."""
        return self.seconds <= interval and self.statuses.get("healthy", 0) == self.checks


def instrument(phases: Phases) -> None:
    from instances.health import services

    claim_job, health_record = services._claim_job, services.health_record

    def timed_claim_job(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return claim_job(*args, **kwargs)
        finally:
            phases.claim += time.perf_counter() - started

    def timed_health_record(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        phases.recording = True
        try:
            return health_record(*args, **kwargs)
        finally:
            phases.recording = False
            ended = time.perf_counter()
            phases.health_record += ended - started
            phases.health_record_calls += 1
            phases.first_result = phases.first_result or ended - phases.started

    services._claim_job = timed_claim_job
    services.health_record = timed_health_record


def register(count: int, root_url: str) -> None:
    from django.db import transaction

    from instances.services import instance_register
    from simulator.server import instance_base_url

    started = time.perf_counter()
    with transaction.atomic():
        for index in range(count):
            provider = PROVIDERS[index % len(PROVIDERS)]
            name = f"bench-{index:05d}"
            instance_register(
                provider_type=provider,
                model_name="sim-model",
                instance_name=name,
                endpoint_url=instance_base_url(root_url, name, provider),
                api_key="bench-key-for-the-simulated-provider",
                tags=["bench"],
            )
    print(f"registered {count} instances in {time.perf_counter() - started:.1f} s")


def sweep(concurrency: int, round_: int, phases: Phases, profile: cProfile.Profile | None) -> SweepFigures:
    from django.db import connection

    from configuration.selectors import config_cache_clear, config_value
    from instances.choices import CheckType
    from instances.health.services import health_sweep

    os.environ[CONCURRENCY_ENV] = str(concurrency)
    config_cache_clear()
    assert config_value("global.instance_manager.max_concurrent_health_checks") == concurrency
    phases.__init__()  # type: ignore[misc]
    phases.started = started = time.perf_counter()
    if profile:
        profile.enable()
    with connection.execute_wrapper(phases.sql):
        report = health_sweep(check_types=[CheckType.BASIC], force=True)
    if profile:
        profile.disable()
    seconds = time.perf_counter() - started
    statuses: dict[str, int] = {}
    for result in report.results:
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    return SweepFigures(
        concurrency=concurrency,
        round=round_,
        checks=report.checks,
        seconds=seconds,
        claim=phases.claim,
        record=phases.health_record,
        first=phases.first_result,
        record_statements=phases.record_statements,
        record_sql_seconds=phases.record_sql_seconds,
        transitions=report.transitions,
        statuses=statuses,
    )


def print_row(figures: SweepFigures, target: float) -> None:
    met = "yes" if figures.met(target) else "NO"
    per_check = max(1, figures.checks)
    print(
        f"{figures.concurrency:>11} {figures.round:>5} {figures.checks:>6} {figures.seconds:>8.2f} "
        f"{figures.rate:>8.0f} {figures.claim:>7.2f} {figures.record:>7.2f} {figures.first:>6.2f} "
        f"{figures.record_statements / per_check:>7.1f} "
        f"{figures.record_sql_seconds / per_check * 1000:>7.2f} {figures.record / per_check * 1000:>7.2f} "
        f"{figures.transitions:>7}  {met}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[10, 30, 100],
        help="max_concurrent_health_checks values to run (default: 10, the shipped default; 30; 100).",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="Sweeps per concurrency value.")
    parser.add_argument("--interval", type=float, default=30.0, help="The interval every sweep must fit in.")
    parser.add_argument("--profile", action="store_true", help="cProfile the last sweep and print the top entries.")
    options = parser.parse_args()

    scratch = prepare_environment()
    simulator, root_url = start_simulator(options.latency_ms)
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        print(f"machine:   {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
              f"{platform.python_implementation()} {platform.python_version()}")  # fmt: skip
        print(f"database:  {scratch.description}")
        print(f"simulator: {root_url} (own process, latency {options.latency_ms:g} ms)")
        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        print(f"migrated in {time.perf_counter() - started:.1f} s")
        register(options.instances, root_url)
        phases = Phases()
        instrument(phases)

        print(
            "\n(claim, record: seconds the database thread spent claiming and storing, while the checks ran; first:"
            "\n seconds to the first stored result; sql/chk: statements per stored result; sql ms and rec ms: time per"
            "\n result in those statements and in health_record; transit: status transitions recorded)"
            "\nconcurrency round checks  seconds checks/s   claim  record  first sql/chk  sql ms  rec ms"
            " transit  within interval"
        )
        results: list[SweepFigures] = []
        profile = None
        for concurrency in options.concurrency:
            for round_ in range(1, options.rounds + 1):
                last = options.profile and concurrency == options.concurrency[-1] and round_ == options.rounds
                profile = cProfile.Profile() if last else None
                figures = sweep(concurrency, round_, phases, profile)
                results.append(figures)
                print_row(figures, options.interval)
                if figures.statuses.get("healthy", 0) != figures.checks:
                    print(f"            not all healthy: {figures.statuses}")
        lower_bound = options.instances * options.latency_ms / 1000
        bounds = ", ".join(f"{lower_bound / concurrency:.2f} s at {concurrency}" for concurrency in options.concurrency)
        print(f"\nnetwork lower bound, {options.instances} x {options.latency_ms:g} ms / concurrency: {bounds}")
        print(f"target: {options.instances} checks, all healthy, within {options.interval:g} s")
        for concurrency in options.concurrency:
            rows = [figures for figures in results if figures.concurrency == concurrency]
            slowest = max(figures.seconds for figures in rows)
            verdict = "met" if all(figures.met(options.interval) for figures in rows) else "NOT met"
            print(f"  concurrency {concurrency:>4}: {verdict} (slowest sweep {slowest:.1f} s)")
        if profile is not None:
            print("\ncProfile of the last sweep (its database thread), top entries by own time:")
            pstats.Stats(profile).sort_stats("tottime").print_stats(12)
            print("... and by cumulative time, the project's and Django's model/transaction layers:")
            stats = pstats.Stats(profile).sort_stats("cumulative")
            stats.print_stats(r"instances/|models/(base|query|sql/compiler)\.py|transaction\.py|backends/utils", 20)
        connection.close()
    finally:
        simulator.terminate()
        try:
            simulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            simulator.kill()
        scratch.remove()


if __name__ == "__main__":
    main()
