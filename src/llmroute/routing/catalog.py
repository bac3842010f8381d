"""The live providers, targets and routes a router was built with, and model-name resolution."""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from .._clock import Clock
from .._config import (
    Config,
    RouteConfig,
    TargetConfig,
)
from .._config_load import env_hint, providers_from_env, with_env_defaults
from .._errors import ConfigError, RequestError, UnknownModel
from .._prices import PriceBook
from .._transports import AiohttpTransport, Timeouts, transport_from_client
from ..providers import PRESETS, provider_spec
from ..providers.configs import MockProviderConfig, OpenAIProviderConfig
from .conditions import ConditionError, compile_condition
from .model import OrderedStrategy, Provider, Route, Strategy, Target, link_routes
from .strategies import BUILT_IN, LatencyStrategy

__all__ = ["MAX_DIRECT_ROUTES", "Catalog", "check_model_name"]

#: How many direct ``provider/model`` addresses a catalog remembers (least recently used
#: first out): every distinct name a client sends would otherwise stay in memory, with its
#: statistics, health and price memo, for the life of the process.
MAX_DIRECT_ROUTES = 1024


#: What a direct ``provider/model`` address may not hold: control characters, whitespace,
#: and URL syntax (``?``, ``#``, ``%``, a backslash). Adapters put the model name into
#: request paths, so a name like ``gem/../../admin`` must never reach one.
_UNSAFE_MODEL = re.compile(r"[\x00-\x20\x7f-\x9f?#%\\\u2028\u2029]")


