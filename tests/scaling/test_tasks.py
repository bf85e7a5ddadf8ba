"""Running auto-scaling: the Celery tasks (eager here: they are about the logic), the beat
entries, and `manage.py evaluate_scaling`. A whole round goes over loopback: an evaluation
records an action, the apply task activates a standby instance behind a real health check."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections
from django.utils import timezone

from instances.choices import InstanceStatus
from instances.models import AIInstance
from instances.services import instance_set_status
from ishchat.locks import lease
from ishchat.periodic import DEFAULT_TASKS
from scaling import services, tasks
from scaling.choices import ScalingEventStatus
from scaling.models import ProviderGroup, ScalingEvent
from tests.scaling.support import TRACKING, make_group, make_member, make_sim_member

pytestmark = pytest.mark.django_db
# Spread as policy keyword arguments (**Any); support.TRACKING alone is inferred as dict[str, float].


def busy(name: str | None = None, **fields) -> ProviderGroup:
    group = make_group(name, **{**TRACKING, **fields})
    for _ in range(2):
        make_member(group, current_load=9)
    return group


def test_the_task_names_are_stable_and_beat_runs_them_every_30_s():
    assert (tasks.scaling_evaluate_all.name, tasks.scaling_apply_event.name, tasks.scaling_reap_and_drain.name) == (
        "scaling.evaluate_all", "scaling.apply_event", "scaling.reap_and_drain")
    periodic = {entry.task: entry.every_seconds for entry in DEFAULT_TASKS}
    assert periodic["scaling.evaluate_all"] == 30 and periodic["scaling.reap_and_drain"] == 10


def test_a_round_evaluates_then_activates_a_standby_behind_a_health_check(
    sim_server, django_capture_on_commit_callbacks
):
    group = make_group(**TRACKING)
    for name in ("serving-1", "serving-2"):
        make_sim_member(sim_server, group, name, status=InstanceStatus.HEALTHY, current_load=9)
    make_sim_member(sim_server, group, "standby-1", status=InstanceStatus.STANDBY)

    with django_capture_on_commit_callbacks(execute=True):
        summary = tasks.scaling_evaluate_all.delay().get()

    assert summary == {"groups": 1, "acted": 1}
    event = ScalingEvent.objects.get()
    assert (event.status, event.old_count, event.new_count, event.attempts) == ("completed", 2, 3, 1)
    assert event.result["activated"] == ["standby-1"]
    assert AIInstance.objects.get(instance_name="standby-1").status == InstanceStatus.HEALTHY
    assert sim_server.stats("standby-1")["by_endpoint"] == {"models": 1}
    group.refresh_from_db()
    assert group.desired_instances == 3 and group.last_decision["outcome"] == "acted"


def test_only_enabled_groups_are_evaluated_and_a_locked_one_is_skipped(django_capture_on_commit_callbacks):
    enabled, locked = busy("enabled"), busy("locked")
    disabled = busy("disabled", auto_scaling_enabled=False)

    with lease(f"scaling-group-{locked.pk}", ttl_seconds=60), django_capture_on_commit_callbacks(execute=False):
        summary = tasks.scaling_evaluate_all.delay().get()

    assert summary == {"groups": 2, "acted": 1, "locked": 1}
    assert set(ScalingEvent.objects.values_list("group__group_name", flat=True)) == {"enabled"}
    disabled.refresh_from_db()
    assert disabled.last_evaluated_at is None and enabled.pk != locked.pk


def test_the_global_switch_stops_automatic_scaling():
    from configuration.services import config_update

    busy()
    config_update(changes={"auto_scaling": {"enabled": False}}, updated_by="test")

    assert tasks.scaling_evaluate_all.delay().get() == {"skipped": "auto_scaling.enabled is off"}
    assert not ScalingEvent.objects.exists()


def test_the_apply_task_ignores_unknown_and_claimed_events():
    assert tasks.scaling_apply_event.delay(123456).get() is None


def test_reap_and_drain_requeues_stale_events_and_parks_drained_instances(webhook, django_capture_on_commit_callbacks):
    group = busy()
    services.group_configure_autoscaling(group=group, backend="webhook", backend_settings={"url": webhook.url})
    with django_capture_on_commit_callbacks(execute=False):
        event_id = services.group_evaluate(group_id=group.pk)["event_id"]
    stale = timezone.now() - services.STALE_IN_PROGRESS - timedelta(seconds=5)
    ScalingEvent.objects.filter(pk=event_id).update(status=ScalingEventStatus.IN_PROGRESS, started_at=stale,
                                                    attempts=1)
    pool = make_group()
    drained = make_member(pool, "drained", current_load=0)
    instance_set_status(instance=drained, status=InstanceStatus.DRAINING, reason="scale down", source="scaling")

    result = tasks.scaling_reap_and_drain.delay().get()

    assert result == {"queued": 1, "parked": ["drained"]}
    event = ScalingEvent.objects.get(pk=event_id)
    assert (event.status, event.attempts) == ("completed", 2)
    assert len(webhook.received) == 1
    drained.refresh_from_db()
    assert drained.status == InstanceStatus.STANDBY


def test_reap_and_drain_does_not_overlap():
    with lease("scaling-reap-and-drain", ttl_seconds=60):
        assert tasks.scaling_reap_and_drain.delay().get() is None


# --- manage.py evaluate_scaling -------------------------------------------------------------------

def test_the_command_prints_each_decision_and_its_reason(capsys, django_capture_on_commit_callbacks):
    group = busy("busy-group")
    quiet = make_group("quiet-group")
    make_member(quiet, current_load=5)

    with django_capture_on_commit_callbacks(execute=False):
        call_command("evaluate_scaling")

    out = capsys.readouterr().out
    assert f"busy-group: acted [event {ScalingEvent.objects.get().pk}]: scale up 2 -> 3" in out
    assert "quiet-group: no_change: no change at 1" in out
    group.refresh_from_db()
    assert group.last_decision["outcome"] == "acted"


def test_the_command_dry_run_writes_nothing(capsys):
    group = busy("busy-group", auto_scaling_enabled=False)

    call_command("evaluate_scaling", "--group", str(group.pk), "--dry-run")

    assert "busy-group: dry_run: scale up 2 -> 3" in capsys.readouterr().out
    group.refresh_from_db()
    assert group.last_decision == {} and not ScalingEvent.objects.exists()


def test_the_command_refuses_an_unknown_group():
    with pytest.raises(CommandError, match="No provider group with id 999999"):
        call_command("evaluate_scaling", "--group", "999999")


# --- two workers at once (PostgreSQL: real row locks, real leases) --------------------------------

needs_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="needs row locks; SQLite serialises writers"
)


def run_at_once(work, workers: int = 4) -> tuple[list, list[BaseException]]:
    start = threading.Barrier(workers)
    results: list = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            start.wait()
            results.append(work())
        except BaseException as exc:  # reported by the caller
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_workers_evaluating_one_group_at_once_record_one_action():
    group = busy(scale_up_cooldown=0)
    now = timezone.now()

    results, errors = run_at_once(lambda: services.groups_evaluate(group_ids=[group.pk], now=now)[0]["outcome"])

    assert errors == []
    assert results.count("acted") == 1 and set(results) <= {"acted", "locked", "waiting"}
    # The one action was recorded (and, Celery being eager here, applied: the pool had no standby).
    assert ScalingEvent.objects.exclude(status="skipped").count() == 1


@needs_postgres
@pytest.mark.django_db(transaction=True)
def test_workers_applying_one_event_at_once_apply_it_once(webhook):
    group = busy()
    services.group_configure_autoscaling(group=group, backend="webhook", backend_settings={"url": webhook.url})
    # Recorded directly: an evaluation here would commit and run the (eager) apply task at once.
    event_id = ScalingEvent.objects.create(group=group, direction="up", trigger="utilization", reason="test",
                                           old_count=2, new_count=3, backend="webhook").pk

    results, errors = run_at_once(lambda: services.group_apply_event(event_id=event_id))

    assert errors == []
    assert len([event for event in results if event is not None]) == 1
    assert len(webhook.received) == 1
    assert ScalingEvent.objects.get(pk=event_id).status == "completed"
