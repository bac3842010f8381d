"""Attempt planning: which target to try next, or how long to wait. Pure; no I/O.

For a request on a route, the plan walks the route and then each of its
fallbacks. On each route it makes up to `retry.attempts` rounds over the
targets in strategy order, with a backoff wait between rounds (never shorter
than the smallest Retry-After the round was given). Targets that cannot take
the request now (open circuit, Retry-After cooldown) are passed over; when
everything else has failed and the policy allows, the plan waits for the
first of them to come back. A target that failed in a way another try cannot
fix (bad credentials, unknown model, a context window too small) is left out
of the rest of the request. The driver reports each failure with `failed()`
and asks `next()` for the following step.

The plan selects nothing itself: when it first needs a route's targets in
strategy order, `next()` answers `Order(route)`, and the driver runs the
strategy at that moment and hands the order back with `ordered()`. So
selection happens when it did before the plan existed (a fallback route is
ordered only if the request reaches it, with the statistics of that moment)
and the plan stays a pure function of what it is told.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from .._errors import (
    AuthenticationError,
    ContentFiltered,
    ContextLengthExceeded,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ProviderError,
    QuotaExceeded,
)
from .._types import AttemptKind

if TYPE_CHECKING:
    from .._config import FailoverKind, RetryConfig
    from .health import HealthTracker
    from .model import Route, Target

__all__ = [
    "AttemptPlan", "Order", "RequestSize", "Try", "Wait", "backoff_delay", "eligible", "failover_kind",
    "first_try",
]  # fmt: skip

#: How many times a request waits for unavailable targets to come back.
_MAX_WAITS = 8

_KINDS: tuple[tuple[type[ProviderError], FailoverKind], ...] = (
    (QuotaExceeded, "quota"),
    (AuthenticationError, "authentication"),
    (PermissionDenied, "permission"),
    (ModelNotFound, "model_not_found"),
    (ContextLengthExceeded, "context_length"),
    (ContentFiltered, "content_filter"),
    (InvalidRequest, "invalid_request"),
)


@dataclass(slots=True)
class Try:
    """Send the request to `target`.

    Not frozen: one is made per attempt, and a frozen dataclass's `__init__`
    sets each field through `object.__setattr__`.
    """

    target: Target
    kind: AttemptKind


@dataclass(slots=True, frozen=True)
class Wait:
    """Wait `seconds` before the next step."""

    seconds: float


@dataclass(slots=True)
class Order:
    """Order `route`'s targets now (its strategy), tell the plan with `ordered()`, then
    ask `next()` again at the same time. Not frozen, as `Try`."""

    route: Route


def backoff_delay(retry: RetryConfig, round_number: int, rng: random.Random) -> float:
    """The wait before round `round_number` (2 is the first retry).

    Exponential backoff with full jitter: uniform(0, min(max_delay, initial *
    2 ** (round - 2))). The formula is tenacity's `wait_random_exponential`;
    it is written out here because tenacity draws from the global `random`
    module, and each router needs its own seedable generator.
    """
    if retry.backoff == "constant":
        return min(retry.initial, retry.max_delay)
    ceiling = min(retry.max_delay, retry.initial * 2.0 ** (round_number - 2))
    return rng.uniform(0.0, ceiling)


def failover_kind(error: ProviderError) -> FailoverKind | None:
    """The `failover_on` name of a fatal error (None for retryable ones)."""
    for cls, kind in _KINDS:
        if isinstance(error, cls):
            return kind
    return None


class RequestSize(Protocol):
    """How large the request is, for context windows (`RequestFacts` is one; it
    estimates the tokens only when a target with a window first asks)."""

    @property
    def input_tokens(self) -> int:
        """The request's estimated input tokens."""
        ...


def eligible(target: Target, allowed: frozenset[str] | None, request: RequestSize | None) -> bool:
    """Whether `target` may take a request of `request`'s size, among the `allowed` targets
    or providers (None: all); a plan also leaves out the targets it excluded."""
    window = target.context_window
    if window is not None and request is not None and request.input_tokens > window:
        return False
    return allowed is None or target.key in allowed or target.provider.name in allowed


def first_try(
    targets: Sequence[Target],
    *,
    health: HealthTracker,
    allowed: frozenset[str] | None,
    request: RequestSize | None,
    now: float,
) -> Try | None:
    """``Try(targets[0], "first")`` when that is what a new plan's `next()` answers first
    for a route ordered as `targets` with nothing excluded (its first target `eligible`
    and available at `now`), else None: the driver then tries it before making any plan,
    and makes one, told `AttemptPlan.tried_first`, only if the try fails."""
    if not targets:
        return None
    first = targets[0]
    if eligible(first, allowed, request) and health.available_at(first.key, now) <= now:
        return Try(first, "first")
    return None


