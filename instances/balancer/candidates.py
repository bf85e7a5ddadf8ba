"""What the balancer knows of each instance, and which instances may take a request.

`filter_candidates` applies, in order, to each candidate:

1. not in the request's `exclude`, in its group and region (when given);
2. status healthy or degraded (others are unhealthy or not serving);
3. weight > 0 (weight 0 drains);
4. health score >= min_health_score (an unknown score passes: status decides);
5. breaker admits a request now (closed, or half-open with a free probe slot; not cooling after a 429);
6. not at its requests/tokens-per-minute limit;
7. in flight < max concurrent.

Then, among those that pass: degraded instances only when no healthy one
passes, and only the lowest priority number present (0 first; higher tiers
are fallbacks used when every better tier is empty). Each candidate left out
gets one reason, so an empty result can be explained ("all 3 instances are
behind an open circuit breaker").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from instances.balancer.breaker import Availability, BreakerConfig, BreakerState, availability

# The values of instances.choices.InstanceStatus the balancer acts on.
HEALTHY = "healthy"
DEGRADED = "degraded"
UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One instance as the balancer sees it: registry fields plus live state.

    health_score and success_rate are 0..1 or None (unknown); latency_ewma_ms
    is the peak-EWMA estimate or None; rpm_limit / tpm_limit None means no limit;
    rpm_burst None means ratelimit.default_burst(rpm_limit).
    """

    instance_id: str
    name: str = ""
    status: str = HEALTHY
    weight: int = 100
    priority: int = 0
    max_concurrent: int = 10
    in_flight: int = 0
    health_score: float | None = None
    success_rate: float | None = None
    latency_ewma_ms: float | None = None
    region: str = ""
    group_id: int | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    rpm_burst: int | None = None

    @property
    def label(self) -> str:
        """How reasons name the instance."""
        return self.name or self.instance_id

    @property
    def utilization(self) -> float:
        """in_flight / max_concurrent."""
        return self.in_flight / self.max_concurrent


@dataclass(frozen=True, slots=True)
class SelectionRequest:
    """What one selection asks for: scope, instances to avoid, and the session to keep."""

    group_id: int | None = None
    region: str | None = None
    exclude: frozenset[str] = frozenset()
    session_id: str | None = None


class Reason(StrEnum):
    """Why a candidate was left out."""

    EXCLUDED = "excluded"
    OTHER_GROUP = "other_group"
    OTHER_REGION = "other_region"
    NOT_SERVING = "not_serving"
    UNHEALTHY = "unhealthy"
    DRAINED = "drained"
    LOW_SCORE = "low_score"
    BREAKER_OPEN = "breaker_open"
    RATE_LIMITED = "rate_limited"
    AT_CAPACITY = "at_capacity"
    DEGRADED = "degraded"
    LOWER_PRIORITY = "lower_priority"


_DESCRIPTIONS = {
    Reason.EXCLUDED: "excluded by the request",
    Reason.OTHER_GROUP: "in another group",
    Reason.OTHER_REGION: "in another region",
    Reason.NOT_SERVING: "not serving (starting, standby, draining, maintenance or stopped)",
    Reason.UNHEALTHY: "unhealthy",
    Reason.DRAINED: "drained (weight 0)",
    Reason.LOW_SCORE: "below the minimum health score",
    Reason.BREAKER_OPEN: "behind an open circuit breaker",
    Reason.RATE_LIMITED: "rate-limited",
    Reason.AT_CAPACITY: "at capacity",
    Reason.DEGRADED: "degraded while healthy instances are available",
    Reason.LOWER_PRIORITY: "in a fallback priority tier",
}


@dataclass(frozen=True, slots=True)
class Rejections:
    """The reason each left-out candidate was left out, by instance id."""

    by_instance: Mapping[str, Reason]

    @property
    def counts(self) -> Counter[Reason]:
        return Counter(self.by_instance.values())

    def explain_empty(self) -> tuple[str, str]:
        """(code, message) for a selection that found no candidate, e.g.
        ("all_breaker_open", "all 3 instances are behind an open circuit breaker").

        Codes: none_registered, all_<reason> when one reason covers every
        instance, none_eligible with the counts otherwise.
        """
        counts = self.counts
        total = sum(counts.values())
        if total == 0:
            return "none_registered", "no instance is registered for this model"
        if len(counts) == 1:
            (reason,) = counts
            noun = "the only instance is" if total == 1 else f"all {total} instances are"
            return f"all_{reason.value}", f"{noun} {_DESCRIPTIONS[reason]}"
        parts = ", ".join(f"{n} {_DESCRIPTIONS[reason]}" for reason, n in counts.most_common())
        return "none_eligible", f"no eligible instance among {total}: {parts}"


def filter_candidates(
    candidates: Sequence[Candidate],
    *,
    request: SelectionRequest,
    breaker_states: Mapping[str, BreakerState],
    rate_limited: Collection[str],
    now: float,
    min_health_score: float = 0.0,
    breaker_config: BreakerConfig | None = None,
) -> tuple[list[Candidate], Rejections]:
    """The candidates that may take the request now, and why each other one may not (rules in the module docstring).

    `breaker_states` lacks instances whose breaker is pristine (closed);
    `rate_limited` holds the ids at their rpm/tpm limit.
    """
    config = breaker_config or BreakerConfig()
    rejected: dict[str, Reason] = {}
    passing: list[Candidate] = []
    for candidate in candidates:
        reason = _first_failed_rule(
            candidate,
            request=request,
            breaker=breaker_states.get(candidate.instance_id),
            rate_limited=candidate.instance_id in rate_limited,
            now=now,
            min_health_score=min_health_score,
            config=config,
        )
        if reason is None:
            passing.append(candidate)
        else:
            rejected[candidate.instance_id] = reason

    if any(c.status == HEALTHY for c in passing):
        for c in passing:
            if c.status != HEALTHY:
                rejected[c.instance_id] = Reason.DEGRADED
        passing = [c for c in passing if c.status == HEALTHY]

    if not passing:
        return [], Rejections(rejected)
    best_tier = min(c.priority for c in passing)
    eligible = [c for c in passing if c.priority == best_tier]
    for c in passing:
        if c.priority != best_tier:
            rejected[c.instance_id] = Reason.LOWER_PRIORITY
    return eligible, Rejections(rejected)


def _first_failed_rule(
    candidate: Candidate,
    *,
    request: SelectionRequest,
    breaker: BreakerState | None,
    rate_limited: bool,
    now: float,
    min_health_score: float,
    config: BreakerConfig,
) -> Reason | None:
    if candidate.instance_id in request.exclude:
        return Reason.EXCLUDED
    if request.group_id is not None and candidate.group_id != request.group_id:
        return Reason.OTHER_GROUP
    if request.region and candidate.region != request.region:
        return Reason.OTHER_REGION
    if candidate.status == UNHEALTHY:
        return Reason.UNHEALTHY
    if candidate.status not in (HEALTHY, DEGRADED):
        return Reason.NOT_SERVING
    if candidate.weight <= 0:
        return Reason.DRAINED
    if candidate.health_score is not None and candidate.health_score < min_health_score:
        return Reason.LOW_SCORE
    if breaker is not None:
        verdict = availability(breaker, now, config)
        if verdict is Availability.COOLING:
            return Reason.RATE_LIMITED
        if verdict in (Availability.OPEN, Availability.PROBES_BUSY):
            return Reason.BREAKER_OPEN
    if rate_limited:
        return Reason.RATE_LIMITED
    if candidate.in_flight >= candidate.max_concurrent:
        return Reason.AT_CAPACITY
    return None
