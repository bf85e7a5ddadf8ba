"""Per-instance circuit breaker: a pure state machine over a serialisable state.

Phases and transitions (every function takes `now` in seconds; nothing reads a clock):

1. closed: every success or failure lands in a sliding window of
   `window_seconds` made of `bucket_seconds` buckets. The breaker trips when
       consecutive_failures >= failure_threshold
       or (calls >= min_calls and failures / calls >= failure_rate)   over the window.
   Tripping opens the breaker unless the max-ejection guard refuses
   (`ejection_allowed`), in which case it stays closed and says so.
2. open for  d = min(open_seconds * 2**k, max_open_seconds)  where k is the
   number of consecutive ejections before this one (30 s, 60 s, 120 s, 240 s, 300 s).
   Results of requests that started before the ejection are ignored.
3. half_open once now >= open_until: at most `half_open_probes` probes in
   flight at once (a probe that never reports frees its slot after
   `probe_lease_seconds`). `half_open_probes` probe successes close the
   breaker (window, counters and k reset); any probe failure re-opens it with
   k + 1 (the guard only applies to closed -> open: the instance was already out).

Outcomes that are not breaker failures:
- rate_limited (429): the instance is cooled until now + Retry-After (or
  `default_cool_seconds`, at most `max_cool_seconds`); it admits nothing while
  cooling, whatever the phase.
- auth_failure (401/403): reported back as an event so the caller marks the
  instance unhealthy; the breaker itself does not count it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol


class Phase(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Outcome(StrEnum):
    """What one proxied request tells the breaker about its instance."""

    SUCCESS = "success"
    FAILURE = "failure"
    RATE_LIMITED = "rate_limited"
    AUTH_FAILURE = "auth_failure"


class Availability(StrEnum):
    """Whether the breaker lets a request through at a given moment."""

    AVAILABLE = "available"  # closed
    PROBE = "probe"  # half-open with a free probe slot
    OPEN = "open"
    PROBES_BUSY = "probes_busy"  # half-open, every probe slot taken
    COOLING = "cooling"  # after a 429, until Retry-After has passed


class BreakerEvent(StrEnum):
    """Transitions worth recording (StatusTransition rows, metrics, logs)."""

    OPENED = "opened"
    REOPENED = "reopened"
    CLOSED = "closed"
    COOLED = "cooled"
    AUTH_FAILURE = "auth_failure"
    EJECTION_REFUSED = "ejection_refused"


# The error kinds of instances.providers.base.ErrorKind, by value, and what
# each says about the instance: the one table of which errors are the
# instance's fault (the gateway fails over on every outcome but SUCCESS).
# A request fault (bad_request: the provider refused what the client sent)
# proves the instance answered, so it counts as a success. too_large is the
# provider's reply over the transport's bound: the instance's fault, another
# instance may well answer within it.
_OUTCOME_BY_ERROR_KIND = {
    "timeout": Outcome.FAILURE,
    "connection": Outcome.FAILURE,
    "server_error": Outcome.FAILURE,
    "bad_response": Outcome.FAILURE,
    "too_large": Outcome.FAILURE,
    "not_found": Outcome.FAILURE,
    "redirect": Outcome.FAILURE,
    "rate_limited": Outcome.RATE_LIMITED,
    "auth": Outcome.AUTH_FAILURE,
    "bad_request": Outcome.SUCCESS,
}


def outcome_for_error(error_kind: str | None) -> Outcome:
    """The breaker outcome of a request that ended with this provider error kind (None: no error)."""
    if error_kind is None:
        return Outcome.SUCCESS
    return _OUTCOME_BY_ERROR_KIND[error_kind]


class BreakerSettings(Protocol):
    """The breaker fields of a LoadBalancerConfig row (or anything shaped like it)."""

    # Read-only members, so frozen dataclasses and model rows both qualify.
    @property
    def breaker_failure_threshold(self) -> int: ...
    @property
    def breaker_failure_rate(self) -> float: ...
    @property
    def breaker_min_calls(self) -> int: ...
    @property
    def breaker_open_seconds(self) -> int: ...
    @property
    def breaker_max_open_seconds(self) -> int: ...
    @property
    def breaker_half_open_probes(self) -> int: ...
    @property
    def max_ejection_share(self) -> float: ...


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 5
    failure_rate: float = 0.5
    min_calls: int = 10
    window_seconds: int = 60
    bucket_seconds: int = 10
    open_seconds: float = 30.0
    max_open_seconds: float = 300.0
    half_open_probes: int = 3
    probe_lease_seconds: float = 120.0
    max_ejection_share: float = 0.5
    default_cool_seconds: float = 1.0
    max_cool_seconds: float = 3600.0

    @classmethod
    def from_settings(cls, source: BreakerSettings) -> BreakerConfig:
        return cls(
            failure_threshold=source.breaker_failure_threshold,
            failure_rate=source.breaker_failure_rate,
            min_calls=source.breaker_min_calls,
            open_seconds=float(source.breaker_open_seconds),
            max_open_seconds=float(source.breaker_max_open_seconds),
            half_open_probes=source.breaker_half_open_probes,
            max_ejection_share=source.max_ejection_share,
        )

    def open_duration(self, previous_ejections: int) -> float:
        """d = min(open_seconds * 2**k, max_open_seconds), k = consecutive ejections so far."""
        # Past 2**16 the cap has long been reached; bounding k avoids float overflow.
        return min(self.open_seconds * 2.0 ** min(previous_ejections, 16), self.max_open_seconds)

    @property
    def retention_seconds(self) -> float:
        """How long a stored state stays meaningful without updates (then it may expire as closed)."""
        return self.max_open_seconds + self.window_seconds + self.probe_lease_seconds


@dataclass(frozen=True, slots=True)
class BreakerState:
    phase: Phase = Phase.CLOSED
    consecutive_failures: int = 0
    # (bucket start, calls, failures), oldest first, within the window.
    buckets: tuple[tuple[float, int, int], ...] = ()
    open_until: float = 0.0
    ejections: int = 0
    # Deadlines of the probes in flight while half-open.
    probes: tuple[float, ...] = ()
    probe_successes: int = 0
    cooling_until: float = 0.0

    def phase_at(self, now: float) -> Phase:
        """The phase at `now`: an open breaker whose time is up is half-open."""
        if self.phase is Phase.OPEN and now >= self.open_until:
            return Phase.HALF_OPEN
        return self.phase

    def window_totals(self, now: float, config: BreakerConfig) -> tuple[int, int]:
        """(calls, failures) over the buckets still inside the window at `now`."""
        live = [b for b in self.buckets if b[0] > now - config.window_seconds]
        return sum(b[1] for b in live), sum(b[2] for b in live)

    def success_rate(self, now: float, config: BreakerConfig) -> float | None:
        """1 - failures / calls over the window; None when the window holds no call."""
        calls, failures = self.window_totals(now, config)
        return None if calls == 0 else 1.0 - failures / calls

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase.value,
            "consecutive_failures": self.consecutive_failures,
            "buckets": [list(b) for b in self.buckets],
            "open_until": self.open_until,
            "ejections": self.ejections,
            "probes": list(self.probes),
            "probe_successes": self.probe_successes,
            "cooling_until": self.cooling_until,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BreakerState:
        return cls(
            phase=Phase(data["phase"]),
            consecutive_failures=int(data["consecutive_failures"]),
            buckets=tuple((float(s), int(c), int(f)) for s, c, f in data["buckets"]),
            open_until=float(data["open_until"]),
            ejections=int(data["ejections"]),
            probes=tuple(float(d) for d in data["probes"]),
            probe_successes=int(data["probe_successes"]),
            cooling_until=float(data["cooling_until"]),
        )


def availability(state: BreakerState, now: float, config: BreakerConfig) -> Availability:
    """Whether a request may go to this instance at `now` (reserves nothing; see `acquire`)."""
    if now < state.cooling_until:
        return Availability.COOLING
    phase = state.phase_at(now)
    if phase is Phase.CLOSED:
        return Availability.AVAILABLE
    if phase is Phase.OPEN:
        return Availability.OPEN
    if len(_live_probes(state, now)) < config.half_open_probes:
        return Availability.PROBE
    return Availability.PROBES_BUSY


def acquire(state: BreakerState, now: float, config: BreakerConfig) -> tuple[Availability, BreakerState]:
    """`availability`, and when it is PROBE, the state with one probe slot taken (until now + probe_lease_seconds)."""
    verdict = availability(state, now, config)
    if verdict is not Availability.PROBE:
        return verdict, state
    probes = (*_live_probes(state, now), now + config.probe_lease_seconds)
    return verdict, replace(state, phase=Phase.HALF_OPEN, probes=probes)


def record(
    state: BreakerState,
    outcome: Outcome,
    now: float,
    config: BreakerConfig,
    *,
    probe: bool,
    ejection_allowed: bool = True,
    retry_after: float | None = None,
) -> tuple[BreakerState, BreakerEvent | None]:
    """Apply one request's outcome (rules in the module docstring).

    `probe` says the request was admitted as a half-open probe (by `acquire`);
    `ejection_allowed` is the max-ejection guard's verdict for this pool.
    """
    if probe:
        state = _release_probe(state, now)
    if outcome is Outcome.RATE_LIMITED:
        cool = min(config.default_cool_seconds if retry_after is None else retry_after, config.max_cool_seconds)
        return replace(state, cooling_until=max(state.cooling_until, now + max(cool, 0.0))), BreakerEvent.COOLED
    if outcome is Outcome.AUTH_FAILURE:
        return state, BreakerEvent.AUTH_FAILURE

    phase = state.phase_at(now)
    if phase is Phase.OPEN or (phase is Phase.HALF_OPEN and not probe):
        return state, None
    if phase is Phase.HALF_OPEN:
        if outcome is Outcome.FAILURE:
            return _open(state, now, config), BreakerEvent.REOPENED
        if state.probe_successes + 1 >= config.half_open_probes:
            return BreakerState(cooling_until=state.cooling_until), BreakerEvent.CLOSED
        return replace(state, probe_successes=state.probe_successes + 1), None

    failed = outcome is Outcome.FAILURE
    state = replace(
        state,
        consecutive_failures=state.consecutive_failures + 1 if failed else 0,
        buckets=_add_to_window(state.buckets, now, config, failed=failed),
    )
    if not failed or not _trips(state, now, config):
        return state, None
    if not ejection_allowed:
        return state, BreakerEvent.EJECTION_REFUSED
    return _open(state, now, config), BreakerEvent.OPENED


def ejection_allowed(*, pool_size: int, already_ejected: int, max_share: float, health_checks_agree: bool) -> bool:
    """The max-ejection guard: may one more breaker of this pool open?

        limit = max(1, floor(max_share * pool_size)) if max_share > 0 else 0
        allowed = health_checks_agree or already_ejected < limit

    At least one instance may always be ejected (as Envoy's outlier detection
    does), so a one-instance pool still fails fast; max_share = 0 turns
    ejection off unless health checks agree the instance is down.
    """
    if health_checks_agree:
        return True
    if max_share <= 0:
        return False
    limit = max(1, math.floor(max_share * pool_size + 1e-9))
    return already_ejected < limit


def _trips(state: BreakerState, now: float, config: BreakerConfig) -> bool:
    if state.consecutive_failures >= config.failure_threshold:
        return True
    calls, failures = state.window_totals(now, config)
    return calls >= config.min_calls and failures >= config.failure_rate * calls


def _open(state: BreakerState, now: float, config: BreakerConfig) -> BreakerState:
    return BreakerState(
        phase=Phase.OPEN,
        open_until=now + config.open_duration(state.ejections),
        ejections=state.ejections + 1,
        cooling_until=state.cooling_until,
    )


def _add_to_window(
    buckets: tuple[tuple[float, int, int], ...], now: float, config: BreakerConfig, *, failed: bool
) -> tuple[tuple[float, int, int], ...]:
    start = math.floor(now / config.bucket_seconds) * config.bucket_seconds
    live = [b for b in buckets if b[0] > now - config.window_seconds]
    if live and live[-1][0] == start:
        _, calls, failures = live.pop()
    else:
        calls, failures = 0, 0
    live.append((start, calls + 1, failures + int(failed)))
    return tuple(live)


def _live_probes(state: BreakerState, now: float) -> tuple[float, ...]:
    return tuple(deadline for deadline in state.probes if deadline > now)


def _release_probe(state: BreakerState, now: float) -> BreakerState:
    live = sorted(_live_probes(state, now))
    return replace(state, probes=tuple(live[1:]))
