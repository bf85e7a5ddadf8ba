"""Requests-per-minute and tokens-per-minute limits as GCRA (generic cell rate algorithm).

GCRA is a token bucket of B units (the burst), stored as a single number,
the theoretical arrival time (TAT). For a limit of L per period P:

    T = P / L                                (emission interval: one unit every T seconds)
    tau = (B - 1) * T                        (burst tolerance)
    tat' = max(tat, now) + cost * T
    allowed  iff  tat' - now <= tau + T = B * T   (then tat := tat'; refused: tat unchanged)
    retry_after = tat' - now - B * T         (when refused)

From idle, exactly B units pass at once; after that exactly one more each T,
so any window of W seconds admits at most B + W / T units (L + B per period).

Requests: B = the provider's rate_limits.requests_burst, or by default
default_burst(L) = max(1, ceil(L / 10)), a tenth of the per-minute limit.
(With B = L, as before, 30 per minute let 58 through in 57 s: a whole
minute's worth at once, then the steady 30.) Requests are admitted with cost
1 before they are sent.

Tokens keep B = L (a minute's worth): they are only known from real usage
after the response, so they are charged unconditionally (tat may run ahead of
now + P: the instance is in debt) and an instance counts as token-limited
while not even one more token would pass.

The store keeps one RateState per instance and applies these functions to
it atomically, so the limits hold across every process of the fleet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

PERIOD_SECONDS = 60.0
# Float sums of T over a whole burst may overshoot P by a few ulps.
_TOLERANCE_SECONDS = 1e-6


@dataclass(frozen=True, slots=True)
class GcraDecision:
    allowed: bool
    tat: float
    retry_after: float


def default_burst(limit: int) -> int:
    """Requests admitted at once from idle when no burst is configured: max(1, ceil(limit / 10))."""
    return max(1, math.ceil(limit / 10))


def gcra(
    tat: float,
    now: float,
    *,
    limit: int,
    cost: float = 1.0,
    period: float = PERIOD_SECONDS,
    burst: float | None = None,
) -> GcraDecision:
    """Admit `cost` units against a limit of `limit` per `period` with a bucket of `burst` units
    (None: `limit`, a whole period's worth); formula in the module docstring."""
    new_tat = charge(tat, now, limit=limit, cost=cost, period=period)
    excess = new_tat - now - (limit if burst is None else burst) * period / limit
    if excess <= _TOLERANCE_SECONDS:
        return GcraDecision(allowed=True, tat=new_tat, retry_after=0.0)
    return GcraDecision(allowed=False, tat=tat, retry_after=excess)


def charge(tat: float, now: float, *, limit: int, cost: float, period: float = PERIOD_SECONDS) -> float:
    """tat' = max(tat, now) + cost * period / limit, whether or not it fits."""
    return max(tat, now) + cost * period / limit


@dataclass(frozen=True, slots=True)
class RateState:
    """One instance's two TATs (0 = idle)."""

    requests_tat: float = 0.0
    tokens_tat: float = 0.0

    def expires_in(self, now: float) -> float:
        """Seconds until both TATs are in the past, when the state equals an idle one and may be dropped."""
        return max(self.requests_tat, self.tokens_tat) - now

    def as_dict(self) -> dict[str, float]:
        return {"r": self.requests_tat, "t": self.tokens_tat}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RateState:
        return cls(requests_tat=float(data["r"]), tokens_tat=float(data["t"]))


def admit_request(
    state: RateState, now: float, *, rpm: int | None, tpm: int | None, rpm_burst: int | None = None
) -> tuple[GcraDecision, RateState]:
    """One request: refused while tokens are exhausted, else GCRA with cost 1 on the request limit
    and a bucket of `rpm_burst` requests (None: default_burst(rpm)).

    A limit of None is no limit. A refusal's retry_after is that of the limit
    that refused (tokens are checked first).
    """
    if tpm is not None:
        tokens = gcra(state.tokens_tat, now, limit=tpm)
        if not tokens.allowed:
            return tokens, state
    if rpm is None:
        return GcraDecision(allowed=True, tat=state.requests_tat, retry_after=0.0), state
    requests = gcra(state.requests_tat, now, limit=rpm, burst=rpm_burst or default_burst(rpm))
    return requests, replace(state, requests_tat=requests.tat)


def charge_tokens(state: RateState, now: float, *, tpm: int, tokens: int) -> RateState:
    """Charge the tokens a response really used against the token limit."""
    return replace(state, tokens_tat=charge(state.tokens_tat, now, limit=tpm, cost=tokens))


def is_limited(state: RateState, now: float, *, rpm: int | None, tpm: int | None, rpm_burst: int | None = None) -> bool:
    """Whether a request would be refused at `now` (what the candidate filter skips on)."""
    decision, _ = admit_request(state, now, rpm=rpm, tpm=tpm, rpm_burst=rpm_burst)
    return not decision.allowed
