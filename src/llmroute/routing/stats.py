"""Live per-target statistics: requests in flight and recent latencies.

Recent samples live in fixed-size rings (the last `SAMPLES` of each), so
percentiles describe recent behaviour and memory stays constant. Percentiles
are exact over the ring (nearest-rank).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from math import exp, log
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..providers import RateLimitState

__all__ = [
    "DEFAULT_OUTPUT",
    "SAMPLES",
    "LiveStats",
    "PeakEwma",
    "TargetCounters",
    "TargetStats",
    "percentile",
]

#: How many recent samples each ring keeps.
SAMPLES = 256
#: The output tokens expected from a target that has not answered yet (for pricing).
DEFAULT_OUTPUT = 256


def percentile(values: Collection[float], q: float) -> float | None:
    """The nearest-rank `q`-th percentile (0-100) of `values`, or None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


class _Ring:
    """The last `SAMPLES` values added (a bounded deque: appending is one C call) and how
    many were ever added. The live events append inline (``ring.values.append(x);
    ring.added += 1``): a Python call less per sample."""

    __slots__ = ("_p95", "_p95_added", "added", "values")

    def __init__(self) -> None:
        self.values: deque[float] = deque(maxlen=SAMPLES)
        self.added = 0
        self._p95: float | None = None
        self._p95_added = -1

    def recent_p95(self) -> float | None:
        """The 95th percentile, recomputed once a sixteenth of the ring has changed."""
        values = self.values
        if self.added - self._p95_added >= max(1, len(values) // 16):
            self._p95, self._p95_added = percentile(values, 95), self.added
        return self._p95


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
            age = now - self.at  # min() and max() as expressions: two calls less a sample
            fade = 0.5 ** (age / self._half_life) if age > 0.0 else 1.0
            keep = self._keep if self._keep <= fade else fade
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


class TargetCounters:
    """One target's live state, as `LiveStats` keeps it and strategies read it.

    `in_flight` counts attempts under way, `requests` the attempts that ended,
    `expected_output` the output tokens to expect (the observed mean, 256
    before any). `ttft_weight` and `token_weight` are the latency strategy's
    draw weights (time to first token for streams, seconds per output token
    otherwise): 1 / score, where the score is the EWMA times (requests in
    flight + 1) faded by the age of its last sample, up to a factor common to
    every target (so only ratios between weights mean anything; see
    `LiveStats.score`). A weight is 0.0 before the first sample and once the
    score has faded to nothing. Weights are kept current as events arrive
    (from the first selection that needs them), so selection only reads them.
    Read-only for everyone but `LiveStats`.
    """

    __slots__ = (
        "ewma_per_token",
        "ewma_ttft",
        "expected_output",
        "in_flight",
        "latency",
        "output_count",
        "output_tokens",
        "requests",
        "token_weight",
        "ttft",
        "ttft_weight",
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
        #: The output tokens to expect from this target: the observed mean, 256 before any.
        self.expected_output = DEFAULT_OUTPUT
        self.ttft_weight = self.token_weight = 0.0

    def rescore(self, origin: float, decay: float) -> None:
        """Recompute both draw weights against `origin` (see `_weight`)."""
        busy = self.in_flight + 1
        ewma = self.ewma_ttft
        self.ttft_weight = _weight((ewma.value or 0.0) * busy, ewma.at, origin, decay)
        ewma = self.ewma_per_token
        self.token_weight = _weight((ewma.value or 0.0) * busy, ewma.at, origin, decay)


def _weight(score: float, at: float, origin: float, decay: float) -> float:
    """1 / (score faded by its age), divided by the common factor exp((now - origin) * decay).

    The faded score is score * exp(-(now - at) * decay), so its inverse is
    exp((now - origin) * decay) * exp((origin - at) * decay) / score: the first
    factor is the same for every target and cancels out of draw probabilities.
    """
    if not score:
        return 0.0
    weight = exp(min((origin - at) * decay, _MAX_EXPONENT)) / score
    return 0.0 if weight > _FADED_OUT else weight  # faded out: as if never measured


#: The largest exponent passed to exp() (exp(700) is about 1e304, below the float maximum).
_MAX_EXPONENT = 700.0
#: Draw weights are rebased when their origin is this many fade half-lives old, long
#: before exp() could underflow for a fresh sample.
_REBASE_AFTER = 8.0
#: A rebased weight above this belongs to a sample so old that its score has faded to
#: nothing: it becomes 0.0, "never measured", and the target is explored again.
_FADED_OUT = 1e200


class LiveStats:
    """Statistics for every target of one router, keyed by ``provider/model``.

    Fast path: latency draw weights kept current per event, so a latency selection
    reads them (part of eb689e0: 9-14 µs -> under 5 µs for 10 targets; 1.7 µs today,
    bench_select.py). Oracle: tests/test_strategy_orders.py.

    Args:
        half_life: the half-life, in seconds, of the moving latency averages.
    """

    def __init__(self, half_life: float = 30.0, fade: float = 120.0) -> None:
        self._half_life = half_life
        self._counters: dict[str, TargetCounters] = {}
        #: The ``latency`` strategy's fade: a score's half-life while its target goes unmeasured.
        self.fade = fade
        self.decay = log(2.0) / fade  # exp(-age * decay) halves every `fade` seconds
        #: The time the draw weights are relative to (see `_weight`).
        self.origin = 0.0
        self._origin_set = False
        #: Counts rebases: only a rebase can return a measured target's weight to 0.
        self.epoch = 0
        #: Whether draw weights are kept: from the first selection that reads them
        #: (routes of other strategies do not pay for them on every event).
        self.scoring = False

    def enable_scores(self, now: float) -> None:
        """Keep every target's latency draw weights current from now on."""
        if self.scoring:
            return
        self.scoring = True
        self._rebase(now)
        for target in self._counters.values():
            target.rescore(self.origin, self.decay)

    def _rescore(self, target: TargetCounters, now: float | None = None) -> None:
        if now is not None and (
            not self._origin_set or now - self.origin > _REBASE_AFTER * self.fade
        ):
            self._rebase(now)
        target.rescore(self.origin, self.decay)

    def _rebase(self, now: float) -> None:
        """Move the weights' origin to `now`, rescaling every target's weights to match."""
        shift = (now - self.origin) * self.decay if self._origin_set else 0.0
        factor = exp(min(shift, _MAX_EXPONENT))
        self.origin, self._origin_set = now, True
        self.epoch += 1
        for target in self._counters.values():
            ttft, token = target.ttft_weight * factor, target.token_weight * factor
            target.ttft_weight = 0.0 if ttft > _FADED_OUT else ttft
            target.token_weight = 0.0 if token > _FADED_OUT else token

    def _get(self, key: str) -> TargetCounters:
        target = self._counters.get(key)
        if target is None:
            target = self._counters[key] = TargetCounters(self._half_life)
        return target

    # The events below read the counters with ``.get(key) or self._get(key)`` and call
    # `_rescore` only while scoring: two calls less per event, six per request
    # (llmroute's own work per chat request 213.5k -> 211.8k, callgrind, 2026-12-03);
    # they append to the rings inline and call no max(): see docs/performance.md.

    def forget(self, key: str) -> bool:
        """Drop `key`'s statistics unless an attempt on it is under way; whether they went."""
        counters = self._counters.get(key)
        if counters is not None and counters.in_flight:
            return False
        self._counters.pop(key, None)
        return True

    def target(self, key: str) -> TargetCounters | None:
        """The live state of `key` (for strategies), or None before its first attempt."""
        return self._counters.get(key)

    def targets(self, keys: Iterable[str]) -> list[TargetCounters | None]:
        """The live state of each of `keys` (None for one never tried), in order."""
        get = self._counters.get
        return [get(key) for key in keys]

    def score(self, weight: float, now: float, origin: float) -> float:
        """The latency score a draw weight made against `origin` stands for at `now`: the
        EWMA times (requests in flight + 1), faded by its age; 0.0 for an unmeasured one."""
        if not weight:
            return 0.0
        return exp(min((now - origin) * self.decay, _MAX_EXPONENT)) / weight

    def streamed(self, key: str, ttft: float, now: float) -> None:
        """A stream's time to first token: its recent samples and the latency average."""
        target = self._counters.get(key) or self._get(key)
        ring = target.ttft
        ring.values.append(ttft)
        ring.added += 1
        target.ewma_ttft.add(ttft, now)
        if self.scoring:
            self._rescore(target, now)

    def answered(self, key: str, latency: float, output_tokens: int, now: float) -> None:
        """A non-streamed answer's latency (its time to first content too) and length, for
        the per-token average."""
        target = self._counters.get(key) or self._get(key)
        ring = target.ttft
        ring.values.append(latency)
        ring.added += 1
        target.ewma_per_token.add(latency / output_tokens if output_tokens > 1 else latency, now)
        target.output_tokens += output_tokens
        target.output_count += 1
        target.expected_output = round(target.output_tokens / target.output_count)
        if self.scoring:
            self._rescore(target, now)

    def started(self, key: str) -> None:
        """An attempt to `key` began."""
        target = self._counters.get(key) or self._get(key)
        target.in_flight += 1
        if self.scoring:
            self._rescore(target)

    def ended(self, key: str, latency: float | None = None) -> None:
        """An attempt to `key` ended, whatever its outcome; `latency`: it answered, after
        that many seconds (a sample of its total latency)."""
        target = self._counters.get(key) or self._get(key)
        if target.in_flight > 0:
            target.in_flight -= 1
        target.requests += 1
        if latency is not None:
            ring = target.latency
            ring.values.append(latency)
            ring.added += 1
        if self.scoring:
            self._rescore(target)

    def ttft_percentile(self, key: str, q: float) -> float | None:
        """The `q`-th percentile of `key`'s recent time to first content."""
        target = self._counters.get(key)
        return percentile(target.ttft.values, q) if target else None

    def latency_percentile(self, key: str, q: float) -> float | None:
        """The `q`-th percentile of `key`'s recent total latency."""
        target = self._counters.get(key)
        return percentile(target.latency.values, q) if target else None

    def recent_latency_p95(self, key: str) -> float | None:
        """About the 95th percentile of `key`'s recent total latency, for selection: exact
        but for up to a sixteenth of the window's samples (it is recomputed that often)."""
        target = self._counters.get(key)
        return target.latency.recent_p95() if target else None

    def recent_ttft_p95(self, key: str) -> float | None:
        """Likewise for `key`'s recent time to first content."""
        target = self._counters.get(key)
        return target.ttft.recent_p95() if target else None

    def snapshot(self, key: str) -> TargetStats:
        """`key`'s statistics now."""
        target = self._counters.get(key) or TargetCounters(self._half_life)
        latency, ttft = list(target.latency.values), list(target.ttft.values)  # one snapshot each
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
