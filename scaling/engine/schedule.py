"""Scheduled windows that raise a group's min/max, e.g. business hours.

A window starts whenever its cron expression matches (five fields, UTC:
``minute hour day-of-month month day-of-week``) and lasts ``duration_minutes`` or until the
next ``end`` time of day (``"HH:MM"``). Field syntax: ``*``, numbers, ranges ``a-b``, steps
``*/n`` and ``a-b/n``, lists ``a,b``; months and days may be names (``jan``, ``mon-fri``);
day-of-week 0 and 7 are Sunday. As in Vixie cron, when both day-of-month and day-of-week are
restricted a day matches if either does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

_MONTHS = {name: number for number, name in enumerate(
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], start=1)}
_WEEKDAYS = {name: number for number, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}

# (name, lowest, highest, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _WEEKDAYS),
)


class CronError(ValueError):
    pass


def _value(text: str, names: dict[str, int], field_name: str) -> int:
    text = text.strip().lower()
    if text in names:
        return names[text]
    if not text.isdigit():
        raise CronError(f"{field_name}: {text!r} is not a number")
    return int(text)


def _parse_field(text: str, field_name: str, lowest: int, highest: int, names: dict[str, int]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{field_name}: empty list item in {text!r}")
        span, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{field_name}: bad step {step_text!r}")
            step = int(step_text)
        if span == "*":
            start, end = lowest, highest
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = _value(first, names, field_name), _value(last, names, field_name)
        else:
            start = _value(span, names, field_name)
            end = highest if step_text else start
        if not (lowest <= start <= highest and lowest <= end <= highest):
            raise CronError(f"{field_name}: {part!r} outside {lowest}-{highest}")
        if end < start:
            raise CronError(f"{field_name}: range {part!r} runs backwards")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class CronExpression:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday .. 6 = Saturday
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        parts = text.split()
        if len(parts) != 5:
            raise CronError(f"a cron expression has 5 fields (minute hour day month weekday), got {text!r}")
        sets = [_parse_field(part, name, low, high, names)
                for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)]
        weekdays = frozenset(day % 7 for day in sets[4])
        return cls(text=text, minutes=sets[0], hours=sets[1], days=sets[2], months=sets[3], weekdays=weekdays,
                   days_restricted=parts[2] != "*", weekdays_restricted=parts[4] != "*")

    def matches_day(self, moment: datetime) -> bool:
        if moment.month not in self.months:
            return False
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def matches(self, moment: datetime) -> bool:
        """Does the expression fire in the minute of ``moment`` (taken in UTC)?"""
        moment = moment.astimezone(UTC)
        return moment.minute in self.minutes and moment.hour in self.hours and self.matches_day(moment)

    def previous_fire(self, moment: datetime, *, within: timedelta) -> datetime | None:
        """The latest minute at or before ``moment`` at which the expression fires, looking back at most ``within``.

        Walks back day by day and, on matching days only, through the matching hours and minutes,
        so a week-long look-back costs a handful of steps rather than 10,080 minute checks.
        """
        moment = moment.astimezone(UTC).replace(second=0, microsecond=0)
        earliest = moment - within
        day = moment.replace(hour=0, minute=0)
        hours = sorted(self.hours, reverse=True)
        minutes = sorted(self.minutes, reverse=True)
        while day + timedelta(days=1) > earliest:
            if self.matches_day(day):
                for hour in hours:
                    for minute in minutes:
                        fire = day.replace(hour=hour, minute=minute)
                        if fire <= moment:
                            return fire if fire >= earliest else None
            day -= timedelta(days=1)
        return None


def _parse_end(text: str) -> tuple[int, int]:
    hour_text, sep, minute_text = text.partition(":")
    if not sep or not hour_text.isdigit() or not minute_text.isdigit():
        raise CronError(f"end must be 'HH:MM', got {text!r}")
    hour, minute = int(hour_text), int(minute_text)
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        raise CronError(f"end must be 'HH:MM', got {text!r}")
    return hour, minute


@dataclass(frozen=True, slots=True)
class ScheduledWindow:
    """While active, min/max become at least ``min_instances``/``max_instances`` (never lower)."""

    name: str
    cron: str
    duration_minutes: int | None = None
    end: str | None = None
    min_instances: int | None = None
    max_instances: int | None = None

    def errors(self) -> list[str]:
        problems = []
        try:
            CronExpression.parse(self.cron)
        except CronError as exc:
            problems.append(str(exc))
        if (self.duration_minutes is None) == (self.end is None):
            problems.append("give exactly one of duration_minutes and end")
        if self.duration_minutes is not None and self.duration_minutes <= 0:
            problems.append("duration_minutes must be positive")
        if self.end is not None:
            try:
                _parse_end(self.end)
            except CronError as exc:
                problems.append(str(exc))
        if self.min_instances is None and self.max_instances is None:
            problems.append("a window raises min_instances, max_instances or both")
        for name in ("min_instances", "max_instances"):
            value = getattr(self, name)
            if value is not None and value < 0:
                problems.append(f"{name} must not be negative")
        if (self.min_instances is not None and self.max_instances is not None
                and self.max_instances < self.min_instances):
            problems.append("max_instances must be >= min_instances")
        return problems

    def active_at(self, moment: datetime) -> bool:
        cron = _parsed(self.cron)
        if self.duration_minutes is not None:
            length = timedelta(minutes=self.duration_minutes)
            start = cron.previous_fire(moment, within=length)
            return start is not None and moment < start + length
        hour, minute = _parse_end(self.end or "")
        start = cron.previous_fire(moment, within=timedelta(days=1))
        if start is None:
            return False
        finish = start.replace(hour=hour, minute=minute)
        if finish <= start:
            finish += timedelta(days=1)
        return moment < finish

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "cron": self.cron, "duration_minutes": self.duration_minutes, "end": self.end,
                "min_instances": self.min_instances, "max_instances": self.max_instances}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScheduledWindow:
        allowed = {"name", "cron", "duration_minutes", "end", "min_instances", "max_instances"}
        unknown = set(data) - allowed
        if unknown:
            raise ValueError(f"unknown schedule keys: {', '.join(sorted(unknown))}")
        return cls(**data)


_CACHE: dict[str, CronExpression] = {}


def _parsed(text: str) -> CronExpression:
    """Parse once per distinct expression: evaluating 1,000 groups re-reads the same few schedules."""
    expression = _CACHE.get(text)
    if expression is None:
        expression = CronExpression.parse(text)
        if len(_CACHE) < 4096:
            _CACHE[text] = expression
    return expression


def effective_bounds(min_instances: int, max_instances: int, windows: Sequence[ScheduledWindow],
                     moment: datetime) -> tuple[int, int, list[str]]:
    """(min, max, names of the active windows): each active window can only raise the bounds."""
    low, high, active = min_instances, max_instances, []
    for window in windows:
        if window.active_at(moment):
            active.append(window.name)
            if window.min_instances is not None:
                low = max(low, window.min_instances)
            if window.max_instances is not None:
                high = max(high, window.max_instances)
    return low, max(high, low), active
