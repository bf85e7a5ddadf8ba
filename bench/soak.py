"""Soak: 30 minutes of mixed /v1 and /api load on PostgreSQL and Redis, one upstream flapping, Redis cut twice.

    python bench/soak.py                      # 1,800 s (the issue's 30 minutes)
    python bench/soak.py --seconds 300        # shorter
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/12 python bench/soak.py

Needs PostgreSQL and Redis (defaults: the machine's, 127.0.0.1). A scratch database `<name>_bench_soak`
is created and dropped; the Redis database given is flushed.

What runs, as in production (README, "Production"), all on loopback:
- the simulated provider with three instances of one model; `soak-flap` alternates 60 s failing
  every request with 500 and 60 s healthy;
- `uvicorn ishchat.asgi:application --workers 2`, a Celery worker and beat (health sweeps), all with
  REDIS_URL through a fault proxy (tests/support/faultproxy.py) that cuts Redis for 30 s at one third
  and at two thirds of the run; PostgreSQL is reached directly;
- 16 concurrent clients: 70 % chat completions, 10 % streamed, 10 % GET /api/instances/status,
  5 % PUT /api/instances/{id}/load, 5 % GET /api/instances/{id}.

Reported (and written to bench/README.md, section "Soak"): requests and errors by cause and by phase
(Redis up or cut), RequestLog rows written against /v1 requests answered (they must be equal),
PostgreSQL connections held (peak), web and worker memory (after warm-up, peak, at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gateway_bench  # noqa: E402  (bench/ is on sys.path: this script's own folder)
from gateway_bench import _free_port, _wait_http, percentile, process_rss_mb, start_simulator  # noqa: E402

from tests.support.faultproxy import FaultProxy  # noqa: E402

README = ROOT / "bench" / "README.md"
MODEL = "soak-model"
INSTANCES = ("soak-a", "soak-b", "soak-flap")
FLAP_SECONDS = 60.0
CUT_SECONDS = 30.0
CLIENTS = 16
SAMPLE_SECONDS = 10.0
# Processes holding a database pool: two web workers, the Celery worker's main process and its two
# children, beat.
POOLED_PROCESSES = 6
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "soak"}], "max_tokens": 8}


@dataclass
class Tally:
    answered: Counter[str] = field(default_factory=Counter)  # "v1"/"api" -> count of HTTP answers
    causes: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (phase, kind, cause)
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {"v1": [], "api": []})
    gateway_answers: int = 0  # every /v1 answer the gateway gave, whatever its status: one RequestLog row each


@dataclass
class Samples:
    pg_connections: list[int] = field(default_factory=list)
    web_rss_mb: list[float] = field(default_factory=list)
    worker_rss_mb: list[float] = field(default_factory=list)


def _children(pid: int) -> list[int]:
    """Every descendant of pid (uvicorn's workers, Celery's pool)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        for child in parents.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _tree_rss_mb(pid: int) -> float:
    total = 0.0
    for member in [pid, *_children(pid)]:
        with contextlib.suppress(OSError):
            total += process_rss_mb(member)
    return total


