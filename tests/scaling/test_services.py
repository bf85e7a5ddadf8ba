"""Auto-scaling services on the real database with an injected clock: groups and their policies,
evaluation (actions, cooldown-skipped actions, the stored last decision), manual scaling and its
pause, the metric window, and carrying events out (claims, retries, the reaper)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from instances.choices import InstanceStatus
from instances.models import AIInstance, InstanceMetrics
from instances.selectors import LOAD_STALE_SECONDS
from ishchat.errors import ConflictError
from ishchat.locks import lease, lease_acquire
from ishchat.models import Lease
from scaling import services
from scaling.choices import ScalingEventStatus
from scaling.engine import replay
from scaling.metrics import metric_window
from scaling.models import ProviderGroup, ScalingEvent
from tests.scaling.support import (
    TRACKING,
    add_load_check,
    add_requests,
    make_group,
    make_member,
    set_load,
)

pytestmark = pytest.mark.django_db


def busy_group(members: int = 2, load: int = 9, **fields):
    """A pool group whose serving instances run at load/10 utilisation."""
    group = make_group(**{**TRACKING, **fields})
    for _ in range(members):
        make_member(group, current_load=load)
    return group


def complete(event: ScalingEvent) -> None:
    """Pretend the backend finished (tests about evaluation, not about backends)."""
    ScalingEvent.objects.filter(pk=event.pk).update(status=ScalingEventStatus.COMPLETED)


# --- groups and policies --------------------------------------------------------------------------

def test_a_group_takes_the_configured_defaults_and_starts_at_min():
    group = services.group_create(group_name="zai-production", provider_type="zai", min_instances=2,
                                  max_instances=10, auto_scaling_enabled=True, scale_up_threshold=0.8)

    assert (group.min_instances, group.desired_instances, group.max_instances) == (2, 2, 10)
    assert (group.scale_up_cooldown, group.scale_down_cooldown, group.scale_down_stabilization_seconds) == (
        0, 600, 300)
    assert group.backend == "pool" and group.backend_settings == {"drain_timeout_seconds": 120}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"min_instances": 5, "max_instances": 3}, "max_instances"),
        ({"scale_up_threshold": 0.3, "scale_down_threshold": 0.3}, "scale_up_threshold"),
        ({"scale_up_threshold": 1.5}, "scale_up_threshold"),
        ({"scale_down_threshold": 0.0}, "scale_down_threshold"),
        ({"target_utilization": -0.1}, "target_utilization"),
        ({"scale_up_cooldown": -1}, "scale_up_cooldown"),
        ({"scale_down_cooldown": -5}, "scale_down_cooldown"),
        ({"triggers": {"error_rate": 2.0}}, "triggers"),
        ({"triggers": {"latency": 100}}, "triggers"),
        ({"schedules": [{"name": "office", "cron": "0 9 * * mon-fri"}]}, "schedules"),
        ({"schedules": [{"name": "office", "cron": "61 9 * * *", "end": "17:00", "min_instances": 4}]}, "schedules"),
        ({"forecast_horizon_seconds": 10**9}, "forecast_horizon_seconds"),
        ({"schedules": [{"name": "ever", "cron": "0 0 1 1 *", "duration_minutes": 10**9, "min_instances": 2}]},
         "schedules"),
        ({"backend": "ftp"}, "backend"),
        ({"backend": "webhook", "backend_settings": {}}, "backend_settings"),
        ({"backend_settings": {"drain_timeout_seconds": -1}}, "backend_settings"),
    ],
)
def test_a_bad_policy_is_refused_by_the_engine_rules_and_nothing_is_written(fields, field):
    with pytest.raises(ValidationError) as error:
        services.group_create(group_name="g", provider_type="openai", **fields)

    assert field in error.value.message_dict
    assert not ProviderGroup.objects.exists()


def test_a_bad_change_leaves_the_group_as_it_was():
    group = services.group_create(group_name="g", provider_type="openai", min_instances=1, max_instances=4)

    with pytest.raises(ValidationError):
        services.group_configure_autoscaling(group=group, enabled=True, max_instances=8, min_instances=9)

    group.refresh_from_db()
    assert (group.min_instances, group.max_instances, group.auto_scaling_enabled) == (1, 4, False)


def test_a_taken_group_name_is_a_conflict():
    services.group_create(group_name="g", provider_type="openai")
    other = services.group_create(group_name="h", provider_type="openai")

    with pytest.raises(ConflictError):
        services.group_create(group_name="g", provider_type="zai")
    with pytest.raises(ConflictError):
        services.group_update(group=other, changes={"group_name": "g"})


def test_deleting_a_group_keeps_its_instances_outside_any_group():
    group = make_group()
    member = make_member(group, status=InstanceStatus.STANDBY)

    services.group_delete(group=group)

    member.refresh_from_db()
    assert member.group_id is None and member.is_active and member.status == InstanceStatus.STANDBY


def test_changing_the_backend_cancels_a_pending_action(now, webhook):
    group = busy_group()
    result = services.group_evaluate(group_id=group.pk, now=now)
    assert result["outcome"] == "acted"

    services.group_configure_autoscaling(group=group, backend="webhook", backend_settings={"url": webhook.url})

    event = ScalingEvent.objects.get()
    assert event.status == ScalingEventStatus.CANCELLED and "backend" in event.error


# --- evaluation -----------------------------------------------------------------------------------

def test_an_action_is_recorded_as_a_pending_event_and_queued_after_commit(now, django_capture_on_commit_callbacks):
    group = busy_group(members=2, load=9)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = services.group_evaluate(group_id=group.pk, now=now)

    event = ScalingEvent.objects.get()
    assert (result["outcome"], result["direction"], result["event_id"]) == ("acted", "up", event.pk)
    assert (event.status, event.direction, event.trigger, event.old_count, event.new_count) == (
        "pending", "up", "utilization", 2, 3)
    assert event.metric_values["utilization"] == pytest.approx(0.9)
    assert event.threshold == pytest.approx(0.6)
    assert "scale up 2 -> 3" in event.reason
    assert len(callbacks) == 1  # scaling.apply_event, after commit
    group.refresh_from_db()
    assert group.last_scale_up_at == now and group.last_evaluated_at == now
    assert group.last_decision["outcome"] == "acted" and group.last_decision["event_id"] == event.pk
    # Stored with its inputs: the same decision comes out again.
    assert replay(group.last_decision).to_dict(inputs=False) == replay(event.decision).to_dict(inputs=False)
    assert replay(group.last_decision).desired == 3


def test_a_scale_up_inside_the_cooldown_is_recorded_as_skipped_and_acts_after_it(now):
    group = busy_group(members=2, load=9, scale_up_cooldown=300)
    first = services.group_evaluate(group_id=group.pk, now=now)
    complete(ScalingEvent.objects.get(pk=first["event_id"]))
    set_load(group, 9, at=now + timedelta(seconds=30))  # the web processes keep publishing it

    second = services.group_evaluate(group_id=group.pk, now=now + timedelta(seconds=30))

    skipped = ScalingEvent.objects.get(pk=second["event_id"])
    assert second["outcome"] == "skipped_cooldown" and second["skipped_by_cooldown"]
    assert (skipped.status, skipped.direction, skipped.old_count, skipped.new_count) == ("skipped", "up", 2, 3)
    assert "scale-up cooldown 300 s" in skipped.reason and "(270 s left)" in skipped.reason
    group.refresh_from_db()
    assert group.last_scale_up_at == now  # a skipped action does not restart the cooldown
    assert group.last_decision["outcome"] == "skipped_cooldown"
    set_load(group, 9, at=now + timedelta(seconds=301))

    third = services.group_evaluate(group_id=group.pk, now=now + timedelta(seconds=301))

    assert third["outcome"] == "acted"
    assert ScalingEvent.objects.filter(status="pending").count() == 1


def test_a_cooldown_stores_one_skipped_record_however_many_evaluations_it_holds(now):
    group = busy_group(members=2, load=9, scale_up_cooldown=300, max_instances=20)
    complete(ScalingEvent.objects.get(pk=services.group_evaluate(group_id=group.pk, now=now)["event_id"]))

    held = []
    for seconds in (30, 60, 90, 120):  # every 30 s evaluation inside the 300 s cooldown
        set_load(group, 9, at=now + timedelta(seconds=seconds))
        held.append(services.group_evaluate(group_id=group.pk, now=now + timedelta(seconds=seconds)))

    assert {result["outcome"] for result in held} == {"skipped_cooldown"}
    assert len({result["event_id"] for result in held}) == 1
    assert ScalingEvent.objects.filter(status="skipped").count() == 1
    group.refresh_from_db()
    assert group.last_decision["evaluated_at"].startswith((now + timedelta(seconds=120)).isoformat()[:19])

    set_load(group, 9, at=now + timedelta(seconds=301))
    acted = services.group_evaluate(group_id=group.pk, now=now + timedelta(seconds=301))
    assert acted["outcome"] == "acted"
    complete(ScalingEvent.objects.get(pk=acted["event_id"]))
    set_load(group, 9, at=now + timedelta(seconds=331))
    services.group_evaluate(group_id=group.pk, now=now + timedelta(seconds=331))  # the next cooldown: a new record
    assert ScalingEvent.objects.filter(status="skipped").count() == 2


def test_while_an_action_is_open_evaluations_wait_for_it(now):
    group = busy_group(scale_up_cooldown=0)
    first = services.group_evaluate(group_id=group.pk, now=now)
    set_load(group, 9, at=now + timedelta(seconds=30))

    second = services.group_evaluate(group_id=group.pk, now=now + timedelta(seconds=30))

    assert (second["outcome"], second["event_id"]) == ("waiting", first["event_id"])
    assert ScalingEvent.objects.count() == 1


def test_no_change_is_stored_as_the_last_decision_only(now):
    group = busy_group(members=3, load=6)

    result = services.group_evaluate(group_id=group.pk, now=now)

    assert (result["outcome"], result["direction"], result["event_id"]) == ("no_change", "none", None)
    assert not ScalingEvent.objects.exists()
    group.refresh_from_db()
    assert group.last_decision["reason"].startswith("no change at 3")
    assert group.last_decision["inputs"]["window"]["utilization"] == pytest.approx(0.6)


def test_a_dry_run_decides_but_writes_nothing(now):
    group = busy_group()

    result = services.group_evaluate(group_id=group.pk, dry_run=True, now=now)

    assert (result["outcome"], result["direction"], result["dry_run"]) == ("dry_run", "up", True)
    group.refresh_from_db()
    assert group.last_decision == {} and group.last_scale_up_at is None
    assert not ScalingEvent.objects.exists()


def test_a_disabled_group_reports_but_does_not_act(now):
    group = busy_group(auto_scaling_enabled=False)

    result = services.group_evaluate(group_id=group.pk, now=now)

    assert (result["outcome"], result["direction"]) == ("disabled", "up")
    assert not ScalingEvent.objects.exists()


def test_the_stabilization_window_carries_over_between_evaluations(now):
    group = busy_group(members=4, load=5, scale_down_stabilization_seconds=300, scale_down_cooldown=0)
    services.group_evaluate(group_id=group.pk, now=now)  # 4 at 0.5: no change, recommendation 4
    set_load(group, 1, at=now + timedelta(seconds=60))

    result = services.group_evaluate(group_id=group.pk, now=now + timedelta(seconds=60))

    assert result["direction"] == "none" and "stabilization" in result["clamps"]
    set_load(group, 1, at=now + timedelta(seconds=400))
    later = services.group_evaluate(group_id=group.pk, now=now + timedelta(seconds=400))
    assert later["direction"] == "down" and later["outcome"] == "acted"


def test_a_second_evaluator_is_turned_away_while_one_holds_the_group(now):
    group = busy_group()

    with lease(f"scaling-group-{group.pk}", ttl_seconds=60) as held:
        assert held
        with pytest.raises(ConflictError):
            services.group_evaluate(group_id=group.pk, now=now)
        assert services.groups_evaluate(group_ids=[group.pk], now=now)[0]["outcome"] == "locked"

    assert not ScalingEvent.objects.exists()


def test_only_one_open_action_per_group_even_without_locks(now):
    group = busy_group()
    services.group_evaluate(group_id=group.pk, now=now)
    decision = services.decide(services.policy_of(group), metric_window(group=group, now=now),
                               services.GroupState(active=2), now)

    assert services._event_record(group, decision, decision.to_dict(), status="pending") is None
    assert ScalingEvent.objects.filter(status="pending").count() == 1


# --- manual scaling -------------------------------------------------------------------------------

def test_manual_scaling_pauses_automatic_scaling(now):
    group = busy_group(members=3, load=9, max_instances=6)

    manual = services.group_scale_manual(group=group, desired=2, reason="cost review", actor="api:ops",
                                         pause_seconds=600, now=now)

    event = ScalingEvent.objects.get()
    assert (manual["outcome"], manual["trigger"], manual["desired"]) == ("manual", "manual", 2)
    assert (event.trigger, event.direction, event.old_count, event.new_count, event.actor) == (
        "manual", "down", 3, 2, "api:ops")
    assert "cost review" in event.reason and "api:ops" in event.reason
    group.refresh_from_db()
    assert group.paused_until == now + timedelta(seconds=600)
    complete(event)
    set_load(group, 9, at=now + timedelta(seconds=60))

    paused = services.group_evaluate(group_id=group.pk, now=now + timedelta(seconds=60))

    assert (paused["outcome"], paused["paused"], paused["direction"]) == ("paused", True, "up")
    assert "paused until" in paused["reason"]
    assert ScalingEvent.objects.count() == 1
    set_load(group, 9, at=now + timedelta(seconds=601))

    resumed = services.group_evaluate(group_id=group.pk, now=now + timedelta(seconds=601))
    assert resumed["outcome"] == "acted"


def test_manual_scaling_uses_the_configured_pause_by_default(now):
    group = busy_group(members=2, load=1)

    services.group_scale_manual(group=group, desired=3, actor="admin:root", now=now)

    group.refresh_from_db()
    assert group.paused_until == now + timedelta(seconds=services.DEFAULT_MANUAL_PAUSE_SECONDS)


def test_manual_scaling_stays_within_min_and_max(now):
    group = busy_group(min_instances=2, max_instances=4)

    with pytest.raises(ValidationError) as error:
        services.group_scale_manual(group=group, desired=5, actor="api:ops", now=now)

    assert "desired_instances" in error.value.message_dict
    group.refresh_from_db()
    assert group.paused_until is None and not ScalingEvent.objects.exists()


def test_manual_scaling_supersedes_a_pending_action_but_not_one_being_applied(now):
    group = busy_group()
    first = services.group_evaluate(group_id=group.pk, now=now)

    services.group_scale_manual(group=group, desired=5, actor="api:ops", now=now)

    assert ScalingEvent.objects.get(pk=first["event_id"]).status == ScalingEventStatus.CANCELLED
    manual = ScalingEvent.objects.get(trigger="manual")
    ScalingEvent.objects.filter(pk=manual.pk).update(status=ScalingEventStatus.IN_PROGRESS)
    with pytest.raises(ConflictError):
        services.group_scale_manual(group=group, desired=1, actor="api:ops", now=now)


# --- the metric window ----------------------------------------------------------------------------

def test_the_metric_window_reads_load_latency_errors_and_queue(now):
    group = make_group()
    a = make_member(group, current_load=8, max_concurrent_requests=10)
    b = make_member(group, current_load=2, max_concurrent_requests=30)
    make_member(group, status=InstanceStatus.STANDBY, current_load=50)  # not serving: not counted
    add_requests(a, at=now - timedelta(seconds=10), ok=19, errors=1, latency_ms=[float(v) for v in range(1, 20)])
    add_requests(b, at=now - timedelta(seconds=20), ok=1, latency_ms=[1000.0])
    add_requests(b, at=now - timedelta(seconds=90), ok=50)  # outside the window
    add_load_check(a, at=now - timedelta(seconds=40), waiting=3)
    add_load_check(a, at=now - timedelta(seconds=5), waiting=6)  # the latest one counts
    add_load_check(b, at=now - timedelta(seconds=120), waiting=100)  # too old

    window = metric_window(group=group, now=now)

    assert window.utilization == pytest.approx(10 / 40)
    assert window.request_rate == pytest.approx(21.0)
    assert window.error_rate == pytest.approx(1 / 21)
    assert window.p95_ms == pytest.approx(19.0)  # 19th of 20 sorted latencies (1..19, 1000)
    assert window.queue_length == pytest.approx(6.0)
    assert window.request_rate_history == ()


def test_an_idle_window_shows_no_pressure_and_no_queue(now):
    group = make_group()
    make_member(group, current_load=0)

    window = metric_window(group=group, now=now)

    assert (window.utilization, window.error_rate, window.p95_ms, window.queue_length, window.request_rate) == (
        0.0, 0.0, 0.0, None, 0.0)


def test_a_load_nobody_published_lately_is_missing_not_zero_or_stale(now):
    group = make_group()
    make_member(group, current_load=8)  # published now

    assert metric_window(group=group, now=now).utilization == pytest.approx(0.8)
    # No web process has published for longer than LOAD_STALE_SECONDS: the 8 is stale, not a load.
    stale = now + timedelta(seconds=LOAD_STALE_SECONDS + 1)
    assert metric_window(group=group, now=stale).utilization is None
    set_load(group, 2, at=stale)
    assert metric_window(group=group, now=stale).utilization == pytest.approx(0.2)


def test_the_history_uses_rollups_then_request_logs(now):
    group = make_group(predictive_mode="on")
    member = make_member(group)
    minute = now.replace(second=0, microsecond=0)
    InstanceMetrics.objects.create(instance=member, bucket_start=minute - timedelta(minutes=4), request_count=40)
    InstanceMetrics.objects.create(instance=member, bucket_start=minute - timedelta(minutes=3), request_count=30)
    add_requests(member, at=minute - timedelta(minutes=1) + timedelta(seconds=5), ok=7)

    history = metric_window(group=group, now=now, history_minutes=6).request_rate_history

    assert history == (None, None, 40.0, 30.0, 0.0, 7.0)


def test_the_metric_window_costs_the_same_queries_for_any_fleet_size(now):
    small, big = make_group(predictive_mode="on"), make_group(predictive_mode="on")
    for group, size in ((small, 2), (big, 20)):
        for _ in range(size):
            member = make_member(group, current_load=3)
            add_requests(member, at=now - timedelta(seconds=5), ok=3)
            add_load_check(member, at=now - timedelta(seconds=5), waiting=1)

    with CaptureQueriesContext(connection) as few:
        metric_window(group=small, now=now)
    with CaptureQueriesContext(connection) as many:
        metric_window(group=big, now=now)

    assert len(few) == len(many) <= 6


# --- carrying events out --------------------------------------------------------------------------

def webhook_group(url: str, **fields) -> ProviderGroup:
    group = busy_group(**fields)
    return services.group_configure_autoscaling(group=group, backend="webhook", backend_settings={"url": url})


def test_an_event_is_claimed_once(now, webhook):
    group = webhook_group(webhook.url)
    event_id = services.group_evaluate(group_id=group.pk, now=now)["event_id"]

    first = services.group_apply_event(event_id=event_id, now=now)
    second = services.group_apply_event(event_id=event_id, now=now)

    assert first is not None and first.status == ScalingEventStatus.COMPLETED and first.attempts == 1
    assert second is None
    assert len(webhook.received) == 1
    group.refresh_from_db()
    assert group.desired_instances == 3


def test_an_event_in_progress_elsewhere_is_not_applied_again(now, webhook):
    group = webhook_group(webhook.url)
    event_id = services.group_evaluate(group_id=group.pk, now=now)["event_id"]
    ScalingEvent.objects.filter(pk=event_id).update(status=ScalingEventStatus.IN_PROGRESS, started_at=now)

    assert services.group_apply_event(event_id=event_id, now=now) is None
    assert webhook.received == []


def test_a_backend_failure_is_retried_with_backoff_then_fails(now, webhook):
    webhook.status = 503
    group = webhook_group(webhook.url)
    event_id = services.group_evaluate(group_id=group.pk, now=now)["event_id"]

    clock = now
    for attempt in range(1, services.MAX_ATTEMPTS):
        event = services.group_apply_event(event_id=event_id, now=clock)
        assert event is not None
        assert (event.status, event.attempts) == ("pending", attempt)
        assert event.next_attempt_at == clock + services.retry_delay(attempt)
        assert event.error.startswith("HTTP 503") and "receiver is down" in event.error
        assert services.group_apply_event(event_id=event_id, now=clock + timedelta(seconds=1)) is None  # not due
        clock = event.next_attempt_at

    event = services.group_apply_event(event_id=event_id, now=clock)

    assert event is not None
    assert (event.status, event.attempts) == ("failed", services.MAX_ATTEMPTS)
    assert event.completed_at == clock and event.error.startswith("HTTP 503")
    assert len(webhook.received) == services.MAX_ATTEMPTS
    group.refresh_from_db()
    assert group.desired_instances == 1  # never reached: the count is not pretended


def test_a_retry_that_succeeds_completes_the_event(now, webhook):
    webhook.status = 500
    group = webhook_group(webhook.url)
    event_id = services.group_evaluate(group_id=group.pk, now=now)["event_id"]
    first = services.group_apply_event(event_id=event_id, now=now)
    assert first is not None
    webhook.status = 200

    assert services.scaling_events_reap(now=first.next_attempt_at) == [event_id]
    event = services.group_apply_event(event_id=event_id, now=first.next_attempt_at)

    assert event is not None
    assert (event.status, event.attempts, event.error) == ("completed", 2, "")
    assert event.result == {"note": "webhook answered HTTP 200", "status_code": 200}


def test_the_reaper_hands_back_an_event_a_dead_worker_left_in_progress(now, webhook):
    """Within APPLY_CLAIM_SECONDS (the claim's lease, which a dead worker no longer renews), not 5 minutes."""
    group = webhook_group(webhook.url)
    event_id = services.group_evaluate(group_id=group.pk, now=now)["event_id"]
    # A worker claimed it and died before finishing: its claim lease lapses.
    ScalingEvent.objects.filter(pk=event_id).update(status=ScalingEventStatus.IN_PROGRESS, started_at=now, attempts=1)

    assert services.scaling_events_reap(now=now + timedelta(seconds=1)) == []  # the claim's grace
    later = now + timedelta(seconds=services.APPLY_CLAIM_SECONDS + 1)
    assert services.scaling_events_reap(now=later) == [event_id]

    event = ScalingEvent.objects.get(pk=event_id)
    assert event.status == "pending" and "stopped before it finished" in event.error
    applied = services.group_apply_event(event_id=event_id, now=later)
    assert applied is not None and applied.status == "completed"


def test_the_reaper_leaves_an_event_whose_worker_renews_its_claim_until_it_is_hung(now):
    group = busy_group()
    event_id = services.group_evaluate(group_id=group.pk, now=now)["event_id"]
    ScalingEvent.objects.filter(pk=event_id).update(status=ScalingEventStatus.IN_PROGRESS, started_at=now, attempts=1)
    minute = now + timedelta(minutes=1)
    lease_acquire(name=f"scaling-event-{event_id}", owner="live-worker", ttl_seconds=10, now=minute)

    assert services.scaling_events_reap(now=minute + timedelta(seconds=5)) == []  # alive: renewed a moment ago
    hung = now + services.STALE_IN_PROGRESS + timedelta(seconds=1)
    lease_acquire(name=f"scaling-event-{event_id}", owner="live-worker", ttl_seconds=10, now=hung)
    assert services.scaling_events_reap(now=hung) == [event_id]  # renewed, but in progress far too long


@pytest.mark.django_db(transaction=True)
def test_a_slow_apply_keeps_renewing_its_claim_so_the_reaper_leaves_it(webhook, monkeypatch):
    monkeypatch.setattr(services, "APPLY_CLAIM_SECONDS", 0.6)
    webhook.delay_seconds = 2.0  # over three claim lifetimes
    group = webhook_group(webhook.url)

    def evaluate_and_apply() -> None:  # the apply runs eagerly on commit, in this thread
        try:
            services.group_evaluate(group_id=group.pk)
        finally:
            connections.close_all()  # this thread's

    worker = threading.Thread(target=evaluate_and_apply)
    worker.start()
    try:
        time.sleep(1.5)
        event = ScalingEvent.objects.get(group=group)
        assert event.status == "in_progress"
        assert services.scaling_events_lost(now=timezone.now()) == []
    finally:
        worker.join(timeout=10)
    event.refresh_from_db()
    assert (event.status, event.attempts) == ("completed", 1)
    assert Lease.objects.filter(name=f"scaling-event-{event.pk}").count() == 0  # released


def test_the_reaper_fails_a_stale_event_that_used_its_attempts(now):
    group = busy_group()
    event_id = services.group_evaluate(group_id=group.pk, now=now)["event_id"]
    ScalingEvent.objects.filter(pk=event_id).update(
        status=ScalingEventStatus.IN_PROGRESS, started_at=now, attempts=services.MAX_ATTEMPTS
    )

    assert services.scaling_events_reap(now=now + timedelta(hours=1)) == []
    assert ScalingEvent.objects.get(pk=event_id).status == "failed"


def test_a_member_leaving_the_group_is_not_counted(now):
    group = busy_group(members=3, load=6)
    member = AIInstance.objects.filter(group=group).first()
    assert member is not None
    member.delete()

    assert services.group_evaluate(group_id=group.pk, dry_run=True, now=now)["current"] == 2


def test_a_missing_trigger_gap_starts_again_after_a_gap_in_evaluations(now):
    # A queue trigger on a group whose instances publish no queue: missing at every evaluation.
    group = busy_group(members=4, load=1, triggers={"queue_length": 5.0}, scale_down_stabilization_seconds=0,
                       scale_down_cooldown=0)  # fmt: skip
    first = services.group_evaluate(group_id=group.pk, now=now)
    assert first["direction"] == "none" and "missing_metrics" in first["clamps"]

    later = now + timedelta(minutes=11)  # nobody evaluated for 11 minutes (worker down)
    set_load(group, 1, at=later)
    after_gap = services.group_evaluate(group_id=group.pk, now=later)

    assert after_gap["direction"] == "none", after_gap["reason"]  # the gap is not 11 minutes of watching
    assert after_gap["missing_since"]["queue_length"].startswith(later.isoformat()[:19])
