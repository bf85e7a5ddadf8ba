"""The scaling decision: a pure function of (policy, metric window, state, now).

``decide`` is the only entry point; the Celery task, the evaluate endpoint, the management
command and the simulator in ``bench/`` all call it, and a stored decision replays through it
(``replay``). Steps:

1. current = active + starting (starting instances count as capacity, at 0 % utilisation);
   min/max are the policy's, raised by any active scheduled window.
2. Each configured trigger proposes a size, HPA-style. With r = metric / target spread over
   current instances: proposal = ceil(current x r) if |r - 1| > tolerance, else current.
   utilisation: r = (utilisation x reporting) / (target x current); instances that did not report
   count as idle when scaling up and as on target when scaling down; at or above
   scale_up_threshold the proposal is at least current + 1; a proposal below current needs
   utilisation < scale_down_threshold.
   p95 latency, error rate: r = (metric / target) x active / current.
   queue length: proposal = ceil(waiting / target per instance).
3. The largest proposal wins. A configured trigger without data blocks a scale-down (it may
   still be needed), never a scale-up. Missing utilisation (a metrics outage) blocks for as long
   as it lasts; another trigger for MISSING_BLOCK_SECONDS (10 minutes) of missing data in a row,
   after which it no longer blocks (a metric the provider never publishes, a broken exporter) and
   the decision says so. ``missing_since`` carries the start of each gap from one
   evaluation to the next.
4. Prediction (mode "on") adds a proposal ceil(forecast peak rate / (capacity per instance x
   target)) over the look-ahead horizon; it can only add capacity, and only while its forecasts
   have been right: when the one-minute-ahead error over the last hour (the forecast's
   trailing_error, a MAPE) exceeds PREDICTION_ERROR_BOUND (15 %) it abstains and says so, as
   "forecast_only" does: report what it would change, change nothing.
5. Scale-down stabilization: the highest recommendation of the last
   scale_down_stabilization_seconds (this one included), never above current.
6. Step limits: up to current + max(current x up %, up instances); down to current - max(1, current x down %).
7. Clamp to [min, max].
8. Cooldowns: no scale-up within scale_up_cooldown of the last scale-up; no scale-down within
   scale_down_cooldown of the last scaling action of either direction. A blocked action is
   reported (skipped_by_cooldown) with what it would have done. Being below min (or above max)
   always moves to the bound, cooldown or not.
9. paused_until in the future (manual scaling): nothing is done automatically.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from scaling.engine.forecast import Forecast, ForecastSettings, forecast_request_rate, horizon_steps
from scaling.engine.policy import (
    Direction,
    GroupState,
    MetricWindow,
    PredictiveMode,
    ScalingPolicy,
    Seasonality,
    Trigger,
    parse_moment,
    require_aware,
    to_iso,
)
from scaling.engine.schedule import effective_bounds

DECISION_VERSION = 1

# Prediction acts only while its trailing-hour one-minute-ahead error (MAPE) is at most this.
PREDICTION_ERROR_BOUND = 0.15

# How long a configured trigger's missing metric blocks a scale-down.
MISSING_BLOCK_SECONDS = 600

# Guards ceil() against float noise: 10 x 0.66 / 0.6 is 11.000000000000002, not 12.
_EPSILON = 1e-9

# Order of preference when two triggers propose the same size.
_TRIGGER_ORDER = (Trigger.UTILIZATION, Trigger.RESPONSE_TIME, Trigger.ERROR_RATE, Trigger.QUEUE_LENGTH,
                  Trigger.REQUEST_RATE, Trigger.PREDICTIVE)


def _ceil(value: float) -> int:
    return max(0, math.ceil(value - _EPSILON))


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value >= 0


@dataclass(frozen=True, slots=True)
class TriggerProposal:
    """One trigger's view: ``proposal`` is None when its metric is missing."""

    trigger: Trigger
    metric: float | None
    target: float
    ratio: float | None
    proposal: int | None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"trigger": str(self.trigger), "metric": self.metric, "target": self.target, "ratio": self.ratio,
                "proposal": self.proposal, "note": self.note}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TriggerProposal:
        return cls(trigger=Trigger(data["trigger"]), metric=data["metric"], target=data["target"],
                   ratio=data["ratio"], proposal=data["proposal"], note=data.get("note", ""))


