"""Gateway benchmark: what does /v1/chat/completions add on top of calling the provider directly?

    python bench/gateway_bench.py                          # scratch SQLite, in-process balancer state
    python bench/gateway_bench.py --redis redis://127.0.0.1:6379/13   # the same with the state in Redis
    python bench/gateway_bench.py --front-door django      # through Django's views and middleware instead
    python bench/gateway_bench.py --quick                  # shorter runs
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/gateway_bench.py
                                                     # a scratch database `<name>_bench_gateway` there

What it does:

1. Starts the simulated provider (`python -m simulator.server`) and the gateway
   (`uvicorn --factory bench.gateway:front_door_app`, uvloop + httptools, no access log: the
   production command of the README) as two processes on loopback, with a scratch database
   (never the real one): SQLite in a temporary INSTANCE_MANAGER_VAR_DIR unless DATABASE_URL
   names PostgreSQL. Balancer state is in process unless --redis.
2. Registers two instances of a zero-latency model and two of each 2 s streaming model, and
   authenticates with BACKEND_API_KEY.
3. Measures, with a minimal HTTP/1.1 keep-alive client (so the load generator costs little
   CPU on this small machine):
   - sequential: N requests alternating direct-to-simulator and through-the-gateway, one
     connection each; added latency = gateway percentile - direct percentile (p50, p99), and
     the gateway's own x-overhead-ms header;
   - throughput: 50 concurrent keep-alive clients for `--seconds`, through the gateway (and
     directly, for the simulator's own ceiling); requests/s, errors, gateway CPU per request;
   - streams: 1,000 streamed completions started at once against a 2 s provider, two ways
     (StreamKind): answering after 2 s, and dripping 20 chunks over 2 s; each must end with
     `data: [DONE]` and no error event; how many the simulator held open at once, duration,
     time to first byte, gateway RSS and CPU.

All three processes share the machine's cores, so throughput is the whole system's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # ahead of bench/, whose gateway.py would shadow the gateway package

SCRATCH_DB_SUFFIX = "_bench_gateway"
FAST_MODEL = "bench-fast"
FAST_INSTANCES = ("fast-a", "fast-b")


@dataclass(frozen=True)
class StreamKind:
    """A 2 s provider, two ways: `slow` answers after 2 s (connections held idle, then a burst of
    chunks); `drip` streams 20 chunks 100 ms apart (2 s of steady relaying)."""

    model: str
    instances: tuple[str, ...]
    behaviour: dict[str, float]
    label: str


STREAM_KINDS = (
    StreamKind(
        "bench-slow",
        ("slow-a", "slow-b"),
        {"latency_ms": 2000.0, "stream_chunks": 8},
        "first chunk after 2 s, then 8 chunks at once",
    ),
    StreamKind(
        "bench-drip",
        ("drip-a", "drip-b"),
        {"stream_chunks": 20, "stream_chunk_delay_ms": 100.0},
        "20 chunks 100 ms apart",
    ),
)
TARGETS = {"p50_ms": 2.0, "p99_ms": 10.0, "rps": 500.0, "streams": 1000}


# --- Processes --------------------------------------------------------------------------


def front_door_app() -> Any:
    """uvicorn --factory: the production set-up, the raw ASGI front door before Django."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ishchat.settings")
    from django.core.asgi import get_asgi_application

    django_application = get_asgi_application()
    from gateway.asgi import GatewayApp

    return GatewayApp(django_application)


