from __future__ import annotations

import random
from collections import Counter

import pytest

from instances.balancer.candidates import Candidate
from instances.balancer.state import InProcessStateStore
from instances.balancer.strategies import (
    STRATEGIES,
    StrategyContext,
    UnknownStrategy,
    get_strategy,
    health_based,
    least_connections,
    least_response_time,
    power_of_two,
    random_choice,
    round_robin,
    swrr_step,
    weighted,
)
from instances.choices import Strategy


def context(seed: int = 7, *, max_alternatives: int = 3) -> StrategyContext:
    return StrategyContext("pool", InProcessStateStore(), random.Random(seed), max_alternatives)


def picks(strategy: str, candidates: list[Candidate], n: int, ctx: StrategyContext | None = None) -> list[str]:
    ctx = ctx or context()
    choose = get_strategy(strategy)
    return [choose(candidates, ctx).selected.instance_id for _ in range(n)]


def test_every_strategy_of_the_registry_is_implemented() -> None:
    assert set(STRATEGIES) == set(Strategy.values)


def test_an_unknown_strategy_is_refused_by_name() -> None:
    with pytest.raises(UnknownStrategy, match="'fastest'"):
        get_strategy("fastest")


# --- round robin ---------------------------------------------------------------


def test_round_robin_cycles_exactly_in_instance_id_order() -> None:
    candidates = [Candidate("c"), Candidate("a"), Candidate("b")]
    assert picks("round_robin", candidates, 9) == list("abcabcabc")


def test_round_robin_explains_the_turn_and_names_the_next_ones() -> None:
    ctx = context()
    candidates = [Candidate("a"), Candidate("b"), Candidate("c")]
    round_robin(candidates, ctx)
    choice = round_robin(candidates, ctx)
    assert choice.reason == "round_robin: b takes turn 1, position 2 of 3 (next: c, a)"
    assert [c.instance_id for c in choice.alternatives] == ["c", "a"]


# --- weighted (smooth weighted round robin) ---------------------------------------


def test_swrr_matches_nginx_for_five_one_one() -> None:
    current: dict[str, int] = {}
    sequence = []
    for _ in range(7):
        chosen, current = swrr_step(current, {"a": 5, "b": 1, "c": 1})
        sequence.append(chosen)
    assert "".join(sequence) == "aabacaa"
    assert current == {"a": 0, "b": 0, "c": 0}


def test_weighted_five_three_two_holds_within_one_over_every_window_of_ten() -> None:
    candidates = [Candidate("a", weight=5), Candidate("b", weight=3), Candidate("c", weight=2)]
    sequence = picks("weighted", candidates, 1000)
    for start in range(len(sequence) - 9):
        window = Counter(sequence[start : start + 10])
        assert abs(window["a"] - 5) <= 1, (start, window)
        assert abs(window["b"] - 3) <= 1, (start, window)
        assert abs(window["c"] - 2) <= 1, (start, window)
    for start in range(0, 1000, 10):
        assert Counter(sequence[start : start + 10]) == {"a": 5, "b": 3, "c": 2}


def test_weighted_follows_a_weight_change_and_forgets_removed_instances() -> None:
    ctx = context()
    picks("weighted", [Candidate("a", weight=1), Candidate("b", weight=1), Candidate("x", weight=9)], 5, ctx)
    after = Counter(picks("weighted", [Candidate("a", weight=1), Candidate("b", weight=3)], 400, ctx))
    # The weights carried over from the old set shift the phase by at most one pick.
    assert set(after) == {"a", "b"}
    assert abs(after["a"] - 100) <= 1


def test_weighted_explains_the_share() -> None:
    choice = weighted([Candidate("a", weight=5), Candidate("b", weight=3), Candidate("c", weight=2)], context())
    assert choice.selected.instance_id == "a"
    assert choice.reason.startswith("weighted: a has weight 5 of 10 (50% of picks)")
    assert [c.instance_id for c in choice.alternatives] == ["b", "c"]


# --- least connections ---------------------------------------------------------


