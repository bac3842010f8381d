"""The routing model: providers, targets and routes, and the contract a strategy implements.

The catalog builds these objects once from the configuration; after that
nothing changes them, so any layer may hold one without asking who else
writes to it. What changes while the router runs lives with the object that
owns it, keyed by `Target.key` (``provider/model``), never on these objects:

- live statistics: `LiveStats` (`routing.stats`);
- health (circuits, Retry-After cooldowns): `HealthTracker` (`routing.health`);
- the rate limits a provider last reported: `RateLimitBoard` (`routing.rate_limits`);
- price rates: `PriceBook.target_rates` (`llmroute._prices`);
- the selector's per-route shortcuts: `RoutePlan` (`routing.select`).

The strategy contract (`Strategy`, `Selection`, `SelectionContext`) sits here
with the types it orders, so that the catalog, the strategies and the
pipeline all import this module and it imports none of them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from .._transports import Timeouts
from .stats import DEFAULT_OUTPUT, LiveStats

if TYPE_CHECKING:
    from .._config import FailoverKind, HedgeConfig, PriceConfig, RetryConfig, RouteConfig
    from .._transports import Transport
    from ..providers import ProviderAdapter
    from .conditions import Condition

__all__ = [
    "OrderedStrategy",
    "Provider",
    "Rates",
    "Reason",
    "Route",
    "Selection",
    "SelectionContext",
    "Strategy",
    "Target",
    "link_routes",
]

#: USD per input token and per output token.
Rates = tuple[float, float]
#: Why a selection is what it is: a string, or a function that makes one when it is read.
Reason = str | Callable[[], str]


@dataclass(frozen=True, slots=True, eq=False)
class Provider:
    """A configured provider: its adapter, its own transport (and pool), its timeouts."""

    name: str
    type: str
    adapter: ProviderAdapter
    transport: Transport
    timeouts: Timeouts
    attempt_timeout: float
    #: Limits for an attempt bounded as a whole (no per-read timer).
    whole_timeouts: Timeouts = field(init=False)

    def __post_init__(self) -> None:
        # derived once here rather than per attempt (frozen: set through object)
        object.__setattr__(
            self, "whole_timeouts", Timeouts(connect=self.timeouts.connect, read=None)
        )


@dataclass(frozen=True, slots=True, eq=False)
class Target:
    """One provider and model, as one route uses it.

    Health, statistics and rate-limit state are keyed by `key`, so every route
    that uses the same provider and model sees the same ones. Two routes may
    give the same key a different `weight`, `price` or condition: those are
    the route's own, which is why each route has its own `Target` objects.

    Attributes:
        key: ``provider/model``.
        provider: the provider that serves it (`provider.name` is its name).
        model: the model name the provider knows.
        weight: its share of traffic under the ``weighted`` strategy.
        context_window: the largest prompt it takes, in tokens, if known.
        price: its configured price, if any (read prices through the router's
            `PriceBook`, which falls back to genai-prices).
        capabilities: what it supports (None: everything).
        when: the condition a request must meet to use it, if any.
    """

    key: str
    provider: Provider
    model: str
    weight: float = 1.0
    context_window: int | None = None
    price: PriceConfig | None = None
    capabilities: frozenset[str] | None = None
    when: Condition | None = None


@dataclass(frozen=True, slots=True, eq=False)
class Route:
    """A resolved route; `name` is None for a direct ``provider/model`` address.

    `key` names it among the router's routes (what per-route state is kept
    under): the route's name, or the address for a direct one; a route made
    for an experiment's variant shares its route's name and gives a key of its
    own. `fallbacks` are wired by `link_routes` once every named route exists
    (routes may name each other in any order).
    """

    name: str | None
    targets: tuple[Target, ...]
    config: RouteConfig
    strategy_impl: Strategy
    fallbacks: tuple[Route, ...] = ()
    key: str = field(default="", kw_only=True)
    # What every request reads of `config`, read from it once here (nothing changes a
    # route's config once the catalog has built the route from it). A field of a pydantic model costs ~360
    # instructions more to read than a slot; llmroute's own work per chat request
    # 234.8k -> 231.3k (callgrind, 2026-12-03).
    #: How the route orders its targets (`RouteConfig.strategy`).
    strategy: str = field(init=False)
    #: The deadline of a whole request on this route (`RouteConfig.timeout`).
    timeout: float = field(init=False)
    #: The limit of one attempt, None: the provider's (`RouteConfig.attempt_timeout`).
    attempt_timeout: float | None = field(init=False, repr=False)
    #: Hedged requests, None: off (`RouteConfig.hedge`).
    hedge: HedgeConfig | None = field(init=False, repr=False)
    _chain: tuple[Route, ...] = field(init=False, repr=False)
    _by_key: Mapping[str, Target] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.key:
            key = self.name if self.name is not None else self.targets[0].key
            object.__setattr__(self, "key", key)
        config = self.config
        object.__setattr__(self, "strategy", config.strategy)
        object.__setattr__(self, "timeout", config.timeout)
        object.__setattr__(self, "attempt_timeout", config.attempt_timeout)
        object.__setattr__(self, "hedge", config.hedge)
        _derive(self)

    @property
    def retry(self) -> RetryConfig:
        """The route's retry rounds and backoff."""
        return self.config.retry

    @property
    def failover_on(self) -> list[FailoverKind]:
        """The fatal errors that move on to the next target."""
        return self.config.failover_on

    def chain(self) -> tuple[Route, ...]:
        """This route followed by its fallbacks, depth first, each route once."""
        return self._chain

    def find_target(self, key: str) -> Target | None:
        """The first target called `key` on this route or its fallbacks (chain order)."""
        return self._by_key.get(key)


