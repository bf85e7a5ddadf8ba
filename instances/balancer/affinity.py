"""Session affinity: rendezvous (highest random weight) hashing plus a remembered choice.

Each (session, instance) pair gets a score; the session goes to the eligible
instance with the highest one:

    h = first 8 bytes of blake2b(session_id NUL instance_id), as an integer
    u = (h + 0.5) / 2**64                    (uniform in (0, 1))
    score = -w / ln(u)                       (w = the instance's weight, 1 when unweighted)

Adding an instance moves only the sessions it now wins (about 1/(n+1) of
them, w/W when weighted); removing one moves only its own sessions. The
weighted form gives each instance a share of sessions proportional to w.

On top of the hash, the store remembers session -> instance with a TTL, and
the remembered instance is kept while it stays eligible: a session that was
moved (say while its instance was at capacity) does not bounce back and forth.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol


class SessionMap(Protocol):
    """The remembered session -> instance choices of a pool, each with a TTL."""

    def session_get(self, pool: str, session_id: str) -> str | None: ...

    def session_put(self, pool: str, session_id: str, instance_id: str, *, ttl_seconds: float) -> None: ...


def rendezvous_score(session_id: str, instance_id: str, weight: float = 1.0) -> float:
    """-w / ln(u) for this pair (formula in the module docstring)."""
    digest = hashlib.blake2b(f"{session_id}\0{instance_id}".encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 0.5) / 2.0**64
    return -weight / math.log(u)


def rank_for_session(session_id: str, weights: Mapping[str, float], *, limit: int | None = None) -> list[str]:
    """Instance ids by descending score for this session (the first `limit` of them when given)."""

    def score(iid: str) -> float:
        return rendezvous_score(session_id, iid, weights[iid])

    if limit is None:
        return sorted(weights, key=score, reverse=True)
    return heapq.nlargest(limit, weights, key=score)


def pick_for_session(session_id: str, eligible_ids: Iterable[str], weights: Mapping[str, float] | None = None) -> str:
    """The eligible instance with the highest rendezvous score (weights default to 1)."""
    ids = list(eligible_ids)
    return rank_for_session(session_id, {iid: (weights or {}).get(iid, 1.0) for iid in ids}, limit=1)[0]


@dataclass(frozen=True, slots=True)
class Affinity:
    instance_id: str
    remembered: bool


def resolve_session(session_id: str, weights: Mapping[str, float], remembered: str | None) -> Affinity:
    """Keep the remembered instance while it is eligible (a key of `weights`), else the rendezvous pick."""
    if remembered is not None and remembered in weights:
        return Affinity(remembered, remembered=True)
    return Affinity(pick_for_session(session_id, weights, weights), remembered=False)
