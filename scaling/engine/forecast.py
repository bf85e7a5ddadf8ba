"""Forecast a group's request rate from its per-minute history.

* Two full seasons or more: Holt-Winters, season = ``season_minutes`` (1,440: a day), additive::

      level_t    = a (x_t - s_{t-m}) + (1 - a)(level_{t-1} + trend_{t-1})
      trend_t    = b (level_t - level_{t-1}) + (1 - b) trend_{t-1}
      s_t        = g (x_t - level_t) + (1 - g) s_{t-m}
      x^_{t+h}   = level_t + h trend_t + s_{t+h-m}

  Initialised from the first two seasons used: level = mean of season 1, trend = (mean of season 2
  - mean of season 1) / m, s_i = mean over both seasons of (x - that season's mean), smoothed with
  a short circular moving average so one noisy minute yesterday does not become a spike tomorrow.
  Only the last ``max_history_days`` seasons are used, which bounds the cost (one pass, about 0.2 µs
  a point). ``multiplicative``: the season scales the level instead (``x / s`` in the level,
  ``x / level`` in the season, ``(level + h trend) x s`` ahead), for traffic whose daily swing grows
  and shrinks with it; seasonal factors start at the ratio of each minute to its season's mean.
* Fewer than two seasons: least-squares line through the last ``trend_minutes`` points, its
  slope kept only when significant (|slope| >= 2 standard errors), else the recent mean.
* Fewer than ``min_points`` usable points: no forecast.

Missing minutes (``None``) are filled with the previous value; leading ones are dropped.
Forecasts are never negative.

Every forecast carries its ``trailing_error``: the mean absolute percentage error of the method's
one-minute-ahead forecasts over the last TRAILING_MINUTES (60) minutes of history (minutes with no
request left out), so a caller can tell a forecast that has been right from one that has not.
Holt-Winters measures it in the same pass (the forecast each minute made of the next, before
seeing it); the linear trend by refitting at each of its last TRAILING_TREND_POINTS minutes. None
when too little history was there to measure it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, cast

SEASON_MINUTES = 1440
# The history a group's metric window carries (scaling.metrics) and the simulator replays: enough
# for Holt-Winters (two daily seasons) with a day to spare, what the forecast keeps at most.
HISTORY_MINUTES = 3 * SEASON_MINUTES
TRAILING_MINUTES = 60
TRAILING_TREND_POINTS = 15

HOLT_WINTERS = "holt_winters"
LINEAR_TREND = "linear_trend"
NO_FORECAST = "none"


@dataclass(frozen=True, slots=True)
class ForecastSettings:
    season_minutes: int = SEASON_MINUTES
    # Picked on synthetic days with +-5 % noise a minute: mean error over the next 5 minutes
    # 0.50 %, against 0.72 % for (0.1, 0.001, 0.1, 15) and 1.08 % for (0.2, 0.005, 0.2, 15).
    alpha: float = 0.05
    beta: float = 0.001
    gamma: float = 0.1
    seasonal_smoothing_minutes: int = 31
    max_history_days: int = 3  # seasons of history used, at most
    multiplicative: bool = False
    trend_minutes: int = 30
    min_points: int = 5


DEFAULT_SETTINGS = ForecastSettings()


@dataclass(frozen=True, slots=True)
class Forecast:
    method: str
    values: tuple[float, ...]  # one per minute after the last complete one
    history_minutes: int
    trailing_error: float | None = None  # MAPE of the one-minute-ahead forecasts over the last hour

    @property
    def peak(self) -> float | None:
        return max(self.values) if self.values else None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "values": list(self.values), "history_minutes": self.history_minutes,
                "peak": self.peak, "trailing_error": self.trailing_error}


def horizon_steps(horizon_seconds: int) -> int:
    """Minutes to forecast so that [now, now + horizon] is covered.

    The last history value is the minute that ended most recently; now lies up to a minute after
    it, hence the extra step.
    """
    return max(1, math.ceil(horizon_seconds / 60)) + 1


def fill_gaps(history: Sequence[float | None]) -> list[float]:
    if history and None not in history:
        numbers = cast("Sequence[float]", history)
        # The usual case, checked at C speed: nothing negative, infinite or NaN.
        if min(numbers) >= 0 and math.isfinite(sum(numbers)):
            return list(numbers)
    filled: list[float] = []
    last: float | None = None
    for value in history:
        if value is not None and math.isfinite(value) and value >= 0:
            last = float(value)
        if last is not None:
            filled.append(last)
    return filled


def linear_trend_forecast(series: Sequence[float], steps: int, min_t: float = 2.0) -> list[float]:
    """Least squares y = a + b x over x = 0..n-1, evaluated at n..n+steps-1.

    The slope is kept only when significant (|b| / standard error >= ``min_t``); otherwise the
    forecast is the mean, so noise on a flat load is not extrapolated into a trend.
    """
    n = len(series)
    mean_x = (n - 1) / 2
    mean_y = sum(series) / n
    spread = sum((x - mean_x) ** 2 for x in range(n))
    slope = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(series)) / spread if spread else 0.0
    if n > 2 and slope:
        residual = sum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in enumerate(series)) / (n - 2)
        if abs(slope) < min_t * math.sqrt(residual / spread):
            slope = 0.0
    return [max(0.0, mean_y + slope * (n - 1 + k - mean_x)) for k in range(1, steps + 1)]


def _smooth_circular(values: list[float], width: int) -> list[float]:
    """Centred moving average of ``width`` (odd) points, wrapping around the season."""
    half = width // 2
    if half < 1:
        return values
    span = 2 * half + 1
    totals = [0.0, *accumulate(values[-half:] + values + values[:half])]
    return [(high - low) / span for low, high in zip(totals, totals[span:], strict=False)]


def holt_winters_forecast(series: Sequence[float], steps: int, settings: ForecastSettings = DEFAULT_SETTINGS
                          ) -> list[float]:
    """Additive Holt-Winters (see the module docstring); ``series`` must hold two seasons or more."""
    return _holt_winters(series, steps, settings)[0]


def _holt_winters(series: Sequence[float], steps: int, settings: ForecastSettings
                  ) -> tuple[list[float], float | None]:
    """(forecast, trailing one-minute-ahead MAPE) in one pass."""
    m = settings.season_minutes
    n = len(series)
    if n < 2 * m:
        raise ValueError(f"Holt-Winters needs two seasons ({2 * m} points), got {n}")
    multiplicative = settings.multiplicative
    first_mean = sum(series[:m]) / m
    second_mean = sum(series[m:2 * m]) / m
    level = first_mean
    trend = (second_mean - first_mean) / m
    if multiplicative:
        first, second = max(first_mean, 1e-9), max(second_mean, 1e-9)
        seasonal = [(x / first + y / second) / 2 for x, y in zip(series[:m], series[m:2 * m], strict=True)]
    else:
        offset = (first_mean + second_mean) / 2
        seasonal = [(x + y) / 2 - offset for x, y in zip(series[:m], series[m:2 * m], strict=True)]
    seasonal = _smooth_circular(seasonal, settings.seasonal_smoothing_minutes)
    a, b, g = settings.alpha, settings.beta, settings.gamma
    keep_a, keep_b, keep_g = 1 - a, 1 - b, 1 - g
    k = 0
    scored_from = n - TRAILING_MINUTES
    errors: list[float] = []
    for index, value in enumerate(series):
        season = seasonal[k]
        if index >= scored_from and value > 0:
            ahead = (level + trend) * season if multiplicative else level + trend + season
            errors.append(abs(max(0.0, ahead) - value) / value)
        previous = level
        if multiplicative:
            level = a * (value / season if season > 1e-9 else level) + keep_a * (level + trend)
            trend = b * (level - previous) + keep_b * trend
            seasonal[k] = g * (value / level if level > 1e-9 else season) + keep_g * season
        else:
            level = a * (value - season) + keep_a * (level + trend)
            trend = b * (level - previous) + keep_b * trend
            seasonal[k] = g * (value - level) + keep_g * season
        k += 1
        if k == m:
            k = 0
    if multiplicative:
        values = [max(0.0, (level + h * trend) * seasonal[(n + h - 1) % m]) for h in range(1, steps + 1)]
    else:
        values = [max(0.0, level + h * trend + seasonal[(n + h - 1) % m]) for h in range(1, steps + 1)]
    return values, (sum(errors) / len(errors) if errors else None)


def _trend_trailing_error(series: Sequence[float], settings: ForecastSettings) -> float | None:
    """MAPE of the linear trend's one-minute-ahead forecasts at each of the last TRAILING_TREND_POINTS
    minutes, each fitted on the trend_minutes before it."""
    errors = []
    for end in range(max(settings.min_points, len(series) - TRAILING_TREND_POINTS), len(series)):
        actual = series[end]
        if actual > 0:
            (predicted,) = linear_trend_forecast(series[max(0, end - settings.trend_minutes):end], 1)
            errors.append(abs(predicted - actual) / actual)
    return sum(errors) / len(errors) if errors else None


def forecast_request_rate(history: Sequence[float | None], steps: int,
                          settings: ForecastSettings = DEFAULT_SETTINGS) -> Forecast:
    """Forecast ``steps`` minutes after the last history value (see the module docstring)."""
    series = fill_gaps(history)
    season = settings.season_minutes
    if len(series) >= 2 * season:
        keep = max(2, settings.max_history_days) * season
        values, error = _holt_winters(series[-keep:], steps, settings)
        return Forecast(HOLT_WINTERS, tuple(values), len(series), error)
    if len(series) >= settings.min_points:
        recent = series[-settings.trend_minutes:]
        trailing = series[-(settings.trend_minutes + TRAILING_TREND_POINTS):]
        return Forecast(LINEAR_TREND, tuple(linear_trend_forecast(recent, steps)), len(series),
                        _trend_trailing_error(trailing, settings))
    return Forecast(NO_FORECAST, (), len(series))
