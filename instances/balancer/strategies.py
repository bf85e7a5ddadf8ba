"""Balancing strategies: each picks one of the eligible candidates and says why.

Every strategy has the signature `(candidates, ctx) -> Choice`, takes a
non-empty list already filtered by `filter_candidates`, and returns the pick,
a reason in words with the numbers, and up to `ctx.max_alternatives` ranked
alternatives (the next choices if the pick fails). Randomness comes from
`ctx.rng`; ties are broken at random so that equal instances share the load.
Round robin and weighted keep shared state through `ctx.state` (a
StrategyState: in Redis across processes, or in process).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from statistics import fmean
from typing import Protocol, TypeVar

from instances.balancer.candidates import Candidate

T = TypeVar("T")


class UnknownStrategy(ValueError):
    pass


class StrategyState(Protocol):
    """Shared state of the stateful strategies, keyed by pool."""

    def next_turn(self, pool: str) -> int:
        """Atomically take the pool's next turn number: 0, 1, 2, ... across every process."""
        ...

    def advance_weights(self, pool: str, step: Callable[[dict[str, int]], tuple[T, dict[str, int]]]) -> T:
        """Atomically replace the pool's current SWRR weights by `step(current)[1]`; return `step(current)[0]`."""
        ...


@dataclass(frozen=True, slots=True)
class StrategyContext:
    pool: str
    state: StrategyState
    rng: random.Random
    max_alternatives: int = 3


@dataclass(frozen=True, slots=True)
class Choice:
    selected: Candidate
    reason: str
    alternatives: tuple[Candidate, ...]


Strategy = Callable[[Sequence[Candidate], StrategyContext], Choice]

# A latency below this counts as this, so ratios stay finite.
_LATENCY_FLOOR_MS = 1.0
# health_based: candidates scoring within this of the best are near-equal (the least utilised wins).
HEALTH_SPREAD = 0.05
_EPSILON = 1e-9  # float noise in score comparisons


def round_robin(candidates: Sequence[Candidate], ctx: StrategyContext) -> Choice:
    """Turn n (shared across processes) picks candidate n mod N, candidates ordered by instance id."""
    ordered = sorted(candidates, key=lambda c: c.instance_id)
    turn = ctx.state.next_turn(ctx.pool)
    index = turn % len(ordered)
    selected = ordered[index]
    following = ordered[index + 1 :] + ordered[:index]
    alternatives = tuple(following[: ctx.max_alternatives])
    reason = (
        f"round_robin: {selected.label} takes turn {turn}, position {index + 1} of {len(ordered)}"
        f"{_others(alternatives, len(ordered), lambda c: c.label, label='next')}"
    )
    return Choice(selected, reason, alternatives)


def swrr_step(current: Mapping[str, int], weights: Mapping[str, int]) -> tuple[str, dict[str, int]]:
    """One pick of smooth weighted round robin (nginx):

        1. c_i += w_i for every candidate i  (ids no longer candidates are dropped, new ones start at 0)
        2. pick s = argmax c_i  (ties: smallest id)
        3. c_s -= W,  W = sum of w_i

    Over any W consecutive picks each i is picked exactly w_i times, and the
    picks are interleaved (5:3:2 gives a b c a a b a c b a, then again) rather than bunched.
    """
    updated = {iid: current.get(iid, 0) + weight for iid, weight in weights.items()}
    chosen = max(sorted(updated), key=lambda iid: updated[iid])
    updated[chosen] -= sum(weights.values())
    return chosen, updated


def weighted(candidates: Sequence[Candidate], ctx: StrategyContext) -> Choice:
    """Smooth weighted round robin over the weight field (`swrr_step`), current weights shared per pool."""
    weights = {c.instance_id: c.weight for c in candidates}
    chosen, current = ctx.state.advance_weights(ctx.pool, lambda stored: _swrr_result(stored, weights))
    by_id = {c.instance_id: c for c in candidates}
    selected = by_id[chosen]
    total = sum(weights.values())
    # The next picks go to the highest c_i + w_i, as step 2 will compute them.
    ranked = heapq.nsmallest(
        ctx.max_alternatives,
        (c for c in candidates if c is not selected),
        key=lambda c: (-(current[c.instance_id] + c.weight), c.instance_id),
    )
    reason = (
        f"weighted: {selected.label} has weight {selected.weight} of {total} "
        f"({selected.weight / total:.0%} of picks), smooth round robin's turn"
        f"{_others(ranked, len(candidates), lambda c: f'{c.label} weight {c.weight}')}"
    )
    return Choice(selected, reason, tuple(ranked))