def django_views_app() -> Any:
    """uvicorn --factory: /v1/ through Django's views, URL routing and settings.MIDDLEWARE."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ishchat.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.urls import Resolver404, resolve

    try:
        resolve("/v1/chat/completions")
    except Resolver404:  # the project's URLconf does not include gateway.urls yet
        settings.ROOT_URLCONF = "gateway.urls"
    from django.core.asgi import get_asgi_application

    return get_asgi_application()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1.0, trust_env=False)
            return
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise SystemExit(f"{what} did not start") from None
            time.sleep(0.1)


def start_simulator() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "simulator.server", "--port", str(port), "--log-level", "warning"], cwd=ROOT
    )
    root = f"http://127.0.0.1:{port}"
    _wait_http(f"{root}/_control/instances/probe", process, "the simulated provider")
    return process, root


def start_gateway(front_door: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    factory = "front_door_app" if front_door == "asgi" else "django_views_app"
    command = [
        sys.executable, "-m", "uvicorn", "--factory", f"bench.gateway:{factory}",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
        "--lifespan", "on" if front_door == "asgi" else "off",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    _wait_http(f"http://127.0.0.1:{port}/v1/models", process, "the gateway")
    return process, port


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- Scratch database and fleet -------------------------------------------------------------


@dataclass
class Scratch:
    description: str
    tmpdir: Path
    env: dict[str, str]
    drop_postgres: tuple[str, str] | None = None

    def remove(self) -> None:
        if self.drop_postgres:
            import psycopg

            admin_url, name = self.drop_postgres
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self.tmpdir, ignore_errors=True)


def prepare_environment(redis_url: str | None) -> Scratch:
    """The environment of this process and the gateway's: scratch database, no .env, quiet logs."""
    tmpdir = Path(tempfile.mkdtemp(prefix="ishchat-bench-gateway-"))
    os.environ["INSTANCE_MANAGER_DOTENV"] = "false"
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key")
    os.environ.setdefault("FIELD_ENCRYPTION_KEY", "Zm9yLXRlc3RzLW9ubHktMzItYnl0ZXMta2V5LTAwMDA=")
    os.environ.setdefault("BACKEND_API_KEY", "bench-only-backend-api-key-0123456789")
    os.environ["INSTANCE_MANAGER_LOG_LEVEL"] = "WARNING"
    os.environ["INSTANCE_MANAGER_LOG_DIR"] = str(tmpdir / "logs")
    os.environ["INSTANCE_MANAGER_VAR_DIR"] = str(tmpdir / "var")
    os.environ["INSTANCE_MANAGER_DEMO"] = "false"
    os.environ["DJANGO_SETTINGS_MODULE"] = "ishchat.settings"
    for name in ("REDIS_URL", "REDIS_HOST"):
        os.environ.pop(name, None)
    if redis_url:
        os.environ["REDIS_URL"] = redis_url
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        description = f"SQLite, embedded default settings (WAL), {tmpdir}/var/db.sqlite3"
        return Scratch(description, tmpdir, dict(os.environ))
    if url.startswith(("postgres://", "postgresql://")):
        import dj_database_url
        import psycopg

        name = f"{dj_database_url.parse(url)['NAME']}{SCRATCH_DB_SUFFIX}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
            version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        os.environ["DATABASE_URL"] = urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
        return Scratch(f"PostgreSQL {version}, scratch database {name}", tmpdir, dict(os.environ), (url, name))
    raise SystemExit(f"unsupported DATABASE_URL scheme: {url.split(':', 1)[0]}")


def register_fleet(sim_root: str) -> None:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from instances.models import AIInstance
    from instances.services import instance_register
    from simulator.server import instance_base_url

    pools = [(FAST_INSTANCES, FAST_MODEL)] + [(kind.instances, kind.model) for kind in STREAM_KINDS]
    for names, model in pools:
        for name in names:
            instance = instance_register(
                provider_type="openai",
                model_name=model,
                instance_name=name,
                endpoint_url=instance_base_url(sim_root, name, "openai"),
                api_key="sk-bench-0000000000000000",
                max_concurrent_requests=100_000,
                timeout=30.0,
            )
            AIInstance.objects.filter(pk=instance.pk).update(status="healthy", health_score=1.0)
    import httpx

    for kind in STREAM_KINDS:
        for name in kind.instances:
            url = f"{sim_root}/_control/instances/{name}"
            httpx.put(url, json=kind.behaviour, trust_env=False).raise_for_status()


# --- A small HTTP/1.1 keep-alive client ------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    first_byte_s: float  # since the request was written
    total_s: float


