"""Select-instance latency with 10 and with 10,000 registered instances.

    python bench/select_instance.py                         # scratch SQLite, in-process balancer state
    python bench/select_instance.py --redis redis://127.0.0.1:6379/13   # balancer state in Redis
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/select_instance.py
                                                            # a scratch database `<name>_bench_select` there
    python bench/select_instance.py --requests 2000 --strategy round_robin

What it measures: POST /api/instances/select-instance through the whole stack
in process (Django's test client: middleware, API-key authentication,
throttle, DRF, the view, its serializer), timed around each call, one request
at a time. The view's own `load_balancing_time_ms` (routing only: snapshot,
settings, store read, filter, strategy) is reported beside it.

Scenarios, each on a fresh registry and fresh balancer state:

    10 / 1 pool          10 instances serving one model: the baseline
    10,000 / 1,000 pools 10,000 instances, 10 per model across 1,000 models;
                         each request asks for a random one of the 1,000 models
    10,000 / 1 pool      10,000 instances serving one model: the worst case

The first two alternate for --rounds rounds (each on a freshly written
registry) and their timings are pooled, so load from other work on a shared
host drifts onto both alike; the third runs once, with fewer requests.

Routing looks only at the requested pool (gateway.registry indexes the
snapshot by pool), so the second scenario is the one the design keeps flat;
the third grows with the pool, because every selection reads every
candidate's live state (breaker, in-flight, latency, rate limit) and filters
them all.

Instances are written with bulk_create (status healthy, score 1.0), not
instance_register: registering 10,000 through the service would take longer
than the measurement and is not what is measured. The registry version is
bumped afterwards as the service would, and each scenario starts with a
warm-up, so the one-off snapshot build is not in the timings. The snapshot is
also rebuilt every gateway.registry.MAX_AGE_SECONDS even when nothing
changed; that rebuild lands on whichever request comes due, so it is timed
separately ("snapshot build") and shows in p99/max when a run is long enough
to cross it.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCRATCH_DB_SUFFIX = "_bench_select"
URL = "/api/instances/select-instance"


@dataclass(frozen=True)
class Scenario:
    name: str
    pools: int
    per_pool: int

    @property
    def instances(self) -> int:
        return self.pools * self.per_pool


SCENARIOS = [
    Scenario("10 / 1 pool", pools=1, per_pool=10),
    Scenario("10,000 / 1,000 pools", pools=1000, per_pool=10),
    Scenario("10,000 / 1 pool", pools=1, per_pool=10_000),
]


def configure_environment(redis_url: str | None, workdir: Path) -> str | None:
    """Point Django at a scratch database before it is set up; returns a PostgreSQL scratch db to drop."""
    os.environ.setdefault("SECRET_KEY", "bench-secret-key-not-for-production-0123456789")
    os.environ.setdefault("FIELD_ENCRYPTION_KEY", "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMta2V5LTAwMDA=")
    os.environ.setdefault("BACKEND_API_KEY", "bench-backend-api-key-0123456789abcdef")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="ishchat.settings",
        INSTANCE_MANAGER_DOTENV="false",
        INSTANCE_MANAGER_DEMO="false",
        INSTANCE_MANAGER_API_RATE_LIMIT="100000000/min",
        INSTANCE_MANAGER_VAR_DIR=str(workdir / "var"),
        INSTANCE_MANAGER_LOG_DIR=str(workdir / "logs"),
        INSTANCE_MANAGER_LOG_LEVEL="WARNING",
        INSTANCE_MANAGER_CACHE_PREFIX=f"bench:{uuid.uuid4().hex[:8]}",
        ALLOWED_HOSTS="testserver",
    )
    for name in ("REDIS_HOST", "REDIS_URL"):
        os.environ.pop(name, None)
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith("postgres"):
        parts = urlsplit(database_url)
        scratch = f"{parts.path.lstrip('/') or 'postgres'}{SCRATCH_DB_SUFFIX}"
        import psycopg

        admin = urlunsplit(parts._replace(path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
            conn.execute(f'CREATE DATABASE "{scratch}"')
        os.environ["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{scratch}"))
        return scratch
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    return None


def drop_scratch(database_url: str, scratch: str) -> None:
    import psycopg
    from django.db import connections

    connections.close_all()
    admin = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{scratch}"')


def populate(scenario: Scenario) -> list[str]:
    """The scenario's instances, healthy; the model names of its pools."""
    from gateway.registry import build_snapshot, reset_registry_snapshot
    from instances.models import AIInstance
    from instances.services import _bump_registry_version

    AIInstance.objects.all().delete()
    models = [f"bench-model-{p}" for p in range(scenario.pools)]
    rows = [
        AIInstance(
            provider_type="openai",
            model_name=model,
            instance_name=f"{model}-{n}",
            endpoint_url=f"http://127.0.0.1:9/{model}/{n}/v1",
            status="healthy",
            health_score=1.0,
            max_concurrent_requests=100,
        )
        for model in models
        for n in range(scenario.per_pool)
    ]
    AIInstance.objects.bulk_create(rows, batch_size=2000)
    _bump_registry_version()
    reset_registry_snapshot()
    build_snapshot()  # load the code paths once
    return models


def fresh_state() -> None:
    """A balancer key prefix of its own, so no position or breaker carries over."""
    from django.conf import settings

    from instances.balancer import state

    settings.BALANCER_KEY_PREFIX = f"bench:{uuid.uuid4().hex[:12]}:lb:"
    state._store = None


