"""The auto-scaling decision engine: pure functions, no Django, an injected clock.

``decide(policy, window, state, now) -> Decision`` is the single entry point (see
``scaling.engine.decision`` for the steps). Services build the inputs from the database and store
the outputs; ``bench/scaling_sim.py`` replays load traces through the same function.
"""

from scaling.engine.decision import (
    Decision,
    ForecastInfo,
    TriggerProposal,
    advance_state,
    decide,
    decide_manual,
    replay,
)
from scaling.engine.forecast import Forecast, ForecastSettings, forecast_request_rate
from scaling.engine.policy import (
    Direction,
    GroupState,
    MetricWindow,
    PredictiveMode,
    ScalingPolicy,
    Seasonality,
    Trigger,
    TriggerTargets,
)
from scaling.engine.schedule import CronError, CronExpression, ScheduledWindow, effective_bounds

__all__ = [
    "CronError",
    "CronExpression",
    "Decision",
    "Direction",
    "Forecast",
    "ForecastInfo",
    "ForecastSettings",
    "GroupState",
    "MetricWindow",
    "PredictiveMode",
    "ScalingPolicy",
    "ScheduledWindow",
    "Seasonality",
    "Trigger",
    "TriggerProposal",
    "TriggerTargets",
    "advance_state",
    "decide",
    "decide_manual",
    "effective_bounds",
    "forecast_request_rate",
    "replay",
]
