from __future__ import annotations

from collections import Counter

import pytest

from instances.balancer.affinity import pick_for_session, rank_for_session, resolve_session

SESSIONS = [f"session-{i}" for i in range(10_000)]
TEN = [f"inst-{i}" for i in range(10)]


def assignment(instances: list[str]) -> dict[str, str]:
    return {s: pick_for_session(s, instances) for s in SESSIONS}


def test_the_same_session_always_lands_on_the_same_instance_whatever_the_order() -> None:
    assert pick_for_session("abc", TEN) == pick_for_session("abc", list(reversed(TEN)))


def test_sessions_spread_evenly() -> None:
    counts = Counter(assignment(TEN).values())
    assert set(counts) == set(TEN)
    assert all(800 <= n <= 1200 for n in counts.values()), counts


def test_adding_an_instance_moves_only_the_sessions_it_wins() -> None:
    before = assignment(TEN)
    after = assignment([*TEN, "inst-new"])
    moved = [s for s in SESSIONS if before[s] != after[s]]
    assert {after[s] for s in moved} == {"inst-new"}
    assert len(moved) / len(SESSIONS) == pytest.approx(1 / 11, abs=0.015)


def test_removing_an_instance_moves_only_its_own_sessions() -> None:
    before = assignment(TEN)
    after = assignment([i for i in TEN if i != "inst-3"])
    moved = [s for s in SESSIONS if before[s] != after[s]]
    assert {before[s] for s in moved} == {"inst-3"}
    assert len(moved) / len(SESSIONS) == pytest.approx(1 / 10, abs=0.015)


def test_weighted_rendezvous_shares_sessions_by_weight() -> None:
    weights = {"a": 5.0, "b": 3.0, "c": 2.0}
    counts = Counter(pick_for_session(s, weights, weights) for s in SESSIONS)
    assert counts["a"] / 10_000 == pytest.approx(0.5, abs=0.02)
    assert counts["b"] / 10_000 == pytest.approx(0.3, abs=0.02)
    assert counts["c"] / 10_000 == pytest.approx(0.2, abs=0.02)


def test_the_ranking_starts_with_the_pick() -> None:
    weights = dict.fromkeys(TEN, 1.0)
    ranking = rank_for_session("abc", weights)
    assert ranking[0] == pick_for_session("abc", TEN)
    assert rank_for_session("abc", weights, limit=3) == ranking[:3]
    assert sorted(ranking) == sorted(TEN)


def test_a_remembered_instance_is_kept_while_eligible() -> None:
    weights = dict.fromkeys(TEN, 1.0)
    hashed = pick_for_session("abc", TEN)
    other = next(i for i in TEN if i != hashed)
    kept = resolve_session("abc", weights, remembered=other)
    assert (kept.instance_id, kept.remembered) == (other, True)


def test_a_remembered_instance_that_is_no_longer_eligible_is_replaced_by_the_hash_pick() -> None:
    weights = {i: 1.0 for i in TEN if i != "inst-3"}
    replaced = resolve_session("abc", weights, remembered="inst-3")
    assert (replaced.instance_id, replaced.remembered) == (pick_for_session("abc", weights), False)