def clear_state() -> None:
    from django.conf import settings

    from instances.balancer import state

    if not settings.REDIS_URL:
        return
    import redis

    client = redis.Redis.from_url(settings.REDIS_URL)
    prefixes = [getattr(settings, "BALANCER_KEY_PREFIX", ""), os.environ["INSTANCE_MANAGER_CACHE_PREFIX"]]
    for prefix in prefixes:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.unlink(*keys)
    client.close()
    state._store = None


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


@dataclass
class Result:
    scenario: Scenario
    total_ms: list[float]
    routing_ms: list[float]
    snapshot_build_ms: float

    def merge(self, other: Result) -> None:
        self.total_ms += other.total_ms
        self.routing_ms += other.routing_ms
        self.snapshot_build_ms = max(self.snapshot_build_ms, other.snapshot_build_ms)


def run(scenario: Scenario, *, requests: int, warmup: int, strategy: str | None, seed: int) -> Result:
    from django.conf import settings
    from rest_framework.test import APIClient

    from gateway.registry import build_snapshot

    fresh_state()
    models = populate(scenario)
    started = time.perf_counter()
    build_snapshot()
    build_ms = (time.perf_counter() - started) * 1000

    client = APIClient()
    client.credentials(HTTP_X_API_KEY=settings.BACKEND_API_KEY)
    rng = random.Random(seed)
    body: dict[str, object] = {"provider_type": "openai"}
    if strategy:
        body["strategy"] = strategy
    total_ms: list[float] = []
    routing_ms: list[float] = []
    for index in range(warmup + requests):
        body["model_name"] = rng.choice(models)
        t0 = time.perf_counter()
        response = client.post(URL, body, format="json")
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{scenario.name}: select-instance answered {response.status_code}: {response.content!r}")
        if index >= warmup:
            total_ms.append(elapsed)
            routing_ms.append(response.json()["load_balancing_time_ms"])
    clear_state()
    return Result(scenario, total_ms, routing_ms, build_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1500, help="Timed requests per scenario.")
    parser.add_argument("--rounds", type=int, default=3, help="Alternations of the 10 and 10,000/1,000 scenarios.")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument(
        "--worst-case-requests", type=int, default=200, help="Timed requests for 10,000 in one pool (slow)."
    )
    parser.add_argument("--strategy", default=None, help="Strategy to ask for (default: the configured one).")
    parser.add_argument("--redis", metavar="URL", default=None, help="Keep the balancer state in this Redis.")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-select-"))
    requested_db = os.environ.get("DATABASE_URL", "")
    scratch = configure_environment(args.redis, workdir)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from configuration.selectors import config_value

    call_command("migrate", verbosity=0)
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
        f"database {connection.vendor}; balancer state {'Redis ' + args.redis if args.redis else 'in process'}; "
        f"strategy {args.strategy or config_value('load_balancer.strategy') + ' (configured)'}; "
        f"{args.requests} timed requests per scenario in {args.rounds} alternating rounds, each after "
        f"{args.warmup} warm-up ({args.worst_case_requests} for 10,000 in one pool), one at a time; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    # The host is shared: load from other work drifts over a run. The 10 and
    # 10,000/1,000-pool scenarios therefore alternate for --rounds rounds and
    # their timings are pooled, so drift lands on both alike.
    by_scenario: dict[str, Result] = {}
    try:
        per_round = max(1, args.requests // args.rounds)
        for _ in range(args.rounds):
            for scenario in SCENARIOS[:2]:
                result = run(scenario, requests=per_round, warmup=args.warmup, strategy=args.strategy, seed=args.seed)
                by_scenario.setdefault(scenario.name, Result(scenario, [], [], 0.0)).merge(result)
        worst_case = SCENARIOS[2]
        by_scenario[worst_case.name] = run(
            worst_case, requests=args.worst_case_requests, warmup=20, strategy=args.strategy, seed=args.seed
        )
    finally:
        if scratch:
            drop_scratch(requested_db, scratch)
    results = [by_scenario[scenario.name] for scenario in SCENARIOS]

    base = results[0]
    base_p50 = statistics.median(base.total_ms)
    print()
    print(
        f"{'scenario':<22} {'instances':>9} {'pool':>6} | {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
        f"{'p50 ratio':>9} | {'routing p50':>11} {'p99':>7} | {'snapshot build ms, max':>23}"
    )
    for result in results:
        p50 = statistics.median(result.total_ms)
        print(
            f"{result.scenario.name:<22} {result.scenario.instances:>9,} {result.scenario.per_pool:>6,} | "
            f"{p50:>7.2f} {percentile(result.total_ms, 0.99):>7.2f} {max(result.total_ms):>7.2f} "
            f"{p50 / base_p50:>9.2f} | "
            f"{statistics.median(result.routing_ms):>11.3f} {percentile(result.routing_ms, 0.99):>7.3f} | "
            f"{result.snapshot_build_ms:>23.1f}"
        )
    print()
    flat = statistics.median(results[1].total_ms) / base_p50
    print(f"target: p50 ratio <= 1.5 from 10 to 10,000 instances (10 per pool): {flat:.2f} -> "
          f"{'met' if flat <= 1.5 else 'NOT met'}")  # fmt: skip
    worst = statistics.median(results[2].total_ms) / base_p50
    print(f"worst case, 10,000 in one pool: p50 ratio {worst:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
