"""The live providers, targets and routes a router was built with, and model-name resolution."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .._clock import Clock
from .._config import (
    Config,
    FailoverKind,
    PriceConfig,
    RetryConfig,
    RouteConfig,
    TargetConfig,
)
from .._config_load import env_hint, providers_from_env, with_env_defaults
from .._errors import ConfigError, UnknownModel
from .._prices import PriceBook
from .._transports import AiohttpTransport, Timeouts, Transport, transport_from_client
from ..providers import PRESETS, ProviderAdapter, RateLimitState, provider_spec
from ..providers.configs import MockProviderConfig, OpenAIProviderConfig
from .conditions import Condition, ConditionError, compile_condition
from .strategies import BUILT_IN, LatencyStrategy, OrderedStrategy, Selection, Strategy

__all__ = ["Catalog", "Provider", "RateLimitSeen", "Route", "Target"]


@dataclass(slots=True, eq=False)
class Provider:
    """A configured provider: its adapter, its own transport (and pool), its limits."""

    name: str
    type: str
    adapter: ProviderAdapter
    transport: Transport
    timeouts: Timeouts
    attempt_timeout: float
    #: Limits for an attempt bounded as a whole (no per-read timer).
    whole_timeouts: Timeouts = field(init=False)

    def __post_init__(self) -> None:
        self.whole_timeouts = Timeouts(connect=self.timeouts.connect, read=None)


@dataclass(slots=True, eq=False)
class RateLimitSeen:
    """A target's last reported rate-limit state and when it arrived (shared by its routes)."""

    state: RateLimitState | None = None
    at: float = 0.0
    #: The routes using this target: told once limits are known, so they check them.
    routes: list[Route] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class Target:
    """One provider and model, as one route uses it.

    Health, statistics and rate-limit state are keyed by `key`, so every route
    that uses the same provider and model sees the same ones.
    """

    key: str
    provider: Provider
    model: str
    weight: float = 1.0
    context_window: int | None = None
    price: PriceConfig | None = None
    capabilities: frozenset[str] | None = None
    when: Condition | None = None
    limits: RateLimitSeen = field(default_factory=RateLimitSeen)
    #: USD per input and output token (from `price` or genai-prices; None: unknown),
    #: looked up on first use.
    rates: tuple[float, float] | None = None
    rates_known: bool = False

    @property
    def rate_limit(self) -> RateLimitState | None:
        """The last rate-limit state the provider reported for this model."""
        return self.limits.state

    def saw_limits(self, state: RateLimitState, now: float) -> None:
        """Record what the provider's rate-limit headers said, at `now`."""
        seen = self.limits
        if seen.state is None:
            for route in seen.routes:
                route.limits_seen = True
        seen.state, seen.at = state, now


@dataclass(slots=True, eq=False)
class Route:
    """A resolved route; `name` is None for a direct ``provider/model`` address."""

    name: str | None
    targets: list[Target]
    config: RouteConfig
    strategy_impl: Strategy
    fallbacks: list[Route] = field(default_factory=list)
    has_conditions: bool = False
    has_capabilities: bool = False
    needs_tokens: bool = False
    _chain: list[Route] | None = field(default=None, repr=False)
    #: The selection when nothing can change it (ordered, no filters), else None.
    plain: Selection | None = field(default=None, repr=False)
    #: Whether a provider of this route has reported rate limits (they then filter).
    limits_seen: bool = False
    #: Whether a filter other than rate limits can drop a target (computed).
    filtered: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        for target in self.targets:
            target.limits.routes.append(self)
            if target.limits.state is not None:
                self.limits_seen = True
        config = self.config
        self.filtered = (
            self.has_conditions
            or self.has_capabilities
            or config.max_cost_per_request is not None
            or config.max_latency is not None
            or (config.strategy == "cost" and config.unknown_price == "exclude")
        )
        if isinstance(self.strategy_impl, OrderedStrategy) and not self.filtered:
            self.plain = Selection(self.targets, "config order")

    @property
    def retry(self) -> RetryConfig:
        """The route's retry rounds and backoff."""
        return self.config.retry

    @property
    def timeout(self) -> float:
        """The deadline of a whole request on this route."""
        return self.config.timeout

    @property
    def strategy(self) -> str:
        """How the route orders its targets."""
        return self.config.strategy

    @property
    def failover_on(self) -> list[FailoverKind]:
        """The fatal errors that move on to the next target."""
        return self.config.failover_on

    def chain(self) -> list[Route]:
        """This route followed by its fallbacks, depth first, each route once."""
        cached = self._chain
        if cached is not None:
            return cached
        seen: list[Route] = []

        def walk(route: Route) -> None:
            if route in seen:
                return
            seen.append(route)
            for fallback in route.fallbacks:
                walk(fallback)

        walk(self)
        self._chain = seen
        return seen


