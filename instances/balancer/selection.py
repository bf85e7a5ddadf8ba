"""One instance selection, as POST /api/instances/select-instance and the gateway make it.

1. Read the candidates' live state in one round trip: in-flight leases,
   breaker, latency estimate, rate-limit status. A candidate's in_flight is
   its live lease count (gateway requests, select-instance leases and
   reported load: one signal, see state.py); the store's latency and success
   rate replace the candidate's (a health-check latency, say) when the store has them.
2. `filter_candidates`; when nothing is left, NoEligibleInstance carries the
   reason (code and message) for the 503.
3. With a session id and affinity on: the session's remembered instance while
   it stays eligible, else its rendezvous pick among the eligible ones
   (weighted); the mapping is stored with its TTL refreshed on every use.
4. Otherwise the strategy picks.

Selecting reserves nothing: the gateway then calls `store.begin` on the
selected instance and, when that refuses (another process got there first),
selects again with the instance in `exclude`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from instances.balancer.affinity import SessionMap, rank_for_session, resolve_session
from instances.balancer.breaker import BreakerConfig, BreakerSettings
from instances.balancer.candidates import HEALTHY, Candidate, Rejections, SelectionRequest, filter_candidates
from instances.balancer.state import RuntimeState, StateStore
from instances.balancer.strategies import Choice, StrategyContext, get_strategy

_RNG = random.Random()


class PolicySettings(BreakerSettings, Protocol):
    """The fields of a LoadBalancerConfig row that shape a selection."""

    @property
    def strategy(self) -> str: ...
    @property
    def min_health_score(self) -> float: ...
    @property
    def session_affinity(self) -> bool: ...
    @property
    def session_ttl_seconds(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Policy:
    """How a pool is balanced (a LoadBalancerConfig row, or the configuration file's defaults)."""

    strategy: str = "health_based"
    min_health_score: float = 0.0
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    session_affinity: bool = True
    session_ttl_seconds: float = 3600.0
    max_alternatives: int = 3

    @classmethod
    def from_settings(cls, source: PolicySettings) -> Policy:
        return cls(
            strategy=source.strategy,
            min_health_score=source.min_health_score,
            breaker=BreakerConfig.from_settings(source),
            session_affinity=source.session_affinity,
            session_ttl_seconds=float(source.session_ttl_seconds),
        )


@dataclass(frozen=True, slots=True)
class Selection:
    selected: Candidate
    reason: str
    alternatives: tuple[Candidate, ...]
    strategy: str  # the strategy that decided, or "session_affinity"
    eligible_count: int
    healthy_count: int  # candidates whose status is healthy, eligible or not
    rejections: Rejections


class NoEligibleInstance(Exception):
    """No candidate may take the request; `code` and `message` say why (Rejections.explain_empty)."""

    def __init__(self, rejections: Rejections) -> None:
        self.code, self.message = rejections.explain_empty()
        self.rejections = rejections
        super().__init__(self.message)


def select(
    candidates: Sequence[Candidate],
    *,
    pool: str,
    request: SelectionRequest,
    policy: Policy,
    store: StateStore,
    now: float,
    strategy: str | None = None,
    rng: random.Random | None = None,
) -> Selection:
    """Choose the instance for one request (steps in the module docstring).

    `pool` names the set the candidates come from (e.g. "openai/gpt-4o"); it
    keys the round-robin position, SWRR weights, sessions and the ejection
    guard. `strategy` overrides the policy's; an unknown name raises
    strategies.UnknownStrategy before anything is read.
    """
    strategy_name = strategy or policy.strategy
    choose = get_strategy(strategy_name)
    runtime = store.snapshot(candidates, now=now, breaker=policy.breaker)
    live = [_with_runtime(c, runtime[c.instance_id]) for c in candidates]
    eligible, rejections = filter_candidates(
        live,
        request=request,
        breaker_states={iid: state.breaker for iid, state in runtime.items()},
        rate_limited={iid for iid, state in runtime.items() if state.rate_limited},
        now=now,
        min_health_score=policy.min_health_score,
        breaker_config=policy.breaker,
    )
    if not eligible:
        raise NoEligibleInstance(rejections)

    if request.session_id and policy.session_affinity:
        choice = _by_session(request.session_id, eligible, pool=pool, policy=policy, sessions=store)
        strategy_name = "session_affinity"
    else:
        choice = choose(eligible, StrategyContext(pool, store, rng or _RNG, policy.max_alternatives))
    return Selection(
        selected=choice.selected,
        reason=choice.reason,
        alternatives=choice.alternatives,
        strategy=strategy_name,
        eligible_count=len(eligible),
        healthy_count=sum(c.status == HEALTHY for c in candidates),
        rejections=rejections,
    )


def _with_runtime(candidate: Candidate, state: RuntimeState) -> Candidate:
    return replace(
        candidate,
        in_flight=state.in_flight,
        latency_ewma_ms=candidate.latency_ewma_ms if state.latency_ms is None else state.latency_ms,
        success_rate=candidate.success_rate if state.success_rate is None else state.success_rate,
    )


def _by_session(
    session_id: str, eligible: Sequence[Candidate], *, pool: str, policy: Policy, sessions: SessionMap
) -> Choice:
    by_id = {c.instance_id: c for c in eligible}
    weights = {c.instance_id: float(c.weight) for c in eligible}
    affinity = resolve_session(session_id, weights, sessions.session_get(pool, session_id))
    sessions.session_put(pool, session_id, affinity.instance_id, ttl_seconds=policy.session_ttl_seconds)
    selected = by_id[affinity.instance_id]
    ranked = rank_for_session(session_id, weights, limit=policy.max_alternatives + 1)
    alternatives = tuple(by_id[iid] for iid in ranked if iid != affinity.instance_id)[: policy.max_alternatives]
    if affinity.remembered:
        reason = f"session_affinity: session {session_id!r} stays on {selected.label}, its instance while eligible"
    else:
        reason = (
            f"session_affinity: session {session_id!r} goes to {selected.label}, "
            f"the highest rendezvous score among {len(eligible)} eligible instances"
        )
    return Choice(selected, reason, alternatives)
