"""The stages a router's config asks for (cache, rate limits, budgets), built in order.

The router adds its recorder in front of them and a user's own stages
(`AsyncRouter.add_stage`) where asked.

The cache lookup comes first by default, so a cache hit is free of rate
limits and budgets (it reaches no provider and costs nothing). A section with
``before_cache: true`` is checked before the lookup instead, so hits count
against it too. Rate limits are checked before budgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._clock import Clock
from .._config import Config
from .._prices import PriceBook
from ..cache.backends import CacheBackend, MemoryBackend, RedisBackend
from ..cache.config import CacheConfig
from ..cache.stage import CacheStage
from ..limits.budget import BudgetStage
from ..limits.budget_store import BudgetStore, MemoryBudgetStore, RedisBudgetStore
from ..limits.gcra import GcraStore, MemoryGcra, RedisGcra
from ..limits.rate import RateLimitStage
from ..limits.stats import LimitStats
from ..stores.redis import RedisConnection
from .stage import Stage

__all__ = ["ConfiguredStages", "build_stages"]


@dataclass(slots=True)
class ConfiguredStages:
    """A router's cache, rate-limit and budget stages (None when not configured), and the
    Redis connections they share."""

    cache: CacheStage | None = None
    rate_limits: RateLimitStage | None = None
    budgets: BudgetStage | None = None
    connections: list[RedisConnection] = field(default_factory=list)

    @property
    def ordered(self) -> list[Stage]:
        """The stages in pipeline order (see the module docstring)."""
        early: list[Stage] = []
        late: list[Stage] = []
        for stage in (self.rate_limits, self.budgets):
            if stage is not None:
                (early if stage.before_cache else late).append(stage)
        middle: list[Stage] = [self.cache] if self.cache is not None else []
        return early + middle + late

    async def drain(self) -> None:
        """Wait for the writes the stages run off the request's path (cache stores, Redis
        reconciliations and spends)."""
        for stage in (self.cache, self.rate_limits, self.budgets):
            if stage is not None:
                await stage.drain()

    def stats(self) -> LimitStats:
        """The rate-limit and budget counters."""
        return LimitStats(
            rate_limits=self.rate_limits.counters if self.rate_limits is not None else None,
            budgets=self.budgets.counters if self.budgets is not None else None,
            redis_failures=sum(
                c.failures for c in self.connections if c.purpose in ("rate_limits", "budgets")
            ),
        )


def _redis(
    stages: ConfiguredStages, url: str, timeout: float, retry: float, purpose: str, clock: Clock
) -> RedisConnection:
    connection = RedisConnection(
        url, timeout=timeout, retry_interval=retry, purpose=purpose, clock=clock
    )
    stages.connections.append(connection)
    return connection


def build_stages(config: Config, clock: Clock, prices: PriceBook) -> ConfiguredStages:
    """The stages `config` asks for (Redis clients are created, not connected)."""
    stages = ConfiguredStages()
    cache = config.cache
    if cache is None and any(
        r.cache is not None and r.cache.enabled for r in config.routes.values()
    ):
        cache = CacheConfig(enabled=False)  # only the routes that ask for it
    if cache is not None:
        backend: CacheBackend
        if cache.backend.startswith("memory://"):
            backend = MemoryBackend(clock, cache.max_size)
        else:
            connection = _redis(
                stages, cache.backend, cache.timeout, cache.retry_interval, "cache", clock
            )
            backend = RedisBackend(connection, cache.compress_over)
        stages.cache = CacheStage(cache, backend)
    limits = config.rate_limits
    if limits is not None and limits.rules:
        store: GcraStore
        if limits.backend.startswith("memory://"):
            store = MemoryGcra(clock)
        else:
            store = RedisGcra(
                _redis(stages, limits.backend, limits.timeout, limits.retry_interval,
                       "rate_limits", clock)
            )  # fmt: skip
        stages.rate_limits = RateLimitStage(limits, store, clock)
    budgets = config.budgets
    if budgets is not None and budgets.rules:
        spend: BudgetStore
        if budgets.backend.startswith("memory://"):
            spend = MemoryBudgetStore()
        else:
            connection = _redis(
                stages, budgets.backend, budgets.timeout, budgets.retry_interval, "budgets", clock
            )
            spend = RedisBudgetStore(connection, budgets.prefix)
        stages.budgets = BudgetStage(budgets, spend, clock, prices)
    return stages