def _swrr_result(
    stored: dict[str, int], weights: Mapping[str, int]
) -> tuple[tuple[str, dict[str, int]], dict[str, int]]:
    chosen, updated = swrr_step(stored, weights)
    return (chosen, updated), updated


def least_connections(candidates: Sequence[Candidate], ctx: StrategyContext) -> Choice:
    """Fewest requests in flight; ties go to the lower in_flight / max_concurrent, then at random."""
    ranked = _ranked(candidates, ctx, key=lambda c: (c.in_flight, c.utilization))
    selected, alternatives = ranked[0], tuple(ranked[1:])
    reason = (
        f"least_connections: {selected.label} has {selected.in_flight} in flight of {selected.max_concurrent}"
        f"{_others(alternatives, len(candidates), lambda c: f'{c.label} {c.in_flight}/{c.max_concurrent}')}"
    )
    return Choice(selected, reason, alternatives)


def least_response_time(candidates: Sequence[Candidate], ctx: StrategyContext) -> Choice:
    """Lowest peak-EWMA cost:  cost_i = L_i * (in_flight_i + 1).

    L_i is the peak-EWMA latency (latency.py); an instance without a sample
    gets the mean of the known estimates, and when none is known every L_i is
    1 ms, so the cost falls back to least connections.
    """
    latency = _latencies(candidates)

    def cost(c: Candidate) -> float:
        return latency[c.instance_id] * (c.in_flight + 1)

    ranked = _ranked(candidates, ctx, key=lambda c: (cost(c),))
    selected, alternatives = ranked[0], tuple(ranked[1:])
    reason = (
        f"least_response_time: {selected.label} costs {cost(selected):.0f} ms = "
        f"{latency[selected.instance_id]:.0f} ms x ({selected.in_flight} in flight + 1)"
        f"{_others(alternatives, len(candidates), lambda c: f'{c.label} {cost(c):.0f} ms')}"
    )
    return Choice(selected, reason, alternatives)


def random_choice(candidates: Sequence[Candidate], ctx: StrategyContext) -> Choice:
    """Uniformly at random: each candidate with probability 1/N."""
    selected = ctx.rng.choice(candidates)
    rest = [c for c in candidates if c is not selected]
    alternatives = tuple(ctx.rng.sample(rest, min(ctx.max_alternatives, len(rest))))
    reason = f"random: {selected.label} drawn uniformly from {len(candidates)} instances"
    return Choice(selected, reason, alternatives)


def health_based(candidates: Sequence[Candidate], ctx: StrategyContext) -> Choice:
    """The best score, spread among near-equals:

        score = 0.4 * health + 0.3 * success + 0.2 * speed + 0.1 * (1 - utilisation)

    health = health_score; success = success_rate; speed = L_min / L_i over the
    candidates' peak-EWMA latencies (1 for the fastest, latencies floored at
    1 ms); utilisation = in_flight / max_concurrent capped at 1. An unknown
    health or success value takes the mean of the known ones (1 when none is
    known), an unknown latency the mean known latency: missing data neither
    helps nor hurts.

    Candidates scoring within HEALTH_SPREAD (0.05) of the best are near-equal:
    among them the least utilised wins, ties at random. So a few milliseconds
    of latency or a point of health do not send every request to one instance,
    while an instance clearly worse (by more than the band) gets none while a
    near-best one has room.
    """
    health = _filled({c.instance_id: c.health_score for c in candidates})
    success = _filled({c.instance_id: c.success_rate for c in candidates})
    latency = _latencies(candidates)
    fastest = min(latency.values())
    speed = {iid: fastest / value for iid, value in latency.items()}

    def headroom(c: Candidate) -> float:
        return 1.0 - min(c.utilization, 1.0)

    def score(c: Candidate) -> float:
        iid = c.instance_id
        return 0.4 * health[iid] + 0.3 * success[iid] + 0.2 * speed[iid] + 0.1 * headroom(c)

    scores = {c.instance_id: score(c) for c in candidates}
    best = max(scores.values())
    near = {iid for iid, value in scores.items() if value >= best - HEALTH_SPREAD - _EPSILON}

    def rank(c: Candidate) -> tuple[float, ...]:
        if c.instance_id in near:
            return (0.0, min(c.utilization, 1.0))
        return (1.0, -scores[c.instance_id])

    ranked = _ranked(candidates, ctx, key=rank)
    selected, alternatives = ranked[0], tuple(ranked[1:])
    iid = selected.instance_id
    spread = (
        f"; {len(near)} within {HEALTH_SPREAD:g} of the best {best:.3f}: the least utilised, ties at random"
        if len(near) > 1
        else ""
    )
    reason = (
        f"health_based: {selected.label} scores {scores[iid]:.3f} = 0.4 x {health[iid]:.2f} health"
        f" + 0.3 x {success[iid]:.2f} success + 0.2 x {speed[iid]:.2f} speed"
        f" + 0.1 x {headroom(selected):.2f} headroom{spread}"
        f"{_others(alternatives, len(candidates), lambda c: f'{c.label} {scores[c.instance_id]:.3f}')}"
    )
    return Choice(selected, reason, alternatives)


