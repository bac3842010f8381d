"""Target selection for one request: eligibility filters, then the route's strategy.

Filters, in order: `when:` conditions, required capabilities, the provider's
last reported token budget, `max_cost_per_request` and unknown prices, then
`max_latency` (which only removes slow targets while faster ones remain).
Health (open circuits, Retry-After cooldowns), the allowed-targets option and
context windows are applied by the attempt plan as it walks the order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from .._plain_chat import PlainChat
from .._request import ChatRequest, EmbeddingsRequest, RequestOptions
from .._tokens import estimate_request_tokens, estimate_text_tokens
from .conditions import Subject
from .model import OrderedStrategy, Reason, Route, Selection, SelectionContext, Target
from .rate_limits import RateLimitBoard
from .stats import LiveStats

if TYPE_CHECKING:
    from .._prices import PriceBook

__all__ = ["RequestFacts", "RoutePlan", "Selector", "needed_capabilities"]


def needed_capabilities(request: ChatRequest | EmbeddingsRequest) -> frozenset[str]:
    """What a request needs from a target: tools, json_schema / json_object, vision, audio."""
    if not isinstance(request, ChatRequest):
        return frozenset()
    needs: set[str] = set()
    if request.tools:
        needs.add("tools")
    kind = (request.response_format or {}).get("type")
    if kind in ("json_schema", "json_object"):
        needs.add(str(kind))
    for message in request.messages:
        content = message.content
        if isinstance(content, list):
            for part in content:
                if part.type == "image_url":
                    needs.add("vision")
                elif part.type == "input_audio":
                    needs.add("audio")
    return frozenset(needs)


@dataclass(slots=True)
class RequestFacts:
    """What selection needs to know about one request (`asked`: the request, which may be
    a plain chat request's parameters, read typed as `request`)."""

    asked: ChatRequest | EmbeddingsRequest | PlainChat
    options: RequestOptions
    stream: bool
    _input_tokens: int | None = None
    _output_cap: int | None = -1  # -1: not read yet (most selections never read it)

    @property
    def request(self) -> ChatRequest | EmbeddingsRequest:
        """The request, typed (a plain one is typed for reading: its exchange still writes
        its body from the parameters)."""
        asked = self.asked
        return asked.typed() if isinstance(asked, PlainChat) else asked

    @property
    def output_cap(self) -> int | None:
        """The request's own cap on output tokens, if any (0 for embeddings); read from
        the request on first use (an ordered route's selection never reads it): llmroute's
        own work per chat request 200.2k -> 197.8k instructions with telemetry off
        (callgrind, 2026-12-03)."""
        cap = self._output_cap
        if cap == -1:
            asked = self.asked
            if isinstance(asked, ChatRequest):
                cap = asked.output_limit
            else:  # a plain chat request sets no cap; embeddings have no output
                cap = None if type(asked) is PlainChat else 0
            self._output_cap = cap
        return cap

    @property
    def input_tokens(self) -> int:
        """The estimated input tokens (computed on first use)."""
        if self._input_tokens is None:
            request = self.request
            if isinstance(request, ChatRequest):
                self._input_tokens = estimate_request_tokens(request)
            else:
                raw = request.input
                texts = [raw] if isinstance(raw, str) else [str(x) for x in raw]
                self._input_tokens = sum(estimate_text_tokens(t) for t in texts)
        return self._input_tokens

    def subject(self) -> Subject:
        """The request as `when:` conditions see it."""
        options, request = self.options, self.request
        return Subject(
            user=options.user or getattr(request, "user", None),
            session=options.session,
            model=request.model,
            stream=self.stream,
            properties=options.properties,
            params=_Params(request),
        )


def _plain(value: Any) -> Any:
    """A parameter as `model_dump(exclude_unset=True)` gives it (nested models as dicts)."""
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_unset=True)
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return [v.model_dump(exclude_unset=True) if isinstance(v, BaseModel) else v for v in value]
    return value


