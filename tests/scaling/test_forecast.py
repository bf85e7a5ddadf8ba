"""Request-rate forecasts: a linear trend before two days of history, Holt-Winters after."""

from __future__ import annotations

import math
import random

import pytest

from scaling.engine.forecast import (
    HOLT_WINTERS,
    LINEAR_TREND,
    NO_FORECAST,
    fill_gaps,
    forecast_request_rate,
    horizon_steps,
    linear_trend_forecast,
)

DAY = 1440


def daily(minute: float) -> float:
    return 1000.0 + 500.0 * math.sin(2 * math.pi * minute / DAY)


def noisy_days(days: int, seed: int = 5, noise: float = 30.0) -> list[float]:
    rng = random.Random(seed)
    return [daily(minute) + rng.gauss(0.0, noise) for minute in range(days * DAY)]


def mean_absolute_percentage_error(forecast: tuple[float, ...], start: int) -> float:
    return sum(abs(value - daily(start + k)) / daily(start + k) for k, value in enumerate(forecast)) / len(forecast)


def test_a_linear_ramp_is_extrapolated() -> None:
    history = [100.0 + 2.0 * minute for minute in range(20)]  # 100 .. 138

    forecast = forecast_request_rate(history, 4)

    assert forecast.method == LINEAR_TREND
    assert forecast.values == pytest.approx((140.0, 142.0, 144.0, 146.0))
    assert forecast.peak == pytest.approx(146.0)


def test_the_linear_trend_uses_only_the_recent_minutes() -> None:
    history = [5000.0] * 100 + [100.0 + minute for minute in range(30)]

    assert forecast_request_rate(history, 1).values == pytest.approx((130.0,))


def test_noise_on_a_flat_load_is_not_extrapolated_into_a_trend() -> None:
    rng = random.Random(2)
    history = [700.0 * (1 + rng.uniform(-0.1, 0.1)) for _ in range(30)]

    forecast = forecast_request_rate(history, 4)

    assert forecast.method == LINEAR_TREND
    assert forecast.values == pytest.approx([sum(history) / 30] * 4)


def test_a_falling_trend_never_forecasts_negative_load() -> None:
    assert linear_trend_forecast([50.0, 30.0, 10.0], 3) == [0.0, 0.0, 0.0]


def test_too_little_history_gives_no_forecast() -> None:
    forecast = forecast_request_rate([10.0, None, 12.0, 11.0], 4)

    assert (forecast.method, forecast.values, forecast.peak) == (NO_FORECAST, (), None)


def test_missing_minutes_carry_the_previous_value_and_leading_gaps_are_dropped() -> None:
    assert fill_gaps([None, None, 3.0, None, 5.0, float("nan"), -1.0, 7.0]) == [3.0, 3.0, 5.0, 5.0, 5.0, 7.0]


def test_two_days_of_a_noisy_daily_cycle_are_forecast_with_small_error_by_holt_winters() -> None:
    history = noisy_days(2)

    forecast = forecast_request_rate(history, 60)

    assert forecast.method == HOLT_WINTERS
    assert forecast.history_minutes == 2 * DAY
    assert mean_absolute_percentage_error(forecast.values, 2 * DAY) < 0.02


def test_holt_winters_sees_the_daily_turn_coming_where_a_trend_overshoots() -> None:
    # Two hours before the daily peak (minute 360 of the day), forecasting the next two hours.
    now = 2 * DAY + 240
    history = noisy_days(3)[:now]

    seasonal = forecast_request_rate(history, 120)
    trend_only = forecast_request_rate(history[-DAY:], 120)

    assert (seasonal.method, trend_only.method) == (HOLT_WINTERS, LINEAR_TREND)
    seasonal_error = mean_absolute_percentage_error(seasonal.values, now)
    trend_error = mean_absolute_percentage_error(trend_only.values, now)
    assert seasonal_error < 0.01
    assert seasonal_error < trend_error / 2


def test_holt_winters_follows_a_level_shift_within_the_last_day() -> None:
    history = noisy_days(3)
    history[-120:] = [value * 1.3 for value in history[-120:]]  # the last two hours 30 % busier

    forecast = forecast_request_rate(history, 10)

    expected = [1.3 * daily(3 * DAY + k) for k in range(10)]
    assert sum(forecast.values) / 10 == pytest.approx(sum(expected) / 10, rel=0.05)


@pytest.mark.parametrize(("seconds", "steps"), [(0, 2), (60, 2), (61, 3), (180, 4), (480, 9)])
def test_the_horizon_covers_the_minute_in_progress(seconds: int, steps: int) -> None:
    assert horizon_steps(seconds) == steps


def test_holt_winters_reports_a_small_trailing_error_on_a_regular_day_and_a_large_one_after_a_level_shift():
    from scaling.engine.forecast import forecast_request_rate

    day = [1000.0 - 600.0 * math.cos(2 * math.pi * minute / 1440) for minute in range(3 * 1440)]
    regular = forecast_request_rate(day, 3)
    halved = forecast_request_rate(day[:-60] + [value * 0.5 for value in day[-60:]], 3)

    assert regular.method == "holt_winters" and regular.trailing_error is not None
    assert regular.trailing_error < 0.02
    assert halved.trailing_error is not None and halved.trailing_error > 0.3


def test_a_season_other_than_a_day_is_forecast_with_its_own_length():
    from scaling.engine.forecast import ForecastSettings, forecast_request_rate

    ten_hours = [800.0 + 400.0 * math.sin(2 * math.pi * minute / 600) for minute in range(3 * 1440)]
    daily = forecast_request_rate(ten_hours, 3)
    own = forecast_request_rate(ten_hours, 3, ForecastSettings(season_minutes=600))

    assert daily.trailing_error is not None and own.trailing_error is not None
    assert own.trailing_error < 0.01 < daily.trailing_error
    assert own.values[0] == pytest.approx(800.0 + 400.0 * math.sin(2 * math.pi * (3 * 1440) / 600), rel=0.02)


def test_multiplicative_seasonality_keeps_the_swing_in_proportion_after_the_level_halves():
    from scaling.engine.forecast import ForecastSettings, forecast_request_rate

    # Two days at 1,000 req/min +-60 %, then a day at 500 +-60 %: the swing shrinks with the level.
    def load(minute: int) -> float:
        return (1000.0 if minute < 2880 else 500.0) * (1 + 0.6 * math.sin(2 * math.pi * minute / 1440))

    history = [load(minute) for minute in range(4320)]

    def error_ahead(settings: ForecastSettings) -> float:
        values = forecast_request_rate(history, 360, settings).values
        return sum(abs(v - load(4320 + i)) / load(4320 + i) for i, v in enumerate(values)) / len(values)

    additive, multiplicative = error_ahead(ForecastSettings()), error_ahead(ForecastSettings(multiplicative=True))
    assert multiplicative < 0.06 and additive > 0.2  # the next 6 hours: 5 % off against 26 %
    trailing = forecast_request_rate(history, 3, ForecastSettings(multiplicative=True)).trailing_error
    assert trailing is not None and trailing < 0.01
