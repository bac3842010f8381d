"""Attempt planning: which target to try next, or how long to wait. Pure; no I/O.

For a request on a route, the plan walks the route and then each of its
fallbacks. On each route it makes up to `retry.attempts` rounds over the
targets in strategy order, with a backoff wait between rounds. A target that
failed in a way another try cannot fix (bad credentials, unknown model) is left
out of later rounds. The driver reports each failure with `failed()` and asks
`next()` for the following step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._errors import AuthenticationError, ModelNotFound, PermissionDenied, ProviderError
from ._types import AttemptKind

if TYPE_CHECKING:
    from ._catalog import Route, Target
    from ._config import RetryConfig

__all__ = ["AttemptPlan", "Try", "Wait", "backoff_delay"]

#: Fatal errors that say "not this target" rather than "not this request".
_FAILOVER_FATAL: tuple[type[ProviderError], ...] = (
    AuthenticationError,
    PermissionDenied,
    ModelNotFound,
)


@dataclass(slots=True, frozen=True)
class Try:
    """Send the request to `target`."""

    target: Target
    kind: AttemptKind


@dataclass(slots=True, frozen=True)
class Wait:
    """Wait `seconds` before the next round."""

    seconds: float


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


def is_fatal_for_request(error: ProviderError) -> bool:
    """Whether no other target or later try can succeed where this one failed."""
    return not error.retryable and not isinstance(error, _FAILOVER_FATAL)


class AttemptPlan:
    """The sequence of tries and waits for one request."""

    def __init__(
        self,
        route: Route,
        *,
        rng: random.Random,
        allowed: frozenset[str] | None = None,
    ) -> None:
        self._rng = rng
        self._allowed = allowed
        self._routes = route.chain()
        self._route_index = 0
        self._round = 1
        self._position = 0
        self._excluded: set[str] = set()
        self._tried: set[str] = set()
        self._round_retry_after: float | None = None
        self._count = 0

    def _eligible(self, target: Target) -> bool:
        if target.key in self._excluded:
            return False
        allowed = self._allowed
        return allowed is None or target.key in allowed or target.provider.name in allowed

    def next(self) -> Try | Wait | None:
        """The next step, or None when the plan is exhausted."""
        while self._route_index < len(self._routes):
            route = self._routes[self._route_index]
            targets = route.targets
            while self._position < len(targets):
                target = targets[self._position]
                self._position += 1
                if not self._eligible(target):
                    continue
                self._count += 1
                if self._count == 1:
                    kind: AttemptKind = "first"
                elif target.key in self._tried:
                    kind = "retry"
                else:
                    kind = "fallback"
                self._tried.add(target.key)
                return Try(target, kind)
            # the round is over
            more_rounds = self._round < route.retry.attempts
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
        return None

    def failed(self, target: Target, error: ProviderError) -> None:
        """Record that `target` failed with `error`."""
        if isinstance(error, _FAILOVER_FATAL):
            self._excluded.add(target.key)
        if error.retry_after is not None:
            current = self._round_retry_after
            self._round_retry_after = (
                error.retry_after if current is None else min(current, error.retry_after)
            )
