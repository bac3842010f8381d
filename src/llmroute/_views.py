"""Read-only views of a router's routes and providers (`AsyncRouter.routes()`, `.providers()`).

The catalog's own objects carry the adapter, the transport and the runtime
memos of the request path; a caller that wants to show or check the
configuration (``llmroute check``, the gateway's start-up summary, a health
page) gets frozen copies of what describes them instead, so it cannot change
a router's routing by accident and does not depend on how the catalog keeps
its state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._config import RetryConfig
    from .routing.catalog import Catalog
    from .routing.model import Provider, Route

__all__ = ["ProviderView", "RouteView", "TargetView", "provider_views", "route_views"]


@dataclass(frozen=True, slots=True)
class ProviderView:
    """A provider as configured.

    Attributes:
        name: the provider's name (``openai``, or the name given in the config).
        type: its `type:` (``openai``, ``anthropic``, ``mock``...).
        base_url: where requests go; None for a simulated (``mock``) provider or
            one whose adapter does not say.
        has_key: whether an API key is configured (never the key itself).
        models: the models routes use on this provider, sorted.
    """

    name: str
    type: str
    base_url: str | None
    has_key: bool
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TargetView:
    """One target of a route: ``provider/model`` and its weight."""

    key: str
    provider: str
    provider_type: str
    model: str
    weight: float


@dataclass(frozen=True, slots=True)
class RouteView:
    """A route as configured.

    Attributes:
        name: the route's name (what ``model=`` asks for).
        strategy: the selection strategy's name.
        timeout: the route's overall deadline, in seconds.
        retry: its retry policy.
        targets: its targets, in configured order.
        fallbacks: the names of the routes tried after it, in order.
    """

    name: str
    strategy: str
    timeout: float
    retry: RetryConfig
    targets: tuple[TargetView, ...]
    fallbacks: tuple[str, ...]


def _provider(provider: Provider, models: tuple[str, ...]) -> ProviderView:
    adapter = provider.adapter
    base_url = None if provider.type == "mock" else getattr(adapter, "base_url", None)
    key = getattr(getattr(adapter, "config", None), "api_key", None)
    return ProviderView(
        provider.name,
        provider.type,
        None if base_url is None else str(base_url),
        key is not None,
        models,
    )


def _route(name: str, route: Route) -> RouteView:
    targets = tuple(
        TargetView(t.key, t.provider.name, t.provider.type, t.model, t.weight)
        for t in route.targets
    )
    fallbacks = tuple(f.name or "?" for f in route.fallbacks)
    return RouteView(name, route.strategy, route.timeout, route.retry, targets, fallbacks)


def route_views(catalog: Catalog) -> dict[str, RouteView]:
    """Every configured route, by name, in configured order."""
    return {name: _route(name, route) for name, route in catalog.routes.items()}


def provider_views(catalog: Catalog) -> dict[str, ProviderView]:
    """Every known provider (configured, from the environment, or implicit), by name."""
    models: dict[str, set[str]] = {}
    for target in catalog.targets():
        models.setdefault(target.provider.name, set()).add(target.model)
    return {
        name: _provider(provider, tuple(sorted(models.get(name, ()))))
        for name, provider in catalog.providers.items()
    }
