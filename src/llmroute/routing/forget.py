"""Dropping the runtime state of a direct route the catalog forgot (see `Catalog.on_forget`)."""

from __future__ import annotations

from dataclasses import dataclass

from .._prices import PriceBook
from .health import HealthTracker
from .model import Route
from .rate_limits import RateLimitBoard
from .select import Selector
from .stats import LiveStats

__all__ = ["RouteStateOwners"]


@dataclass(frozen=True, slots=True)
class RouteStateOwners:
    """Every routing object that keeps state per target or route; called with each direct
    ``provider/model`` route the catalog forgets, it has each drop its part (statistics,
    health and reported limits only when no attempt on the target is under way)."""

    stats: LiveStats
    health: HealthTracker
    limits: RateLimitBoard
    selector: Selector
    prices: PriceBook

    def __call__(self, route: Route) -> None:
        for target in route.targets:
            if self.stats.forget(target.key):
                self.health.forget(target.key)
                self.limits.forget(target.key)
            self.prices.forget(target)
        self.selector.forget(route)