def _derive(route: Route) -> None:
    """Set what follows from a route's fallbacks: its chain, and its targets by key."""
    seen: list[Route] = []

    def walk(one: Route) -> None:
        if one in seen:
            return
        seen.append(one)
        for fallback in one.fallbacks:
            walk(fallback)

    walk(route)
    by_key: dict[str, Target] = {}
    for one in seen:
        for target in one.targets:
            by_key.setdefault(target.key, target)
    # frozen: a route's own fields are set through object, here and only while it is built
    object.__setattr__(route, "_chain", tuple(seen))
    object.__setattr__(route, "_by_key", by_key)


def link_routes(routes: Mapping[str, Route], fallbacks: Mapping[str, Sequence[str]]) -> None:
    """Give each named route its fallbacks (by name), once all of them are built.

    The one change a route sees after it is made, and only while the catalog
    builds: fallbacks may form cycles, which no order of construction allows.
    Chains are derived once every route has its fallbacks.
    """
    for name, names in fallbacks.items():
        object.__setattr__(routes[name], "fallbacks", tuple(routes[f] for f in names))
    for route in routes.values():
        _derive(route)


# ------------------------------------------------------------------ strategies


@dataclass(slots=True)
class Selection:
    """A strategy's answer: the targets in order, and why (a string, or a function making one).

    Selections may share their `targets` list with others (strategies build
    an order once and hand it out again): never mutate it.
    """

    targets: list[Target]
    reason: Reason


class SelectionContext:
    """What a strategy may look at for one request.

    Attributes:
        stream: whether the request is streamed.
        input_tokens: the request's estimated input tokens (0 unless the route
            prices requests: the estimate is only made when it matters).
        output_tokens: the request's own cap on output tokens, if any.
        now: the time, on llmroute's clock.
        stats: the router's live per-target statistics.
        rng: the router's random generator.
    """

    __slots__ = ("_rates", "input_tokens", "now", "output_tokens", "rng", "stats", "stream")

    def __init__(
        self,
        stream: bool,
        input_tokens: int,
        output_tokens: int | None,
        now: float,
        stats: LiveStats,
        rng: random.Random,
        rates: Callable[[Target], Rates | None],
    ) -> None:
        self.stream = stream
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.now = now
        self.stats = stats
        self.rng = rng
        self._rates = rates

    def rates(self, target: Target) -> Rates | None:
        """USD per input and per output token on `target` (its `price`, else genai-prices);
        None when unknown."""
        return self._rates(target)

    def cost(self, target: Target) -> float | None:
        """The expected USD cost of the request on `target`; None when its price is unknown."""
        rates = self._rates(target)
        if rates is None:
            return None
        output = self.output_tokens
        if output is None:
            output = self.expected_output(target)
        return self.input_tokens * rates[0] + output * rates[1]

    def expected_output(self, target: Target) -> int:
        """The output tokens to expect from `target`: the request's cap, else the target's
        observed mean, else 256."""
        if self.output_tokens is not None:
            return self.output_tokens
        counters = self.stats.target(target.key)
        return counters.expected_output if counters is not None else DEFAULT_OUTPUT


@runtime_checkable
class Strategy(Protocol):
    """Orders a route's eligible targets for one request."""

    name: str

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        """The candidates in the order to try them, and why."""
        ...


class OrderedStrategy:
    """The targets in config order: the first is the primary, the rest its fallbacks."""

    name = "ordered"

    def order(self, candidates: Sequence[Target], ctx: SelectionContext) -> Selection:
        return Selection(list(candidates), "config order")
