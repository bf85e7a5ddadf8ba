"""The gateway's upstream HTTP clients: many small pools instead of one big one.

httpcore's pool bookkeeping runs on every request start and end and is
quadratic in the requests and connections of the pool (encode/httpcore#1035):
one shared client turns CPU-bound past a few dozen concurrent requests
(measured: ~200 req/s at 50 concurrent against ~1,700 with separate clients).
So each request borrows the least busy client of its event loop, and a new
client is opened when every client already carries PER_CLIENT requests; a
client's pool therefore never sees more than PER_CLIENT requests at once.

Clients belong to the event loop that opened them (their connections do), so
the pool keeps one set per running loop; a closed loop's set is dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from instances.providers import build_client

PER_CLIENT = 16
MAX_CLIENTS = 256  # 4,096 concurrent upstream requests before clients are shared beyond PER_CLIENT


class _Slot:
    __slots__ = ("busy", "client")

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.busy = 0


def _small_client() -> httpx.AsyncClient:
    # A client never carries much more than PER_CLIENT requests, so its pool stays small too.
    return build_client(max_connections=4 * PER_CLIENT, max_keepalive_connections=2 * PER_CLIENT)


class ClientPool:
    def __init__(
        self,
        *,
        per_client: int = PER_CLIENT,
        max_clients: int = MAX_CLIENTS,
        factory: Callable[[], httpx.AsyncClient] = _small_client,
    ) -> None:
        self.per_client = per_client
        self.max_clients = max_clients
        self._factory = factory
        self._slots: dict[int, tuple[asyncio.AbstractEventLoop, list[_Slot]]] = {}

    def _loop_slots(self) -> list[_Slot]:
        loop = asyncio.get_running_loop()
        entry = self._slots.get(id(loop))
        if entry is None or entry[0] is not loop:
            for key, (other, _) in list(self._slots.items()):
                if other.is_closed():
                    del self._slots[key]
            entry = (loop, [])
            self._slots[id(loop)] = entry
        return entry[1]

    @asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """Borrow the least busy client of the running loop for one upstream request (or one whole stream)."""
        slots = self._loop_slots()
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
        return len(self._loop_slots())

    async def aclose(self) -> None:
        """Close the running loop's clients (tests, shutdown)."""
        for slot in self._loop_slots():
            await slot.client.aclose()
        self._slots.pop(id(asyncio.get_running_loop()), None)