class Connection:
    """One keep-alive connection; requests one at a time (content-length or chunked replies)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()

    async def request(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        head = f"POST {path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\ncontent-type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"content-length: {len(body)}\r\n\r\n"
        started = time.perf_counter()
        self.writer.write(head.encode() + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        first_byte = time.perf_counter() - started
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        reply_headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                reply_headers[name.strip().lower()] = value.strip()
        if "content-length" in reply_headers:
            content = await self.reader.readexactly(int(reply_headers["content-length"]))
        else:  # chunked
            parts: list[bytes] = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                if not parts:
                    first_byte = time.perf_counter() - started
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            content = b"".join(parts)
        if reply_headers.get("connection", "").lower() == "close":
            await self.close()
            self.writer = None
        return Answer(status, reply_headers, content, first_byte, time.perf_counter() - started)


# --- Measurements ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def chat_body(model: str, *, stream: bool = False, upstream: bool = False) -> bytes:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "Say something short."}]}
    if stream:
        body["stream"] = True
    if upstream:  # what the gateway sends for this body: the same work for the simulator
        body.update(max_completion_tokens=1000, temperature=0.7)
    return json.dumps(body).encode()


def _sim_stats(root: str, name: str) -> dict[str, Any]:
    import httpx

    response = httpx.get(f"{root}/_control/instances/{name}", trust_env=False)
    response.raise_for_status()
    stats: dict[str, Any] = response.json()["stats"]
    return stats


@dataclass
class Setup:
    sim_root: str
    sim_port: int
    gateway_port: int
    gateway_pid: int
    auth: dict[str, str] = field(default_factory=dict)


async def sequential(setup: Setup, count: int) -> dict[str, Any]:
    direct, gateway = Connection("127.0.0.1", setup.sim_port), Connection("127.0.0.1", setup.gateway_port)
    direct_body, gateway_body = chat_body(FAST_MODEL, upstream=True), chat_body(FAST_MODEL)
    direct_path = f"/sim/{FAST_INSTANCES[0]}/v1/chat/completions"
    times: dict[str, list[float]] = {"direct": [], "gateway": []}
    overheads: list[float] = []
    errors = 0
    for index in range(count + 200):  # the first 200 pairs warm up both paths
        a = await direct.request(direct_path, direct_body, {})
        b = await gateway.request("/v1/chat/completions", gateway_body, setup.auth)
        if a.status != 200 or b.status != 200:
            errors += 1
        if index >= 200:
            times["direct"].append(a.total_s * 1000)
            times["gateway"].append(b.total_s * 1000)
            overheads.append(float(b.headers.get("x-overhead-ms", "nan")))
    await direct.close()
    await gateway.close()
    result: dict[str, Any] = {"count": count, "errors": errors}
    for q in (50, 90, 99):
        d, g = percentile(times["direct"], q), percentile(times["gateway"], q)
        result[f"p{q}"] = {"direct": d, "gateway": g, "added": g - d, "x_overhead": percentile(overheads, q)}
    return result


async def closed_loop(
    port: int, path: str, body: bytes, headers: dict[str, str], *, workers: int, seconds: float, warmup: float
) -> dict[str, Any]:
    done = errors = 0
    latencies: list[float] = []
    measuring = False
    stop = False

    async def worker() -> None:
        nonlocal done, errors
        connection = Connection("127.0.0.1", port)
        while not stop:
            try:
                answer = await connection.request(path, body, headers)
                ok = answer.status == 200
            except (OSError, asyncio.IncompleteReadError, ValueError):
                ok = False
                await connection.close()
                connection = Connection("127.0.0.1", port)
            if measuring:
                if ok:
                    done += 1
                    latencies.append(answer.total_s * 1000)
                else:
                    errors += 1
        await connection.close()

    tasks = [asyncio.ensure_future(worker()) for _ in range(workers)]
    await asyncio.sleep(warmup)
    measuring = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    measuring = False
    elapsed = time.perf_counter() - started
    stop = True
    await asyncio.gather(*tasks)
    return {
        "rps": done / elapsed,
        "requests": done,
        "errors": errors,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }


async def throughput(setup: Setup, *, workers: int, seconds: float) -> dict[str, Any]:
    direct = await closed_loop(
        setup.sim_port,
        f"/sim/{FAST_INSTANCES[0]}/v1/chat/completions",
        chat_body(FAST_MODEL, upstream=True),
        {},
        workers=workers,
        seconds=seconds,
        warmup=1.0,
    )
    cpu_before = process_cpu_seconds(setup.gateway_pid)
    started = time.perf_counter()
    through = await closed_loop(
        setup.gateway_port,
        "/v1/chat/completions",
        chat_body(FAST_MODEL),
        setup.auth,
        workers=workers,
        seconds=seconds,
        warmup=2.0,
    )
    wall = time.perf_counter() - started
    cpu = process_cpu_seconds(setup.gateway_pid) - cpu_before
    total_requests = through["requests"] * wall / seconds  # the warm-up's requests cost CPU too (estimate)
    through["gateway_cpu_ms_per_request"] = cpu * 1000 / total_requests if total_requests else float("nan")
    through["gateway_cpu_share"] = cpu / wall
    return {"direct": direct, "gateway": through}


async def streams(setup: Setup, kind: StreamKind, count: int) -> dict[str, Any]:
    body = chat_body(kind.model, stream=True)
    rss_before = process_rss_mb(setup.gateway_pid)
    peak_rss = rss_before
    outcomes: list[tuple[bool, float, float, str]] = []

    async def one() -> None:
        connection = Connection("127.0.0.1", setup.gateway_port)
        try:
            answer = await connection.request("/v1/chat/completions", body, setup.auth)
            text = answer.body.decode()
            ok = answer.status == 200 and text.rstrip().endswith("data: [DONE]") and '"error"' not in text
            outcomes.append((ok, answer.first_byte_s, answer.total_s, "" if ok else text[-200:]))
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            outcomes.append((False, 0.0, 0.0, repr(exc)))
        finally:
            await connection.close()

    async def watch_rss() -> None:
        nonlocal peak_rss
        while True:
            peak_rss = max(peak_rss, process_rss_mb(setup.gateway_pid))
            await asyncio.sleep(0.1)

    watcher = asyncio.ensure_future(watch_rss())
    cpu_before = process_cpu_seconds(setup.gateway_pid)
    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    wall = time.perf_counter() - started
    watcher.cancel()
    cpu = process_cpu_seconds(setup.gateway_pid) - cpu_before
    held = sum(_sim_stats(setup.sim_root, name)["max_in_flight"] for name in kind.instances)
    good = [o for o in outcomes if o[0]]
    failures = [o[3] for o in outcomes if not o[0]]
    return {
        "label": kind.label,
        "count": count,
        "completed": len(good),
        "errors": len(failures),
        "first_errors": failures[:3],
        "wall_s": wall,
        "duration_p50_s": percentile([o[2] for o in good], 50),
        "duration_p99_s": percentile([o[2] for o in good], 99),
        "duration_max_s": max((o[2] for o in good), default=float("nan")),
        "ttfb_p50_ms": percentile([o[1] * 1000 for o in good], 50),
        "ttfb_p99_ms": percentile([o[1] * 1000 for o in good], 99),
        "held": held,
        "cpu_s": cpu,
        "rss_before_mb": rss_before,
        "rss_peak_mb": peak_rss,
    }


# --- Report ------------------------------------------------------------------------------------


def met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def report(
    args: argparse.Namespace, scratch: Scratch, seq: dict[str, Any], tp: dict[str, Any], sts: list[dict[str, Any]]
) -> None:
    state = f"Redis {args.redis}" if args.redis else "in process"
    machine = f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs"
    print(f"\nGateway benchmark: front door {args.front_door!r}, balancer state {state}")
    print(f"  {machine}, load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"  database: {scratch.description}\n")

    print(f"Sequential, {seq['count']} requests each way, one keep-alive connection each (ms); errors {seq['errors']}")
    print(f"  {'':>5} {'direct':>8} {'gateway':>8} {'added':>8} {'x-overhead-ms':>14}")
    for q in (50, 90, 99):
        r = seq[f"p{q}"]
        print(f"  p{q:<4} {r['direct']:8.3f} {r['gateway']:8.3f} {r['added']:8.3f} {r['x_overhead']:14.3f}")

    d, g = tp["direct"], tp["gateway"]
    print(f"\nThroughput, {args.workers} concurrent keep-alive clients, {args.seconds:g} s, zero-latency provider")
    for name, r in (("direct", d), ("gateway", g)):
        latency = f"p50 {r['p50_ms']:.2f} ms  p99 {r['p99_ms']:.2f} ms"
        print(f"  {name:8} {r['rps']:8.1f} req/s  errors {r['errors']}  {latency}")
    cpu = g["gateway_cpu_ms_per_request"]
    print(f"  gateway process CPU: {cpu:.3f} ms per request, {g['gateway_cpu_share']:.0%} of a core while measured")

    for st in sts:
        print(f"\nStreams: {st['count']} at once from a 2 s provider: {st['label']}")
        print(f"  completed {st['completed']}, errors {st['errors']}, held open at once (simulator) {st['held']}")
        durations = f"duration p50 {st['duration_p50_s']:.2f} s, p99 {st['duration_p99_s']:.2f} s"
        first_byte = f"first byte p50 {st['ttfb_p50_ms']:.0f} ms, p99 {st['ttfb_p99_ms']:.0f} ms"
        print(f"  wall {st['wall_s']:.2f} s; {durations}; {first_byte}")
        print(f"  gateway RSS {st['rss_before_mb']:.0f} MB -> peak {st['rss_peak_mb']:.0f} MB, CPU {st['cpu_s']:.2f} s")
        for failure in st["first_errors"]:
            print(f"    e.g. {failure}")

    p50, p99 = seq["p50"]["added"], seq["p99"]["added"]
    rps_ok = g["rps"] >= TARGETS["rps"] and g["errors"] == 0 and seq["errors"] == 0
    print("\nTargets")
    print(f"  added latency p50 <= {TARGETS['p50_ms']:g} ms: {p50:.3f} ms  {met(p50 <= TARGETS['p50_ms'])}")
    print(f"  added latency p99 <= {TARGETS['p99_ms']:g} ms: {p99:.3f} ms  {met(p99 <= TARGETS['p99_ms'])}")
    rps = f"{g['rps']:.0f} req/s, {g['errors']} errors"
    print(f"  >= {TARGETS['rps']:g} req/s, {args.workers} clients, 0 errors: {rps}  {met(rps_ok)}")
    for st in sts:
        ok = st["completed"] == st["held"] == st["count"] >= TARGETS["streams"] and st["errors"] == 0
        streamed = f"{st['completed']} completed, {st['errors']} errors, {st['held']} held at once"
        print(f"  {TARGETS['streams']} concurrent streams ({st['label']}): {streamed}  {met(ok)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--front-door", choices=["asgi", "django"], default="asgi")
    parser.add_argument("--redis", metavar="URL", help="keep the balancer state (and the cache) in this Redis")
    parser.add_argument("--sequential", type=int, default=2000, help="requests each way (default 2000)")
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="500 sequential, 4 s of throughput")
    args = parser.parse_args()
    if args.quick:
        args.sequential, args.seconds = 500, 4.0

    scratch = prepare_environment(args.redis)
    simulator, sim_root = start_simulator()
    gateway: subprocess.Popen[bytes] | None = None
    try:
        register_fleet(sim_root)
        gateway, gateway_port = start_gateway(args.front_door, scratch.env)
        setup = Setup(
            sim_root=sim_root,
            sim_port=int(sim_root.rsplit(":", 1)[1]),
            gateway_port=gateway_port,
            gateway_pid=gateway.pid,
            auth={"authorization": f"Bearer {os.environ['BACKEND_API_KEY']}"},
        )
        run: Callable[[Any], Any] = asyncio.run
        try:
            import uvloop

            run = uvloop.run
        except ImportError:
            pass
        seq = run(sequential(setup, args.sequential))
        tp = run(throughput(setup, workers=args.workers, seconds=args.seconds))
        sts = [run(streams(setup, kind, args.streams)) for kind in STREAM_KINDS]
        report(args, scratch, seq, tp, sts)
    finally:
        for process in (gateway, simulator):
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
        scratch.remove()


if __name__ == "__main__":
    main()
