"""The rate-limit stage: GCRA buckets per rule and subject, tokens reserved then reconciled.

Each rule that applies to a request charges its buckets before the request is
routed: one request, and the estimated tokens (the input estimate plus
`max_tokens`, or `output_estimate` when unset, capped at the bucket's size).
All the rules' buckets are charged together or not at all; a refusal raises
`LocalRateLimitExceeded` with the wait before the request would fit.

Once the request has ended, the token charge is reconciled with the usage
the provider reported (or llmroute estimated), so long answers are counted.
Each hedged attempt counts as one more request and its input tokens. A
request refused later in the pipeline, or that failed before reaching any
provider, is given back.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .._clock import Clock
from .._errors import LocalRateLimitExceeded
from .._request import ChatRequest, EmbeddingsRequest
from .._tasks import Background
from .._tokens import estimate_request_tokens, estimate_text_tokens
from ..pipeline.stage import Answer, Outcome, RequestContext, Stage
from ..stores.redis import RedisUnavailable, hash_tag
from .config import RateLimitRule, RateLimitsConfig
from .gcra import Charge, GcraStore
from .stats import LimitCounters
from .subjects import subject_of

__all__ = ["RateLimitStage", "estimate_input_tokens"]

logger = logging.getLogger("llmroute.limits")


def estimate_input_tokens(request: ChatRequest | EmbeddingsRequest) -> int:
    """Roughly how many input tokens a chat or embeddings request is."""
    if isinstance(request, ChatRequest):
        return estimate_request_tokens(request)
    raw = request.input
    texts = [raw] if isinstance(raw, str) else [str(x) for x in raw]
    return sum(estimate_text_tokens(t) for t in texts)


@dataclass(frozen=True, slots=True)
class _Bucket:
    """One rule's request or token bucket (the subject is added per request)."""

    rule: RateLimitRule
    kind: Literal["requests", "tokens"]
    prefix: str
    interval: float
    capacity: float
    amount: float
    period: float

    def describe(self, subject: str) -> str:
        who = "all requests" if self.rule.per == "global" else f"{self.rule.per} {subject!r}"
        return f"{self.amount:g} {self.kind}/{_period(self.period)} for {who}"


def _period(seconds: float) -> str:
    for size, unit in ((86400, "day"), (3600, "h"), (60, "min")):
        if seconds % size == 0:
            count = seconds // size
            return unit if count == 1 else f"{count:g}{unit}"
    return f"{seconds:g}s"


@dataclass(slots=True)
class _Reservation:
    requests: list[Charge]
    tokens: list[Charge]
    input_tokens: int


def _buckets(rule: RateLimitRule, prefix: str) -> list[_Bucket]:
    # one hash tag for every bucket: a request's buckets (global, per user, per key...) are
    # charged by one script, which on a Redis Cluster must find them all in one slot
    tag = hash_tag(f"{prefix}:rl")
    buckets = []
    if rule.requests is not None:
        amount, period = rule.requests
        interval = period / amount
        burst = rule.burst if rule.burst is not None else amount
        shape = f"{rule.per}:requests:{amount:g}/{period:g}s:{burst:g}"
        buckets.append(
            _Bucket(rule, "requests", f"{tag}:{shape}:", interval, burst * interval,
                    amount, period)
        )  # fmt: skip
    if rule.tokens is not None:
        amount, period = rule.tokens
        interval = period / amount
        shape = f"{rule.per}:tokens:{amount:g}/{period:g}s"
        buckets.append(_Bucket(rule, "tokens", f"{tag}:{shape}:", interval, period, amount, period))
    return buckets


