"""The scaling simulator: replays a load trace against ``scaling.engine.decide``, as the periodic
task calls it, and measures what an operator cares about. Pure Python, no Django: the benchmark
(``bench/scaling_sim.py``), ``manage.py simulate_scaling`` (a group's policy against a trace file or
its own recorded traffic) and the tests all run this one model.

The model, per 10-second tick:

* Demand ``d`` in requests/minute comes from the trace (a clean curve times per-minute noise; the
  noise is seeded per trace, so every policy sees the same load).
* An instance serves ``capacity_rpm`` requests/minute at 100 % utilisation. Requests beyond the
  active instances' capacity wait in a queue; requests waiting longer than ``timeout_s`` fail.
* Every ``eval_interval_s`` the group is evaluated exactly as the Celery task will do it:
  ``decide(policy, window, state, now)`` with a ``MetricWindow`` of the last ``window_s`` seconds
  (mean utilisation, p95, error rate, queue, request rate, per-minute request-rate history) and a
  ``GroupState``; the decision goes through ``advance_state``. New instances become active after
  a random start-up delay of 60-130 s; a scale-down cancels starting instances first.

Figures (``RunResult``):

* required(t) = ceil(clean demand / (capacity x target utilisation)) within [min, max]: what the
  load needs at the policy's own target. ``provisioned_ratio`` = instance-time provisioned
  (active + starting) / instance-time required.
* ``deficit_pct``: % of time the provisioned fleet (active + starting, so start-up lag aside)
  would run above target x (1 + tolerance), i.e. outside the policy's own tolerance band, at the
  actual (noisy) demand. ``ready_deficit_pct`` counts active instances only (start-up lag
  included); ``strict_deficit_pct`` has no tolerance; ``saturated_pct`` is time the active
  instances could not serve the demand at all (requests queued).
* ``rampup_shortfall``: instance-minutes by which active instances fell short of demand /
  (capacity x target) while the clean demand was rising (start-up lag included): what
  prediction is meant to remove. ``rampup_ready_deficit_pct``: % of that rising time the active
  instances were outside the band.
* ``reaction_s``: per load increase of the trace, time from the change to the first scale-up
  acted on ("n/a" when the fleet already had the capacity); ``ready_s``: until active capacity
  is back inside the band.


* ``flaps``: a scale-up followed by a scale-down less than FLAP_SECONDS (10 minutes) later.
* ``shed_s``: per load decrease of the trace, time until the provisioned fleet is back within
  SHED_RATIO (1.2) x required.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scaling.engine.decision import advance_state, decide
from scaling.engine.forecast import HISTORY_MINUTES
from scaling.engine.policy import Direction, GroupState, MetricWindow, ScalingPolicy, TriggerTargets

DAY = 86_400
EPOCH = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday, midnight UTC
FLAP_SECONDS = 600
SHED_RATIO = 1.2


@dataclass(frozen=True)
class SimConfig:
    tick_s: int = 10
    eval_interval_s: int = 30
    window_s: int = 60
    startup_min_s: float = 60.0
    startup_max_s: float = 130.0
    capacity_rpm: float = 120.0
    base_latency_ms: float = 1500.0
    timeout_s: float = 60.0
    seed: int = 7


@dataclass(frozen=True)
class Trace:
    name: str
    duration_s: int
    clean: Callable[[float], float]  # requests/minute at t seconds, without noise
    noise: float = 0.0  # uniform +-noise per minute
    changes: tuple[float, ...] = ()  # times of load increases to measure reaction on
    drops: tuple[float, ...] = ()  # times of load decreases to measure shedding on
    min_instances: int = 1
    max_instances: int = 60
    history_prefix_s: int = 0  # per-minute history available before t = 0 (for the forecast)
    seed: int = 1
    outages: tuple[tuple[float, float], ...] = ()  # (start, end) s: the metrics pipeline reports nothing

    def in_outage(self, t: float) -> bool:
        return any(start <= t < end for start, end in self.outages)

    def noise_factor(self, minute: int) -> float:
        if not self.noise:
            return 1.0
        return 1.0 + random.Random(self.seed * 1_000_003 + minute).uniform(-self.noise, self.noise)

    def demand(self, t: float) -> float:
        return max(0.0, self.clean(t) * self.noise_factor(math.floor(t / 60)))


def trace_from_rows(name: str, rows: Iterable[tuple[float, float]], *, min_instances: int = 1,
                    max_instances: int = 60) -> Trace:
    """A trace from (seconds since its start, requests per minute) rows, each rate holding until
    the next row (the last one for a minute). No noise is added: the rows are the traffic."""
    points = sorted((float(t), max(0.0, float(rpm))) for t, rpm in rows)
    if not points:
        raise ValueError("the trace has no rows")
    start = points[0][0]
    times = [t - start for t, _ in points]
    rates = [rpm for _, rpm in points]
    duration = int(times[-1]) + 60

    def clean(t: float) -> float:
        index = max(0, _bisect_right(times, t) - 1)
        return rates[index]

    return Trace(name, duration, clean, min_instances=min_instances, max_instances=max_instances)


def _bisect_right(values: list[float], x: float) -> int:
    low, high = 0, len(values)
    while low < high:
        middle = (low + high) // 2
        if x < values[middle]:
            high = middle
        else:
            low = middle + 1
    return low


def read_trace_csv(path: str, **bounds: int) -> Trace:
    """A trace file: a header row with ``timestamp`` (ISO 8601, or seconds) and
    ``requests_per_minute`` columns (others, such as queue or latency, are ignored), one row per
    sample. Raises ValueError naming the row that cannot be read."""
    rows: list[tuple[float, float]] = []
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"timestamp", "requests_per_minute"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for number, row in enumerate(reader, start=2):
            try:
                stamp = row["timestamp"].strip()
                seconds = float(stamp) if stamp.replace(".", "", 1).isdigit() else _iso_seconds(stamp)
                rows.append((seconds, float(row["requests_per_minute"])))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}, row {number}: {exc}") from None
    return trace_from_rows(path, rows, **bounds)


def _iso_seconds(stamp: str) -> float:
    moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass
class HpaV2:
    """A Kubernetes HPA v2 controller written from its documentation (kubernetes.io, "Horizontal Pod
    Autoscaling": algorithm details and configurable scaling behaviour), independent of this engine,
    with the documented defaults:

    * per metric, ratio = current / desired value; no change while |ratio - 1| <= tolerance (0.1),
      else ceil(currentReplicas x ratio); the largest proposal of all metrics wins, metrics without
      data are skipped;
    * pods not ready yet (starting) count as 0 % of the target when the ready pods' ratio asks for a
      scale-up (which damps it); a scale-down uses the ready pods' ratio over all replicas;
    * scale-up: no stabilization, at most max(+100 %, +4 pods) per 15 s (selectPolicy Max); the
      simulator evaluates it every 30 s like the engine (HPA syncs every 15 s by default), so
      each evaluation may add that much once;
    * scale-down: the highest recommendation of the last 300 s (stabilization), -100 % per 15 s.

    Metrics: CPU-style utilisation (target ``target_utilization``), the queue as an External metric
    with AverageValue ``queue_per_pod``, and with ``rpm_per_pod`` the request rate as AverageValue
    (a KEDA-like scaler on the demand signal, ``use_utilization=False``). ``decide`` returns
    (desired, reason).
    """

    min_replicas: int
    max_replicas: int
    target_utilization: float = 0.6
    queue_per_pod: float | None = 5.0
    rpm_per_pod: float | None = None
    use_utilization: bool = True
    tolerance: float = 0.1
    down_stabilization_s: float = 300.0
    _recommendations: deque[tuple[float, int]] = field(default_factory=deque)

    def decide(self, window: MetricWindow, active: int, starting: int, now_s: float) -> tuple[int, str]:
        current = active + starting
        proposals: list[tuple[int, str]] = []
        if self.use_utilization and window.utilization is not None and active:
            ready_ratio = window.utilization / self.target_utilization
            ratio = ready_ratio
            if ready_ratio > 1 and starting:  # not-ready pods at 0 %: a damped scale-up
                ratio = window.utilization * active / (self.target_utilization * current)
            proposals.append((self._proposal(current, ratio), f"utilisation ratio {ratio:.2f}"))
        for value, per_pod, label in ((window.queue_length, self.queue_per_pod, "queue"),
                                      (window.request_rate, self.rpm_per_pod, "request rate")):
            if value is not None and per_pod and current:
                proposals.append((self._proposal(current, value / (per_pod * current)), f"{label} {value:.0f}"))
        if not proposals:
            return current, "no metrics"
        raw, why = max(proposals)
        self._recommendations.append((now_s, raw))
        while self._recommendations and now_s - self._recommendations[0][0] >= self.down_stabilization_s:
            self._recommendations.popleft()
        desired = raw
        if raw < current:
            desired = min(current, max(count for _, count in self._recommendations))
        elif raw > current:
            desired = min(raw, max(2 * current, current + 4))
        desired = max(self.min_replicas, min(self.max_replicas, desired))
        return desired, f"hpa-v2: {why} -> {raw}, {current} -> {desired}"

    def _proposal(self, current: int, ratio: float) -> int:
        if abs(ratio - 1) <= self.tolerance:
            return current
        return math.ceil(current * ratio - 1e-9)


@dataclass(frozen=True)
class PolicySpec:
    name: str
    policy: ScalingPolicy | None  # None = static fleet sized for the trace's peak (or the reference's)
    # A reference autoscaler instead of this engine: made once per run, from (min, max instances).
    reference: Callable[[int, int], HpaV2] | None = None



def hpa_reference_policy(**overrides: object) -> ScalingPolicy:
    """Kubernetes HPA v2 defaults: no cooldowns, 300 s down-stabilization, +max(100 %, 4) up, -100 % down.

    The thresholds are set where they never bind (scale-up at 100 %, scale-down below target).
    """
    settings: dict[str, object] = {
        "target_utilization": 0.6, "scale_up_threshold": 1.0, "scale_down_threshold": 0.6,
        "scale_up_cooldown": 0, "scale_down_cooldown": 0, "scale_down_stabilization_seconds": 300,
        "scale_up_limit_percent": 100.0, "scale_up_limit_instances": 4, "scale_down_limit_percent": 100.0,
        "triggers": TriggerTargets(queue_length=5.0),
    }
    settings.update(overrides)
    return ScalingPolicy(**settings)  # type: ignore[arg-type]



@dataclass
class RunResult:
    trace: str
    policy: str
    duration_s: int
    actions: int = 0
    ups: int = 0
    downs: int = 0
    skipped: int = 0
    flaps: int = 0  # a scale-up followed by a scale-down within FLAP_SECONDS
    outage_downs: int = 0  # scale-downs decided while the metrics were out (Trace.outages)
    outage_failed: float = 0.0  # requests failed while the metrics were out
    provisioned_ratio: float = 0.0
    instance_hours: float = 0.0
    deficit_pct: float = 0.0
    ready_deficit_pct: float = 0.0
    strict_deficit_pct: float = 0.0
    saturated_pct: float = 0.0
    failed_pct: float = 0.0
    rampup_shortfall: float = 0.0
    rampup_ready_deficit_pct: float = 0.0
    reaction_s: list[float | None] = field(default_factory=list)
    ready_s: list[float | None] = field(default_factory=list)
    # per Trace.drops: seconds until provisioned <= SHED_RATIO x required (None: never)
    shed_s: list[float | None] = field(default_factory=list)
    decisions: int = 0
    decide_seconds: float = 0.0
    events: list[tuple[float, str, int, int, str]] = field(default_factory=list)


def _required(trace: Trace, demand: float, config: SimConfig, target: float) -> int:
    return min(trace.max_instances, max(trace.min_instances, math.ceil(demand / (config.capacity_rpm * target) - 1e-9)))


def simulate(trace: Trace, spec: PolicySpec, config: SimConfig = SimConfig(), *, keep_events: bool = False,
             reference_target: float = 0.6, reference_tolerance: float = 0.1) -> RunResult:
    """Replay ``trace`` against ``spec``; every evaluation is one ``decide`` call."""
    rng = random.Random(config.seed)
    policy = spec.policy
    if policy is not None:
        policy = dataclasses.replace(policy, min_instances=trace.min_instances, max_instances=trace.max_instances)
    scaler = spec.reference(trace.min_instances, trace.max_instances) if spec.reference else None
    target = policy.target_utilization if policy else scaler.target_utilization if scaler else reference_target
    tolerance = policy.tolerance if policy else scaler.tolerance if scaler else reference_tolerance
    per_instance_at_target = config.capacity_rpm * target
    tick = config.tick_s
    ticks = trace.duration_s // tick

    if policy is None and scaler is None:
        peak = max(trace.clean(t * tick) for t in range(ticks))
        active = _required(trace, peak, config, target)
    else:
        active = _required(trace, trace.clean(0), config, target)
    starting: list[float] = []  # times at which starting instances become active
    state = GroupState(active=active, starting=0, desired=active)

    history: list[float | None] = [
        trace.demand(-trace.history_prefix_s + 60 * i) for i in range(trace.history_prefix_s // 60)
    ]
    window_ticks = max(1, config.window_s // tick)
    samples: deque[tuple[float | None, float, float, float, float]] = deque(maxlen=window_ticks)
    minute_arrivals = 0.0
    backlog = 0.0  # waiting requests (the queue), oldest first is not modelled: only the amount
    result = RunResult(trace.name, spec.name, trace.duration_s)
    provisioned_time = required_time = 0.0
    deficit = ready_deficit = strict_deficit = saturated = rampup_time = rampup_deficit = 0.0
    arrived_total = failed_total = 0.0
    last_up_at: float | None = None
    reaction: dict[float, float | None] = dict.fromkeys(trace.changes)
    shed: dict[float, float | None] = dict.fromkeys(trace.drops)
    ready: dict[float, float | None] = dict.fromkeys(trace.changes)

    for step in range(ticks):
        t = step * tick
        if starting:
            came_up = [ready_at for ready_at in starting if ready_at <= t]
            if came_up:
                active += len(came_up)
                starting = [ready_at for ready_at in starting if ready_at > t]

        demand = trace.demand(t)
        arrivals = demand * tick / 60
        capacity = active * config.capacity_rpm * tick / 60
        if active:
            pending = backlog + arrivals
            served = min(pending, capacity)
            backlog = pending - served
            failed = max(0.0, backlog - active * config.capacity_rpm * config.timeout_s / 60)
            backlog -= failed
        else:
            served, failed, backlog = 0.0, backlog + arrivals, 0.0
        utilization = served / capacity if capacity else None
        wait_ms = (backlog / (active * config.capacity_rpm / 60) * 1000) if active else config.timeout_s * 1000
        latency = config.base_latency_ms * (1 + 0.3 * (utilization or 0.0) ** 4) + wait_ms
        samples.append((utilization, latency, arrivals, failed, backlog))
        minute_arrivals += arrivals
        arrived_total += arrivals
        failed_total += failed
        if trace.in_outage(t):
            result.outage_failed += failed
        if (step + 1) % (60 // tick) == 0:
            history.append(minute_arrivals)
            minute_arrivals = 0.0

        # Figures.
        provisioned = active + len(starting)
        clean = trace.clean(t)
        need = demand / per_instance_at_target
        provisioned_time += provisioned * tick
        required_time += _required(trace, clean, config, target) * tick
        if provisioned * (1 + tolerance) < need:
            deficit += tick
        if active * (1 + tolerance) < need:
            ready_deficit += tick
        if provisioned < need:
            strict_deficit += tick
        if active * config.capacity_rpm < demand:
            saturated += tick
        if trace.clean(t + tick) > clean:
            result.rampup_shortfall += max(0.0, need - active) * tick / 60
            rampup_time += tick
            if active * (1 + tolerance) < need:
                rampup_deficit += tick
        for change in trace.changes:
            if t >= change and ready[change] is None and active * (1 + tolerance) >= need:
                ready[change] = t - change
        for drop in trace.drops:
            required_now = _required(trace, clean, config, target)
            if t >= drop and shed[drop] is None and provisioned <= SHED_RATIO * required_now:
                shed[drop] = t - drop

        # Evaluation, as the periodic task does it.
        if (policy is None and scaler is None) or (t + tick) % config.eval_interval_s:
            continue
        now = EPOCH + timedelta(seconds=t + tick)
        outage = trace.in_outage(t + tick)
        recent = history[-HISTORY_MINUTES:]  # what a group's metric window carries (scaling.metrics)
        window = MetricWindow(request_rate_history=recent) if outage else _window(samples, recent, active, config)
        started = time.perf_counter()
        if scaler is not None:
            current = active + len(starting)
            desired, reason = scaler.decide(window, active, len(starting), t + tick)
            direction = Direction.UP if desired > current else Direction.DOWN if desired < current else Direction.NONE
        else:
            assert policy is not None
            state = dataclasses.replace(state, active=active, starting=len(starting))
            decision = decide(policy, window, state, now)
            state = advance_state(state, decision)
            if decision.skipped_by_cooldown:
                result.skipped += 1
            current, desired, reason = decision.current, decision.desired, decision.reason
            direction = decision.direction if decision.would_act else Direction.NONE
        result.decide_seconds += time.perf_counter() - started
        result.decisions += 1
        if direction == Direction.NONE:
            continue
        active, starting = _apply(desired, active, starting, t + tick, rng, config)
        result.actions += 1
        if direction == Direction.UP:
            last_up_at = t + tick
            result.ups += 1
            for change in trace.changes:
                if t + tick >= change and reaction[change] is None:
                    reaction[change] = t + tick - change
        else:
            result.downs += 1
            result.outage_downs += outage
            if last_up_at is not None and t + tick - last_up_at < FLAP_SECONDS:
                result.flaps += 1
                last_up_at = None
        if keep_events:
            result.events.append((t + tick, str(direction), current, desired, reason))

    duration = ticks * tick
    result.provisioned_ratio = provisioned_time / required_time if required_time else float("nan")
    result.instance_hours = provisioned_time / 3600
    result.deficit_pct = 100 * deficit / duration
    result.ready_deficit_pct = 100 * ready_deficit / duration
    result.strict_deficit_pct = 100 * strict_deficit / duration
    result.saturated_pct = 100 * saturated / duration
    result.failed_pct = 100 * failed_total / arrived_total if arrived_total else 0.0
    result.rampup_ready_deficit_pct = 100 * rampup_deficit / rampup_time if rampup_time else 0.0
    result.reaction_s = [reaction[change] for change in trace.changes]
    result.ready_s = [ready[change] for change in trace.changes]
    result.shed_s = [shed[drop] for drop in trace.drops]
    return result


def _window(samples: deque, history: list[float | None], active: int, config: SimConfig) -> MetricWindow:
    utilizations = [u for u, *_ in samples if u is not None]
    latencies = sorted(latency for _, latency, *_ in samples)
    arrived = sum(arrivals for _, _, arrivals, _, _ in samples)
    failed = sum(fail for *_, fail, _ in samples)
    seconds = len(samples) * config.tick_s
    return MetricWindow(
        utilization=sum(utilizations) / len(utilizations) if utilizations and active else None,
        p95_ms=latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)] if latencies else None,
        error_rate=failed / arrived if arrived else 0.0,
        queue_length=samples[-1][4] if samples else None,
        request_rate=arrived * 60 / seconds if seconds else None,
        request_rate_history=history,
        window_seconds=seconds,
    )


def _apply(desired: int, active: int, starting: list[float], t: float, rng: random.Random,
           config: SimConfig) -> tuple[int, list[float]]:
    change = desired - (active + len(starting))
    if change > 0:
        starting = starting + [t + rng.uniform(config.startup_min_s, config.startup_max_s) for _ in range(change)]
    elif change < 0:
        remove = -change
        starting = sorted(starting)
        cancelled = min(remove, len(starting))
        starting = starting[: len(starting) - cancelled]
        active -= remove - cancelled
    return active, starting



# --- report -----------------------------------------------------------------------------------

def _reactions(result: RunResult) -> str:
    if not result.reaction_s:
        return "-"
    shown = []
    for reaction, ready in zip(result.reaction_s, result.ready_s, strict=True):
        if reaction is None:
            shown.append("n/a" if ready == 0 else "never")
        else:
            shown.append(f"{reaction:.0f}")
    ready_text = ",".join("never" if ready is None else f"{ready:.0f}" for ready in result.ready_s)
    return f"{','.join(shown)} | {ready_text}"


HEADER = (f"{'policy':<30}{'actions':>8}{'up/down':>9}{'skip':>6}{'flaps':>6}{'prov/req':>9}{'inst-h':>8}"
          f"{'deficit%':>9}{'ready%':>8}{'strict%':>8}{'satur%':>8}{'failed%':>8}{'rampup':>8}  reaction s | ready s")


def format_row(result: RunResult) -> str:
    return (f"{result.policy:<30}{result.actions:>8}{f'{result.ups}/{result.downs}':>9}{result.skipped:>6}"
            f"{result.flaps:>6}{result.provisioned_ratio:>9.3f}{result.instance_hours:>8.1f}"
            f"{result.deficit_pct:>9.2f}{result.ready_deficit_pct:>8.2f}{result.strict_deficit_pct:>8.2f}"
            f"{result.saturated_pct:>8.2f}{result.failed_pct:>8.2f}{result.rampup_shortfall:>8.1f}  "
            f"{_reactions(result)}")

