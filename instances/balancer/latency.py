"""Peak-EWMA latency estimate per instance (Finagle's PeakEwma, as linkerd and Envoy use it).

With the estimate e stamped at s, a sample x observed at time t becomes:

    x > e:   e' = x                                   (jump to a peak at once)
    x <= e:  e' = e * w + x * (1 - w),  w = exp(-(t - s) / tau)   (decay by elapsed time)

and s' = t. Read at time t, the estimate is e * exp(-(t - s) / tau): it keeps
decaying toward zero while no sample arrives, as if idle time were fast
responses, so an instance that was slow once is tried again after a few tau
instead of being starved forever. Reading does not modify the estimate, so
every process reading shared state at the same time sees the same value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

DEFAULT_TAU_SECONDS = 10.0
# After this many tau the read value is below e * 1e-13: the key can expire.
RETENTION_TAUS = 30


@dataclass(frozen=True, slots=True)
class LatencyEstimate:
    value_ms: float
    stamp: float

    def as_dict(self) -> dict[str, float]:
        return {"v": self.value_ms, "t": self.stamp}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyEstimate:
        return cls(value_ms=float(data["v"]), stamp=float(data["t"]))


def observe(
    estimate: LatencyEstimate | None, sample_ms: float, now: float, *, tau: float = DEFAULT_TAU_SECONDS
) -> LatencyEstimate:
    """Fold one latency sample into the estimate (formula in the module docstring)."""
    if estimate is None or sample_ms > estimate.value_ms:
        return LatencyEstimate(value_ms=sample_ms, stamp=now)
    w = _weight(estimate, now, tau)
    return LatencyEstimate(value_ms=estimate.value_ms * w + sample_ms * (1.0 - w), stamp=now)


def current(estimate: LatencyEstimate | None, now: float, *, tau: float = DEFAULT_TAU_SECONDS) -> float | None:
    """The estimate as seen at `now`: e * exp(-(now - s) / tau); None before the first sample."""
    if estimate is None:
        return None
    return estimate.value_ms * _weight(estimate, now, tau)


def _weight(estimate: LatencyEstimate, now: float, tau: float) -> float:
    return math.exp(-max(now - estimate.stamp, 0.0) / tau)
