"""The gateway's upstream HTTP clients: many small connection pools instead of one big one.

httpcore's pool bookkeeping runs at every request start and end and walks
every queued request against every connection, polling idle sockets as it goes
(encode/httpcore#1035): one shared client turns CPU-bound past a few dozen
concurrent requests (measured by the providers' author: ~200 req/s at 50
concurrent against ~1,700 with separate clients). So a request borrows a
client of its upstream origin that carries fewer than PER_CLIENT requests, and
a new client is opened when none does: no pool ever holds more than
PER_CLIENT requests or connections, whatever the concurrency.

Opening a client is cheap because all of them share one SSL context
(instances.providers.transport.shared_ssl_context). Clients belong to the event loop
that opened them (their connections do), so clients are kept per running loop;
a closed loop's are dropped.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from instances.providers.transport import build_client

# httpcore imports sniffio on every request to learn which async library runs it, and a failed
# import is not cached: without sniffio installed that is a search of sys.path several times per
# request (a quarter of the gateway's CPU in a profile). Recording the absence once makes the
# import fail at once; httpcore then assumes asyncio, which is what runs the gateway.
if importlib.util.find_spec("sniffio") is None:
    sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]

PER_CLIENT = 4
MAX_CLIENTS_PER_ORIGIN = 1024  # past that, clients are shared beyond PER_CLIENT rather than multiplied


def small_client() -> httpx.AsyncClient:
    """instances.providers.build_client with a pool of PER_CLIENT connections."""
    return build_client(max_connections=PER_CLIENT, max_keepalive_connections=PER_CLIENT)


class _Slot:
    __slots__ = ("busy", "client")

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.busy = 0


class ClientPool:
    def __init__(
        self,
        *,
        per_client: int = PER_CLIENT,
        max_clients: int = MAX_CLIENTS_PER_ORIGIN,
        factory: Callable[[], httpx.AsyncClient] = small_client,
    ) -> None:
        self.per_client = per_client
        self.max_clients = max_clients
        self._factory = factory
        # id(loop) -> (loop, origin -> slots); the loop is kept to tell a reused id from the same loop.
        self._loops: dict[int, tuple[asyncio.AbstractEventLoop, dict[str, list[_Slot]]]] = {}

    def _origins(self) -> dict[str, list[_Slot]]:
        loop = asyncio.get_running_loop()
        entry = self._loops.get(id(loop))
        if entry is None or entry[0] is not loop:
            for key, (other, _) in list(self._loops.items()):
                if other.is_closed():
                    del self._loops[key]
            entry = (loop, {})
            self._loops[id(loop)] = entry
        return entry[1]

    @asynccontextmanager
    async def client(self, origin: str) -> AsyncIterator[httpx.AsyncClient]:
        """Borrow a client for one request (or one whole stream) to `origin` (scheme://host:port)."""
        slots = self._origins().setdefault(origin, [])
        slot = min(slots, key=lambda s: s.busy) if slots else None
        if slot is None or (slot.busy >= self.per_client and len(slots) < self.max_clients):
            slot = _Slot(self._factory())
            slots.append(slot)
        slot.busy += 1
        try:
            yield slot.client
        finally:
            slot.busy -= 1

    def size(self) -> int:
        """Clients open on the running loop."""
        return sum(len(slots) for slots in self._origins().values())

    async def aclose(self) -> None:
        """Close the running loop's clients (tests, shutdown)."""
        for slots in self._origins().values():
            for slot in slots:
                await slot.client.aclose()
        self._loops.pop(id(asyncio.get_running_loop()), None)
