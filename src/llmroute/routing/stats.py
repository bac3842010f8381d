"""Live per-target statistics: requests in flight and recent latencies.

Recent samples live in fixed-size rings (the last `SAMPLES` of each), so
percentiles describe recent behaviour and memory stays constant. Percentiles
are exact over the ring (nearest-rank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SAMPLES", "LiveStats", "TargetStats", "percentile"]

#: How many recent samples each ring keeps.
SAMPLES = 256


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank `q`-th percentile (0-100) of `values`, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


class _Ring:
    __slots__ = ("_next", "_values")

    def __init__(self) -> None:
        self._values: list[float] = []
        self._next = 0

    def add(self, value: float) -> None:
        if len(self._values) < SAMPLES:
            self._values.append(value)
        else:
            self._values[self._next] = value
            self._next = (self._next + 1) % SAMPLES

    def values(self) -> list[float]:
        return list(self._values)


@dataclass(slots=True, frozen=True)
class TargetStats:
    """A snapshot of one target's live statistics.

    Latencies are seconds over the most recent samples; None before any sample.
    """

    in_flight: int
    requests: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None


class _Target:
    __slots__ = ("in_flight", "latency", "requests", "ttft")

    def __init__(self) -> None:
        self.in_flight = 0
        self.requests = 0
        self.latency = _Ring()
        self.ttft = _Ring()


class LiveStats:
    """Statistics for every target of one router, keyed by ``provider/model``."""

    def __init__(self) -> None:
        self._targets: dict[str, _Target] = {}

    def _get(self, key: str) -> _Target:
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = _Target()
        return target

    def started(self, key: str) -> None:
        """An attempt to `key` began."""
        self._get(key).in_flight += 1

    def ended(self, key: str) -> None:
        """An attempt to `key` ended, whatever its outcome."""
        target = self._get(key)
        target.in_flight = max(0, target.in_flight - 1)
        target.requests += 1

    def latency(self, key: str, seconds: float) -> None:
        """A successful attempt's total latency."""
        self._get(key).latency.add(seconds)

    def first_token(self, key: str, seconds: float) -> None:
        """A stream's (or, for non-streams, the answer's) time to first content."""
        self._get(key).ttft.add(seconds)

    def ttft_percentile(self, key: str, q: float) -> float | None:
        """The `q`-th percentile of `key`'s recent time to first content."""
        target = self._targets.get(key)
        return percentile(target.ttft.values(), q) if target else None

    def snapshot(self, key: str) -> TargetStats:
        """`key`'s statistics now."""
        target = self._targets.get(key) or _Target()
        latency, ttft = target.latency.values(), target.ttft.values()
        return TargetStats(
            in_flight=target.in_flight,
            requests=target.requests,
            latency_p50_s=percentile(latency, 50),
            latency_p95_s=percentile(latency, 95),
            ttft_p50_s=percentile(ttft, 50),
            ttft_p95_s=percentile(ttft, 95),
        )
