"""A loopback TCP proxy that injects network faults between a client and a real server.

Tests and benchmarks put it in front of PostgreSQL, Redis or the simulated provider
instead of stopping the machine's servers:

    with FaultProxy("127.0.0.1", 6379) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/15"
        ...
        proxy.cut()        # close every open connection and refuse new ones
        proxy.blackhole()  # keep connections open but forward nothing (a hung server)
        proxy.delay(0.5)   # forward everything, each chunk 0.5 s late
        proxy.heal()       # pass everything through again

Standalone, for child processes (a soak benchmark, `make run` by hand):

    python -m tests.support.faultproxy --upstream 127.0.0.1:6379 --port 16379 --control-port 16380
    curl -X POST 127.0.0.1:16380/cut    # also /blackhole, /heal, /delay?seconds=0.5, GET / for the state

Modes apply to open connections too: a cut closes them, a black-hole stalls them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading
from urllib.parse import parse_qs, urlsplit

PASS, CUT, BLACKHOLE = "pass", "cut", "blackhole"
_CHUNK = 65536


class FaultProxy:
    def __init__(self, upstream_host: str, upstream_port: int, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = port
        self.mode = PASS
        self.delay_seconds = 0.0
        self.connections_total = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._healed: asyncio.Event | None = None

    # -- control (from any thread) --

    def cut(self) -> None:
        self._set(CUT)

    def blackhole(self) -> None:
        self._set(BLACKHOLE)

    def delay(self, seconds: float) -> None:
        self.delay_seconds = max(0.0, seconds)
        self._set(PASS)

    def heal(self) -> None:
        self.delay_seconds = 0.0
        self._set(PASS)

    @property
    def open_connections(self) -> int:
        return len(self._writers) // 2

    def _set(self, mode: str) -> None:
        self.mode = mode
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._apply_mode)

    def _apply_mode(self) -> None:
        assert self._healed is not None
        if self.mode == PASS:
            self._healed.set()
            return
        self._healed.clear()
        if self.mode == CUT:
            for writer in list(self._writers):
                writer.transport.abort()

    # -- lifecycle --

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run_thread, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        with contextlib.suppress(Exception):
            future.result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_thread(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.run_until_complete(self.serve())
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def serve(self) -> None:
        """Start listening on the current event loop (the standalone mode's entry)."""
        self._healed = asyncio.Event()
        self._healed.set()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        # Connections still being piped end here, not as "Task was destroyed but it is pending".
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the proxy --

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.mode == CUT:  # a refused connection, as near as a listening socket can get
            writer.transport.abort()
            return
        self.connections_total += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                self._writers.discard(end)
                end.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._healed is not None
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                # A black-hole holds what it read; a cut has already aborted both ends.
                while self.mode != PASS:
                    if self.mode == CUT:
                        return
                    await self._healed.wait()
                if self.delay_seconds:
                    await asyncio.sleep(self.delay_seconds)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            # Half-close is not worth modelling: either side ending ends the connection.
            writer.transport.abort()


async def _control_server(proxy: FaultProxy, host: str, port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode("latin-1").split()
        while (await reader.readline()) not in (b"\r\n", b"\n", b""):
            pass
        method, target = [*request_line, "", ""][:2]
        parts = urlsplit(target)
        action = parts.path.strip("/")
        status = "200 OK"
        if method == "POST" and action in ("cut", "blackhole", "heal"):
            getattr(proxy, action)()
        elif method == "POST" and action == "delay":
            proxy.delay(float(parse_qs(parts.query).get("seconds", ["0"])[0]))
        elif not (method == "GET" and action == ""):
            status = "404 Not Found"
        state = {"mode": proxy.mode, "delay_seconds": proxy.delay_seconds, "port": proxy.port}
        body = json.dumps({**state, "open": proxy.open_connections}).encode()
        writer.write(
            f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="host:port of the real server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--control-port", type=int, required=True)
    args = parser.parse_args()
    upstream_host, _, upstream_port = args.upstream.rpartition(":")
    proxy = FaultProxy(upstream_host, int(upstream_port), host=args.host, port=args.port)

    async def run() -> None:
        await proxy.serve()
        proxy._loop = asyncio.get_running_loop()
        await _control_server(proxy, args.host, args.control_port)

    asyncio.run(run())


if __name__ == "__main__":
    main()
