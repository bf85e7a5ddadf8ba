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
    assert result.reversals >= 3


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
