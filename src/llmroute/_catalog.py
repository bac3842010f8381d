"""The live providers, targets and routes a router was built with, and model-name resolution."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ._clock import Clock
from ._config import Config, FailoverKind, RetryConfig, RouteConfig, TargetConfig
from ._config_load import providers_from_env, with_env_defaults
from ._errors import ConfigError, UnknownModel
from ._transport import AiohttpTransport, Timeouts, Transport, transport_from_client
from .providers import PRESETS, ProviderAdapter, RateLimitState, provider_spec
from .providers._configs import MockProviderConfig, OpenAIProviderConfig

__all__ = ["Catalog", "Provider", "Route", "Target"]


@dataclass(slots=True, eq=False)
class Provider:
    """A configured provider: its adapter, its own transport (and pool), its limits."""

    name: str
    type: str
    adapter: ProviderAdapter
    transport: Transport
    timeouts: Timeouts
    attempt_timeout: float


@dataclass(slots=True, eq=False)
class Target:
    """One provider and model. `rate_limit` is the last state its headers reported."""

    key: str
    provider: Provider
    model: str
    weight: float = 1.0
    context_window: int | None = None
    rate_limit: RateLimitState | None = None


@dataclass(slots=True, eq=False)
class Route:
    """A resolved route; `name` is None for a direct ``provider/model`` address."""

    name: str | None
    targets: list[Target]
    config: RouteConfig
    fallbacks: list[Route] = field(default_factory=list)

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
        seen: list[Route] = []

        def walk(route: Route) -> None:
            if route in seen:
                return
            seen.append(route)
            for fallback in route.fallbacks:
                walk(fallback)

        walk(self)
        return seen


class Catalog:
    """Builds providers and routes from a `Config`, and resolves `model=` names."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock,
        transports: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._clock = clock
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
        self.routes: dict[str, Route] = {}
        for name, route_config in config.routes.items():
            self.routes[name] = self._build_route(name, route_config)
        for name, route_config in config.routes.items():
            self.routes[name].fallbacks = [self.routes[f] for f in route_config.fallbacks]
        self._direct: dict[str, Route] = {}

    # -------------------------------------------------------------- building

    def _build_provider(self, name: str, config: Any) -> Provider:
        if isinstance(config, OpenAIProviderConfig):
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

    def _target(self, provider: Provider, model: str, weight: float = 1.0) -> Target:
        key = f"{provider.name}/{model}"
        target = self._targets.get(key)
        if target is None:
            target = self._targets[key] = Target(key, provider, model, weight)
        return target

    def _build_route(self, name: str, config: RouteConfig) -> Route:
        targets = []
        for i, target in enumerate(config.targets):
            provider = self.providers.get(target.provider) or self._implicit_provider(
                target.provider, path=f"routes.{name}.targets.{i}.provider"
            )
            targets.append(
                Target(target.key, provider, target.model, target.weight, target.context_window)
            )
        return Route(name, targets, config)

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
        preset = PRESETS.get(name)
        if preset is not None and preset.key_env:
            message = (
                f"provider {name!r} is not configured: set {preset.key_env} or add it under "
                "`providers`"
            )
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
            route = Route(None, [target], config)
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