class _Params(Mapping[str, Any]):
    """The parameters a request set (unknown ones included), read when a condition asks."""

    __slots__ = ("_request",)

    def __init__(self, request: ChatRequest | EmbeddingsRequest) -> None:
        self._request = request

    def _names(self) -> list[str]:
        request = self._request
        names = [n for n in request.model_fields_set if n not in ("messages", "input")]
        return names + [n for n in request.model_extra or () if n not in names]

    def __getitem__(self, name: str) -> Any:
        request = self._request
        if name in ("messages", "input"):
            raise KeyError(name)
        if name in request.model_fields_set:
            return _plain(getattr(request, name))
        extra = request.model_extra or {}
        if name in extra:
            return extra[name]
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


class RoutePlan:
    """What the selector works out once per route: which of its filters can apply.

    Derived from the route (immutable) and, for `limits_seen`, from the
    rate-limit board: while none of the route's targets has reported rate
    limits, the token-budget filter is skipped, and an ordered route with
    nothing to filter answers with one `Selection` made here. The selector
    owns these (one per route it has seen) and alone writes them.

    Fast path: an ordered route selects in 0.10 µs, a weighted one in 0.8 µs
    (bench_select.py, best of 7, 5d8a074). Oracle: tests/test_fast_paths.py (the same
    orders and reasons as running every filter).
    """

    __slots__ = (
        "_ordered",
        "fixed",
        "has_capabilities",
        "has_conditions",
        "keys",
        "limits_epoch",
        "limits_seen",
        "may_filter",
        "needs_tokens",
    )

    def __init__(self, route: Route, limits: RateLimitBoard) -> None:
        config, targets = route.config, route.targets
        self.has_conditions = any(t.when is not None for t in targets)
        self.has_capabilities = any(t.capabilities is not None for t in targets)
        self.needs_tokens = config.strategy == "cost" or config.max_cost_per_request is not None
        #: Whether a filter other than rate limits can drop a target.
        self.may_filter = (
            self.has_conditions
            or self.has_capabilities
            or config.max_cost_per_request is not None
            or config.max_latency is not None
            or (config.strategy == "cost" and config.unknown_price == "exclude")
        )
        self.keys = tuple(t.key for t in targets)
        ordered = isinstance(route.strategy_impl, OrderedStrategy) and not self.may_filter
        self._ordered = Selection(list(targets), "config order") if ordered else None
        #: The selection when nothing can change it (config order, nothing to filter).
        self.fixed: Selection | None = None
        self.limits_seen = False
        self.limits_epoch = -1
        self.catch_up(limits)

    def catch_up(self, limits: RateLimitBoard) -> None:
        """Follow the board: a target of this route may have reported since the last look
        (called when the board's epoch moved)."""
        self.limits_epoch = limits.epoch
        self.limits_seen = limits.reported(self.keys)
        self.fixed = None if self.limits_seen else self._ordered


