"""Live per-target statistics: requests in flight and recent latencies.

Recent samples live in fixed-size rings (the last `SAMPLES` of each), so
percentiles describe recent behaviour and memory stays constant. Percentiles
are exact over the ring (nearest-rank).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..providers import RateLimitState

__all__ = ["SAMPLES", "LiveStats", "PeakEwma", "TargetStats", "percentile"]

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


class PeakEwma:
    """A peak-sensitive moving average of a latency, decaying with time.

    A sample above the average replaces it at once (a target that turns slow
    is noticed on its first slow answer). A sample below pulls it down by at
    least `pull` of the gap, and by more when the previous sample is old (the
    old value's weight halves every `half_life` seconds), so a target that
    recovers is trusted again after a few good answers whether samples come
    often or rarely. `None` until the first sample.
    """

    __slots__ = ("_half_life", "_keep", "at", "value")

    def __init__(self, half_life: float, pull: float = 0.3) -> None:
        self._half_life = half_life
        self._keep = 1.0 - pull
        self.value: float | None = None
        self.at = 0.0

    def add(self, sample: float, now: float) -> None:
        value = self.value
        if value is None or sample >= value:
            self.value = sample
        else:
            keep = min(self._keep, 0.5 ** (max(now - self.at, 0.0) / self._half_life))
            self.value = value * keep + sample * (1.0 - keep)
        self.at = now


@dataclass(slots=True, frozen=True)
class TargetStats:
    """A snapshot of one target's live statistics.

    Latencies are seconds over the most recent samples; None before any sample.
    `ewma_ttft_s` (streams) and `ewma_s_per_token` (non-streams) are what the
    ``latency`` strategy compares; `error_ratio` is the health window's failure
    share and `rate_limit` the provider's last reported rate-limit state.
    """

    in_flight: int
    requests: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    ewma_ttft_s: float | None
    ewma_s_per_token: float | None
    mean_output_tokens: float | None
    error_ratio: float = 0.0
    rate_limit: RateLimitState | None = None


class _Target:
    __slots__ = (
        "ewma_per_token",
        "ewma_ttft",
        "in_flight",
        "latency",
        "output_count",
        "output_tokens",
        "requests",
        "ttft",
    )

    def __init__(self, half_life: float) -> None:
        self.in_flight = 0
        self.requests = 0
        self.latency = _Ring()
        self.ttft = _Ring()
        self.ewma_ttft = PeakEwma(half_life)
        self.ewma_per_token = PeakEwma(half_life)
        self.output_tokens = 0
        self.output_count = 0


class LiveStats:
    """Statistics for every target of one router, keyed by ``provider/model``.

    Args:
        half_life: the half-life, in seconds, of the moving latency averages.
    """

    def __init__(self, half_life: float = 30.0) -> None:
        self._half_life = half_life
        self._targets: dict[str, _Target] = {}

    def _get(self, key: str) -> _Target:
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = _Target(self._half_life)
        return target

    def target(self, key: str) -> _Target | None:
        """The raw state of `key` (for strategies), or None before its first attempt."""
        return self._targets.get(key)

    def streamed(self, key: str, ttft: float, now: float) -> None:
        """A stream's time to first token, for the latency average."""
        self._get(key).ewma_ttft.add(ttft, now)

    def answered(self, key: str, latency: float, output_tokens: int, now: float) -> None:
        """A non-streamed answer's latency and length, for the per-token average."""
        target = self._get(key)
        target.ewma_per_token.add(latency / max(output_tokens, 1), now)
        target.output_tokens += output_tokens
        target.output_count += 1

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

    def latency_percentile(self, key: str, q: float) -> float | None:
        """The `q`-th percentile of `key`'s recent total latency."""
        target = self._targets.get(key)
        return percentile(target.latency.values(), q) if target else None

    def snapshot(self, key: str) -> TargetStats:
        """`key`'s statistics now."""
        target = self._targets.get(key) or _Target(self._half_life)
        latency, ttft = target.latency.values(), target.ttft.values()
        count = target.output_count
        return TargetStats(
            in_flight=target.in_flight,
            requests=target.requests,
            latency_p50_s=percentile(latency, 50),
            latency_p95_s=percentile(latency, 95),
            ttft_p50_s=percentile(ttft, 50),
            ttft_p95_s=percentile(ttft, 95),
            ewma_ttft_s=target.ewma_ttft.value,
            ewma_s_per_token=target.ewma_per_token.value,
            mean_output_tokens=target.output_tokens / count if count else None,
        )