def test_least_connections_picks_the_fewest_in_flight_and_says_so() -> None:
    candidates = [
        Candidate("inst-b", in_flight=3),
        Candidate("inst-a", in_flight=1),
        Candidate("inst-c", in_flight=4),
    ]
    choice = least_connections(candidates, context())
    assert choice.selected.instance_id == "inst-a"
    assert choice.reason == "least_connections: inst-a has 1 in flight of 10 (others: inst-b 3/10, inst-c 4/10)"
    assert [c.instance_id for c in choice.alternatives] == ["inst-b", "inst-c"]


def test_least_connections_breaks_ties_by_utilisation_then_at_random() -> None:
    big, small = Candidate("big", in_flight=2, max_concurrent=100), Candidate("small", in_flight=2, max_concurrent=4)
    assert set(picks("least_connections", [small, big], 50)) == {"big"}
    counts = Counter(picks("least_connections", [Candidate("a"), Candidate("b"), Candidate("c")], 3000))
    assert all(900 <= n <= 1100 for n in counts.values()), counts


def test_alternatives_are_capped_and_the_rest_counted() -> None:
    candidates = [Candidate(f"i{n}", in_flight=n) for n in range(10)]
    choice = least_connections(candidates, context(max_alternatives=2))
    assert [c.instance_id for c in choice.alternatives] == ["i1", "i2"]
    assert choice.reason.endswith("(others: i1 1/10, i2 2/10, +7 more)")


# --- least response time (peak EWMA) -----------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "expected"),
    [
        # cost = latency x (in flight + 1): 100 x 3 = 300 against 250 x 1 = 250.
        ([Candidate("fast", latency_ewma_ms=100, in_flight=2), Candidate("slow", latency_ewma_ms=250)], "slow"),
        ([Candidate("fast", latency_ewma_ms=100, in_flight=1), Candidate("slow", latency_ewma_ms=250)], "fast"),
        # Unknown latency counts as the mean of the known ones: 200 x 1 against 100 x 3.
        (
            [Candidate("new"), Candidate("a", latency_ewma_ms=100, in_flight=2), Candidate("b", latency_ewma_ms=300)],
            "new",
        ),
        # Nothing known: least connections.
        ([Candidate("a", in_flight=3), Candidate("b", in_flight=1)], "b"),
    ],
)
def test_least_response_time_minimises_latency_times_load(candidates: list[Candidate], expected: str) -> None:
    assert least_response_time(candidates, context()).selected.instance_id == expected


def test_least_response_time_explains_the_cost() -> None:
    choice = least_response_time(
        [Candidate("a", latency_ewma_ms=120, in_flight=1), Candidate("b", latency_ewma_ms=300)], context()
    )
    assert choice.reason == "least_response_time: a costs 240 ms = 120 ms x (1 in flight + 1) (others: b 300 ms)"


# --- random ------------------------------------------------------------------------


def test_random_is_uniform_and_reproducible_with_a_seeded_rng() -> None:
    candidates = [Candidate("a"), Candidate("b"), Candidate("c"), Candidate("d")]
    sequence = picks("random", candidates, 4000)
    assert all(900 <= n <= 1100 for n in Counter(sequence).values())
    assert picks("random", candidates, 50) == picks("random", candidates, 50)
    choice = random_choice(candidates, context())
    assert choice.reason == f"random: {choice.selected.instance_id} drawn uniformly from 4 instances"
    assert len(choice.alternatives) == 3
    assert choice.selected not in choice.alternatives


# --- health based --------------------------------------------------------------------


def test_health_based_scores_by_the_documented_formula() -> None:
    a = Candidate("a", health_score=0.9, success_rate=1.0, latency_ewma_ms=200, in_flight=5)
    b = Candidate("b", health_score=1.0, success_rate=0.8, latency_ewma_ms=100, in_flight=0)
    choice = health_based([a, b], context())
    # a: 0.4 x 0.9 + 0.3 x 1.0 + 0.2 x 0.5 + 0.1 x 0.5 = 0.81
    # b: 0.4 x 1.0 + 0.3 x 0.8 + 0.2 x 1.0 + 0.1 x 1.0 = 0.94
    assert choice.selected.instance_id == "b"
    assert choice.reason == (
        "health_based: b scores 0.940 = 0.4 x 1.00 health + 0.3 x 0.80 success + 0.2 x 1.00 speed"
        " + 0.1 x 1.00 headroom (others: a 0.810)"
    )


