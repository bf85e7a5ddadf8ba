import math

import pytest

from instances.balancer.latency import LatencyEstimate, current, observe


def test_the_first_sample_is_the_estimate() -> None:
    assert observe(None, 120.0, 10.0) == LatencyEstimate(value_ms=120.0, stamp=10.0)


def test_it_jumps_to_a_spike_at_once() -> None:
    estimate = observe(None, 100.0, 0.0)
    for t in range(1, 20):
        estimate = observe(estimate, 100.0, float(t))
    spiked = observe(estimate, 2000.0, 20.0)
    assert spiked.value_ms == 2000.0


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [
        (0.0, 2000.0),  # a sample at the same instant has no weight
        (10.0, 2000.0 * math.exp(-1) + 100.0 * (1 - math.exp(-1))),  # one tau: ~768 ms
        (50.0, 2000.0 * math.exp(-5) + 100.0 * (1 - math.exp(-5))),  # five tau: ~113 ms
    ],
)
def test_after_a_spike_lower_samples_pull_it_down_by_elapsed_time(elapsed: float, expected: float) -> None:
    spiked = observe(None, 2000.0, 100.0)
    assert observe(spiked, 100.0, 100.0 + elapsed).value_ms == pytest.approx(expected)


def test_it_decays_back_to_the_steady_latency_after_a_spike() -> None:
    estimate = observe(None, 2000.0, 0.0)
    for t in range(1, 121):  # twelve tau of 100 ms responses, one a second
        estimate = observe(estimate, 100.0, float(t))
    assert estimate.value_ms == pytest.approx(100.0, rel=0.01)


def test_read_decays_toward_zero_while_idle_without_changing_the_estimate() -> None:
    estimate = observe(None, 1000.0, 0.0)
    assert current(estimate, 0.0) == 1000.0
    assert current(estimate, 10.0) == pytest.approx(1000.0 * math.exp(-1))
    assert current(estimate, 40.0) == pytest.approx(1000.0 * math.exp(-4))  # ~18 ms
    assert estimate.value_ms == 1000.0


def test_unknown_latency_reads_none() -> None:
    assert current(None, 5.0) is None


def test_it_round_trips_through_a_dict() -> None:
    estimate = LatencyEstimate(value_ms=12.5, stamp=3.0)
    assert LatencyEstimate.from_dict(estimate.as_dict()) == estimate
