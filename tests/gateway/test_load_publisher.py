"""The load publisher: the live leases, whoever took them, become AIInstance.current_load, and
a count nobody publishes lately reads as missing (gateway/load.py)."""

from __future__ import annotations

from typing import cast

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from gateway.load import LoadPublisher
from gateway.registry import registry_snapshot
from instances.balancer.breaker import BreakerConfig
from instances.balancer.state import InProcessStateStore, StateStore
from instances.models import AIInstance, LoadPublication
from instances.selectors import load_publications_fresh

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def publisher() -> LoadPublisher:
    return LoadPublisher(store=InProcessStateStore(), clock=Clock(), name="web-test:1")


def test_gateway_leases_and_reported_load_are_published_as_one_count(fleet, publisher):
    a, b = fleet("pub-a", max_concurrent_requests=10), fleet("pub-b", max_concurrent_requests=10)
    item = registry_snapshot().by_id[str(a.instance_id)]
    for _ in range(3):  # three gateway requests in flight on a
        lease = publisher.store.begin(item.candidate, pool="*/sim-model", now=NOW, breaker=BreakerConfig(),
                                      lease_seconds=30)  # fmt: skip
        assert lease.admitted
    publisher.store.report_load(str(b.instance_id), 4, now=NOW, ttl_seconds=15)  # a client's own calls on b

    assert publisher.publish_once() == 2

    loads = dict(AIInstance.objects.values_list("instance_name", "current_load"))
    assert loads == {"pub-a": 3, "pub-b": 4}
    row = LoadPublication.objects.get()
    assert (row.publisher, row.instances) == ("web-test:1", 2)
    assert load_publications_fresh(now=row.published_at).exists()


def test_a_report_not_renewed_decays_to_zero_in_the_published_load(fleet, publisher):
    instance = fleet("pub-decay")
    publisher.store.report_load(str(instance.instance_id), 7, now=NOW, ttl_seconds=15)
    publisher.publish_once()
    assert AIInstance.objects.get().current_load == 7

    publisher.clock.now = NOW + 16  # the report's TTL passed without a renewal
    publisher.publish_once()

    assert AIInstance.objects.get().current_load == 0


def test_a_publication_costs_a_bounded_number_of_queries_whatever_the_fleet(fleet, publisher):
    for index in range(12):
        fleet(f"pub-{index}")
    publisher.publish_once()  # the snapshot is built (one query) and the publication row exists
    publisher.store.report_load(str(AIInstance.objects.earliest("pk").instance_id), 2, now=NOW, ttl_seconds=15)

    with CaptureQueriesContext(connection) as queries:
        publisher.publish_once()

    # one UPDATE per distinct changed count (here one), one for the publication row
    assert len(queries) <= 2, [q["sql"] for q in queries]


def test_while_redis_is_unreachable_nothing_is_published_so_the_load_reads_missing(fleet):
    from instances.balancer.state import RedisStateStore, ResilientStateStore

    fleet("pub-outage")
    unreachable = RedisStateStore("redis://127.0.0.1:1/0")  # nothing listens on port 1: refused at once
    resilient = cast(StateStore, ResilientStateStore(unreachable, InProcessStateStore()))  # as get_state_store does
    publisher = LoadPublisher(store=resilient, name="web-test:2")

    assert publisher.publish_once() == 0
    assert not LoadPublication.objects.exists()  # scaling sees no fresh publication: utilisation missing
