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
4. Prints per sweep: seconds, checks/s, and where the time went. The phases are measured by wrapping
   `_sweep_claimed`, `_run_all` and `health_record` of instances.health.services (measurement only):
       claim     lease, due query, claim UPDATEs, releasing the claims
       prepare   building each job: LB settings, due types, decrypting the key, check context
       network   the concurrent HTTP checks (asyncio.run(_run_all(...)))
       record    storing results: health_record (one transaction per result) + the next-due UPDATE;
                 the SQL statements it runs are counted and timed through connection.execute_wrapper
   --profile runs cProfile over the recording phase of the last sweep.
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
    """Timestamps and sums filled in by the wrappers around the sweep's internals."""

    claimed_start: float = 0.0
    claimed_end: float = 0.0
    network_start: float = 0.0
    network_end: float = 0.0
    health_record: float = 0.0
    health_record_calls: int = 0
    recording: bool = False
    record_statements: int = 0
    record_sql_seconds: float = 0.0
    profile: cProfile.Profile | None = None

    def sql(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        """A connection.execute_wrapper: counts the recording phase's statements and their round-trip time."""
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
    prepare: float
    network: float
    record: float
    health_record: float
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

    sweep_claimed, health_record = services._sweep_claimed, services.health_record
    run_all: Any = services._run_all

    def timed_sweep_claimed(*args: Any, **kwargs: Any) -> Any:
        phases.claimed_start = time.perf_counter()
        try:
            return sweep_claimed(*args, **kwargs)
        finally:
            if phases.profile:
                phases.profile.disable()
            phases.recording = False
            phases.claimed_end = time.perf_counter()

    async def timed_run_all(*args: Any, **kwargs: Any) -> Any:
        phases.network_start = time.perf_counter()
        try:
            return await run_all(*args, **kwargs)
        finally:
            phases.network_end = time.perf_counter()
            phases.recording = True
            if phases.profile:
                phases.profile.enable()

    def timed_health_record(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return health_record(*args, **kwargs)
        finally:
            phases.health_record += time.perf_counter() - started
            phases.health_record_calls += 1

    services._sweep_claimed = timed_sweep_claimed
    services._run_all = timed_run_all
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
    phases.__init__(profile=profile)  # type: ignore[misc]
    started = time.perf_counter()
    with connection.execute_wrapper(phases.sql):
        report = health_sweep(check_types=[CheckType.BASIC], force=True)
    seconds = time.perf_counter() - started
    if report.skipped:
        raise SystemExit(f"sweep skipped: {report.skipped}")
    statuses: dict[str, int] = {}
    for result in report.results:
        statuses[result["status"]] = statuses.get(result["status"], 0) + 1
    return SweepFigures(
        concurrency=concurrency,
        round=round_,
        checks=report.checks,
        seconds=seconds,
        claim=seconds - (phases.claimed_end - phases.claimed_start),
        prepare=phases.network_start - phases.claimed_start,
        network=phases.network_end - phases.network_start,
        record=phases.claimed_end - phases.network_end,
        health_record=phases.health_record,
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
        f"{figures.rate:>8.0f} {figures.claim:>7.2f} {figures.prepare:>8.2f} {figures.network:>8.2f} "
        f"{figures.record:>7.2f} {figures.record_statements / per_check:>6.1f} "
        f"{figures.record_sql_seconds / per_check * 1000:>7.2f} {figures.record / per_check * 1000:>9.2f} "
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
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the last sweep's recording phase and print the top entries."
    )
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
            "\n(seconds per phase; sql/chk: statements per check while recording; sql ms and rec ms: time per check in"
            "\n those statements and in the whole recording phase; transit: status transitions recorded)"
            "\nconcurrency round checks  seconds checks/s   claim  prepare  network  record sql/chk  sql ms    rec ms"
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
            print("\ncProfile of the last sweep's recording phase (after the HTTP checks), top entries by own time:")
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
