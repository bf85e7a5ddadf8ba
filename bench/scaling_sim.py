"""Auto-scaling simulator and benchmark: replays load traces against ``scaling.engine.decide``.

Run ``python bench/scaling_sim.py`` (``--quick`` for short traces, ``--only daily`` for one trace).
Tests import ``simulate`` with small traces.

The model and the figures are scaling.engine.simulation's (its docstring); this file holds the
benchmark's traces and policies and writes the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scaling.engine import GroupState, MetricWindow, ScalingPolicy, TriggerTargets, decide
from scaling.engine.forecast import HISTORY_MINUTES
from scaling.engine.simulation import (
    DAY,
    EPOCH,
    HEADER,
    HpaV2,
    PolicySpec,
    RunResult,
    SimConfig,
    Trace,
    format_row,
    hpa_reference_policy,
    simulate,
)

# --- traces -----------------------------------------------------------------------------------

def flat_trace(duration_s: int = 4 * 3600, rpm: float = 700.0) -> Trace:
    return Trace("flat +-10%", duration_s, lambda t: rpm, noise=0.10, min_instances=2, seed=11)


def step_trace(duration_s: int = 3600, low: float = 400.0, factor: float = 3.0, at: float = 1200.0) -> Trace:
    return Trace(f"step x{factor:g}", duration_s, lambda t: low if t < at else low * factor, noise=0.03,
                 changes=(at,), min_instances=2, seed=12)


def ramp_trace(duration_s: int = 3 * 3600) -> Trace:
    def clean(t: float) -> float:
        minute = t / 60
        if minute < 30:
            return 200.0
        if minute < 90:
            return 200.0 + (minute - 30) / 60 * 1400.0
        if minute < 120:
            return 1600.0
        if minute < 150:
            return 1600.0 - (minute - 120) / 30 * 1400.0
        return 200.0
    return Trace("ramp", duration_s, clean, noise=0.03, min_instances=2, seed=13)


def sine_trace(duration_s: int = 6 * 3600, period_s: float = 3600.0) -> Trace:
    return Trace("noisy sine 1h", duration_s, lambda t: 800.0 + 400.0 * math.sin(2 * math.pi * t / period_s),
                 noise=0.10, min_instances=2, seed=14)


def daily_clean(t: float) -> float:
    """A daily cycle: lowest (400 req/min) at 03:00 UTC, highest (1,600) at 15:00."""
    return 1000.0 - 600.0 * math.cos(2 * math.pi * (t - 3 * 3600) / DAY)


def daily_trace(duration_s: int = 2 * DAY, history_days: int = 2) -> Trace:
    name = "daily x2" + ("" if history_days else " (no history)")
    return Trace(name, duration_s, daily_clean, noise=0.05, min_instances=2,
                 history_prefix_s=history_days * DAY, seed=15)


def spikes_trace(duration_s: int = 3 * 3600) -> Trace:
    starts = (1800.0, 4200.0, 6600.0, 9000.0)
    lengths = (300.0, 120.0, 600.0, 60.0)

    def clean(t: float) -> float:
        for start, length in zip(starts, lengths, strict=True):
            if start <= t < start + length:
                return 1250.0
        return 500.0
    ends = tuple(start + length for start, length in zip(starts, lengths, strict=True))
    return Trace("spikes x2.5", duration_s, clean, noise=0.03, changes=starts, drops=ends, min_instances=2, seed=16)


def flash_crowd_trace(duration_s: int = 90 * 60, base: float = 600.0, factor: float = 10.0,
                      at: float = 1200.0, rise_s: float = 60.0, length_s: float = 1800.0) -> Trace:
    """A flash crowd: factor x the base load, arriving over rise_s, for length_s, then gone."""
    def clean(t: float) -> float:
        if t < at or t >= at + length_s:
            return base
        return base * (1 + (factor - 1) * min(1.0, (t - at) / rise_s))
    # Reaction and readiness are measured from the moment the crowd is complete (rise_s after onset).
    return Trace(f"flash crowd x{factor:g}", duration_s, clean, noise=0.03, changes=(at + rise_s,),
                 drops=(at + length_s,), min_instances=2, max_instances=150, seed=17)


def level_shift_trace(duration_s: int = 3600, base: float = 600.0, factor: float = 2.0, at: float = 1200.0) -> Trace:
    """A permanent step: the load changes level for good."""
    return Trace(f"level shift x{factor:g}", duration_s, lambda t: base if t < at else base * factor, noise=0.03,
                 changes=(at,), min_instances=2, seed=18)


def square_wave_trace(duration_s: int = 4 * 3600, period_s: float = 900.0, low: float = 400.0,
                      high: float = 1200.0) -> Trace:
    """On/off: period_s at the low load, period_s at the high one, and again."""
    return Trace(f"on/off {period_s / 60:g} min", duration_s, lambda t: high if (t // period_s) % 2 else low,
                 noise=0.03, min_instances=2, seed=19)


def pareto_trace(duration_s: int = 4 * 3600, mean: float = 700.0, alpha: float = 1.5, seed: int = 20) -> Trace:
    """Bursts around a flat mean: each minute's load is mean x a Pareto(alpha) draw scaled to mean 1."""
    draw = random.Random(seed)
    scale = (alpha - 1) / alpha  # a Pareto(alpha) with minimum `scale` has mean 1
    minutes = [mean * min(5.0, scale * draw.paretovariate(alpha)) for _ in range(duration_s // 60 + 1)]
    return Trace(f"pareto bursts a={alpha:g}", duration_s, lambda t: minutes[int(t // 60)], min_instances=2, seed=seed)


def slow_ramp_trace(duration_s: int = 6 * 3600, low: float = 300.0, factor: float = 5.0) -> Trace:
    """1x -> 5x over the whole trace: a slow, steady rise."""
    return Trace(f"slow ramp x{factor:g}", duration_s, lambda t: low * (1 + (factor - 1) * t / duration_s),
                 noise=0.05, min_instances=2, seed=21)


def outage_trace(duration_s: int = 2 * 3600, rpm: float = 700.0) -> Trace:
    """Flat load with a 10-minute metrics outage after an hour: nothing is measured, the load goes on."""
    return Trace("metrics outage 10 min", duration_s, lambda t: rpm, noise=0.05, min_instances=2, seed=22,
                 outages=((3600.0, 4200.0),))


def shifted_daily_trace(factor: float, duration_s: int = 2 * DAY) -> Trace:
    """The daily cycle with two days of history, whose level changes for good (x factor) after a day:
    what a forecast fitted on the old level gets wrong."""
    return Trace(f"daily, x{factor:g} after a day", duration_s,
                 lambda t: daily_clean(t) * (factor if t >= DAY else 1.0), noise=0.05, min_instances=2,
                 history_prefix_s=2 * DAY, seed=23)


def all_traces(quick: bool = False) -> list[Trace]:
    if quick:
        return [flat_trace(3600), step_trace(), ramp_trace(), sine_trace(2 * 3600), spikes_trace(),
                daily_trace(DAY // 2), flash_crowd_trace(), level_shift_trace(), square_wave_trace(2 * 3600),
                pareto_trace(3600), outage_trace()]
    return [flat_trace(), step_trace(), ramp_trace(), sine_trace(), spikes_trace(), flash_crowd_trace(),
            level_shift_trace(), square_wave_trace(), pareto_trace(), slow_ramp_trace(), outage_trace(),
            shifted_daily_trace(0.5), shifted_daily_trace(2.0), daily_trace(),
            daily_trace(history_days=0)]


# --- policies ---------------------------------------------------------------------------------

def engine_policy(**overrides: object) -> ScalingPolicy:
    """This engine with its shipped defaults (ScalingPolicy()) and a queue trigger, as a group created
    without policy fields and with {"triggers": {"queue_length": 5}} would be."""
    settings: dict[str, object] = {"triggers": TriggerTargets(queue_length=5.0)}
    settings.update(overrides)
    return ScalingPolicy(**settings)  # type: ignore[arg-type]


def seed_policy(**overrides: object) -> ScalingPolicy:
    """The seed's auto-scaling body (scale_up_threshold 0.8, scale_down_threshold 0.2) over the defaults."""
    return engine_policy(scale_up_threshold=0.8, scale_down_threshold=0.2, **overrides)


def before_policy(**overrides: object) -> ScalingPolicy:
    """The defaults this engine shipped before 2026-12-08: a 300 s scale-up cooldown, scale-down below 0.2."""
    return engine_policy(scale_up_cooldown=300, scale_down_threshold=0.2, **overrides)


def naive_policy(**overrides: object) -> ScalingPolicy:
    """Proportional only: no cooldown, no stabilization, no step limits."""
    return hpa_reference_policy(scale_down_stabilization_seconds=0, scale_up_limit_instances=1000,
                              scale_up_limit_percent=10_000.0, **overrides)


def default_specs(capacity_rpm: float) -> list[PolicySpec]:
    return [
        PolicySpec("static (peak)", None),
        PolicySpec("naive proportional", naive_policy()),
        PolicySpec("hpa-default", hpa_reference_policy()),
        PolicySpec("hpa v2 (independent)", None, reference=lambda low, high: HpaV2(low, high)),
        PolicySpec("keda-like (request rate)", None, reference=lambda low, high: HpaV2(
            low, high, queue_per_pod=None, rpm_per_pod=capacity_rpm * 0.6, use_utilization=False)),
        PolicySpec("engine defaults", engine_policy()),
        PolicySpec("engine seed thresholds", seed_policy()),
        PolicySpec(
            "engine defaults + predictive", engine_policy(predictive_mode="on", instance_capacity_rpm=capacity_rpm)
        ),
        PolicySpec("engine, defaults before", before_policy()),
        PolicySpec("engine, demand trigger", ScalingPolicy(triggers=TriggerTargets(request_rate=capacity_rpm * 0.6))),
    ]


# --- the 1,000-group timing -------------------------------------------------------------------

def time_many_groups(groups: int = 1000, predictive_share: float = 0.0, repeats: int = 5, seed: int = 3) -> float:
    """Best-of-``repeats`` seconds to run ``decide`` once for each of ``groups`` varied groups."""
    rng = random.Random(seed)
    now = EPOCH + timedelta(days=3, hours=10)
    cases = []
    three_days = [daily_clean(60 * i) * rng.uniform(0.95, 1.05) for i in range(HISTORY_MINUTES)]
    for index in range(groups):
        predictive = index < groups * predictive_share
        policy = engine_policy(
            min_instances=rng.randint(1, 3), max_instances=rng.randint(10, 50),
            triggers=TriggerTargets(response_time_p95_ms=4000.0, error_rate=0.05, queue_length=5.0),
            predictive_mode="on" if predictive else "off", instance_capacity_rpm=120.0 if predictive else None,
        )
        active = rng.randint(1, 30)
        window = MetricWindow(
            utilization=rng.uniform(0.05, 1.0), p95_ms=rng.uniform(800, 6000), error_rate=rng.uniform(0, 0.1),
            queue_length=rng.uniform(0, 50), request_rate=rng.uniform(100, 3000),
            request_rate_history=tuple(three_days) if predictive else tuple(three_days[-60:]),
        )
        state = GroupState(
            active=active, starting=rng.randint(0, 2),
            last_scale_up_at=now - timedelta(seconds=rng.randint(0, 900)),
            last_scale_down_at=now - timedelta(seconds=rng.randint(0, 1800)),
            recent_recommendations=tuple((now - timedelta(seconds=30 * k), active + rng.randint(-3, 3))
                                         for k in range(1, 10)),
        )
        cases.append((policy, window, state))
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for policy, window, state in cases:
            decide(policy, window, state, now)
        best = min(best, time.perf_counter() - started)
    return best


def seed_spread(config: SimConfig, seeds: range = range(1, 6)) -> list[str]:
    """The goal traces again under other seeds (start-up delays and per-minute noise): each figure's range."""
    specs = {spec.name: spec for spec in default_specs(config.capacity_rpm)}
    lines = []
    for make in (flash_crowd_trace, level_shift_trace, square_wave_trace):
        for name in ("engine defaults", "engine, demand trigger", "hpa v2 (independent)"):
            runs = [simulate(dataclasses.replace(make(), seed=seed), specs[name],
                             dataclasses.replace(config, seed=seed)) for seed in seeds]  # fmt: skip
            failed = [run.failed_pct for run in runs]
            ready = [run.ready_s[0] for run in runs if run.ready_s and run.ready_s[0] is not None]
            flaps = [run.flaps for run in runs]
            ready_text = f"{min(ready):.0f}-{max(ready):.0f} s" if len(ready) == len(runs) else "-"
            lines.append(f"{runs[0].trace:<22} {name:<26} failed {min(failed):.2f}-{max(failed):.2f} %, "
                         f"in band {ready_text}, flaps {min(flaps)}-{max(flaps)}")
    return lines


# --- report -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter traces")
    parser.add_argument("--only", default="", help="run the traces whose name contains this text")
    parser.add_argument("--events", action="store_true", help="print every scaling action")
    args = parser.parse_args(argv)
    config = SimConfig()
    results: dict[tuple[str, str], RunResult] = {}
    for trace in all_traces(args.quick):
        if args.only and args.only not in trace.name:
            continue
        print(f"\n== {trace.name}: {trace.duration_s / 3600:g} h, eval every {config.eval_interval_s} s, "
              f"window {config.window_s} s, start-up {config.startup_min_s:g}-{config.startup_max_s:g} s")
        print(HEADER)
        for spec in default_specs(config.capacity_rpm):
            result = simulate(trace, spec, config, keep_events=args.events)
            results[(trace.name, spec.name)] = result
            print(format_row(result))
            for event in result.events:
                print(f"    t={event[0]:>7.0f}s {event[1]:<4} {event[2]:>3} -> {event[3]:<3} {event[4]}")
    if not args.only and not args.quick:
        print("\n== five seeds (start-up delays and noise): min - max")
        for line in seed_spread(config):
            print("  " + line)
    print("\n== decide() for 1,000 groups (best of 5)")
    timings = {share: time_many_groups(predictive_share=share) for share in (0.0, 0.1, 1.0)}
    for share, seconds in timings.items():
        print(f"  predictive share {share:>4.0%}: {seconds * 1000:.0f} ms")
    print("\n== targets")
    for line in check_targets(results, timings, config):
        print("  " + line)
    return 0


ENGINE_POLICIES = ("engine defaults", "engine seed thresholds", "engine defaults + predictive")


def check_targets(results: dict[tuple[str, str], RunResult], timings: dict[float, float],
                  config: SimConfig) -> list[str]:
    """The issue's targets, each with the measured figure and PASS/FAIL."""
    lines: list[str] = []

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    traces = {trace for trace, _ in results}
    flat = next((trace for trace in traces if trace.startswith("flat")), None)
    if flat:
        for name in ENGINE_POLICIES:
            actions = results[(flat, name)].actions
            lines.append(f"{verdict(actions == 0)} no action on flat +-10% noise, {name}: {actions} actions")
    step = next((trace for trace in traces if trace.startswith("step")), None)
    if step:
        limit = config.eval_interval_s + config.window_s
        for name in ENGINE_POLICIES:
            (reaction,) = results[(step, name)].reaction_s
            ok = reaction is not None and reaction <= limit
            lines.append(f"{verdict(ok)} 3x step answered within {limit} s, {name}: {reaction} s")
    daily = next((trace for trace in traces if trace.startswith("daily x") and "no history" not in trace), None)
    if daily:
        for name in ENGINE_POLICIES:
            result = results[(daily, name)]
            ok = result.provisioned_ratio <= 1.25 and result.deficit_pct <= 1.0
            lines.append(f"{verdict(ok)} daily cycle provisioned/required <= 1.25 with deficit <= 1 %, {name}: "
                         f"{result.provisioned_ratio:.3f}, {result.deficit_pct:.2f} %")
        reactive = results[(daily, "engine defaults")]
        predictive = results[(daily, "engine defaults + predictive")]
        cut = 1 - predictive.rampup_shortfall / reactive.rampup_shortfall if reactive.rampup_shortfall else 0.0
        extra = predictive.instance_hours / reactive.instance_hours - 1
        lines.append(f"{verdict(cut >= 0.5 and extra <= 0.05)} prediction cuts the daily ramp-up shortfall by "
                     f">= 50 % at <= 5 % extra instance-hours: {reactive.rampup_shortfall:.1f} -> "
                     f"{predictive.rampup_shortfall:.1f} instance-minutes ({100 * cut:.0f} % cut; ramp-up time "
                     f"outside the band {reactive.rampup_ready_deficit_pct:.2f} -> "
                     f"{predictive.rampup_ready_deficit_pct:.2f} %), instance-hours {reactive.instance_hours:.1f} -> "
                     f"{predictive.instance_hours:.1f} ({100 * extra:+.1f} %)")
    if daily:
        result = results[(daily, "engine defaults")]
        ok = result.provisioned_ratio <= 1.10 and result.deficit_pct <= 2.0
        lines.append(f"{verdict(ok)} daily cycle provisioned/required <= 1.10 with deficit <= 2 %, engine defaults: "
                     f"{result.provisioned_ratio:.3f}, {result.deficit_pct:.2f} %")
    spikes = next((trace for trace in traces if trace.startswith("spikes")), None)
    crowd = next((trace for trace in traces if trace.startswith("flash crowd")), None)
    for name in ("engine defaults", "engine, demand trigger", "hpa v2 (independent)", "keda-like (request rate)"):
        for trace in (spikes, crowd):
            if trace:
                shed = results[(trace, name)].shed_s
                ok = all(value is not None and value <= 600 for value in shed)
                shown = ", ".join("never" if value is None else f"{value:.0f}" for value in shed)
                lines.append(f"{verdict(ok)} after a burst ends, provisioned <= 1.2x required within 10 minutes, "
                             f"{trace}, {name}: {shown} s")
    shift = next((trace for trace in traces if trace.startswith("level shift")), None)
    wave = next((trace for trace in traces if trace.startswith("on/off")), None)
    for name in ("engine defaults", "engine seed thresholds", "engine, defaults before", "engine, demand trigger",
                 "hpa v2 (independent)", "keda-like (request rate)"):
        if crowd:
            result = results[(crowd, name)]
            (ready,) = result.ready_s
            from_onset = None if ready is None else ready + 60
            lines.append(f"{verdict(result.failed_pct <= 5.0)} 10x flash crowd: <= 5 % of requests fail, {name}: "
                         f"{result.failed_pct:.2f} %")
            lines.append(f"{verdict(from_onset is not None and from_onset <= 300)} 10x flash crowd: capacity in band "
                         f"<= 300 s after onset, {name}: {from_onset} s")
        if shift:
            (ready,) = results[(shift, name)].ready_s
            lines.append(f"{verdict(ready is not None and ready <= 180)} permanent x2: back in band <= 180 s, "
                         f"{name}: {ready} s")
        if wave:
            result = results[(wave, name)]
            ok = result.flaps <= 2 and result.failed_pct <= 2.0
            lines.append(f"{verdict(ok)} 15-min on/off wave: <= 2 flaps and <= 2 % failed, {name}: "
                         f"{result.flaps} flaps, {result.failed_pct:.2f} %")
    pareto = next((trace for trace in traces if trace.startswith("pareto")), None)
    outage = next((trace for trace in traces if trace.startswith("metrics outage")), None)
    for name in ("engine defaults", "engine, demand trigger"):
        if pareto:
            result = results[(pareto, name)]
            hours = result.duration_s / 3600
            lines.append(f"{verdict(result.flaps <= 10 * hours / 4)} Pareto bursts: <= 10 flaps per 4 h, {name}: "
                         f"{result.flaps} flaps in {hours:g} h")
        if outage:
            result = results[(outage, name)]
            ok = result.outage_downs <= 1 and result.outage_failed == 0
            lines.append(f"{verdict(ok)} a 10-minute metrics outage: at most one step down and no failed request, "
                         f"{name}: {result.outage_downs} scale-downs, {result.outage_failed:.0f} failed")
    for trace in sorted(traces):
        reactive, predictive = results[(trace, "engine defaults")], results[(trace, "engine defaults + predictive")]
        extra = predictive.instance_hours / reactive.instance_hours - 1 if reactive.instance_hours else 0.0
        helped = (predictive.deficit_pct < reactive.deficit_pct - 0.1
                  or predictive.failed_pct < reactive.failed_pct - 0.01)
        lines.append(f"{verdict(extra <= 0.05 or helped)} prediction adds <= 5 % instance-hours unless it cuts "
                     f"deficit or failures, {trace}: {100 * extra:+.1f} %, deficit {reactive.deficit_pct:.2f} -> "
                     f"{predictive.deficit_pct:.2f} %, failed {reactive.failed_pct:.2f} -> "
                     f"{predictive.failed_pct:.2f} %")
    for share, seconds in timings.items():
        lines.append(f"{verdict(seconds < 1.0)} 1,000 groups evaluated in < 1 s, {share:.0%} predictive: "
                     f"{seconds * 1000:.0f} ms")
    if 1.0 in timings:
        lines.append(f"{verdict(timings[1.0] <= 0.150)} 1,000 all-predictive groups (3 days of history) in <= 150 ms: "
                     f"{timings[1.0] * 1000:.0f} ms")
        per_decision_us = timings[1.0] / 1000 * 1e6
        lines.append(f"{verdict(per_decision_us <= 100)} a predictive decision with 3 days of history <= 100 us: "
                     f"{per_decision_us:.0f} us")
    size = stored_decision_bytes()
    lines.append(f"{verdict(size <= 5 * 1024)} a stored predictive decision (3 days of history) <= 5 KB: "
                 f"{size / 1024:.1f} KB")
    return lines


def stored_decision_bytes() -> int:
    """The JSON size of a predictive decision as services store it (to_dict with its inputs)."""
    history = [daily_clean(60 * i) for i in range(HISTORY_MINUTES)]
    policy = engine_policy(predictive_mode="on", instance_capacity_rpm=120.0, max_instances=50)
    decision = decide(policy, MetricWindow(utilization=0.6, request_rate_history=history), GroupState(active=17),
                      EPOCH + timedelta(days=3))  # fmt: skip
    return len(json.dumps(decision.to_dict()))


if __name__ == "__main__":
    raise SystemExit(main())