def check_model_name(model: str) -> None:
    """Refuse a direct model name that could leave its provider's URL or forge log lines.

    Raises:
        RequestError: the name holds control characters, whitespace, ``?``, ``#``,
            ``%``, a backslash, or a ``.``/``..`` path segment.
    """
    bad = _UNSAFE_MODEL.search(model)
    if bad is not None:
        raise RequestError(
            f"model name {model!r} contains {bad.group()!r}, which no model name may hold",
            param="model",
        )
    if any(part in {".", ".."} for part in model.split("/")):
        raise RequestError(
            f"model name {model!r} contains a '.' or '..' path segment", param="model"
        )


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
        implicit_providers: bool = True,
        max_direct_routes: int = MAX_DIRECT_ROUTES,
    ) -> None:
        self._clock = clock
        #: Whether `model=` may name a provider nobody configured: ``mock``, a keyless
        #: preset (ollama, vllm, lmstudio) or one whose key is in the environment.
        self._implicit = implicit_providers
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
        detected = providers_from_env(self._env) if implicit_providers else {}
        provider_configs: dict[str, Any] = {**detected, **config.providers}
        for name, provider_config in provider_configs.items():
            self.providers[name] = self._build_provider(name, provider_config)
        unknown = set(self._overrides) - set(self.providers) - set(PRESETS) - {"mock"}
        if unknown:
            raise ConfigError(
                f"transports given for unknown providers: {', '.join(sorted(unknown))}"
            )
        #: The targets of direct ``provider/model`` addresses, by key (routes' own targets
        #: are made per route: each may give the same key its own weight or price).
        self._direct_targets: dict[str, Target] = {}
        self.routes: dict[str, Route] = {}
        for name, route_config in config.routes.items():
            self.routes[name] = self._build_route(name, route_config)
        link_routes(self.routes, {name: rc.fallbacks for name, rc in config.routes.items()})
        self._direct: OrderedDict[str, Route] = OrderedDict()
        self._max_direct = max_direct_routes
        #: The target keys of configured routes: never forgotten.
        self._configured_keys = {t.key for r in self.routes.values() for t in r.targets}
        self._forget_listeners: list[Callable[[Route], None]] = []
        #: The routes made for experiments' variants (`variant_route`).
        self._variants: list[Route] = []

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

    def _target(self, provider: Provider, model: str) -> Target:
        key = f"{provider.name}/{model}"
        target = self._direct_targets.get(key)
        if target is None:
            target = self._direct_targets[key] = Target(key, provider, model)
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

    def _build_route(
        self,
        name: str,
        config: RouteConfig,
        *,
        path: str | None = None,
        key: str = "",
        fallbacks: tuple[Route, ...] = (),
    ) -> Route:
        path = path or f"routes.{name}"
        targets = []
        for i, spec in enumerate(config.targets):
            where = f"{path}.targets.{i}"
            provider = self.providers.get(spec.provider) or self._implicit_provider(
                spec.provider, path=f"{where}.provider"
            )
            when = None
            if spec.when is not None:
                try:
                    when = compile_condition(spec.when, f"{where}.when")
                except ConditionError as exc:
                    raise ConfigError(
                        str(exc).removeprefix(f"{exc.path}: "), path=exc.path
                    ) from exc
            capabilities = frozenset(spec.capabilities) if spec.capabilities is not None else None
            targets.append(
                Target(
                    spec.key,
                    provider,
                    spec.model,
                    spec.weight,
                    spec.context_window,
                    spec.price,
                    capabilities,
                    when,
                )
            )
        strategy = self._strategy(name, config, f"routes.{name}.strategy")
        route = Route(name, tuple(targets), config, strategy, fallbacks, key=key)
        self._check_prices(route, path)
        return route

    def variant_route(
        self, route: Route, key: str, targets: list[TargetConfig], path: str, *, fallback: bool
    ) -> Route:
        """A route for an experiment's variant of `route`: `targets` with `route`'s settings,
        under `route`'s name (its limits and records count it there) and kept apart by
        `key` (its cache entries, its selection's state); `route` is its fallback when
        `fallback` is true. `path` names the targets' place in the configuration."""
        assert route.name is not None, "experiments run on named routes"
        config = route.config.model_copy(update={"targets": targets, "fallbacks": []})
        fallbacks = (route,) if fallback else ()
        made = self._build_route(route.name, config, path=path, key=key, fallbacks=fallbacks)
        self._variants.append(made)
        return made

    def _check_prices(self, route: Route, path: str) -> None:
        """Where prices decide, a target without one needs the user's explicit choice."""
        config = route.config
        priced = config.strategy == "cost" or config.max_cost_per_request is not None
        if not priced or config.unknown_price is not None:
            return
        unknown = [t.key for t in route.targets if self._prices.target_rates(t) is None]
        if unknown:
            raise ConfigError(
                f"no known price for {', '.join(unknown)}: give them a `price`, or set "
                "`unknown_price: last` or `unknown_price: exclude` on the route",
                path=f"{path}.unknown_price",
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

    def on_forget(self, listener: Callable[[Route], None]) -> None:
        """Call `listener` with each direct route the catalog forgets (the least recently
        used, past `MAX_DIRECT_ROUTES`), so the owners of per-target state drop theirs."""
        self._forget_listeners.append(listener)

    def resolve(self, model: str) -> Route:
        """The route for a `model=` value: a route name, or ``provider/model``."""
        route = self.routes.get(model)
        if route is not None:
            return route
        route = self._direct.get(model)
        if route is not None:
            self._direct.move_to_end(model)
            return route
        provider_name, slash, model_name = model.partition("/")
        if slash and provider_name and model_name:
            check_model_name(model)
            provider = self.providers.get(provider_name)
            if provider is None and not self._implicit:
                raise UnknownModel(
                    f"unknown model {model!r}: provider {provider_name!r} is not configured "
                    "here. Available: " + (", ".join(self.available()) or "(none)"),
                    model=model, available=self.available(),
                )  # fmt: skip
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
            route = Route(None, (target,), config, OrderedStrategy())
            self._direct[model] = route
            if len(self._direct) > self._max_direct:
                self._forget_oldest()
            return route
        available = self.available()
        listed = ", ".join(available) or "(no routes or providers configured)"
        raise UnknownModel(
            f"unknown model {model!r}: name a route or use 'provider/model'. Available: {listed}",
            model=model,
            available=available,
        )

    def _forget_oldest(self) -> None:
        _, route = self._direct.popitem(last=False)
        for target in route.targets:
            if target.key not in self._configured_keys:
                self._direct_targets.pop(target.key, None)
        for listener in self._forget_listeners:
            listener(route)

    def provider_for(self, name: str | None) -> Provider | None:
        """The provider called `name`, if any."""
        return self.providers.get(name) if name else None

    def targets(self) -> list[Target]:
        """Every target of every route (experiments' variants' included) and every direct
        address resolved so far."""
        found: dict[str, Target] = {}
        for route in [*self.routes.values(), *self._variants, *self._direct.values()]:
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