def test_health_based_treats_missing_values_as_neutral() -> None:
    known = Candidate("known", health_score=0.8, success_rate=0.9, latency_ewma_ms=100)
    unknown = Candidate("unknown")
    # Same score with the means filled in: ties split at random.
    counts = Counter(picks("health_based", [known, unknown], 2000))
    assert set(counts) == {"known", "unknown"}
    better = Candidate("better", health_score=1.0, success_rate=1.0, latency_ewma_ms=100)  # 0.11 ahead
    assert set(picks("health_based", [known, unknown, better], 50)) == {"better"}


def test_health_based_spreads_among_near_equal_scores() -> None:
    # Live-tried: three healthy instances a few ms apart got 26 of 30 requests on one.
    fast = Candidate("fast", health_score=1.0, success_rate=1.0, latency_ewma_ms=20)
    close = Candidate("close", health_score=1.0, success_rate=1.0, latency_ewma_ms=22)  # 0.018 behind
    also = Candidate("also", health_score=0.95, success_rate=1.0, latency_ewma_ms=21)  # 0.03 behind
    slow = Candidate("slow", health_score=1.0, success_rate=1.0, latency_ewma_ms=40)  # 0.1 behind: out of the band

    counts = Counter(picks("health_based", [fast, close, also, slow], 3000))

    assert set(counts) == {"fast", "close", "also"}
    assert all(800 <= counts[name] <= 1200 for name in ("fast", "close", "also")), counts
    choice = health_based([fast, close, also, slow], context())
    assert "3 within 0.05 of the best 1.000: the least utilised, ties at random" in choice.reason


def test_health_based_sends_the_next_request_to_the_least_utilised_near_equal() -> None:
    busy = Candidate("busy", health_score=1.0, success_rate=1.0, latency_ewma_ms=20, in_flight=4, max_concurrent=10)
    idle = Candidate("idle", health_score=1.0, success_rate=1.0, latency_ewma_ms=21, in_flight=1, max_concurrent=10)

    assert set(picks("health_based", [busy, idle], 50)) == {"idle"}


# --- power of two choices ------------------------------------------------------------


def test_power_of_two_never_picks_the_most_loaded_of_three_when_the_others_are_idle() -> None:
    candidates = [Candidate("a"), Candidate("b"), Candidate("busy", in_flight=8)]
    counts = Counter(picks("power_of_two", candidates, 5000))
    assert counts["busy"] == 0
    assert counts["a"] > 2000 and counts["b"] > 2000


def test_power_of_two_compares_load_relative_to_capacity_then_latency() -> None:
    roomy = Candidate("roomy", in_flight=5, max_concurrent=100)
    tight = Candidate("tight", in_flight=2, max_concurrent=4)
    assert set(picks("power_of_two", [roomy, tight], 50)) == {"roomy"}
    fast = Candidate("fast", latency_ewma_ms=50)
    slow = Candidate("slow", latency_ewma_ms=500)
    assert set(picks("power_of_two", [slow, fast], 50)) == {"fast"}


def test_power_of_two_explains_the_draw() -> None:
    choice = power_of_two([Candidate("a", in_flight=2), Candidate("b", in_flight=5)], context())
    assert choice.selected.instance_id == "a"
    assert choice.reason.startswith("power_of_two: drew ")
    assert "a (2/10 = 0.20)" in choice.reason and "b (5/10 = 0.50)" in choice.reason
    assert choice.reason.endswith("a is less loaded")
    assert [c.instance_id for c in choice.alternatives] == ["b"]


def test_power_of_two_with_one_candidate_takes_it() -> None:
    choice = power_of_two([Candidate("only")], context())
    assert (choice.selected.instance_id, choice.alternatives) == ("only", ())
