"""The balancer's shared state: one interface, kept in Redis (shared by every
process) or in process, and `get_state_store()` to pick between them.

Keys, under a configurable prefix (default "ishchat:lb:"), and when they expire:

    rr:<pool>            turn counter (INCR)                      a day after the last turn
    swrr:<pool>          JSON {instance: current SWRR weight}     a day after the last pick
    brk:<instance>       JSON breaker.BreakerState                BreakerConfig.retention_seconds after a change
    ej:<pool>            JSON {instance: until} of the pool's ejected instances (max-ejection guard)
    lat:<instance>       JSON latency.LatencyEstimate             30 tau after the last sample
    rl:<instance>        JSON ratelimit.RateState                 once both TATs are past (idle = absent)
    inflight:<instance>  sorted set: request token -> deadline    at the latest lease deadline
                         (gateway and select-instance leases; a client's reported load as tokens r:0..r:n-1)
    sess:<pool>:<hash>   instance id of a session (id hashed)     the session TTL, refreshed on each use

Atomicity with one implementation of every rule: the rules are the pure
functions of breaker.py, ratelimit.py, latency.py and strategies.swrr_step.
A read-modify-write goes through `_transact(keys, update)`: read the keys,
let the pure `update` compute the writes, and apply them only if no key
changed since the read. In Redis that last step is a generic Lua
compare-and-set over all the keys (on a conflict: read again and recompute);
in process it is a lock. Turn counters are INCR; in-flight requests are
leases in a sorted set (added by a Lua script that enforces the instance's
capacity, removed by ZREM), so a process that dies mid-request leaks nothing
beyond its lease deadline.

Load, one signal: an instance's in-flight count is the number of live leases
in its set, whoever took them: the gateway's requests (every process), leases
taken through select-instance for calls a client makes itself, and the load a
client reports (PUT .../load) as that many leases with a short TTL, which decay
unless reported again. Routing and capacity checks count these leases only;
AIInstance.current_load is the copy written when a load is reported.

Times: `now` is wall-clock seconds (time.time()) supplied by the caller, the
same for every process; TTLs are durations.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis

from instances.balancer import breaker as brk
from instances.balancer import latency, ratelimit
from instances.balancer.candidates import Candidate, Reason
from ishchat.outage import Outage

R = TypeVar("R")

DEFAULT_PREFIX = "ishchat:lb:"
POSITION_TTL_SECONDS = 86400.0

Write = tuple[str, float] | None
"""A value to store with its TTL in seconds, or None to delete the key."""

ReadResult = tuple[list[str | None], list[int]]
"""Values of the keys read (None: absent) and live lease counts."""

Update = Callable[[Mapping[str, str | None]], tuple[R, Mapping[str, Write]]]
"""Pure: from the values read (None: absent) to (result, writes); may run more than once."""


class StateContention(RuntimeError):
    """A read-modify-write kept losing to concurrent writers."""


class LeaseNotFound(LookupError):
    """`finish(require_live=True)` on a lease that expired or was already given back."""


# Tokens of reported load: r:0 .. r:n-1 (a request token is a uuid4 hex, never starting so).
REPORTED_PREFIX = "r:"
# A report beyond this many leases is stored as this many (it already saturates any instance).
MAX_REPORTED = 10_000


@dataclass(frozen=True, slots=True)
class RuntimeState:
    """What the shared state says of one instance at a moment."""

    breaker: brk.BreakerState
    in_flight: int
    latency_ms: float | None
    success_rate: float | None
    rate_limited: bool


@dataclass(frozen=True, slots=True)
class Lease:
    """One admitted request; hand it back to `finish`."""

    instance_id: str
    pool: str
    token: str
    probe: bool
    tpm_limit: int | None


@dataclass(frozen=True, slots=True)
class Admission:
    """`begin`'s answer: a lease, or the reason the instance refused (at_capacity, breaker_open, rate_limited)."""

    lease: Lease | None
    refusal: Reason | None = None
    retry_after: float = 0.0

    @property
    def admitted(self) -> bool:
        return self.lease is not None