@dataclass(frozen=True, slots=True)
class ForecastInfo:
    """What prediction saw and proposed (only when predictive mode is on or forecast_only)."""

    mode: PredictiveMode
    method: str
    horizon_seconds: int
    history_minutes: int
    predicted_peak_rate: float | None
    capacity_rpm_per_instance: float | None
    capacity_source: str  # "policy", "observed" or "none"
    proposal: int | None
    applied: bool  # mode on and the prediction raised the recommendation above the reactive one
    would_desired: int | None  # the desired count with the prediction counted
    values: tuple[float, ...] = ()
    trailing_error: float | None = None  # the forecast's one-minute-ahead MAPE over the last hour
    abstained: bool = False  # mode on, the forecast asked for more, but its trailing error was too high

    def to_dict(self) -> dict[str, Any]:
        return {"mode": str(self.mode), "method": self.method, "horizon_seconds": self.horizon_seconds,
                "history_minutes": self.history_minutes, "predicted_peak_rate": self.predicted_peak_rate,
                "capacity_rpm_per_instance": self.capacity_rpm_per_instance,
                "capacity_source": self.capacity_source, "proposal": self.proposal, "applied": self.applied,
                "would_desired": self.would_desired, "values": list(self.values),
                "trailing_error": self.trailing_error, "abstained": self.abstained}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ForecastInfo:
        data = dict(data)
        data["mode"] = PredictiveMode(data["mode"])
        data["values"] = tuple(data.get("values", ()))
        return cls(**data)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine recommends and whether to act on it now.

    ``direction``/``desired`` always say what the engine would do; ``would_act`` says whether to
    do it now. When it is False because of a cooldown, ``skipped_by_cooldown`` is set so the
    caller records a skipped ScalingEvent; when paused, ``paused`` is set.
    """

    evaluated_at: datetime
    direction: Direction
    current: int
    active: int
    starting: int
    desired: int
    trigger: Trigger | None
    reason: str
    would_act: bool
    skipped_by_cooldown: bool
    paused: bool
    min_instances: int
    max_instances: int
    recommendation: int
    threshold: float | None
    clamps: tuple[str, ...]
    proposals: tuple[TriggerProposal, ...]
    metric_values: dict[str, float]
    schedules_active: tuple[str, ...] = ()
    recommendations: tuple[tuple[datetime, int], ...] = ()
    forecast: ForecastInfo | None = None
    missing_since: dict[str, datetime] = field(default_factory=dict)
    # The inputs, for replay. Not part of equality: a replayed decision equals the stored one.
    policy: ScalingPolicy | None = field(default=None, compare=False, repr=False)
    window: MetricWindow | None = field(default=None, compare=False, repr=False)
    state: GroupState | None = field(default=None, compare=False, repr=False)

    @property
    def new_count(self) -> int:
        """The count to set now: desired if acting, else current."""
        return self.desired if self.would_act else self.current

    def event_fields(self) -> dict[str, Any]:
        """The ScalingEvent columns this decision fills (status and backend are the caller's)."""
        return {"direction": str(self.direction), "trigger": str(self.trigger or Trigger.UTILIZATION),
                "reason": self.reason, "metric_values": dict(self.metric_values), "threshold": self.threshold,
                "old_count": self.current, "new_count": self.desired}

    def to_dict(self, *, inputs: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": DECISION_VERSION,
            "evaluated_at": to_iso(self.evaluated_at),
            "direction": str(self.direction),
            "current": self.current,
            "active": self.active,
            "starting": self.starting,
            "desired": self.desired,
            "trigger": None if self.trigger is None else str(self.trigger),
            "reason": self.reason,
            "would_act": self.would_act,
            "skipped_by_cooldown": self.skipped_by_cooldown,
            "paused": self.paused,
            "min_instances": self.min_instances,
            "max_instances": self.max_instances,
            "recommendation": self.recommendation,
            "threshold": self.threshold,
            "clamps": list(self.clamps),
            "proposals": [proposal.to_dict() for proposal in self.proposals],
            "metric_values": dict(self.metric_values),
            "schedules_active": list(self.schedules_active),
            "recommendations": [[to_iso(moment), count] for moment, count in self.recommendations],
            "forecast": None if self.forecast is None else self.forecast.to_dict(),
            "missing_since": {name: to_iso(moment) for name, moment in self.missing_since.items()},
        }
        if inputs and self.policy is not None and self.window is not None and self.state is not None:
            data["inputs"] = {"policy": self.policy.to_dict(), "window": self.window.to_dict(),
                              "state": self.state.to_dict()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Decision:
        inputs = data.get("inputs") or {}
        return cls(
            evaluated_at=parse_moment(data["evaluated_at"]),
            direction=Direction(data["direction"]),
            current=data["current"],
            active=data["active"],
            starting=data["starting"],
            desired=data["desired"],
            trigger=None if data["trigger"] is None else Trigger(data["trigger"]),
            reason=data["reason"],
            would_act=data["would_act"],
            skipped_by_cooldown=data["skipped_by_cooldown"],
            paused=data["paused"],
            min_instances=data["min_instances"],
            max_instances=data["max_instances"],
            recommendation=data["recommendation"],
            threshold=data["threshold"],
            clamps=tuple(data["clamps"]),
            proposals=tuple(TriggerProposal.from_dict(item) for item in data["proposals"]),
            metric_values=dict(data["metric_values"]),
            schedules_active=tuple(data.get("schedules_active", ())),
            recommendations=tuple((parse_moment(moment), count) for moment, count in data.get("recommendations", ())),
            forecast=None if data.get("forecast") is None else ForecastInfo.from_dict(data["forecast"]),
            missing_since={name: parse_moment(moment) for name, moment in data.get("missing_since", {}).items()},
            policy=ScalingPolicy.from_dict(inputs["policy"]) if "policy" in inputs else None,
            window=MetricWindow.from_dict(inputs["window"]) if "window" in inputs else None,
            state=GroupState.from_dict(inputs["state"]) if "state" in inputs else None,
        )


def replay(record: dict[str, Any], *, history: Sequence[float | None] | None = None) -> Decision:
    """Run ``decide`` again on the inputs stored in ``Decision.to_dict()``.

    A decision whose request-rate history was stored by reference (MetricWindow) needs it back as
    ``history``; it is checked against the stored digest."""
    if "inputs" not in record:
        raise ValueError("this decision was stored without its inputs and cannot be replayed")
    stored = Decision.from_dict(record)
    assert stored.policy is not None and stored.window is not None and stored.state is not None
    window = stored.window
    if window.history_ref is not None:
        if history is None:
            raise ValueError(
                f"this decision's request-rate history ({window.history_ref.get('minutes')} minutes) was stored by "
                "digest: pass it as history= (scaling.metrics.request_rate_history) to replay it"
            )
        window = window.with_history(history)
    return decide(stored.policy, window, stored.state, stored.evaluated_at)


def advance_state(state: GroupState, decision: Decision) -> GroupState:
    """The state to remember after ``decision``; the backend changes active/starting itself."""
    acted_up = decision.would_act and decision.direction == Direction.UP
    acted_down = decision.would_act and decision.direction == Direction.DOWN
    return GroupState(
        active=state.active,
        starting=state.starting,
        desired=decision.new_count if decision.would_act else state.desired,
        last_scale_up_at=decision.evaluated_at if acted_up else state.last_scale_up_at,
        last_scale_down_at=decision.evaluated_at if acted_down else state.last_scale_down_at,
        paused_until=state.paused_until,
        recent_recommendations=decision.recommendations,
        missing_since=decision.missing_since,
    )


# --- formatting ---------------------------------------------------------------------------------

_UNITS = {
    Trigger.UTILIZATION: ("utilisation", "{:.2f}"),
    Trigger.RESPONSE_TIME: ("p95 latency", "{:.0f} ms"),
    Trigger.ERROR_RATE: ("error rate", "{:.3f}"),
    Trigger.QUEUE_LENGTH: ("queue", "{:.1f}"),
    Trigger.REQUEST_RATE: ("request rate", "{:.0f} req/min"),
    Trigger.PREDICTIVE: ("predicted peak", "{:.1f} req/min"),
}


def _describe(proposal: TriggerProposal) -> str:
    label, fmt = _UNITS[proposal.trigger]
    if proposal.proposal is None:
        return f"{label} missing"
    target = proposal.target
    if proposal.trigger == Trigger.QUEUE_LENGTH:
        text = f"queue {proposal.metric:.1f} waiting vs target {target:g} per instance"
    elif proposal.trigger == Trigger.PREDICTIVE:
        text = f"predicted peak {proposal.metric:.1f} req/min vs {target:.1f} req/min per instance at target"
    else:
        text = f"{label} {fmt.format(proposal.metric)} vs target {fmt.format(target)}"
    if proposal.ratio is not None:
        text += f" (ratio {proposal.ratio:.2f})"
    text += f" -> {proposal.proposal}"
    if proposal.note:
        text += f" [{proposal.note}]"
    return text


def _seconds(delta: timedelta) -> int:
    return math.ceil(delta.total_seconds())


# --- the trigger proposals ----------------------------------------------------------------------

def _proportional(current: int, ratio: float, tolerance: float) -> tuple[int, bool]:
    """(proposal, outside tolerance)."""
    if abs(ratio - 1.0) <= tolerance:
        return current, False
    return _ceil(current * ratio), True


def _utilization_proposal(policy: ScalingPolicy, window: MetricWindow, state: GroupState) -> tuple[
        TriggerProposal, list[str]]:
    target = policy.target_utilization
    value = window.utilization
    current, active = state.current, state.active
    if not _usable(value) or active == 0:
        note = "no active instance reports utilisation" if _usable(value) else ""
        return TriggerProposal(Trigger.UTILIZATION, value if _usable(value) else None, target, None, None, note), []
    assert value is not None
    reporting = active if window.reporting_instances is None else max(0, min(window.reporting_instances, active))
    if reporting == 0:
        return TriggerProposal(Trigger.UTILIZATION, value, target, None, None, "no instance reported"), []
    # Load in instance-units; silent active instances idle when growing, on target when shrinking.
    load_up = value * reporting
    load_down = value * reporting + target * (active - reporting)
    ratio_up = load_up / (target * current)
    ratio_down = load_down / (target * current)
    clamps: list[str] = []
    notes: list[str] = []
    if ratio_up > 1.0 + policy.tolerance:
        ratio, proposal = ratio_up, _ceil(load_up / target)
    elif ratio_down < 1.0 - policy.tolerance:
        ratio, proposal = ratio_down, _ceil(load_down / target)
        effective = load_down / current
        if effective >= policy.scale_down_threshold:
            proposal = current
            clamps.append("scale_down_threshold")
            notes.append(f"held: utilisation {effective:.2f} >= scale_down_threshold {policy.scale_down_threshold:g}")
    else:
        ratio, proposal = (ratio_up if ratio_up >= 1.0 else ratio_down), current
    effective_up = load_up / current
    if effective_up >= policy.scale_up_threshold and proposal < current + 1:
        proposal = current + 1
        clamps.append("scale_up_threshold")
        notes.append(f"utilisation {effective_up:.2f} >= scale_up_threshold {policy.scale_up_threshold:g}: at least +1")
    if current != active:
        notes.append(f"{state.starting} starting counted idle")
    if reporting != active:
        notes.append(f"{active - reporting} of {active} active did not report")
    return TriggerProposal(Trigger.UTILIZATION, value, target, ratio, proposal, "; ".join(notes)), clamps


def _pressure_proposal(trigger: Trigger, value: float | None, target: float, policy: ScalingPolicy,
                       state: GroupState) -> TriggerProposal:
    """p95 latency and error rate: pressure on the active instances, relieved by the starting ones too."""
    if not _usable(value) or state.active == 0:
        return TriggerProposal(trigger, value if _usable(value) else None, target, None, None)
    assert value is not None
    ratio = (value / target) * state.active / state.current
    proposal, _ = _proportional(state.current, ratio, policy.tolerance)
    return TriggerProposal(trigger, value, target, ratio, proposal)


def _per_instance_proposal(trigger: Trigger, value: float | None, target: float, policy: ScalingPolicy,
                           state: GroupState) -> TriggerProposal:
    """Queue length and request rate: a group total with a target per instance (HPA's AverageValue)."""
    if not _usable(value):
        return TriggerProposal(trigger, None, target, None, None)
    assert value is not None
    if state.current == 0:
        return TriggerProposal(trigger, value, target, None, _ceil(value / target))
    ratio = value / (target * state.current)
    proposal, _ = _proportional(state.current, ratio, policy.tolerance)
    return TriggerProposal(trigger, value, target, ratio, proposal)


def _predictive_proposal(policy: ScalingPolicy, window: MetricWindow, state: GroupState
                         ) -> tuple[TriggerProposal | None, Forecast, float | None, str]:
    settings = ForecastSettings(season_minutes=policy.forecast_season_minutes,
                                multiplicative=policy.forecast_seasonality == Seasonality.MULTIPLICATIVE)
    forecast = forecast_request_rate(window.request_rate_history, horizon_steps(policy.forecast_horizon_seconds),
                                     settings)
    capacity, source = policy.instance_capacity_rpm, "policy"
    if capacity is None:
        capacity, source = None, "none"
        if (_usable(window.request_rate) and _usable(window.utilization) and window.utilization
                and state.active > 0):
            assert window.request_rate is not None and window.utilization is not None
            reporting = state.active if window.reporting_instances is None else window.reporting_instances
            if reporting > 0 and window.request_rate > 0:
                capacity, source = window.request_rate / (window.utilization * reporting), "observed"
    peak = forecast.peak
    if peak is None or capacity is None:
        return None, forecast, capacity, source
    # No tolerance band: the forecast is already smoothed, and it can only add capacity.
    per_instance = capacity * policy.target_utilization
    ratio = peak / (per_instance * state.current) if state.current else None
    proposal = _ceil(peak / per_instance)
    return TriggerProposal(Trigger.PREDICTIVE, peak, per_instance, ratio, proposal, forecast.method), forecast, \
        capacity, source


# --- the decision -------------------------------------------------------------------------------

@dataclass(slots=True)
class _Shaped:
    desired: int
    clamps: list[str]
    notes: list[str]


def _shape(policy: ScalingPolicy, raw: int, current: int, low: int, high: int,
           window_peak: int, schedule_raised_min: bool) -> _Shaped:
    """Steps 5-7: stabilization, step limits, bounds."""
    clamps: list[str] = []
    notes: list[str] = []
    desired = raw
    if desired < current:
        stabilized = min(current, window_peak)
        if stabilized > desired:
            clamps.append("stabilization")
            notes.append(f"scale-down stabilization: highest recommendation in the last "
                         f"{policy.scale_down_stabilization_seconds} s is {window_peak}, so {stabilized}")
            desired = stabilized
    if desired > current:
        limit = current + max(_ceil(current * policy.scale_up_limit_percent / 100), policy.scale_up_limit_instances)
        if desired > limit:
            clamps.append("step_limit_up")
            notes.append(f"step limit +{policy.scale_up_limit_percent:g}%/+{policy.scale_up_limit_instances}: "
                         f"{desired} -> {limit}")
            desired = limit
    elif desired < current:
        removable = max(1, math.floor(current * policy.scale_down_limit_percent / 100 + _EPSILON))
        limit = current - removable
        if desired < limit:
            clamps.append("step_limit_down")
            notes.append(f"step limit -{policy.scale_down_limit_percent:g}%: {desired} -> {limit}")
            desired = limit
    if desired < low:
        clamps.append("schedule_min" if schedule_raised_min else "min_instances")
        notes.append(f"min {low}: {desired} -> {low}")
        desired = low
    elif desired > high:
        clamps.append("max_instances")
        notes.append(f"max {high}: {desired} -> {high}")
        desired = high
    return _Shaped(desired, clamps, notes)


def decide(policy: ScalingPolicy, window: MetricWindow, state: GroupState, now: datetime) -> Decision:
    """Decide a group's size (numbered steps in the module docstring)."""
    require_aware(now, "now")
    current = state.current

    # 1. Bounds, raised by scheduled windows.
    low, high, schedules_active = effective_bounds(policy.min_instances, policy.max_instances, policy.schedules, now)
    schedule_raised_min = low > policy.min_instances

    # 2. Proposals of the configured triggers.
    proposals: list[TriggerProposal] = []
    clamps: list[str] = []
    utilization, utilization_clamps = _utilization_proposal(policy, window, state)
    proposals.append(utilization)
    targets = policy.triggers
    if targets.response_time_p95_ms is not None:
        proposals.append(_pressure_proposal(Trigger.RESPONSE_TIME, window.p95_ms, targets.response_time_p95_ms,
                                            policy, state))
    if targets.error_rate is not None:
        proposals.append(_pressure_proposal(Trigger.ERROR_RATE, window.error_rate, targets.error_rate, policy, state))
    if targets.queue_length is not None:
        proposals.append(_per_instance_proposal(Trigger.QUEUE_LENGTH, window.queue_length, targets.queue_length,
                                                policy, state))
    if targets.request_rate is not None:
        proposals.append(_per_instance_proposal(Trigger.REQUEST_RATE, window.request_rate, targets.request_rate,
                                                policy, state))

    # 3. The largest proposal wins; a missing metric blocks scale-down, for MISSING_BLOCK_SECONDS.
    available = [p for p in proposals if p.proposal is not None]
    missing_since = {str(p.trigger): state.missing_since.get(str(p.trigger), now)
                     for p in proposals if p.proposal is None}
    # Utilisation, the signal every group has, blocks for as long as it is missing (a metrics outage
    # must not let another trigger shrink the group); the optional triggers for MISSING_BLOCK_SECONDS.
    missing = [name for name, since in missing_since.items()
               if name == Trigger.UTILIZATION or (now - since).total_seconds() < MISSING_BLOCK_SECONDS]
    notes: list[str] = [
        f"{name} has had no data for {(now - since).total_seconds() / 60:.0f} min: it no longer blocks a scale-down"
        for name, since in missing_since.items() if name not in missing
    ]
    if available:
        winner = max(available, key=lambda p: (p.proposal, -_TRIGGER_ORDER.index(p.trigger)))
        reactive = winner.proposal
        assert reactive is not None
        if winner.trigger == Trigger.UTILIZATION:
            clamps.extend(utilization_clamps)
        if missing and reactive < current:
            clamps.append("missing_metrics")
            notes.append(f"no scale-down while a metric is missing ({', '.join(missing)})")
            reactive = current
    else:
        winner, reactive = None, current
        clamps.append("missing_metrics")
        notes.append("no metrics: holding")
    decided_by: TriggerProposal | None = winner

    # 4. Prediction.
    forecast_info: ForecastInfo | None = None
    predicted: TriggerProposal | None = None
    raw = reactive
    if policy.predictive_mode != PredictiveMode.OFF:
        predicted, forecast, capacity, source = _predictive_proposal(policy, window, state)
        if predicted is not None:
            proposals.append(predicted)
        forecast_info = ForecastInfo(
            mode=policy.predictive_mode, method=forecast.method, horizon_seconds=policy.forecast_horizon_seconds,
            history_minutes=forecast.history_minutes, predicted_peak_rate=forecast.peak,
            capacity_rpm_per_instance=capacity, capacity_source=source,
            proposal=None if predicted is None else predicted.proposal, applied=False, would_desired=None,
            values=forecast.values, trailing_error=forecast.trailing_error)
        error = forecast.trailing_error
        error_text = "unmeasured" if error is None else f"{100 * error:.0f} %"
        if (policy.predictive_mode == PredictiveMode.ON and predicted is not None
                and predicted.proposal is not None and predicted.proposal > reactive):
            if error is not None and error > PREDICTION_ERROR_BOUND:
                forecast_info = replace(forecast_info, abstained=True)
                notes.append(f"prediction abstains: its recent one-minute forecasts were off by {error_text} "
                             f"(bound {100 * PREDICTION_ERROR_BOUND:.0f} %), so it only reports {predicted.proposal}")
            else:
                raw = predicted.proposal
                decided_by = predicted
                notes.append(f"prediction acts: its recent one-minute forecasts were off by {error_text}")

    # 5. Stabilization window (this recommendation included).
    horizon = timedelta(seconds=policy.scale_down_stabilization_seconds)
    kept = [(moment, count) for moment, count in state.recent_recommendations if timedelta(0) <= now - moment < horizon]
    recommendations = (*kept, (now, raw))
    window_peak = max(count for _, count in recommendations)

    # 5-7. Shape the raw recommendation.
    shaped = _shape(policy, raw, current, low, high, window_peak, schedule_raised_min)
    desired = shaped.desired
    clamps.extend(shaped.clamps)
    notes.extend(shaped.notes)
    if forecast_info is not None and predicted is not None and predicted.proposal is not None:
        with_prediction = max(reactive, predicted.proposal)
        would = _shape(policy, with_prediction, current, low, high, max(window_peak, with_prediction),
                       schedule_raised_min).desired
        forecast_info = replace(forecast_info, applied=decided_by is predicted, would_desired=would)
        if policy.predictive_mode == PredictiveMode.FORECAST_ONLY and would != desired:
            notes.append(f"forecast only: prediction would make it {would}")

    direction = Direction.UP if desired > current else Direction.DOWN if desired < current else Direction.NONE

    # Which trigger decided, and its threshold.
    trigger: Trigger | None = None if decided_by is None else decided_by.trigger
    threshold: float | None = None if decided_by is None else decided_by.target
    below_min, above_max = current < low, current > high
    if (below_min and desired <= low) or (above_max and desired >= high):
        trigger = Trigger.SCHEDULE if below_min and schedule_raised_min else Trigger.BOUNDS
        threshold = float(low if below_min else high)

    # 8. Cooldowns; 9. pause.
    would_act = direction != Direction.NONE
    skipped_by_cooldown = False
    paused = state.paused_until is not None and now < state.paused_until
    cooldown_note = ""
    if direction == Direction.UP and state.last_scale_up_at is not None:
        since = now - state.last_scale_up_at
        if since < timedelta(seconds=policy.scale_up_cooldown):
            left = policy.scale_up_cooldown - _seconds(since)
            if below_min:
                clamps.append("cooldown_up")
                cooldown_note = (f"below min {low}: scaling up to min regardless of the scale-up cooldown "
                                 f"({left} s left)")
                desired = low
                trigger, threshold = (Trigger.SCHEDULE if schedule_raised_min else Trigger.BOUNDS), float(low)
            else:
                clamps.append("cooldown_up")
                skipped_by_cooldown, would_act = True, False
                cooldown_note = (f"skipped: scale-up cooldown {policy.scale_up_cooldown} s, last scale-up "
                                 f"{_seconds(since)} s ago ({left} s left)")
    elif direction == Direction.DOWN:
        last = max((t for t in (state.last_scale_up_at, state.last_scale_down_at) if t is not None), default=None)
        if last is not None and now - last < timedelta(seconds=policy.scale_down_cooldown):
            since = now - last
            left = policy.scale_down_cooldown - _seconds(since)
            if above_max:
                clamps.append("cooldown_down")
                cooldown_note = (f"above max {high}: scaling down to max regardless of the scale-down cooldown "
                                 f"({left} s left)")
                desired = high
                trigger, threshold = Trigger.BOUNDS, float(high)
            else:
                clamps.append("cooldown_down")
                skipped_by_cooldown, would_act = True, False
                cooldown_note = (f"skipped: scale-down cooldown {policy.scale_down_cooldown} s, last scaling "
                                 f"{_seconds(since)} s ago ({left} s left)")
    if paused and direction != Direction.NONE:
        clamps.append("paused")
        would_act, skipped_by_cooldown = False, False

    reason = _reason(direction, current, desired, state, decided_by, proposals, notes, cooldown_note, low, high,
                     below_min, above_max, paused, state.paused_until, schedules_active, would_act)

    return Decision(
        evaluated_at=now, direction=direction, current=current, active=state.active, starting=state.starting,
        desired=desired, trigger=trigger, reason=reason, would_act=would_act,
        skipped_by_cooldown=skipped_by_cooldown, paused=paused, min_instances=low, max_instances=high,
        recommendation=raw, threshold=threshold, clamps=tuple(dict.fromkeys(clamps)), proposals=tuple(proposals),
        metric_values=_metric_values(window, state, forecast_info), schedules_active=tuple(schedules_active),
        recommendations=recommendations, forecast=forecast_info, missing_since=missing_since, policy=policy,
        window=window, state=state,
    )


def _metric_values(window: MetricWindow, state: GroupState, forecast: ForecastInfo | None) -> dict[str, float]:
    values: dict[str, float] = {}
    for name in ("utilization", "p95_ms", "error_rate", "queue_length", "request_rate"):
        value = getattr(window, name)
        if _usable(value):
            values[name] = value
    if "utilization" in values and state.current and state.active:
        reporting = state.active if window.reporting_instances is None else window.reporting_instances
        values["utilization_over_current"] = values["utilization"] * reporting / state.current
    if forecast is not None and forecast.predicted_peak_rate is not None:
        values["predicted_peak_rate"] = forecast.predicted_peak_rate
    return values


def _reason(direction: Direction, current: int, desired: int, state: GroupState,
            decided_by: TriggerProposal | None, proposals: list[TriggerProposal], notes: list[str],
            cooldown_note: str, low: int, high: int, below_min: bool, above_max: bool, paused: bool,
            paused_until: datetime | None, schedules_active: list[str], would_act: bool) -> str:
    verb = {Direction.UP: "scale up", Direction.DOWN: "scale down", Direction.NONE: "no change"}[direction]
    head = f"{verb} {current} -> {desired}" if direction != Direction.NONE else f"no change at {current}"
    if state.starting:
        head += f" ({state.active} active + {state.starting} starting)"
    parts = [head]
    if below_min:
        parts.append(f"below min {low}")
    if above_max:
        parts.append(f"above max {high}")
    if decided_by is not None:
        parts.append(f"decided by {_describe(decided_by)}")
    others = [_describe(p) for p in proposals if p is not decided_by]
    if others:
        parts.append("others: " + ", ".join(others))
    if schedules_active:
        parts.append(f"schedule {', '.join(schedules_active)} active: min {low}, max {high}")
    parts.extend(notes)
    if cooldown_note:
        parts.append(cooldown_note)
    if paused and direction != Direction.NONE:
        parts.append(f"paused until {to_iso(paused_until)} (manual scaling): not acting")
    elif paused:
        parts.append(f"paused until {to_iso(paused_until)} (manual scaling)")
    return "; ".join(parts) + "."


def decide_manual(policy: ScalingPolicy, state: GroupState, desired: int, now: datetime, reason: str = "") -> Decision:
    """A manual resize as a Decision (trigger "manual"), so manual and automatic changes are stored alike."""
    require_aware(now, "now")
    low, high, schedules_active = effective_bounds(policy.min_instances, policy.max_instances, policy.schedules, now)
    if not low <= desired <= high:
        raise ValueError(f"desired_instances must be within [{low}, {high}], got {desired}")
    current = state.current
    direction = Direction.UP if desired > current else Direction.DOWN if desired < current else Direction.NONE
    text = f"manual: {current} -> {desired}" + (f"; {reason}" if reason else "") + "."
    return Decision(
        evaluated_at=now, direction=direction, current=current, active=state.active, starting=state.starting,
        desired=desired, trigger=Trigger.MANUAL, reason=text, would_act=direction != Direction.NONE,
        skipped_by_cooldown=False, paused=False, min_instances=low, max_instances=high, recommendation=desired,
        threshold=None, clamps=(), proposals=(), metric_values={}, schedules_active=tuple(schedules_active),
        recommendations=tuple(state.recent_recommendations), forecast=None, missing_since=dict(state.missing_since),
    )
