"""The engine's inputs: a group's scaling policy, its metric window and its current state.

Plain dataclasses with no Django inside, each with ``to_dict``/``from_dict`` so a decision's
inputs can be stored as JSON and replayed. Field names follow ``scaling.models.ProviderGroup``
(``scale_up_cooldown`` is in seconds there too, ``triggers`` has the same keys), so a service
can build a policy with ``ScalingPolicy.from_dict({name: getattr(group, name) for name in ...})``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from scaling.engine.schedule import ScheduledWindow


class Direction(StrEnum):
    """Same values as ``scaling.choices.ScalingDirection``."""

    UP = "up"
    DOWN = "down"
    NONE = "none"


class Trigger(StrEnum):
    """Same values as ``scaling.choices.ScalingTrigger``."""

    UTILIZATION = "utilization"
    RESPONSE_TIME = "response_time"
    ERROR_RATE = "error_rate"
    QUEUE_LENGTH = "queue_length"
    REQUEST_RATE = "request_rate"
    PREDICTIVE = "predictive"
    SCHEDULE = "schedule"
    MANUAL = "manual"
    BOUNDS = "bounds"


class PredictiveMode(StrEnum):
    """Same values as ``scaling.choices.PredictiveMode``."""

    OFF = "off"
    ON = "on"
    FORECAST_ONLY = "forecast_only"


class Seasonality(StrEnum):
    """Same values as ``scaling.choices.Seasonality``: how the season combines with the level."""

    ADDITIVE = "additive"  # the day adds the same requests whatever the level
    MULTIPLICATIVE = "multiplicative"  # the day scales with the level (a growing service's peaks grow)


def to_iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def from_iso(text: str | None) -> datetime | None:
    return None if text is None else parse_moment(text)


def parse_moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    require_aware(moment, "timestamp")
    return moment


def require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got naive {moment!r}")


def _checked_keys(cls: type, data: dict[str, Any]) -> None:
    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(sorted(unknown))}")


@dataclass(frozen=True, slots=True)
class TriggerTargets:
    """Targets of the triggers besides utilisation; ``None`` switches a trigger off.

    Keys match ``ProviderGroup.triggers``. ``queue_length`` is waiting requests *per instance*;
    ``request_rate`` is requests per minute *per instance* (the demand signal, as KEDA scales on it:
    desired = ceil(request rate / target), a backlog or not).
    """

    response_time_p95_ms: float | None = None
    error_rate: float | None = None
    queue_length: float | None = None
    request_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"response_time_p95_ms": self.response_time_p95_ms, "error_rate": self.error_rate,
                "queue_length": self.queue_length, "request_rate": self.request_rate}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> TriggerTargets:
        data = dict(data or {})
        _checked_keys(cls, data)
        return cls(**{k: (None if v is None else float(v)) for k, v in data.items()})


# A season needs two of itself in the history the metric window keeps (three days of minutes).
MIN_SEASON_MINUTES = 10
MAX_SEASON_MINUTES = 2160


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    """How a group scales.

    Utilisation and the thresholds combine like this (utilisation counted over active + starting
    instances, starting ones at 0 %):

    * ``target_utilization`` sizes the fleet: desired = ceil(load / target), acted on only when
      |utilisation / target - 1| > ``tolerance`` (Kubernetes' HPA rule).
    * ``scale_up_threshold`` is a hard ceiling: at or above it the utilisation trigger proposes at
      least current + 1, even when the ratio is inside the tolerance.
    * ``scale_down_threshold`` gates shrinking: the utilisation trigger proposes fewer instances
      only when utilisation is below it (and below target x (1 - tolerance)); between the two the
      fleet is left alone. Since the largest proposal wins, no trigger scales a group down while
      utilisation is at or above ``scale_down_threshold``. For pure target tracking set it just
      under target x (1 - tolerance); the seed's 0.2 keeps a fleet until it is nearly idle.
    """

    min_instances: int = 1
    max_instances: int = 10
    target_utilization: float = 0.6
    scale_up_threshold: float = 0.8
    scale_down_threshold: float = 0.54  # target x (1 - tolerance): target tracking
    tolerance: float = 0.1
    scale_up_cooldown: int = 0  # paced by the step limit and by starting instances counted as capacity
    scale_down_cooldown: int = 600
    scale_down_stabilization_seconds: int = 300
    # One step may add max(current x percent, instances) and remove current x percent (at least 1).
    scale_up_limit_percent: float = 100.0
    scale_up_limit_instances: int = 4
    scale_down_limit_percent: float = 50.0
    triggers: TriggerTargets = field(default_factory=TriggerTargets)
    predictive_mode: PredictiveMode = PredictiveMode.OFF
    # Requests per minute one instance serves at 100 % utilisation; None = estimate from the window.
    instance_capacity_rpm: float | None = None
    # How far ahead prediction looks: the slowest start-up plus one evaluation interval.
    forecast_horizon_seconds: int = 180
    # The traffic's season, in minutes (a day; 720 for a twice-daily pattern; at most half the
    # history kept, MAX_SEASON_MINUTES), and how it combines with the level.
    forecast_season_minutes: int = 1440
    forecast_seasonality: Seasonality = Seasonality.ADDITIVE
    schedules: Sequence[ScheduledWindow] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "predictive_mode", PredictiveMode(self.predictive_mode))
        object.__setattr__(self, "forecast_seasonality", Seasonality(self.forecast_seasonality))
        object.__setattr__(self, "schedules", tuple(self.schedules))

    def errors(self) -> list[str]:
        """Why this policy cannot be used; empty when it is valid."""
        problems = []
        if self.min_instances < 0:
            problems.append("min_instances must be >= 0")
        if self.max_instances < 1:
            problems.append("max_instances must be >= 1")
        if self.max_instances < self.min_instances:
            problems.append("max_instances must be >= min_instances")
        for name in ("target_utilization", "scale_up_threshold", "scale_down_threshold"):
            value = getattr(self, name)
            if not (0.0 < value <= 1.0):
                problems.append(f"{name} must be in (0, 1]")
        if self.scale_up_threshold <= self.scale_down_threshold:
            problems.append("scale_up_threshold must be greater than scale_down_threshold")
        if not (0.0 <= self.tolerance < 1.0):
            problems.append("tolerance must be in [0, 1)")
        for name in ("scale_up_cooldown", "scale_down_cooldown", "scale_down_stabilization_seconds",
                     "forecast_horizon_seconds", "scale_up_limit_instances"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        if self.scale_up_limit_percent < 0:
            problems.append("scale_up_limit_percent must not be negative")
        if self.scale_up_limit_percent == 0 and self.scale_up_limit_instances == 0:
            problems.append("the scale-up step limit allows no scale-up at all")
        if not (0.0 < self.scale_down_limit_percent <= 100.0):
            problems.append("scale_down_limit_percent must be in (0, 100]")
        for name, value in self.triggers.to_dict().items():
            if value is not None and not (math.isfinite(value) and value > 0):
                problems.append(f"triggers.{name} must be a positive number")
        if self.triggers.error_rate is not None and self.triggers.error_rate > 1:
            problems.append("triggers.error_rate is a fraction and must be <= 1")
        if self.instance_capacity_rpm is not None and not self.instance_capacity_rpm > 0:
            problems.append("instance_capacity_rpm must be positive")
        if not (MIN_SEASON_MINUTES <= self.forecast_season_minutes <= MAX_SEASON_MINUTES):
            problems.append(f"forecast_season_minutes must be in [{MIN_SEASON_MINUTES}, {MAX_SEASON_MINUTES}]")
        for window in self.schedules:
            problems.extend(f"schedule {window.name!r}: {problem}" for problem in window.errors())
        return problems

    def warnings(self) -> list[str]:
        """Valid but probably unintended settings."""
        notes = []
        if not (self.scale_down_threshold <= self.target_utilization <= self.scale_up_threshold):
            notes.append("target_utilization lies outside [scale_down_threshold, scale_up_threshold]")
        if self.predictive_mode != PredictiveMode.OFF and self.instance_capacity_rpm is None:
            notes.append("instance_capacity_rpm is unset: prediction estimates it from observed utilisation")
        return notes

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["predictive_mode"] = str(self.predictive_mode)
        data["forecast_seasonality"] = str(self.forecast_seasonality)
        data["triggers"] = self.triggers.to_dict()
        data["schedules"] = [window.to_dict() for window in self.schedules]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScalingPolicy:
        data = dict(data)
        _checked_keys(cls, data)
        if "triggers" in data:
            data["triggers"] = TriggerTargets.from_dict(data["triggers"])
        if "schedules" in data:
            data["schedules"] = tuple(ScheduledWindow.from_dict(item) for item in data["schedules"] or ())
        return cls(**data)


@dataclass(frozen=True, slots=True)
class MetricWindow:
    """What the group looked like over the last ``window_seconds``; ``None`` means not measured.

    * ``utilization``: mean busy fraction (0..1) of the *active* instances that reported;
      ``reporting_instances`` of them (``None`` = all active ones).
    * ``p95_ms``, ``error_rate`` (0..1): over requests served by the group in the window.
    * ``queue_length``: requests waiting for the whole group (gateway queue + reported by servers).
    * ``request_rate``: requests per minute in the window.
    * ``request_rate_history``: requests per minute, one value per complete minute, oldest first,
      the last one being the minute that ended most recently; ``None`` for a minute with no data.

    Stored (``to_dict``), a history longer than HISTORY_INLINE_MINUTES is kept by reference: its
    length, SHA-256 digest and last HISTORY_INLINE_MINUTES values (``history_ref``), so a stored
    decision stays a few KB instead of 30 KB for three days of minutes. Replaying such a decision
    takes the history again (``replay(record, history=...)``, e.g. from
    scaling.metrics.request_rate_history), checked against the digest.
    """

    utilization: float | None = None
    p95_ms: float | None = None
    error_rate: float | None = None
    queue_length: float | None = None
    request_rate: float | None = None
    request_rate_history: Sequence[float | None] = ()
    reporting_instances: int | None = None
    window_seconds: int = 60
    # Set when read back from a stored decision whose history was kept by reference.
    history_ref: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "request_rate_history", tuple(self.request_rate_history))

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "history_ref"}
        history = list(self.request_rate_history)
        if self.history_ref is not None:
            data["request_rate_history"] = dict(self.history_ref)
        elif len(history) > HISTORY_INLINE_MINUTES:
            data["request_rate_history"] = {"minutes": len(history), "sha256": history_digest(history),
                                            "tail": history[-HISTORY_INLINE_MINUTES:]}
        else:
            data["request_rate_history"] = history
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricWindow:
        data = dict(data)
        _checked_keys(cls, data)
        history = data.get("request_rate_history")
        if isinstance(history, dict):
            data["history_ref"], data["request_rate_history"] = history, ()
        return cls(**data)

    def with_history(self, history: Sequence[float | None]) -> MetricWindow:
        """This window with the history its reference names (ValueError if the digest differs)."""
        if self.history_ref is None:
            return self
        if history_digest(history) != self.history_ref.get("sha256"):
            raise ValueError("the history given is not the one this decision saw (its SHA-256 differs)")
        return replace(self, request_rate_history=tuple(history), history_ref=None)


HISTORY_INLINE_MINUTES = 60


def history_digest(history: Sequence[float | None]) -> str:
    """SHA-256 of a request-rate history as stored (JSON, values as given)."""
    return hashlib.sha256(json.dumps(list(history), separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class GroupState:
    """The group as the engine needs to know it at evaluation time.

    ``starting`` are instances asked for that are not active yet (pool: activating standbys;
    webhook/kubernetes: desired - active while the last scale-up is still in progress). They count
    as capacity so the engine does not ask twice for the same load. ``recent_recommendations``
    are the (time, recommendation) pairs of the scale-down stabilization window: pass on
    ``Decision.recommendations`` from the previous evaluation.
    """

    active: int
    starting: int = 0
    desired: int | None = None
    last_scale_up_at: datetime | None = None
    last_scale_down_at: datetime | None = None
    paused_until: datetime | None = None
    recent_recommendations: Sequence[tuple[datetime, int]] = ()
    # trigger name -> since when its metric has been missing, without a break (Decision.missing_since)
    missing_since: Mapping[str, datetime] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.active < 0 or self.starting < 0:
            raise ValueError("active and starting must not be negative")
        object.__setattr__(self, "recent_recommendations", tuple(
            (moment, int(count)) for moment, count in self.recent_recommendations
        ))
        object.__setattr__(self, "missing_since", dict(self.missing_since))

    @property
    def current(self) -> int:
        return self.active + self.starting

    def to_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "starting": self.starting,
            "desired": self.desired,
            "last_scale_up_at": to_iso(self.last_scale_up_at),
            "last_scale_down_at": to_iso(self.last_scale_down_at),
            "paused_until": to_iso(self.paused_until),
            "recent_recommendations": [[to_iso(moment), count] for moment, count in self.recent_recommendations],
            "missing_since": {name: to_iso(moment) for name, moment in self.missing_since.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupState:
        data = dict(data)
        _checked_keys(cls, data)
        for name in ("last_scale_up_at", "last_scale_down_at", "paused_until"):
            if name in data:
                data[name] = from_iso(data[name])
        if "recent_recommendations" in data:
            data["recent_recommendations"] = tuple(
                (parse_moment(moment), int(count)) for moment, count in data["recent_recommendations"]
            )
        if "missing_since" in data:
            data["missing_since"] = {name: parse_moment(moment) for name, moment in data["missing_since"].items()}
        return cls(**data)