def prepare(redis_url: str) -> tuple[gateway_bench.Scratch, str]:
    gateway_bench.SCRATCH_DB_SUFFIX = "_bench_soak"
    os.environ.setdefault("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    if not os.environ["DATABASE_URL"].startswith(("postgres://", "postgresql://")):
        raise SystemExit("the soak runs on PostgreSQL: set DATABASE_URL to a postgresql:// URL")
    scratch = gateway_bench.prepare_environment(redis_url)
    import redis

    redis.Redis.from_url(redis_url, socket_timeout=2).flushdb()
    return scratch, redis_url


def register_fleet(sim_root: str) -> list[str]:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("setup_periodic_tasks", verbosity=0)
    from instances.models import AIInstance
    from instances.services import instance_register
    from simulator.server import instance_base_url

    ids = []
    for name in INSTANCES:
        instance = instance_register(
            provider_type="openai",
            model_name=MODEL,
            instance_name=name,
            endpoint_url=instance_base_url(sim_root, name, "openai"),
            api_key="sk-soak-0000000000000000",
            max_concurrent_requests=1000,
            timeout=10.0,
        )
        AIInstance.objects.filter(pk=instance.pk).update(status="healthy", health_score=1.0)
        ids.append(str(instance.instance_id))
    from django.db import connections

    connections.close_all()
    return ids


def start(name: str, command: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("wb")
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen[bytes], sig: signal.Signals = signal.SIGTERM) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


class Run:
    def __init__(self, args: argparse.Namespace, base: str, ids: list[str], sim_root: str, proxy: FaultProxy) -> None:
        self.args = args
        self.base = base
        self.ids = ids
        self.sim_root = sim_root
        self.proxy = proxy
        self.tally = Tally()
        self.samples = Samples()
        self.phase = "redis up"
        self.began = time.monotonic()
        self.rng = random.Random(7)
        self.auth = {"authorization": f"Bearer {os.environ['BACKEND_API_KEY']}"}

    def cuts(self) -> list[tuple[float, float]]:
        seconds = self.args.seconds
        return [(seconds / 3, seconds / 3 + CUT_SECONDS), (2 * seconds / 3, 2 * seconds / 3 + CUT_SECONDS)]

    async def faults(self) -> None:
        """The flapping upstream and the two Redis cuts, on schedule."""
        import httpx

        async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
            failing = False
            next_flap = FLAP_SECONDS
            cuts = self.cuts()
            while (elapsed := time.monotonic() - self.began) < self.args.seconds:
                if elapsed >= next_flap:
                    failing = not failing
                    next_flap += FLAP_SECONDS
                    behaviour = {"failure_rate": 1.0, "failure_status": 500} if failing else {}
                    await http.put(f"{self.sim_root}/_control/instances/soak-flap", json=behaviour)
                cut_now = any(start <= elapsed < end for start, end in cuts)
                if cut_now and self.phase != "redis cut":
                    self.proxy.cut()
                    self.phase = "redis cut"
                elif not cut_now and self.phase == "redis cut":
                    self.proxy.heal()
                    self.phase = "redis up"
                await asyncio.sleep(0.2)
        self.proxy.heal()
        self.phase = "redis up"

    async def client(self) -> None:
        import httpx

        limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
        async with httpx.AsyncClient(base_url=self.base, trust_env=False, timeout=30, limits=limits) as http:
            while time.monotonic() - self.began < self.args.seconds:
                await self.one(http)

    async def one(self, http: Any) -> None:
        import httpx

        roll = self.rng.random()
        phase = self.phase
        kind = "v1" if roll < 0.8 else "api"
        began = time.perf_counter()
        try:
            if roll < 0.7:
                response = await http.post("/v1/chat/completions", json=CHAT, headers=self.auth)
            elif roll < 0.8:
                async with http.stream(
                    "POST", "/v1/chat/completions", json={**CHAT, "stream": True}, headers=self.auth
                ) as response:
                    body = b"".join([chunk async for chunk in response.aiter_bytes()])
                if response.status_code == 200 and (b"[DONE]" not in body or b'"error"' in body):
                    self.tally.causes[(phase, kind, "stream ended with an error")] += 1
            elif roll < 0.9:
                response = await http.get("/api/instances/status", headers=self.auth)
            elif roll < 0.95:
                instance = self.rng.choice(self.ids)
                load = self.rng.randint(0, 3)
                response = await http.put(f"/api/instances/{instance}/load?current_load={load}", headers=self.auth)
            else:
                response = await http.get(f"/api/instances/{self.rng.choice(self.ids)}", headers=self.auth)
        except httpx.HTTPError as exc:
            self.tally.causes[(phase, kind, f"transport: {type(exc).__name__}")] += 1
            return
        self.tally.answered[kind] += 1
        if kind == "v1":
            self.tally.gateway_answers += 1
        self.tally.latencies_ms[kind].append((time.perf_counter() - began) * 1000)
        if response.status_code >= 400:
            code = ""
            try:
                payload = response.json()
                error = payload.get("error", payload) if isinstance(payload, dict) else {}
                code = str(error.get("code", "")) if isinstance(error, dict) else ""
            except ValueError:
                pass
            self.tally.causes[(phase, kind, f"HTTP {response.status_code} {code}".strip())] += 1

    async def sampler(self, web: subprocess.Popen[bytes], worker: subprocess.Popen[bytes], db: str) -> None:
        import psycopg

        admin_url = urlunsplit(urlsplit(os.environ["DATABASE_URL"])._replace(path="/postgres"))
        while time.monotonic() - self.began < self.args.seconds:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (db,)).fetchone()
            self.samples.pg_connections.append(int(row[0]) if row else 0)
            self.samples.web_rss_mb.append(_tree_rss_mb(web.pid))
            self.samples.worker_rss_mb.append(_tree_rss_mb(worker.pid))
            await asyncio.sleep(SAMPLE_SECONDS)

    async def main(self, web: subprocess.Popen[bytes], worker: subprocess.Popen[bytes], db: str) -> None:
        self.began = time.monotonic()
        await asyncio.gather(
            self.faults(), self.sampler(web, worker, db), *(self.client() for _ in range(self.args.clients))
        )


def request_log_rows() -> int:
    from django.db import connections

    from instances.models import RequestLog

    connections.close_all()
    return RequestLog.objects.count()