def power_of_two(candidates: Sequence[Candidate], ctx: StrategyContext) -> Choice:
    """Power of two choices: draw two distinct candidates at random; the lower
    in_flight / max_concurrent wins, ties to the lower peak-EWMA latency (an
    unknown one counts as the mean known latency), then to the first drawn.
    """
    latency = _latencies(candidates)

    def load(c: Candidate) -> tuple[float, float]:
        return c.utilization, latency[c.instance_id]

    if len(candidates) == 1:
        only = candidates[0]
        return Choice(only, f"power_of_two: {only.label} is the only candidate", ())
    first, second = ctx.rng.sample(list(candidates), 2)
    selected, other = (second, first) if load(second) < load(first) else (first, second)
    rest = heapq.nsmallest(
        ctx.max_alternatives - 1, (c for c in candidates if c is not first and c is not second), key=load
    )
    alternatives = (other, *rest)[: ctx.max_alternatives]
    if selected.utilization < other.utilization:
        verdict = "is less loaded"
    elif load(selected) < load(other):
        verdict = f"is as loaded but faster ({latency[selected.instance_id]:.0f} ms)"
    else:
        verdict = "ties and was drawn first"
    reason = (
        f"power_of_two: drew {first.label} ({_load_text(first)}) and {second.label} ({_load_text(second)}); "
        f"{selected.label} {verdict}"
    )
    return Choice(selected, reason, alternatives)


STRATEGIES: Mapping[str, Strategy] = {
    "round_robin": round_robin,
    "weighted": weighted,
    "least_connections": least_connections,
    "least_response_time": least_response_time,
    "random": random_choice,
    "health_based": health_based,
    "power_of_two": power_of_two,
}


def get_strategy(name: str) -> Strategy:
    """The strategy called `name` (the values of instances.choices.Strategy); UnknownStrategy otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise UnknownStrategy(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}") from None


def _ranked(
    candidates: Sequence[Candidate], ctx: StrategyContext, *, key: Callable[[Candidate], tuple[float, ...]]
) -> list[Candidate]:
    """The best 1 + max_alternatives candidates by `key` (lowest first), ties in random order."""
    return heapq.nsmallest(ctx.max_alternatives + 1, candidates, key=lambda c: (*key(c), ctx.rng.random()))


def _latencies(candidates: Sequence[Candidate]) -> dict[str, float]:
    """Each candidate's latency estimate floored at 1 ms; unknown ones get the mean known one (1 ms if none)."""
    known = [max(c.latency_ewma_ms, _LATENCY_FLOOR_MS) for c in candidates if c.latency_ewma_ms is not None]
    neutral = fmean(known) if known else _LATENCY_FLOOR_MS
    return {
        c.instance_id: neutral if c.latency_ewma_ms is None else max(c.latency_ewma_ms, _LATENCY_FLOOR_MS)
        for c in candidates
    }


def _filled(values: Mapping[str, float | None]) -> dict[str, float]:
    """The values with unknowns replaced by the mean of the known ones (1.0 when none is known)."""
    known = [v for v in values.values() if v is not None]
    neutral = fmean(known) if known else 1.0
    return {iid: neutral if v is None else v for iid, v in values.items()}


def _load_text(c: Candidate) -> str:
    return f"{c.in_flight}/{c.max_concurrent} = {c.utilization:.2f}"


def _others(
    shown: Sequence[Candidate], total: int, describe: Callable[[Candidate], str], *, label: str = "others"
) -> str:
    """' (others: a 3/10, b 4/10, +5 more)' for the alternatives shown out of `total` candidates."""
    if not shown:
        return ""
    hidden = total - 1 - len(shown)
    more = f", +{hidden} more" if hidden > 0 else ""
    return f" ({label}: {', '.join(describe(c) for c in shown)}{more})"