class Selector:
    """Orders a route's targets for a request; one per router."""

    def __init__(
        self,
        stats: LiveStats,
        prices: PriceBook,
        rng: random.Random,
        limits: RateLimitBoard,
    ) -> None:
        self._stats = stats
        self._rates = prices.target_rates
        self._rng = rng
        #: The rate limits providers reported (read for the token-budget filter).
        self.limits = limits
        self._plans: dict[str, RoutePlan] = {}

    def forget(self, route: Route) -> None:
        """Drop the plan of a route the catalog forgot."""
        self._plans.pop(route.key, None)

    def plan(self, route: Route) -> RoutePlan:
        """The selector's plan for `route`, current with the rate-limit board."""
        plan = self._plans.get(route.key)
        if plan is None:
            plan = self._plans[route.key] = RoutePlan(route, self.limits)
        elif plan.limits_epoch != self.limits.epoch:
            plan.catch_up(self.limits)
        return plan

    def select(self, route: Route, facts: RequestFacts, now: float) -> Selection:
        """The route's eligible targets in the order to try them, and why."""
        plan = self._plans.get(route.key)
        if plan is None or plan.limits_epoch != self.limits.epoch:
            plan = self.plan(route)
        fixed = plan.fixed
        if fixed is not None:
            return fixed  # config order, nothing to filter: the common case, for free
        if not plan.limits_seen and not plan.may_filter:
            return route.strategy_impl.order(
                route.targets,
                SelectionContext(
                    facts.stream,
                    facts.input_tokens if plan.needs_tokens else 0,
                    facts.output_cap,
                    now,
                    self._stats,
                    self._rng,
                    self._rates,
                ),
            )
        config = route.config
        ctx = SelectionContext(
            facts.stream, 0, facts.output_cap, now, self._stats, self._rng, self._rates
        )
        if plan.needs_tokens:
            ctx.input_tokens = facts.input_tokens
        dropped: list[str] = []
        candidates = self._matching(route, plan, facts, dropped)
        # each filter returns the list it was given when it drops nothing, so the strategy
        # sees the route's own list and keeps what it derived from it
        if plan.limits_seen:
            candidates = self._token_budget(candidates, facts, now, dropped)
        if config.max_cost_per_request is not None or (
            config.strategy == "cost" and config.unknown_price == "exclude"
        ):
            candidates = self._cost_filter(route, candidates, ctx, dropped)
        if config.max_latency is not None:
            candidates = self._latency_filter(route, candidates, facts.stream, dropped)
        selection = route.strategy_impl.order(candidates, ctx)
        if dropped:
            selection.reason = _with_dropped(selection.reason, dropped)
        return selection

    def _matching(
        self, route: Route, plan: RoutePlan, facts: RequestFacts, dropped: list[str]
    ) -> Sequence[Target]:
        """The targets whose `when:` conditions and capabilities fit the request."""
        candidates: Sequence[Target] = route.targets
        if plan.has_conditions:
            subject = facts.subject()
            kept = [t for t in candidates if t.when is None or t.when(subject)]
            if len(kept) < len(candidates):
                dropped += [f"{t.key} (when)" for t in candidates if t not in kept]
                candidates = kept
        if plan.has_capabilities:
            needs = needed_capabilities(facts.request)
            if needs:
                kept = [t for t in candidates if t.capabilities is None or needs <= t.capabilities]
                if len(kept) < len(candidates):
                    dropped += [f"{t.key} (capabilities)" for t in candidates if t not in kept]
                    candidates = kept
        return candidates

    def _token_budget(
        self, candidates: Sequence[Target], facts: RequestFacts, now: float, dropped: list[str]
    ) -> Sequence[Target]:
        """Skip targets whose last reported token budget cannot fit this request until reset."""
        kept = []
        report = self.limits.report
        for target in candidates:
            seen = report(target.key)
            if seen is not None and seen.state.remaining_tokens is not None:
                left, reset = seen.state.remaining_tokens, seen.state.reset_tokens_s
                need = facts.input_tokens + (facts.output_cap or 0)
                if reset is not None and now < seen.at + reset and need > left:
                    dropped.append(f"{target.key} (rate limit: {left} tokens left)")
                    continue
            kept.append(target)
        return kept if len(kept) < len(candidates) else candidates

    def _cost_filter(
        self,
        route: Route,
        candidates: Sequence[Target],
        ctx: SelectionContext,
        dropped: list[str],
    ) -> Sequence[Target]:
        config = route.config
        limit = config.max_cost_per_request
        kept = []
        for target in candidates:
            cost = ctx.cost(target)
            if cost is None:
                if config.unknown_price == "exclude":
                    dropped.append(f"{target.key} (unknown price)")
                    continue
            elif limit is not None and cost > limit:
                dropped.append(f"{target.key} (${cost:.6g} > max_cost_per_request)")
                continue
            kept.append(target)
        return kept if len(kept) < len(candidates) else candidates

    def _latency_filter(
        self, route: Route, candidates: Sequence[Target], stream: bool, dropped: list[str]
    ) -> Sequence[Target]:
        limit = route.config.max_latency
        assert limit is not None
        stats = self._stats

        p95 = stats.recent_ttft_p95 if stream else stats.recent_latency_p95
        fast = [t for t in candidates if (p95(t.key) or 0.0) <= limit]
        if not fast or len(fast) == len(candidates):
            return candidates  # all slow: skipping every target would help no one
        dropped += [f"{t.key} (p95 over max_latency)" for t in candidates if t not in fast]
        return fast


def _with_dropped(reason: Reason, dropped: list[str]) -> Callable[[], str]:
    def why() -> str:
        text = reason() if callable(reason) else reason
        return f"{text}; skipped {', '.join(dropped)}"

    return why