class AttemptPlan:
    """The sequence of tries and waits for one request."""

    __slots__ = (
        "_allowed",
        "_count",
        "_excluded",
        "_health",
        "_ordered",
        "_position",
        "_request",
        "_resume",
        "_rng",
        "_round",
        "_round_retry_after",
        "_round_tries",
        "_route_index",
        "_routes",
        "_skipped",
        "_tried",
        "_waits",
        "unavailable",
    )

    def __init__(
        self,
        route: Route,
        *,
        rng: random.Random,
        health: HealthTracker,
        allowed: frozenset[str] | None = None,
        request: RequestSize | None = None,
    ) -> None:
        self._rng = rng
        self._health = health
        self._allowed = allowed
        self._ordered: dict[int, list[Target]] = {}
        self._request = request
        self._routes = route.chain()
        self._route_index = 0
        self._round = 1
        self._position = 0
        # frozen and rebuilt on the rare change: most plans never change them, and two
        # empty sets were 432 bytes of every request in flight
        self._excluded: frozenset[str] = frozenset()
        self._tried: tuple[str, ...] = ()
        self._skipped: dict[str, Target] = {}
        self._resume: list[Target] = []
        self._waits = 0
        self._round_retry_after: float | None = None
        self._count = 0
        self._round_tries = 0
        #: Targets passed over because they could not take traffic, by key (read it;
        #: `passed_over()` adds to it).
        self.unavailable: dict[str, Target] = {}

    @property
    def route(self) -> Route:
        """The route whose targets are being tried."""
        return self._routes[min(self._route_index, len(self._routes) - 1)]

    def _eligible(self, target: Target) -> bool:
        if target.key in self._excluded:
            return False
        return eligible(target, self._allowed, self._request)

    def ordered(self, route: Route, targets: list[Target]) -> None:
        """`route`'s targets in strategy order, as `Order(route)` asked (once per route)."""
        self._ordered[id(route)] = targets

    def tried_first(self, target: Target) -> None:
        """The route's first ordered target was tried without asking `next()`: the state
        `next()` leaves after answering ``Try(target, "first")`` (the driver's first try,
        made before any plan exists)."""
        self._position = 1
        self._count = self._round_tries = 1
        self._tried = (target.key,)

    def passed_over(self, target: Target) -> None:
        """`target` could not take the attempt it was given (health refused it at admission)."""
        self.unavailable[target.key] = target

    def _try(self, target: Target) -> Try:
        self._count += 1
        self._round_tries += 1
        if self._count == 1:
            kind: AttemptKind = "first"
        elif target.key in self._tried:
            kind = "retry"
        else:
            kind = "fallback"
        self._tried += (target.key,)
        return Try(target, kind)

    def _available(self, target: Target, now: float) -> bool:
        if self._health.available_at(target.key, now) > now:
            self._skipped[target.key] = target
            self.unavailable[target.key] = target
            return False
        return True

    def next(self, now: float) -> Try | Wait | Order | None:
        """The next step at time `now`, or None when the plan is exhausted."""
        while self._resume:
            target = self._resume.pop(0)
            if self._eligible(target) and self._available(target, now):
                return self._try(target)
        while self._route_index < len(self._routes):
            route = self._routes[self._route_index]
            targets = self._ordered.get(id(route))
            if targets is None:
                return Order(route)  # nothing changed yet: the next call starts here again
            while self._position < len(targets):
                target = targets[self._position]
                self._position += 1
                if self._eligible(target) and self._available(target, now):
                    return self._try(target)
            # another round retries failures; a round that tried nothing has none
            more_rounds = self._round < route.retry.attempts and self._round_tries > 0
            self._round_tries = 0
            if more_rounds and any(self._eligible(t) for t in targets):
                self._round += 1
                self._position = 0
                delay = backoff_delay(route.retry, self._round, self._rng)
                if self._round_retry_after is not None:
                    delay = max(delay, self._round_retry_after)
                self._round_retry_after = None
                return Wait(delay)
            self._route_index += 1
            self._round = 1
            self._position = 0
            self._round_retry_after = None
        return self._wait_for_unavailable(now)

    def _wait_for_unavailable(self, now: float) -> Wait | None:
        waiting = [t for t in self._skipped.values() if self._eligible(t)]
        self._skipped.clear()
        if not waiting or self._waits >= _MAX_WAITS:
            return None
        if self._health.config.when_unavailable == "fail":
            return None
        self._waits += 1
        self._resume = waiting
        soonest = min(self._health.available_at(t.key, now) for t in waiting)
        return Wait(max(0.0, soonest - now))

    def hedge(self, now: float) -> Try | None:
        """Another target to race the current attempt against, if one is free now."""
        # the current route was ordered before its first try, so before any hedge of it
        for target in self._ordered[id(self.route)]:
            if target.key in self._tried or not self._eligible(target):
                continue
            if self._health.available_at(target.key, now) <= now:
                self._count += 1
                self._tried += (target.key,)
                return Try(target, "hedge")
        return None

    def exclude(self, keys: frozenset[str]) -> None:
        """Leave these targets out of the whole plan (a continuation: its tries are fallbacks)."""
        if keys:
            self._excluded |= keys
            self._count = max(self._count, 1)

    def would_end(self, error: ProviderError) -> bool:
        """Whether `error` ends the request (a fatal error not listed in `failover_on`)."""
        if error.retryable:
            return False
        kind = failover_kind(error)
        return kind is None or kind not in self.route.failover_on

    def failed(self, target: Target, error: ProviderError) -> bool:
        """Record that `target` failed; False when the request must end with `error`."""
        if error.retry_after is not None:
            current = self._round_retry_after
            self._round_retry_after = (
                error.retry_after if current is None else min(current, error.retry_after)
            )
        if error.retryable:
            return True
        if self.would_end(error):
            return False
        self._excluded |= {target.key}
        if isinstance(error, ContextLengthExceeded) and target.context_window is not None:
            # only a larger window can help
            failed_window = target.context_window
            for route in self._routes:
                for other in route.targets:
                    if other.context_window is not None and other.context_window <= failed_window:
                        self._excluded |= {other.key}
        return True
