"""Writes for alerting. The Celery tasks, the API and the admin all call these.

Detection and effects stay apart: alerts_evaluate stores alerts and queues
Notification rows in one transaction; delivery happens later, one task per
notification, so a slow or broken channel never holds up an evaluation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from alerts import channels, rules, selectors
from alerts.choices import (
    SEVERITY_RANK,
    AlertSeverity,
    AlertStatus,
    NotificationEvent,
    NotificationStatus,
)
from alerts.models import Alert, Notification, NotificationChannel
from instances.models import StatusTransition
from ishchat import crypto
from ishchat.errors import ConflictError
from ishchat.queue import enqueue_on_commit

logger = logging.getLogger(__name__)

# Delivery: attempt n that fails waits RETRY_BASE_SECONDS * 2**(n-1) (30, 60, 120, 240 s);
# the MAX_ATTEMPTS-th failure is final.
MAX_ATTEMPTS = 5
RETRY_BASE_SECONDS = 30
# A row left in `sending` this long belongs to a worker that died mid-send.
STALE_SENDING = timedelta(minutes=5)
# Transitions consumed per evaluation; the rest wait for the next one.
TRANSITION_BATCH = 1000


@dataclass
class EvaluationSummary:
    transitions: int = 0
    firing: int = 0
    opened: int = 0
    updated: int = 0
    escalated: int = 0
    resolved: int = 0
    flapped: int = 0
    notifications: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def retry_delay(attempts: int) -> timedelta:
    """Wait after the `attempts`-th failed attempt: 30 s * 2^(attempts - 1)."""
    return timedelta(seconds=RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0))


def _severity_passes(severity: str, channel: NotificationChannel) -> bool:
    return SEVERITY_RANK[AlertSeverity(severity)] >= SEVERITY_RANK[AlertSeverity(channel.min_severity)]


class _Outbox:
    """Notification rows to create with the alert changes, and sent once the transaction commits."""

    def __init__(self, channels_enabled: list[NotificationChannel], now: datetime) -> None:
        self.channels = channels_enabled
        self.now = now
        self.rows: list[Notification] = []

    def by_severity(self, alert_id: int, event: str, severity: str) -> None:
        """opened / escalated: every enabled channel whose min_severity the alert meets."""
        for channel in self.channels:
            if _severity_passes(severity, channel):
                self._add(alert_id, channel, event)

    def to_channels(self, alert_id: int, event: str, channel_ids: Iterable[int]) -> None:
        """resolved / acknowledged: the enabled channels that heard of the alert."""
        wanted = set(channel_ids)
        for channel in self.channels:
            if channel.pk in wanted:
                self._add(alert_id, channel, event)

    def _add(self, alert_id: int, channel: NotificationChannel, event: str) -> None:
        self.rows.append(Notification(alert_id=alert_id, channel=channel, event=event, next_attempt_at=self.now))

    def flush(self) -> int:
        """Create the rows and queue one delivery task each after commit."""
        if not self.rows:
            return 0
        from alerts.tasks import alert_notification_deliver

        created = Notification.objects.bulk_create(self.rows)
        for notification in created:
            enqueue_on_commit(alert_notification_deliver, notification.pk)
        return len(created)


def _notified_channels(alert_ids: Iterable[int]) -> dict[int, set[int]]:
    """{alert id: ids of channels told it opened or escalated}, in one query."""
    heard: dict[int, set[int]] = {}
    rows = (
        Notification.objects.filter(
            alert_id__in=list(alert_ids), event__in=[NotificationEvent.OPENED, NotificationEvent.ESCALATED]
        )
        .order_by()
        .values_list("alert_id", "channel_id")
        .distinct()
    )
    for alert_id, channel_id in rows:
        heard.setdefault(alert_id, set()).add(channel_id)
    return heard


def _transitions_claim(*, now: datetime) -> list[rules.TransitionView]:
    """Take the unprocessed StatusTransition rows, each exactly once.

    Inside the evaluation's transaction: the rows are locked (FOR UPDATE SKIP
    LOCKED on PostgreSQL; SQLite runs the whole transaction under its single
    writer lock) and marked processed by a conditional UPDATE; if the evaluation
    fails, the claim rolls back with it and the next evaluation sees them again.
    """
    claimed = list(
        StatusTransition.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(processed_at__isnull=True)
        .select_related("instance")
        .order_by("id")[:TRANSITION_BATCH]
    )
    if not claimed:
        return []
    ids = [transition.pk for transition in claimed]
    taken = StatusTransition.objects.filter(pk__in=ids, processed_at__isnull=True).update(processed_at=now)
    if taken != len(ids):  # only possible without row locks and a single writer: let the next run retry
        raise RuntimeError(f"Claimed {taken} of {len(ids)} status transitions; another evaluation took the rest.")
    return [
        rules.TransitionView(
            instance_id=transition.instance_id,
            instance_name=transition.instance.instance_name,
            old_status=transition.old_status,
            new_status=transition.new_status,
            reason=transition.reason,
            at=transition.created_at,
            group_id=transition.instance.group_id,
        )
        for transition in claimed
    ]


def _alert_from(condition: rules.Condition, *, opened_at: datetime, last_seen_at: datetime) -> Alert:
    alert = Alert(
        rule=condition.rule,
        severity=condition.severity,
        dedup_key=condition.dedup_key,
        instance_id=condition.instance_id,
        group_id=condition.group_id,
        title=condition.title[:300],
        message=condition.message,
        details=condition.details,
        value=condition.value,
        threshold=condition.threshold,
        opened_at=opened_at,
        last_seen_at=last_seen_at,
    )
    alert.full_clean(validate_unique=False, validate_constraints=False)
    return alert


def _alert_open(condition: rules.Condition, *, opened_at: datetime, now: datetime) -> Alert | None:
    """Create the alert; None if an unresolved one with its dedup_key appeared meanwhile."""
    alert = _alert_from(condition, opened_at=opened_at, last_seen_at=now)
    try:
        with transaction.atomic():
            alert.save()
    except IntegrityError:
        if Alert.objects.filter(dedup_key=condition.dedup_key).exclude(status=AlertStatus.RESOLVED).exists():
            return None
        raise
    return alert


def _apply(plan: rules.Plan, *, now: datetime, summary: EvaluationSummary) -> None:
    outbox = _Outbox(selectors.channels_enabled(), now)

    for opening in plan.to_open:
        alert = _alert_open(opening.condition, opened_at=opening.at, now=now)
        if alert is not None:
            summary.opened += 1
            outbox.by_severity(alert.pk, NotificationEvent.OPENED, alert.severity)

    if plan.to_update:
        updated = [
            Alert(
                pk=update.alert_id,
                severity=update.condition.severity,
                title=update.condition.title[:300],
                message=update.condition.message,
                details=update.condition.details,
                value=update.condition.value,
                threshold=update.condition.threshold,
                last_seen_at=now,
            )
            for update in plan.to_update
        ]
        fields = ["severity", "title", "message", "details", "value", "threshold", "last_seen_at"]
        Alert.objects.bulk_update(updated, fields, batch_size=500)
        summary.updated += len(updated)
        for update in plan.to_update:
            if update.escalated:
                summary.escalated += 1
                outbox.by_severity(update.alert_id, NotificationEvent.ESCALATED, update.condition.severity)

    resolved_ids = []
    for resolve in plan.to_resolve:
        # Conditional: whoever moves it to resolved sends the notifications.
        if (
            Alert.objects.filter(pk=resolve.alert_id)
            .exclude(status=AlertStatus.RESOLVED)
            .update(status=AlertStatus.RESOLVED, resolved_at=resolve.at)
        ):
            resolved_ids.append(resolve.alert_id)
    if resolved_ids:
        summary.resolved += len(resolved_ids)
        heard = _notified_channels(resolved_ids)
        for alert_id in resolved_ids:
            outbox.to_channels(alert_id, NotificationEvent.RESOLVED, heard.get(alert_id, ()))

    for flap in plan.flaps:
        alert = _alert_from(flap.condition, opened_at=flap.opened_at, last_seen_at=flap.resolved_at)
        alert.status, alert.resolved_at = AlertStatus.RESOLVED, flap.resolved_at
        alert.details = {**alert.details, "between_evaluations": True}
        alert.save()
        summary.flapped += 1
        outbox.by_severity(alert.pk, NotificationEvent.OPENED, alert.severity)
        outbox.to_channels(
            alert.pk,
            NotificationEvent.RESOLVED,
            [channel.pk for channel in outbox.channels if _severity_passes(alert.severity, channel)],
        )

    summary.notifications += outbox.flush()


def alerts_evaluate(*, now: datetime | None = None) -> dict[str, int]:
    """Run the rules once and bring the alerts in line with them.

    1. Claim the unprocessed status transitions (first, so the snapshot is newer than any of them).
    2. Snapshot instances, requests, health checks and groups (a fixed number of queries).
    3. rules.evaluate_rules and rules.plan_alerts decide; this stores the plan: open,
       update/escalate, resolve, and open-and-resolve what flapped between two runs.
    4. Queue notifications; they are sent after commit by alert_notification_deliver.
    """
    now = now or timezone.now()
    thresholds = selectors.alert_thresholds()
    summary = EvaluationSummary()
    with transaction.atomic():
        transitions = _transitions_claim(now=now)
        summary.transitions = len(transitions)
        firing = rules.evaluate_rules(
            instances=selectors.instance_snapshots(now=now),
            groups=selectors.group_snapshots(),
            thresholds=thresholds,
            now=now,
        )
        summary.firing = len(firing)
        plan = rules.plan_alerts(
            firing=firing,
            unresolved=selectors.alerts_unresolved(),
            episodes=rules.unhealthy_episodes(transitions),
            now=now,
        )
        _apply(plan, now=now, summary=summary)
    if summary.opened or summary.resolved or summary.flapped or summary.escalated:
        logger.info("alerts evaluated", extra=summary.as_dict())
    return summary.as_dict()


def alert_acknowledge(*, alert: Alert, actor: str, now: datetime | None = None) -> Alert:
    """An operator takes the alert: open -> acknowledged, and the channels that
    heard of it are told. Acknowledging twice changes nothing; a resolved alert
    cannot be acknowledged (ConflictError, HTTP 409)."""
    now = now or timezone.now()
    with transaction.atomic():
        taken = Alert.objects.filter(pk=alert.pk, status=AlertStatus.OPEN).update(
            status=AlertStatus.ACKNOWLEDGED, acknowledged_at=now, acknowledged_by=actor[:200]
        )
        alert.refresh_from_db(fields=["status", "acknowledged_at", "acknowledged_by", "resolved_at", "last_seen_at"])
        if not taken:
            if alert.status == AlertStatus.RESOLVED:
                raise ConflictError(f"Alert {alert.pk} is already resolved.", field="status")
            return alert
        outbox = _Outbox(selectors.channels_enabled(), now)
        outbox.to_channels(alert.pk, NotificationEvent.ACKNOWLEDGED, _notified_channels([alert.pk]).get(alert.pk, ()))
        outbox.flush()
    return alert


def notification_deliver(*, notification_id: int, now: datetime | None = None) -> Notification | None:
    """Send one notification if it is pending and due; None if another worker has it.

    Claimed by a conditional UPDATE (pending -> sending, attempts + 1), so two
    workers never send it twice. Failure: back to pending after retry_delay, or
    failed after MAX_ATTEMPTS. Never raises for a channel's failure.
    """
    now = now or timezone.now()
    taken = Notification.objects.filter(
        pk=notification_id, status=NotificationStatus.PENDING, next_attempt_at__lte=now
    ).update(status=NotificationStatus.SENDING, claimed_at=now, attempts=F("attempts") + 1)
    if not taken:
        return None
    notification = Notification.objects.select_related("alert__instance", "alert__group", "channel").get(
        pk=notification_id
    )
    channel = notification.channel
    error = ""
    if not channel.enabled:
        error = "The channel was disabled before delivery."
    else:
        try:
            channels.deliver(
                channel,
                channels.alert_payload(notification.alert, event=notification.event, notification_id=notification.pk),
                now=now,
            )
        except channels.DeliveryError as exc:
            error = str(exc) or type(exc).__name__
        except Exception as exc:  # a bug in a sender must not leave the row in `sending`
            logger.exception("alert notification %s crashed", notification.pk)
            error = f"{type(exc).__name__}: {exc}"

    changes: dict[str, object]
    if not error:
        changes = {"status": NotificationStatus.SENT, "sent_at": now, "last_error": ""}
    elif notification.attempts >= MAX_ATTEMPTS or not channel.enabled:
        changes = {"status": NotificationStatus.FAILED, "last_error": error[:2000]}
        logger.warning(
            "alert notification failed for good",
            extra={"notification_id": notification.pk, "channel": channel.name, "error": error[:500]},
        )
    else:
        changes = {
            "status": NotificationStatus.PENDING,
            "next_attempt_at": now + retry_delay(notification.attempts),
            "last_error": error[:2000],
        }
    # Only our claim may finish it (a stale-claim reset may have handed it on).
    Notification.objects.filter(pk=notification.pk, status=NotificationStatus.SENDING, claimed_at=now).update(**changes)
    for name, value in changes.items():
        setattr(notification, name, value)
    return notification


def notifications_due(*, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Ids of notifications to (re)send now, after handing back those a dead worker left in `sending`.

    A reclaimed row may in fact have gone out before its worker died: delivery is
    at least once, and receivers can deduplicate by notification_id.
    """
    now = now or timezone.now()
    stale = Notification.objects.filter(status=NotificationStatus.SENDING, claimed_at__lt=now - STALE_SENDING)
    lost = "The worker sending this stopped before it finished."
    stale.filter(attempts__lt=MAX_ATTEMPTS).update(
        status=NotificationStatus.PENDING, next_attempt_at=now, last_error=lost
    )
    stale.filter(attempts__gte=MAX_ATTEMPTS).update(status=NotificationStatus.FAILED, last_error=lost)
    return list(
        Notification.objects.filter(status=NotificationStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at", "id")
        .values_list("id", flat=True)[:limit]
    )


def channel_save(*, channel: NotificationChannel, secret: str | None = None) -> NotificationChannel:
    """Validate and save a channel. `secret`: None keeps the stored one, "" clears it,
    anything else becomes the new HMAC key (stored encrypted, never shown again)."""
    if secret is not None:
        secret = secret.strip()
        channel.secret_encrypted = crypto.encrypt(secret) if secret else ""
    channel.url = channel.url.strip()
    channel.full_clean()
    channel.save()
    return channel


def channel_create(*, name: str, kind: str, secret: str = "", **options: object) -> NotificationChannel:
    return channel_save(channel=NotificationChannel(name=name, kind=kind, **options), secret=secret)


def channel_send_test(*, channel: NotificationChannel, now: datetime | None = None) -> None:
    """Send a test message now, synchronously (admin action); DeliveryError if it fails."""
    now = now or timezone.now()
    channels.deliver(channel, channels.sample_payload(channel, now=now), now=now)
