"""Pure arithmetic of the per-minute rollups and the reports: no ORM, no clock."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

FAILED = frozenset({"error", "rate_limited", "client_closed"})


def floor_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def nearest_rank(sorted_values: Sequence[float], q: float) -> float | None:
    """The value at position ceil(q * n) (1-based) of the sorted values: the nearest-rank
    percentile, the definition alerts.selectors uses for p95 too. None when empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(q * len(sorted_values)))
    return float(sorted_values[rank - 1])


def rank_positions(n: int, quantiles: Iterable[float]) -> dict[int, list[float]]:
    """{0-based position in the sorted stream: the quantiles found there}, for picking percentiles
    from a stream sorted by the database without holding it in memory."""
    positions: dict[int, list[float]] = {}
    for q in quantiles:
        if n:
            positions.setdefault(max(1, math.ceil(q * n)) - 1, []).append(q)
    return positions


@dataclass
class Bucket:
    """The requests of one instance in one minute, as the rollup accumulates them.

    Only successful requests' latencies are kept (Coalesce(upstream, total), like the alert rules),
    so memory is bounded by one instance's requests in one minute.
    """

    request_count: int = 0
    success_count: int = 0
    failure_count: int = 0
    timeout_count: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, *, status: str, latency_ms: float | None, prompt_tokens: int, completion_tokens: int) -> None:
        self.request_count += 1
        if status == "success":
            self.success_count += 1
            if latency_ms is not None:
                self.latencies.append(latency_ms)
        elif status == "timeout":
            self.timeout_count += 1
        else:
            self.failure_count += 1
        self.prompt_tokens += prompt_tokens or 0
        self.completion_tokens += completion_tokens or 0

    def summary(self, cost: Decimal) -> dict[str, object]:
        """InstanceMetrics fields. error_rate = (failures + timeouts) / requests, 0..1."""
        ordered = sorted(self.latencies)
        return {
            "request_count": self.request_count,
            "success_count": self.success_count,
            "failure_count": self.failure_count,
            "timeout_count": self.timeout_count,
            "avg_response_ms": sum(ordered) / len(ordered) if ordered else None,
            "p50_response_ms": nearest_rank(ordered, 0.50),
            "p95_response_ms": nearest_rank(ordered, 0.95),
            "p99_response_ms": nearest_rank(ordered, 0.99),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "error_rate": (self.failure_count + self.timeout_count) / self.request_count if self.request_count else 0.0,
            "estimated_cost": cost,
        }


def minutes(start: datetime, end: datetime) -> list[datetime]:
    """Bucket starts of the closed minutes in [start, end)."""
    out, moment = [], floor_minute(start)
    while moment < end:
        out.append(moment)
        moment += timedelta(minutes=1)
    return out


def change(current: float | None, previous: float | None) -> float | None:
    """Relative change current/previous - 1; None when either is unknown or previous is 0."""
    if current is None or previous is None or previous == 0:
        return None
    return current / previous - 1.0
