"""The Redis connection shared state goes through: short timeouts, no retries, an outage breaker.

redis-py is an optional extra (``pip install 'llmroute[redis]'``), imported
only when a backend URL asks for Redis. Every command is bounded by the
configured timeout and never retried: a request must not wait on an
unreachable Redis. After a failure, Redis is left alone for `retry_interval`
(the caller applies its policy at once), then tried again; each outage is
logged once when it starts and once when it ends, and every failure is counted.

At most `MAX_CONNECTIONS` commands are in flight per connection object; more
wait their turn (a busy Redis is not an unavailable one), and look at the
outage breaker again once it comes, so a queue never waits out one timeout
after another. After a rest, a single call probes Redis; the others go on
without it until the probe succeeds (no stampede on a Redis coming back).

The client's connections are closed by `RedisConnection.aclose` (the router's
``aclose``), and otherwise by themselves, as the router's HTTP sessions are:
when the connection object is garbage-collected (the router was dropped), or
when the event loop they were opened on ends (`llmroute._release`), so redis-py
has nothing to warn about ("unclosed Connection"); a later call on another
loop opens new ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .._clock import Clock
from .._errors import ConfigError
from .._release import Held, hold

__all__ = ["MAX_CONNECTIONS", "RedisConnection", "RedisUnavailable"]

#: Redis connections (and commands in flight) per `RedisConnection`.
MAX_CONNECTIONS = 16

logger = logging.getLogger("llmroute.redis")

T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis could not be used for this call (unreachable, timed out, or resting after a failure)."""


class RedisConnection:
    """One Redis client for one purpose (``cache``, ``rate_limits``, ``budgets``).

    Args:
        url: ``redis://host:port/db``, ``rediss://...`` or ``unix:///path``.
        timeout: the socket timeout for connecting and for each command.
        retry_interval: how long to leave Redis alone after a failure.
        purpose: names the configuration section in errors and logs.
        clock: the time source of the outage breaker.
    """

    def __init__(
        self, url: str, *, timeout: float, retry_interval: float, purpose: str, clock: Clock
    ) -> None:
        try:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff
            from redis.exceptions import RedisError
        except ImportError as exc:
            raise ConfigError(
                f"{purpose}.backend {url!r} needs the redis package: pip install 'llmroute[redis]'",
                path=f"{purpose}.backend",
            ) from exc
        self.client: Any = aioredis.Redis.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._turns = asyncio.Semaphore(MAX_CONNECTIONS)
        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self._timeout = timeout
        self._retry_interval = retry_interval
        #: The configuration section this connection serves.
        self.purpose = purpose
        self._clock = clock
        self._resting_until = float("-inf")
        self._down = False
        self._probing = False
        #: Calls that failed or were skipped because Redis was resting.
        self.failures = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # where the connections are
        self._held: Held | None = None  # their release, if this object is dropped

    def script(self, source: str) -> Any:
        """Register a Lua script (run by SHA, loaded on first use)."""
        return self.client.register_script(source)

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation; raise `RedisUnavailable` rather than fail or hang."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._opened_on(loop)
        probe = self._admit()
        try:
            async with self._turns:
                self._check_resting()  # it may have failed while this call waited its turn
                try:
                    # belt and braces over the socket timeouts: connect + one command at most
                    async with asyncio.timeout(self._timeout * 2 + 0.05):
                        result = await operation()
                except self._errors as exc:
                    self._failed(exc)
                    await self._forget_idle()
                    raise RedisUnavailable(
                        f"{self.purpose}: Redis is unavailable: {exc!r}"
                    ) from exc
        finally:
            if probe:
                self._probing = False
        if self._down:
            self._down = False
            logger.warning("llmroute %s: Redis is reachable again", self.purpose)
            await self._forget_idle()  # any left from before the outage
        return result

    def _admit(self) -> bool:
        """Whether this call may go to Redis now; True when it is the probe after an outage.

        After a rest, one call (the probe) tries Redis; the others go on without it
        until the probe has succeeded, rather than all piling on a Redis that may
        still be down.
        """
        self._check_resting()
        if not self._down:
            return False
        if self._probing:
            self.failures += 1
            raise RedisUnavailable(f"{self.purpose}: Redis is unavailable (probing it again)")
        self._probing = True
        return True

    def _check_resting(self) -> None:
        if self._clock.monotonic() < self._resting_until:
            self.failures += 1
            raise RedisUnavailable(
                f"{self.purpose}: Redis is unavailable (resting after a failure)"
            )

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._resting_until = self._clock.monotonic() + self._retry_interval
        if not self._down:
            self._down = True
            logger.warning(
                "llmroute %s: Redis is unavailable (%r); going on without it by the "
                "section's policy, trying again in %gs", self.purpose, exc, self._retry_interval,
            )  # fmt: skip

    async def _forget_idle(self) -> None:
        """Disconnect the pool's idle connections after a failure and after an outage: if Redis
        went away, they point at a server that is gone, and with retries off redis-py fails
        the first command on each once it is back (a failure per pooled connection, each
        logged as a new outage)."""
        pool = getattr(self.client, "connection_pool", None)  # a cluster client has none
        if pool is not None:
            with contextlib.suppress(*self._errors):
                await pool.disconnect(inuse_connections=False)

    async def problem(self) -> str | None:
        """Why Redis cannot be used right now (a PING fails), or None."""
        try:
            await self.call(lambda: self.client.ping())
        except RedisUnavailable as exc:
            return str(exc)
        return None

    def _opened_on(self, loop: asyncio.AbstractEventLoop) -> None:
        """Connections will open on `loop`: release them if this object is dropped first, or
        when the loop ends (the client opens new ones on the next loop that calls)."""
        self._loop = loop
        if self._held is not None:
            self._held.detach()
        self._held = hold(self, self.client.aclose)

    async def aclose(self) -> None:
        """Close the client's connections."""
        held, self._held = self._held, None
        if held is not None:
            held.detach()
        self._loop = None
        await self.client.aclose()
