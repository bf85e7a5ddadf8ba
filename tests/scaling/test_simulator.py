"""The issue's targets on short traces, through bench/scaling_sim.py (the same decide() the task runs)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from scaling.engine import ScalingPolicy


def _load_simulator() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "bench" / "scaling_sim.py"
    spec = importlib.util.spec_from_file_location("scaling_sim", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("scaling_sim", module)
    spec.loader.exec_module(module)
    return module


sim = _load_simulator()
CONFIG = sim.SimConfig()


@pytest.mark.parametrize("make_policy", [sim.engine_policy, sim.seed_policy], ids=["defaults", "seed thresholds"])
def test_flat_load_with_ten_percent_noise_causes_no_action(make_policy: Callable[[], ScalingPolicy]) -> None:
    result = sim.simulate(sim.flat_trace(3600), sim.PolicySpec("engine", make_policy()), CONFIG)

    assert result.decisions == 3600 // CONFIG.eval_interval_s
    assert (result.actions, result.skipped) == (0, 0)


def test_the_same_noise_makes_a_plain_proportional_policy_flap() -> None:
    result = sim.simulate(sim.flat_trace(3600), sim.PolicySpec("naive", sim.naive_policy()), CONFIG)

    assert result.actions >= 5
    assert result.flaps >= 3


def test_a_threefold_step_is_answered_within_one_interval_plus_the_metric_window() -> None:
    trace = sim.step_trace(3600)
    result = sim.simulate(trace, sim.PolicySpec("engine", sim.engine_policy()), CONFIG)

    (reaction,) = result.reaction_s
    assert reaction is not None
    assert reaction <= CONFIG.eval_interval_s + CONFIG.window_s
    (ready,) = result.ready_s
    assert ready is not None  # the fleet does catch up within the hour


def test_scaling_actions_take_a_start_up_delay_to_become_capacity() -> None:
    result = sim.simulate(sim.step_trace(3600), sim.PolicySpec("engine", sim.engine_policy()), CONFIG)

    (ready,) = result.ready_s
    assert ready is not None and ready >= CONFIG.startup_min_s


def test_prediction_cuts_the_morning_ramp_shortfall_by_half_at_little_extra_cost() -> None:
    trace = sim.daily_trace(9 * 3600)  # midnight to 09:00: the night low and the morning rise
    reactive = sim.simulate(trace, sim.PolicySpec("reactive", sim.engine_policy()), CONFIG)
    predictive = sim.simulate(trace, sim.PolicySpec("predictive", sim.engine_policy(
        predictive_mode="on", instance_capacity_rpm=CONFIG.capacity_rpm)), CONFIG)

    assert reactive.rampup_shortfall > 0
    assert predictive.rampup_shortfall <= 0.5 * reactive.rampup_shortfall
    assert predictive.instance_hours <= 1.05 * reactive.instance_hours


def test_the_independent_hpa_v2_reference_follows_its_documented_rules() -> None:
    from scaling.engine import MetricWindow
    from scaling.engine.simulation import HpaV2

    hpa = HpaV2(1, 100, queue_per_pod=None)
    # Inside the 10 % tolerance: nothing.
    assert hpa.decide(MetricWindow(utilization=0.65), 10, 0, 0.0)[0] == 10
    # Up at most max(+100 %, +4) per period: 0.6 -> 3.0 asks for 5x.
    assert hpa.decide(MetricWindow(utilization=3.0), 2, 0, 30.0)[0] == 6
    assert hpa.decide(MetricWindow(utilization=3.0), 10, 0, 60.0)[0] == 20
    # Pods still starting count as 0 %: 10 ready at 0.9 and 5 starting is 0.6 over 15: no change.
    assert hpa.decide(MetricWindow(utilization=0.9), 10, 5, 90.0)[0] == 15
    # Down: the highest recommendation of the last 300 s (20 at t=60) holds until it ages out.
    assert hpa.decide(MetricWindow(utilization=0.3), 20, 0, 300.0)[0] == 20
    assert hpa.decide(MetricWindow(utilization=0.3), 20, 0, 400.0)[0] == 10


def test_the_engine_configured_as_hpa_and_the_independent_hpa_agree_on_the_traces() -> None:
    for trace in (sim.step_trace(), sim.level_shift_trace(), sim.flash_crowd_trace()):
        configured = sim.simulate(trace, sim.PolicySpec("engine as hpa", sim.hpa_reference_policy()), CONFIG)
        independent = sim.simulate(trace, sim.PolicySpec("hpa", None, reference=lambda lo, hi: sim.HpaV2(lo, hi)),
                                   CONFIG)  # fmt: skip
        assert independent.ready_s == configured.ready_s, trace.name
        assert abs(independent.failed_pct - configured.failed_pct) < 0.1, trace.name