class Catalog:
    """Builds providers and routes from a `Config`, and resolves `model=` names."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        prices: PriceBook,
        transports: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        strategies: Mapping[str, Strategy] | None = None,
    ) -> None:
        self._clock = clock
        self._prices = prices
        self._strategies = dict(strategies or {})
        for name, strategy in self._strategies.items():
            if not isinstance(strategy, Strategy):
                raise ConfigError(
                    f"strategy {name!r} must have a `name` and an `order(candidates, ctx)` method"
                )
        self._env = os.environ if env is None else env
        self._overrides = dict(transports or {})
        self.providers: dict[str, Provider] = {}
        provider_configs: dict[str, Any] = {**providers_from_env(self._env), **config.providers}
        for name, provider_config in provider_configs.items():
            self.providers[name] = self._build_provider(name, provider_config)
        unknown = set(self._overrides) - set(self.providers) - set(PRESETS) - {"mock"}
        if unknown:
            raise ConfigError(
                f"transports given for unknown providers: {', '.join(sorted(unknown))}"
            )
        self._targets: dict[str, Target] = {}
        self._seen: dict[str, RateLimitSeen] = {}
        self.routes: dict[str, Route] = {}
        for name, route_config in config.routes.items():
            self.routes[name] = self._build_route(name, route_config)
        for name, route_config in config.routes.items():
            self.routes[name].fallbacks = [self.routes[f] for f in route_config.fallbacks]
        for route in self.routes.values():
            route._chain = None  # fallbacks are wired now: chains are computed on first use
        self._direct: dict[str, Route] = {}

    # -------------------------------------------------------------- building

    def _build_provider(self, name: str, config: Any) -> Provider:
        config = with_env_defaults(name, config, self._env)
        spec = provider_spec(config.type)
        adapter = spec.adapter(name, config)
        override = self._overrides.get(name)
        if override is not None:
            transport = transport_from_client(override)
        elif spec.transport is not None:
            transport = spec.transport(config, self._clock)
        else:
            transport = AiohttpTransport(max_connections=config.max_connections)
        timeouts = Timeouts(connect=config.connect_timeout, read=config.timeout)
        return Provider(name, config.type, adapter, transport, timeouts, config.timeout)

    def _limits(self, key: str) -> RateLimitSeen:
        seen = self._seen.get(key)
        if seen is None:
            seen = self._seen[key] = RateLimitSeen()
        return seen

    def _target(self, provider: Provider, model: str) -> Target:
        key = f"{provider.name}/{model}"
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = Target(key, provider, model, limits=self._limits(key))
        return target

    def _strategy(self, name: str, config: RouteConfig, path: str) -> Strategy:
        custom = self._strategies.get(config.strategy)
        if custom is not None:
            return custom
        factory = BUILT_IN.get(config.strategy)
        if factory is None:
            known = ", ".join([*BUILT_IN, *self._strategies])
            raise ConfigError(f"unknown strategy {config.strategy!r}; known: {known}", path=path)
        if config.strategy == "latency":
            return LatencyStrategy(explore=config.explore)
        return factory()

    def _build_route(self, name: str, config: RouteConfig) -> Route:
        targets = []
        for i, spec in enumerate(config.targets):
            path = f"routes.{name}.targets.{i}"
            provider = self.providers.get(spec.provider) or self._implicit_provider(
                spec.provider, path=f"{path}.provider"
            )
            when = None
            if spec.when is not None:
                try:
                    when = compile_condition(spec.when, f"{path}.when")
                except ConditionError as exc:
                    raise ConfigError(
                        str(exc).removeprefix(f"{exc.path}: "), path=exc.path
                    ) from exc
            capabilities = frozenset(spec.capabilities) if spec.capabilities is not None else None
            targets.append(
                Target(spec.key, provider, spec.model, spec.weight, spec.context_window,
                       spec.price, capabilities, when, self._limits(spec.key))
            )  # fmt: skip
        route = Route(
            name,
            targets,
            config,
            self._strategy(name, config, f"routes.{name}.strategy"),
            has_conditions=any(t.when is not None for t in targets),
            has_capabilities=any(t.capabilities is not None for t in targets),
            needs_tokens=config.strategy == "cost" or config.max_cost_per_request is not None,
        )
        self._check_prices(route)
        return route

    def _check_prices(self, route: Route) -> None:
        """Where prices decide, a target without one needs the user's explicit choice."""
        config = route.config
        priced = config.strategy == "cost" or config.max_cost_per_request is not None
        if not priced or config.unknown_price is not None:
            return
        unknown = [
            t.key
            for t in route.targets
            if t.price is None and self._prices.rates(t.provider.adapter.prices_id, t.model) is None
        ]
        if unknown:
            raise ConfigError(
                f"no known price for {', '.join(unknown)}: give them a `price`, or set "
                "`unknown_price: last` or `unknown_price: exclude` on the route",
                path=f"routes.{route.name}.unknown_price",
            )

    def _implicit_provider(self, name: str, *, path: str = "") -> Provider:
        """A provider used without configuring it: ``mock``, or a preset that needs no key."""
        if name == "mock":
            config: Any = MockProviderConfig(type="mock")
        elif name in PRESETS and PRESETS[name].key_env is None:
            config = OpenAIProviderConfig.model_validate({"type": name})
        else:
            raise self._unknown_provider(name, path)
        provider = self._build_provider(name, config)
        self.providers[name] = provider
        return provider

    def _unknown_provider(self, name: str, path: str) -> ConfigError:
        hint = env_hint(name)
        if hint:
            message = f"provider {name!r} is not configured: set {hint} or add it under `providers`"
        else:
            known = ", ".join(sorted(self.providers)) or "(none)"
            message = (
                f"unknown provider {name!r}; configured providers: {known} "
                "(mock, ollama, vllm and lmstudio work without configuration)"
            )
        return ConfigError(message, path=path)

    # -------------------------------------------------------------- resolution

    def resolve(self, model: str) -> Route:
        """The route for a `model=` value: a route name, or ``provider/model``."""
        route = self.routes.get(model) or self._direct.get(model)
        if route is not None:
            return route
        provider_name, slash, model_name = model.partition("/")
        if slash and provider_name and model_name:
            provider = self.providers.get(provider_name)
            if provider is None:
                try:
                    provider = self._implicit_provider(provider_name)
                except (ConfigError, ValidationError) as exc:
                    raise UnknownModel(
                        f"cannot route model {model!r}: {exc}",
                        model=model, available=self.available(),
                    ) from exc  # fmt: skip
            target = self._target(provider, model_name)
            config = RouteConfig(targets=[TargetConfig(provider=provider_name, model=model_name)])
            route = Route(None, [target], config, OrderedStrategy())
            self._direct[model] = route
            return route
        available = self.available()
        listed = ", ".join(available) or "(no routes or providers configured)"
        raise UnknownModel(
            f"unknown model {model!r}: name a route or use 'provider/model'. Available: {listed}",
            model=model,
            available=available,
        )

    def provider_for(self, name: str | None) -> Provider | None:
        """The provider called `name`, if any."""
        return self.providers.get(name) if name else None

    def targets(self) -> list[Target]:
        """Every target of every route and every direct address resolved so far."""
        found: dict[str, Target] = {}
        for route in [*self.routes.values(), *self._direct.values()]:
            for target in route.targets:
                found.setdefault(target.key, target)
        return list(found.values())

    def model_ids(self) -> list[tuple[str, str]]:
        """``(id, owner)`` for each route, then each distinct target of the routes."""
        ids = [(name, "llmroute") for name in sorted(self.routes)]
        seen = set(self.routes)
        for route in self.routes.values():
            for target in route.targets:
                if target.key not in seen:
                    seen.add(target.key)
                    ids.append((target.key, target.provider.name))
        return ids

    def available(self) -> list[str]:
        """Route names and ``provider/*`` for each configured provider."""
        return sorted(self.routes) + [f"{name}/*" for name in sorted(self.providers)]

    async def aclose(self) -> None:
        """Close every provider's transport."""
        for provider in self.providers.values():
            await provider.transport.aclose()