class StateStore(ABC):
    """The operations the selection service and the gateway use, written once
    over a handful of storage primitives that each backend provides."""

    def __init__(self, *, prefix: str = DEFAULT_PREFIX, latency_tau: float = latency.DEFAULT_TAU_SECONDS) -> None:
        self.prefix = prefix
        self.latency_tau = latency_tau

    # --- Strategy state (strategies.StrategyState) ---------------------------

    def next_turn(self, pool: str) -> int:
        return self._incr(self._key("rr", pool), ttl=POSITION_TTL_SECONDS) - 1

    def advance_weights(self, pool: str, step: Callable[[dict[str, int]], tuple[R, dict[str, int]]]) -> R:
        key = self._key("swrr", pool)

        def update(values: Mapping[str, str | None]) -> tuple[R, Mapping[str, Write]]:
            raw = values[key]
            result, current = step(json.loads(raw) if raw else {})
            return result, {key: (json.dumps(current), POSITION_TTL_SECONDS)}

        return self._transact([key], update)

    # --- Session affinity (affinity.SessionMap) ------------------------------

    def session_get(self, pool: str, session_id: str) -> str | None:
        (value,), _ = self._read([self._session_key(pool, session_id)], [], now=0.0)
        return value

    def session_put(self, pool: str, session_id: str, instance_id: str, *, ttl_seconds: float) -> None:
        self._put(self._session_key(pool, session_id), instance_id, ttl=ttl_seconds)

    # --- Live state of the candidates ----------------------------------------

    def snapshot(
        self, candidates: Sequence[Candidate], *, now: float, breaker: brk.BreakerConfig
    ) -> dict[str, RuntimeState]:
        """Every candidate's breaker, in-flight count, latency estimate and rate-limit status, in one read."""
        ids = [c.instance_id for c in candidates]
        keys = [self._key(kind, iid) for iid in ids for kind in ("brk", "lat", "rl")]
        values, counts = self._read(keys, [self._key("inflight", iid) for iid in ids], now=now)
        states: dict[str, RuntimeState] = {}
        for index, candidate in enumerate(candidates):
            raw_breaker, raw_latency, raw_rate = values[3 * index : 3 * index + 3]
            breaker_state = _breaker(raw_breaker)
            states[candidate.instance_id] = RuntimeState(
                breaker=breaker_state,
                in_flight=counts[index],
                latency_ms=latency.current(_latency(raw_latency), now, tau=self.latency_tau),
                success_rate=breaker_state.success_rate(now, breaker),
                rate_limited=ratelimit.is_limited(
                    _rate(raw_rate),
                    now,
                    rpm=candidate.rpm_limit,
                    tpm=candidate.tpm_limit,
                    rpm_burst=candidate.rpm_burst,
                ),
            )
        return states

    def breaker_states(self, instance_ids: Sequence[str]) -> dict[str, brk.BreakerState]:
        """The stored breaker of each instance (closed when none is stored), for the API, admin and metrics."""
        values, _ = self._read([self._key("brk", iid) for iid in instance_ids], [], now=0.0)
        return {iid: _breaker(raw) for iid, raw in zip(instance_ids, values, strict=True)}

    # --- Load ------------------------------------------------------------------

    def in_flight(self, instance_ids: Sequence[str], *, now: float) -> dict[str, int]:
        """Live leases per instance (requests in flight, whoever took them, and reported load)."""
        _, counts = self._read([], [self._key("inflight", iid) for iid in instance_ids], now=now)
        return dict(zip(instance_ids, counts, strict=True))

    def report_load(self, instance_id: str, count: int, *, now: float, ttl_seconds: float) -> None:
        """A client's own in-flight count for the instance: replaces its previous report, lapses
        after `ttl_seconds` unless reported again (capped at MAX_REPORTED)."""
        self._lease_report(
            self._key("inflight", instance_id), max(0, min(count, MAX_REPORTED)), now=now, deadline=now + ttl_seconds
        )

    # --- Around each proxied request -----------------------------------------

    def begin(
        self, candidate: Candidate, *, pool: str, now: float, breaker: brk.BreakerConfig, lease_seconds: float
    ) -> Admission:
        """Admit one request to `candidate`, atomically and fleet-wide:

        1. take an in-flight lease if fewer than max_concurrent leases are live
           (the lease lapses at now + lease_seconds if `finish` never comes);
        2. ask the breaker (a half-open breaker hands out a probe slot);
        3. charge one request against the rpm limit, if tokens are not exhausted.

        A refusal at step 2 or 3 gives the lease back. On refusal the caller
        selects again with this instance excluded.
        """
        iid = candidate.instance_id
        inflight_key = self._key("inflight", iid)
        token = uuid.uuid4().hex
        if not self._lease_add(
            inflight_key, token, now=now, deadline=now + lease_seconds, limit=candidate.max_concurrent
        ):
            return Admission(lease=None, refusal=Reason.AT_CAPACITY)

        breaker_key, rate_key = self._key("brk", iid), self._key("rl", iid)

        def update(values: Mapping[str, str | None]) -> tuple[Admission, Mapping[str, Write]]:
            verdict, breaker_state = brk.acquire(_breaker(values[breaker_key]), now, breaker)
            if verdict is brk.Availability.COOLING:
                return Admission(None, Reason.RATE_LIMITED, breaker_state.cooling_until - now), {}
            if verdict in (brk.Availability.OPEN, brk.Availability.PROBES_BUSY):
                return Admission(None, Reason.BREAKER_OPEN), {}
            stored_rate = _rate(values[rate_key])
            decision, rate_state = ratelimit.admit_request(
                stored_rate, now, rpm=candidate.rpm_limit, tpm=candidate.tpm_limit, rpm_burst=candidate.rpm_burst
            )
            if not decision.allowed:
                return Admission(None, Reason.RATE_LIMITED, decision.retry_after), {}
            probe = verdict is brk.Availability.PROBE
            writes: dict[str, Write] = {}
            if rate_state != stored_rate:
                writes[rate_key] = _rate_write(rate_state, now)
            if probe:
                writes[breaker_key] = _breaker_write(breaker_state, breaker)
            lease = Lease(instance_id=iid, pool=pool, token=token, probe=probe, tpm_limit=candidate.tpm_limit)
            return Admission(lease), writes

        admission = self._transact([breaker_key, rate_key], update)
        if not admission.admitted:
            self._lease_remove(inflight_key, token, now=now)
        return admission

    def finish(
        self,
        lease: Lease,
        *,
        outcome: brk.Outcome,
        now: float,
        breaker: brk.BreakerConfig,
        pool_size: int,
        health_checks_agree: bool = False,
        latency_ms: float | None = None,
        tokens: int = 0,
        retry_after: float | None = None,
        require_live: bool = False,
    ) -> brk.BreakerEvent | None:
        """Close a lease and feed what the request showed to the breaker, the
        latency estimate and the token limit, in one atomic update.

        require_live: raise LeaseNotFound, feeding nothing, when the lease had
        already expired or been given back (a client's release, which must not
        be replayable).

        pool_size (instances serving the pool) and health_checks_agree (health
        checks also find the instance down) feed the max-ejection guard.
        Returns the breaker event, if any: OPENED/REOPENED/CLOSED to record,
        AUTH_FAILURE to mark the instance unhealthy.
        """
        iid = lease.instance_id
        removed = self._lease_remove(self._key("inflight", iid), lease.token, now=now)
        if require_live and not removed:
            raise LeaseNotFound(lease.token)
        breaker_key, latency_key, rate_key = self._key("brk", iid), self._key("lat", iid), self._key("rl", iid)
        ejected_key = self._key("ej", lease.pool)
        charge_tokens = tokens > 0 and lease.tpm_limit is not None
        keys = [breaker_key, ejected_key, latency_key] + ([rate_key] if charge_tokens else [])

        def update(values: Mapping[str, str | None]) -> tuple[brk.BreakerEvent | None, Mapping[str, Write]]:
            ejected = {other: until for other, until in json.loads(values[ejected_key] or "{}").items() if until > now}
            allowed = brk.ejection_allowed(
                pool_size=pool_size,
                already_ejected=len(ejected.keys() - {iid}),
                max_share=breaker.max_ejection_share,
                health_checks_agree=health_checks_agree,
            )
            stored = _breaker(values[breaker_key])
            state, event = brk.record(
                stored,
                outcome,
                now,
                breaker,
                probe=lease.probe,
                ejection_allowed=allowed,
                retry_after=retry_after,
            )
            writes: dict[str, Write] = {}
            if state != stored:
                writes[breaker_key] = _breaker_write(state, breaker)
            if event in (brk.BreakerEvent.OPENED, brk.BreakerEvent.REOPENED):
                ejected[iid] = now + breaker.retention_seconds
                writes[ejected_key] = (json.dumps(ejected), breaker.retention_seconds)
            elif event is brk.BreakerEvent.CLOSED and iid in ejected:
                del ejected[iid]
                writes[ejected_key] = (json.dumps(ejected), breaker.retention_seconds) if ejected else None
            if latency_ms is not None:
                estimate = latency.observe(_latency(values[latency_key]), latency_ms, now, tau=self.latency_tau)
                writes[latency_key] = (json.dumps(estimate.as_dict()), latency.RETENTION_TAUS * self.latency_tau)
            if charge_tokens:
                assert lease.tpm_limit is not None
                rate_state = ratelimit.charge_tokens(_rate(values[rate_key]), now, tpm=lease.tpm_limit, tokens=tokens)
                writes[rate_key] = _rate_write(rate_state, now)
            return event, writes

        return self._transact(keys, update)

    # --- Storage primitives ---------------------------------------------------

    @abstractmethod
    def _transact(self, keys: Sequence[str], update: Update[R]) -> R:
        """Read `keys`, run `update`, and store its writes (to some of `keys`) only if no key changed meanwhile."""

    @abstractmethod
    def _read(self, keys: Sequence[str], lease_keys: Sequence[str], *, now: float) -> ReadResult:
        """The values of `keys` and the number of leases live at `now` under each of `lease_keys`."""

    @abstractmethod
    def _put(self, key: str, value: str, *, ttl: float) -> None: ...

    @abstractmethod
    def _incr(self, key: str, *, ttl: float) -> int:
        """Add 1 to the counter (absent: 0) and return the new value; the key expires `ttl` after."""

    @abstractmethod
    def _lease_add(self, key: str, token: str, *, now: float, deadline: float, limit: int) -> bool:
        """Add a lease that lapses at `deadline`, unless `limit` leases are live at `now`."""

    @abstractmethod
    def _lease_remove(self, key: str, token: str, *, now: float) -> bool:
        """Remove a lease; whether it was live."""

    @abstractmethod
    def _lease_report(self, key: str, count: int, *, now: float, deadline: float) -> None:
        """Replace the reported-load leases (REPORTED_PREFIX tokens) under `key` by `count` lasting until `deadline`."""

    def _key(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    def _session_key(self, pool: str, session_id: str) -> str:
        digest = hashlib.blake2b(session_id.encode(), digest_size=16).hexdigest()
        return self._key("sess", f"{pool}:{digest}")


def _breaker(raw: str | None) -> brk.BreakerState:
    return brk.BreakerState.from_dict(json.loads(raw)) if raw else brk.BreakerState()


def _latency(raw: str | None) -> latency.LatencyEstimate | None:
    return latency.LatencyEstimate.from_dict(json.loads(raw)) if raw else None


def _rate(raw: str | None) -> ratelimit.RateState:
    return ratelimit.RateState.from_dict(json.loads(raw)) if raw else ratelimit.RateState()


def _breaker_write(state: brk.BreakerState, config: brk.BreakerConfig) -> Write:
    return json.dumps(state.as_dict()), config.retention_seconds


def _rate_write(state: ratelimit.RateState, now: float) -> Write:
    remaining = state.expires_in(now)
    return (json.dumps(state.as_dict()), remaining) if remaining > 0 else None


class InProcessStateStore(StateStore):
    """Dictionaries behind one lock: shared by the threads of one process only.

    `clock` (monotonic seconds) only times key expiry.
    """

    def __init__(
        self,
        *,
        prefix: str = DEFAULT_PREFIX,
        latency_tau: float = latency.DEFAULT_TAU_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(prefix=prefix, latency_tau=latency_tau)
        self._clock = clock
        self._lock = threading.Lock()
        self._values: dict[str, tuple[str, float]] = {}
        self._leases: dict[str, dict[str, float]] = {}

    def _transact(self, keys: Sequence[str], update: Update[R]) -> R:
        with self._lock:
            result, writes = update({key: self._get(key) for key in keys})
            assert writes.keys() <= set(keys), "writes to keys that were not read"
            for key, write in writes.items():
                self._set(key, write)
            return result

    def _read(self, keys: Sequence[str], lease_keys: Sequence[str], *, now: float) -> ReadResult:
        with self._lock:
            values = [self._get(key) for key in keys]
            counts = [sum(deadline > now for deadline in self._leases.get(key, {}).values()) for key in lease_keys]
            return values, counts

    def _put(self, key: str, value: str, *, ttl: float) -> None:
        with self._lock:
            self._set(key, (value, ttl))

    def _incr(self, key: str, *, ttl: float) -> int:
        with self._lock:
            value = int(self._get(key) or 0) + 1
            self._set(key, (str(value), ttl))
            return value

    def _lease_add(self, key: str, token: str, *, now: float, deadline: float, limit: int) -> bool:
        with self._lock:
            live = {t: d for t, d in self._leases.get(key, {}).items() if d > now}
            if len(live) >= limit:
                self._leases[key] = live
                return False
            live[token] = deadline
            self._leases[key] = live
            return True

    def _lease_remove(self, key: str, token: str, *, now: float) -> bool:
        with self._lock:
            leases = self._leases.get(key, {})
            deadline = leases.pop(token, None)
            if not leases:
                self._leases.pop(key, None)
            return deadline is not None and deadline > now

    def _lease_report(self, key: str, count: int, *, now: float, deadline: float) -> None:
        with self._lock:
            live = {t: d for t, d in self._leases.get(key, {}).items() if d > now and not t.startswith(REPORTED_PREFIX)}
            live.update((f"{REPORTED_PREFIX}{i}", deadline) for i in range(count))
            if live:
                self._leases[key] = live
            else:
                self._leases.pop(key, None)

    def _get(self, key: str) -> str | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        value, expires_at = entry
        if expires_at <= self._clock():
            del self._values[key]
            return None
        return value

    def _set(self, key: str, write: Write) -> None:
        if write is None:
            self._values.pop(key, None)
        else:
            value, ttl = write
            self._values[key] = (value, self._clock() + ttl)


# Compare-and-set over every key of a transaction. Per key i (4 arguments):
# what was read ("=" .. value, or "!" when absent), the operation ("s" set,
# "d" delete, "k" keep), the new value and its TTL in ms. Returns 1 when
# applied, 0 when some key changed since it was read.
_CAS_LUA = """
for i = 1, #KEYS do
  local current = redis.call('GET', KEYS[i])
  local tagged = current and ('=' .. current) or '!'
  if tagged ~= ARGV[4 * i - 3] then return 0 end
end
for i = 1, #KEYS do
  local op = ARGV[4 * i - 2]
  if op == 's' then
    redis.call('SET', KEYS[i], ARGV[4 * i - 1], 'PX', ARGV[4 * i])
  elseif op == 'd' then
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""

# KEYS[1]: the instance's leases; ARGV: now, deadline, token, limit, ttl ms.
_LEASE_ADD_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[5]) then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return 1
"""

# KEYS[1]: the instance's leases; ARGV: now, token. 1 when the token was there and live.
_LEASE_REMOVE_LUA = """
local deadline = redis.call('ZSCORE', KEYS[1], ARGV[2])
redis.call('ZREM', KEYS[1], ARGV[2])
if deadline and tonumber(deadline) > tonumber(ARGV[1]) then return 1 end
return 0
"""

# KEYS[1]: the instance's leases; ARGV: now, deadline, count, ttl ms, reported-token prefix.
_LEASE_REPORT_LUA = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local prefix = ARGV[5]
for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if string.sub(member, 1, #prefix) == prefix then redis.call('ZREM', KEYS[1], member) end
end
for i = 0, tonumber(ARGV[3]) - 1 do redis.call('ZADD', KEYS[1], ARGV[2], prefix .. i) end
if tonumber(ARGV[3]) > 0 and redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return 1
"""

# The number of leases live at ARGV[1] under each key.
_LEASE_COUNT_LUA = """
local counts = {}
for i = 1, #KEYS do counts[i] = redis.call('ZCOUNT', KEYS[i], '(' .. ARGV[1], '+inf') end
return counts
"""


class RedisStateStore(StateStore):
    """The state in Redis, shared by every process and host that uses the same URL and prefix."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        latency_tau: float = latency.DEFAULT_TAU_SECONDS,
        max_attempts: int = 100,
    ) -> None:
        super().__init__(prefix=prefix, latency_tau=latency_tau)
        # Short timeouts: a hung Redis must fail fast so ResilientStateStore can take over.
        self._redis = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=1.0, socket_timeout=2.0)
        self._max_attempts = max_attempts
        self._cas = self._redis.register_script(_CAS_LUA)
        self._lease_add_script = self._redis.register_script(_LEASE_ADD_LUA)
        self._lease_count_script = self._redis.register_script(_LEASE_COUNT_LUA)
        self._lease_remove_script = self._redis.register_script(_LEASE_REMOVE_LUA)
        self._lease_report_script = self._redis.register_script(_LEASE_REPORT_LUA)

    def _transact(self, keys: Sequence[str], update: Update[R]) -> R:
        for _ in range(self._max_attempts):
            read = cast("list[str | None]", self._redis.mget(keys))  # decode_responses: str, never bytes
            result, writes = update(dict(zip(keys, read, strict=True)))
            if not writes:
                return result
            assert writes.keys() <= set(keys), "writes to keys that were not read"
            args: list[str] = []
            for key, value in zip(keys, read, strict=True):
                args.append("!" if value is None else "=" + value)
                if key not in writes:
                    args += ["k", "", "0"]
                elif (write := writes[key]) is None:
                    args += ["d", "", "0"]
                else:
                    args += ["s", write[0], str(_milliseconds(write[1]))]
            if self._cas(keys=list(keys), args=args) == 1:
                return result
        raise StateContention(f"no consistent update of {list(keys)} after {self._max_attempts} attempts")

    def _read(self, keys: Sequence[str], lease_keys: Sequence[str], *, now: float) -> ReadResult:
        pipe = self._redis.pipeline(transaction=False)
        if keys:
            pipe.mget(keys)
        if lease_keys:
            self._lease_count_script(keys=list(lease_keys), args=[repr(now)], client=pipe)
        results = iter(pipe.execute())
        values = next(results) if keys else []
        counts = [int(n) for n in next(results)] if lease_keys else []
        return values, counts

    def _put(self, key: str, value: str, *, ttl: float) -> None:
        self._redis.set(key, value, px=_milliseconds(ttl))

    def _incr(self, key: str, *, ttl: float) -> int:
        pipe = self._redis.pipeline()
        pipe.incr(key)
        pipe.pexpire(key, _milliseconds(ttl))
        value, _ = pipe.execute()
        return int(value)

    def _lease_add(self, key: str, token: str, *, now: float, deadline: float, limit: int) -> bool:
        ttl = _milliseconds(deadline - now)
        return self._lease_add_script(keys=[key], args=[repr(now), repr(deadline), token, limit, ttl]) == 1

    def _lease_remove(self, key: str, token: str, *, now: float) -> bool:
        return self._lease_remove_script(keys=[key], args=[repr(now), token]) == 1

    def _lease_report(self, key: str, count: int, *, now: float, deadline: float) -> None:
        ttl = _milliseconds(deadline - now)
        self._lease_report_script(keys=[key], args=[repr(now), repr(deadline), count, ttl, REPORTED_PREFIX])


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class ResilientStateStore:
    """Redis first; while Redis is unreachable, this process's own state.

    Routing keeps working through a Redis outage (fail open) at the price of
    per-process positions, breakers and limits until Redis answers again. The
    outage policy is ishchat.outage's: one log line when Redis goes, one when it
    is back, and Redis tried again `retry_seconds` after a failure.
    """

    def __init__(
        self,
        primary: StateStore,
        fallback: StateStore,
        *,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.outage = Outage(
            "balancer state: Redis",
            errors=(redis.ConnectionError, redis.TimeoutError),
            retry_seconds=retry_seconds,
            clock=clock,
        )

    @property
    def degraded(self) -> bool:
        """True while calls go to the fallback."""
        return self.outage.skipping

    def __getattr__(self, name: str) -> Any:
        primary_attribute = getattr(self.primary, name)
        if not callable(primary_attribute):
            return primary_attribute
        fallback_attribute = getattr(self.fallback, name)

        def call(*args: object, **kwargs: object) -> object:
            return self.outage.call(
                lambda: primary_attribute(*args, **kwargs), fallback=lambda: fallback_attribute(*args, **kwargs)
            )

        return call


_store: StateStore | None = None
_store_lock = threading.Lock()


def get_state_store() -> StateStore:
    """The process-wide store: Redis (falling back to process state while it is down)
    when settings.REDIS_URL is set, else in process.

    The key prefix is settings.BALANCER_KEY_PREFIX when defined.
    """
    global _store
    if _store is None:
        with _store_lock:
            if _store is None:
                from django.conf import settings

                prefix = getattr(settings, "BALANCER_KEY_PREFIX", DEFAULT_PREFIX)
                if settings.REDIS_URL:
                    resilient = ResilientStateStore(
                        RedisStateStore(settings.REDIS_URL, prefix=prefix), InProcessStateStore(prefix=prefix)
                    )
                    _store = cast(StateStore, resilient)
                else:
                    _store = InProcessStateStore(prefix=prefix)
    return _store