class RateLimitStage(Stage):
    """Enforces the `rate_limits` rules (see the module docstring)."""

    name = "rate_limits"

    def __init__(self, config: RateLimitsConfig, store: GcraStore, clock: Clock) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._buckets = [b for rule in config.rules for b in _buckets(rule, config.prefix)]
        self._background = Background()
        #: What the stage has done so far.
        self.counters = LimitCounters()

    @property
    def before_cache(self) -> bool:
        """Whether the stage runs before the cache lookup (so hits count too)."""
        return self._config.before_cache

    async def before(self, ctx: RequestContext) -> Answer | None:
        requests: list[Charge] = []
        tokens: list[Charge] = []
        applied: list[tuple[_Bucket, str]] = []
        input_tokens = estimate = -1
        for bucket in self._buckets:
            subject = subject_of(bucket.rule.per, ctx)
            if subject is None:
                continue
            if bucket.kind == "requests":
                cost = 1.0
            else:
                if estimate < 0:
                    input_tokens = estimate_input_tokens(ctx.request)
                    estimate = input_tokens + self._output_estimate(ctx)
                cost = min(float(estimate), bucket.amount)  # a request bigger than the bucket
            charge = Charge(bucket.prefix + subject, bucket.interval, bucket.capacity, cost)
            (requests if bucket.kind == "requests" else tokens).append(charge)
            applied.append((bucket, subject))
        if not applied:
            return None
        charges = requests + tokens
        applied.sort(key=lambda pair: pair[0].kind != "requests")  # in the order of `charges`
        try:
            wait, refused = await self._store.acquire(charges)
        except RedisUnavailable as exc:
            self._unavailable(exc)  # raises unless the policy allows the request
            return None
        if refused >= 0:
            self.counters.refused += 1
            bucket, subject = applied[refused]
            raise LocalRateLimitExceeded(
                f"rate limit reached: {bucket.describe(subject)}; retry in {wait:.3g}s",
                retry_after=wait,
                limit=bucket.amount,
                unit=bucket.kind,
            )
        self.counters.allowed += 1
        ctx.state[self.name] = _Reservation(requests, tokens, max(0, input_tokens))
        return None

    def _output_estimate(self, ctx: RequestContext) -> int:
        request = ctx.request
        if not isinstance(request, ChatRequest):
            return 0
        limit = request.output_limit
        return limit if limit is not None else self._config.output_estimate

    def _unavailable(self, exc: RedisUnavailable) -> None:
        if self._config.when_unavailable == "allow":
            self.counters.allowed_unavailable += 1
            return
        self.counters.refused_unavailable += 1
        raise LocalRateLimitExceeded(
            f"rate limits cannot be checked ({exc}); refusing (when_unavailable: refuse)",
            retry_after=self._config.retry_interval,
        ) from exc

    async def after(self, ctx: RequestContext, outcome: Outcome) -> None:
        reservation = ctx.state.pop(self.name, None)
        if not isinstance(reservation, _Reservation):
            return
        info = ctx.info
        hedges = sum(1 for a in info.attempts if a.kind == "hedge")
        sent = bool(info.attempts)
        if outcome.error is not None and not sent and outcome.answered_by is None:
            # refused later in the pipeline or failed before any provider: give it all back
            extra_requests, used = -1.0, 0.0
        else:
            extra_requests = float(hedges)
            usage = info.usage
            if usage is not None:
                used = float(usage.total)
            elif sent:
                used = float(reservation.input_tokens)  # failed: the prompt was sent
            else:
                used = 0.0  # answered without a provider (the cache)
            used += hedges * reservation.input_tokens
        adjustments = [
            Charge(c.key, c.interval, c.capacity, extra_requests) for c in reservation.requests
        ] if extra_requests else []  # fmt: skip
        adjustments += [
            Charge(c.key, c.interval, c.capacity, used - c.cost)
            for c in reservation.tokens
            if used != c.cost
        ]
        if not adjustments:
            return
        if self._store.remote:  # a network round trip: off the request's path
            self._background.start(self._adjust(adjustments))
        else:
            await self._adjust(adjustments)

    async def _adjust(self, adjustments: Sequence[Charge]) -> None:
        try:
            await self._store.adjust(adjustments)
        except RedisUnavailable:
            self.counters.lost_updates += 1

    async def drain(self) -> None:
        """Wait for the reconciliations in flight."""
        await self._background.drain()

    async def check(self) -> str | None:
        return await self._store.check()

    async def aclose(self) -> None:
        await self.drain()
        await self._store.aclose()