def render(args: argparse.Namespace, run: Run, rows: int, scratch: gateway_bench.Scratch, pool: dict[str, int]) -> str:
    t, s = run.tally, run.samples
    pool_max = pool.get("max_size", 0)
    warm = s.web_rss_mb[min(2, len(s.web_rss_mb) - 1)] if s.web_rss_mb else 0.0
    worker_warm = s.worker_rss_mb[min(2, len(s.worker_rss_mb) - 1)] if s.worker_rss_mb else 0.0
    errors = sum(t.causes.values())
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.seconds:g} s, {args.clients} clients, "
        f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}; {scratch.description}; "
        f"web `uvicorn --workers 2`, one Celery worker (concurrency 2) and beat; database pool {pool}.",
        "",
        "| figure | target | measured |",
        "|---|---|---|",
        f"| /v1 requests answered | | {t.answered['v1']:,} |",
        f"| /api requests answered | | {t.answered['api']:,} |",
        f"| requests failed (any cause, both phases) | 0 | {errors:,} |",
        f"| RequestLog rows written / /v1 requests answered | equal | {rows:,} / {t.gateway_answers:,} "
        f"({'equal' if rows == t.gateway_answers else 'NOT EQUAL'}) |",
        f"| PostgreSQL connections held, peak (all processes) | <= {POOLED_PROCESSES * pool_max} "
        f"({POOLED_PROCESSES} processes x pool max {pool_max}) | {max(s.pg_connections, default=0)} |",
        f"| web memory (2 workers), after warm-up -> peak -> end | no growth | {warm:.0f} -> "
        f"{max(s.web_rss_mb, default=0):.0f} -> {s.web_rss_mb[-1] if s.web_rss_mb else 0:.0f} MB |",
        f"| worker memory, after warm-up -> peak -> end | no growth | {worker_warm:.0f} -> "
        f"{max(s.worker_rss_mb, default=0):.0f} -> {s.worker_rss_mb[-1] if s.worker_rss_mb else 0:.0f} MB |",
        f"| /v1 latency p50 / p99 | | {percentile(t.latencies_ms['v1'], 50):.1f} / "
        f"{percentile(t.latencies_ms['v1'], 99):.1f} ms |",
        f"| /api latency p50 / p99 | | {percentile(t.latencies_ms['api'], 50):.1f} / "
        f"{percentile(t.latencies_ms['api'], 99):.1f} ms |",
        "",
    ]
    if t.causes:
        lines += ["Errors by cause:", "", "| phase | path | cause | count |", "|---|---|---|---|"]
        for (phase, kind, cause), count in sorted(t.causes.items()):
            lines.append(f"| {phase} | {kind} | {cause} | {count:,} |")
    else:
        lines.append("No request failed, during the Redis cuts or outside them.")
    return "\n".join(lines) + "\n"


def write_readme(section: str) -> None:
    """Replace the text between the soak markers of bench/README.md (appended the first time)."""
    begin, end = "<!-- soak:begin -->", "<!-- soak:end -->"
    text = README.read_text()
    block = f"{begin}\n{section}{end}"
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _m: block, text, flags=re.S)
    else:
        text += f"\n## Soak\n\n`python bench/soak.py` ({__doc__.splitlines()[0]})\n\n{block}\n"
    README.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1800.0)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/12"))
    parser.add_argument("--no-readme", action="store_true", help="print only; leave bench/README.md alone")
    args = parser.parse_args()

    redis_parts = urlsplit(args.redis)
    proxy = FaultProxy(redis_parts.hostname or "127.0.0.1", redis_parts.port or 6379).start()
    proxied_redis = urlunsplit(redis_parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    scratch, _ = prepare(args.redis)
    db = urlsplit(os.environ["DATABASE_URL"]).path.lstrip("/")
    logs = scratch.tmpdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    simulator, sim_root = start_simulator()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        ids = register_fleet(sim_root)
        # One API key drives all 16 clients: its DRF throttle (1200/min by default) would answer 429 to most
        # /api calls, which the soak is not about; the limit is raised, the throttle still runs.
        env = {**scratch.env, "REDIS_URL": proxied_redis, "INSTANCE_MANAGER_LOG_LEVEL": "INFO",
               "INSTANCE_MANAGER_API_RATE_LIMIT": "1000000/min"}  # fmt: skip
        env.pop("CELERY_TASK_ALWAYS_EAGER", None)
        port = _free_port()
        web = start(
            "web",
            [sys.executable, "-m", "uvicorn", "ishchat.asgi:application",
             "--http", "ishchat.server:BoundedHttpToolsProtocol", "--host", "127.0.0.1", "--port", str(port),
             "--workers", "2", "--no-access-log"],
            env, logs,
        )  # fmt: skip
        celery = [sys.executable, "-m", "celery", "-A", "ishchat"]
        worker = start("worker", [*celery, "worker", "--concurrency=2"], env, logs)
        beat = start(
            "beat",
            [*celery, "beat", f"--pidfile={scratch.tmpdir / 'beat.pid'}"],
            env, logs,
        )  # fmt: skip
        processes = [web, worker, beat]
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/health", web, "the web processes")
        from django.conf import settings

        pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool", {})
        run = Run(args, base, ids, sim_root, proxy)
        asyncio.run(run.main(web, worker, db))
        time.sleep(3)  # the RequestLog writers' interval, and then some
        stop(web)  # a clean stop writes what is still queued
        rows = request_log_rows()
        section = render(args, run, rows, scratch, pool)
        print(section)
        print(f"logs: {logs}")
        if not args.no_readme:
            write_readme(section)
    finally:
        for process in processes:
            stop(process)
        simulator.terminate()
        simulator.wait(timeout=15)
        proxy.stop()
        scratch.remove()


if __name__ == "__main__":
    main()
