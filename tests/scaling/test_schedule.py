"""Cron matching and the scheduled windows that raise min/max."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from scaling.engine.schedule import CronError, CronExpression, ScheduledWindow, effective_bounds


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """March 2026: the 2nd is a Monday, the 1st a Sunday."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(("expression", "moment", "expected"), [
    ("* * * * *", at(4, 13, 37), True),
    ("0 9 * * mon-fri", at(2, 9, 0), True),
    ("0 9 * * mon-fri", at(2, 9, 1), False),
    ("0 9 * * mon-fri", at(7, 9, 0), False),  # Saturday
    ("0 9 * * 1-5", at(6, 9, 0), True),  # Friday
    ("*/15 * * * *", at(2, 3, 45), True),
    ("*/15 * * * *", at(2, 3, 50), False),
    ("5-20/5 * * * *", at(2, 3, 15), True),
    ("5-20/5 * * * *", at(2, 3, 25), False),
    ("30 8,12,18 * * *", at(2, 12, 30), True),
    ("0 0 * * 0", at(1, 0, 0), True),  # Sunday as 0
    ("0 0 * * 7", at(1, 0, 0), True),  # and as 7
    ("0 0 * * sun", at(2, 0, 0), False),
    ("0 0 * jan *", at(2, 0, 0), False),
    ("0 0 * MAR *", at(2, 0, 0), True),
    # Both day fields restricted: either matches (Vixie cron).
    ("0 0 15 * mon", at(2, 0, 0), True),  # a Monday, not the 15th
    ("0 0 15 * mon", at(15, 0, 0), True),  # the 15th, a Sunday
    ("0 0 15 * mon", at(3, 0, 0), False),
    # Only one restricted: it must match.
    ("0 0 15 * *", at(2, 0, 0), False),
])
def test_cron_matching(expression: str, moment: datetime, expected: bool) -> None:
    assert CronExpression.parse(expression).matches(moment) is expected


def test_cron_is_read_in_utc() -> None:
    paris = timezone(timedelta(hours=1))

    assert CronExpression.parse("0 9 * * *").matches(datetime(2026, 3, 2, 10, 0, tzinfo=paris))


@pytest.mark.parametrize(("expression", "message"), [
    ("0 9 * *", "5 fields"),
    ("60 * * * *", "outside 0-59"),
    ("* 24 * * *", "outside 0-23"),
    ("* * 0 * *", "outside 1-31"),
    ("5-2 * * * *", "backwards"),
    ("*/0 * * * *", "bad step"),
    ("a * * * *", "not a number"),
    ("1,,2 * * * *", "empty list item"),
    ("* * * * funday", "not a number"),
])
def test_bad_cron_expressions_are_refused(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        CronExpression.parse(expression)


def test_previous_fire_finds_the_last_start_across_days() -> None:
    cron = CronExpression.parse("0 9 * * mon-fri")

    assert cron.previous_fire(at(7, 12, 0), within=timedelta(days=3)) == at(6, 9, 0)
    assert cron.previous_fire(at(2, 9, 0), within=timedelta(minutes=1)) == at(2, 9, 0)
    assert cron.previous_fire(at(2, 8, 59), within=timedelta(days=1)) is None  # Friday is too far back
    assert cron.previous_fire(at(2, 8, 59), within=timedelta(days=4)) == datetime(2026, 2, 27, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("window", "moment", "active"), [
    (ScheduledWindow("hours", "0 9 * * 1-5", duration_minutes=480, min_instances=4), at(2, 9, 0), True),
    (ScheduledWindow("hours", "0 9 * * 1-5", duration_minutes=480, min_instances=4), at(2, 16, 59), True),
    (ScheduledWindow("hours", "0 9 * * 1-5", duration_minutes=480, min_instances=4), at(2, 17, 0), False),
    (ScheduledWindow("hours", "0 9 * * 1-5", duration_minutes=480, min_instances=4), at(2, 8, 59), False),
    (ScheduledWindow("hours", "0 9 * * 1-5", end="17:00", min_instances=4), at(6, 16, 30), True),
    (ScheduledWindow("hours", "0 9 * * 1-5", end="17:00", min_instances=4), at(7, 10, 0), False),
    (ScheduledWindow("night", "0 22 * * *", end="06:00", max_instances=40), at(3, 2, 0), True),
    (ScheduledWindow("night", "0 22 * * *", end="06:00", max_instances=40), at(3, 6, 0), False),
    (ScheduledWindow("weekend", "0 0 * * sat", duration_minutes=2 * 1440, min_instances=1), at(8, 23, 59), True),
])
def test_window_activity(window: ScheduledWindow, moment: datetime, active: bool) -> None:
    assert window.errors() == []
    assert window.active_at(moment) is active


def test_active_windows_only_raise_the_bounds() -> None:
    windows = (
        ScheduledWindow("hours", "0 9 * * 1-5", end="17:00", min_instances=6, max_instances=8),
        ScheduledWindow("low", "* * * * *", duration_minutes=1, min_instances=0, max_instances=2),
        ScheduledWindow("night", "0 22 * * *", end="06:00", max_instances=40),
    )

    assert effective_bounds(2, 10, windows, at(2, 10, 0)) == (6, 10, ["hours", "low"])
    assert effective_bounds(2, 10, windows, at(2, 23, 0)) == (2, 40, ["low", "night"])


def test_a_raised_min_above_max_lifts_max_too() -> None:
    windows = (ScheduledWindow("launch", "* * * * *", duration_minutes=1, min_instances=12),)

    assert effective_bounds(2, 10, windows, at(2, 10, 0)) == (12, 12, ["launch"])


@pytest.mark.parametrize(("window", "problem"), [
    (ScheduledWindow("x", "0 9 * * *", min_instances=2), "exactly one of duration_minutes and end"),
    (ScheduledWindow("x", "0 9 * * *", duration_minutes=60, end="17:00", min_instances=2), "exactly one"),
    (ScheduledWindow("x", "0 9 * * *", end="25:00", min_instances=2), "HH:MM"),
    (ScheduledWindow("x", "0 9 * * *", duration_minutes=0, min_instances=2), "must be positive"),
    (ScheduledWindow("x", "0 9 * * *", duration_minutes=60), "raises min_instances, max_instances or both"),
    (ScheduledWindow("x", "0 9 * * *", duration_minutes=60, min_instances=5, max_instances=3), "max_instances must"),
])
def test_invalid_windows_are_explained(window: ScheduledWindow, problem: str) -> None:
    assert any(problem in message for message in window.errors())


def test_a_window_round_trips_and_refuses_unknown_keys() -> None:
    window = ScheduledWindow("hours", "0 9 * * 1-5", end="17:00", min_instances=4)

    assert ScheduledWindow.from_dict(window.to_dict()) == window
    with pytest.raises(ValueError, match="unknown schedule keys: start"):
        ScheduledWindow.from_dict({**window.to_dict(), "start": "09:00"})
