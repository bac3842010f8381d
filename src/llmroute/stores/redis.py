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

The URL picks the client (`llmroute.stores.redis_urls`): one server, a Redis
Cluster (``redis+cluster://``) or a master behind Sentinel (``redis+sentinel://``),
all with the bounds above. On a cluster, the keys one Lua script touches share a
hash tag (`hash_tag`), so each script runs on one slot's master. Behind
Sentinel, the sentinels are asked which is the master every `FOLLOW_INTERVAL`
(at once after a failure), off the request's path, and `client` is replaced
by one for a new master they name: read `client` at each call.

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
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .._clock import Clock
from .._errors import ConfigError
from .._release import Held, hold
from .redis_urls import open_redis, parse_redis_url

__all__ = ["FOLLOW_INTERVAL", "MAX_CONNECTIONS", "RedisConnection", "RedisUnavailable", "hash_tag"]

#: Redis connections (and commands in flight) per `RedisConnection`.
MAX_CONNECTIONS = 16
#: Behind Sentinel, how often (seconds) a connection asks the sentinels which is the master.
FOLLOW_INTERVAL = 1.0

logger = logging.getLogger("llmroute.redis")

T = TypeVar("T")


def hash_tag(name: str) -> str:
    """`name` as a Redis Cluster hash tag (``{name}``): keys that begin with it share a slot,
    so one Lua script may touch them all. The same keys on one server or behind Sentinel."""
    if "{" in name or "}" in name:
        raise ValueError(f"a Redis key prefix cannot hold '{{' or '}}', got {name!r}")
    return "{" + name + "}"


def _from_redis_py(exc: BaseException) -> bool:
    """Whether `exc` was raised inside redis-py (or asyncio's transport under it).

    A connection that redis-py's asyncio client closes while another command is using it
    (its cluster client closes every node's connections on a CLUSTERDOWN reply, as in a
    failover), or that the peer has reset, can fail with an AttributeError or TypeError
    from the stream writer instead of a ConnectionError (redis/redis-py#4287, #3546). That
    is Redis lost, not a reason to fail the request.
    """
    trace = exc.__traceback__
    while trace is not None:
        if str(trace.tb_frame.f_globals.get("__name__", "")).startswith("redis."):
            return True
        trace = trace.tb_next
    return False


class RedisUnavailable(Exception):
    """Redis could not be used for this call (unreachable, timed out, or resting after a failure)."""


class RedisConnection:
    """One Redis client for one purpose (``cache``, ``rate_limits``, ``budgets``).

    Args:
        url: ``redis://host:port/db``, ``rediss://...``, ``unix:///path``,
            ``redis+cluster://host:port,...`` or ``redis+sentinel://host:port,.../service/db``
            (see `llmroute.stores.redis_urls`).
        timeout: the socket timeout for connecting and for each command.
        retry_interval: how long to leave Redis alone after a failure.
        purpose: names the configuration section in errors and logs.
        clock: the time source of the outage breaker.
    """

    def __init__(
        self, url: str, *, timeout: float, retry_interval: float, purpose: str, clock: Clock
    ) -> None:
        try:
            target = parse_redis_url(url)
        except ValueError as exc:
            raise ConfigError(f"{purpose}.backend: {exc}", path=f"{purpose}.backend") from exc
        try:
            from redis.exceptions import RedisClusterException, RedisError

            opened = open_redis(target, timeout=timeout, max_connections=MAX_CONNECTIONS)
        except ImportError as exc:
            raise ConfigError(
                f"{purpose}.backend {url!r} needs the redis package: pip install 'llmroute[redis]'",
                path=f"{purpose}.backend",
            ) from exc
        #: The redis-py asyncio client (a `RedisCluster` for a ``redis+cluster://`` URL).
        self.client: Any = opened.client
        #: Whether the client is a Redis Cluster's: keys of one multi-key command must then
        #: share a slot (see `hash_tag`).
        self.cluster = opened.cluster
        self._close = opened.aclose
        self._turns = asyncio.Semaphore(MAX_CONNECTIONS)
        self._errors: tuple[type[BaseException], ...] = (
            RedisError,
            RedisClusterException,
            OSError,
            TimeoutError,
        )
        # and what redis-py lets escape when a connection is closed under a command
        self._caught: tuple[type[BaseException], ...] = (*self._errors, AttributeError, TypeError)
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
        # a cluster client learns the slots before its first command (again after a failure)
        self._learn_slots = opened.cluster
        self._learning: asyncio.Lock | None = None
        # behind Sentinel, which master the sentinels name is asked every FOLLOW_INTERVAL
        self._sentinel = opened.sentinel
        self._next_follow = float("-inf")
        self._following: asyncio.Task[None] | None = None

    def script(self, source: str) -> Any:
        """Register a Lua script (run by SHA, loaded on first use), on `client` as it is
        at each call (behind Sentinel it changes with the master)."""
        registered = self.client.register_script(source)
        if self._sentinel is None:
            return registered

        def run(keys: Sequence[str] = (), args: Sequence[Any] = ()) -> Awaitable[Any]:
            return registered(keys=keys, args=args, client=self.client)  # type: ignore[no-any-return]

        return run

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis operation; raise `RedisUnavailable` rather than fail or hang."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._opened_on(loop)
        if self._sentinel is not None:
            self._follow_sentinels(loop)
        probe = self._admit()
        try:
            async with self._turns:
                self._check_resting()  # it may have failed while this call waited its turn
                try:
                    # belt and braces over the socket timeouts: connect + one command at most
                    async with asyncio.timeout(self._timeout * 2 + 0.05):
                        if self._learn_slots:
                            await self._learn_cluster()
                        result = await operation()
                except self._caught as exc:
                    if isinstance(exc, AttributeError | TypeError) and not _from_redis_py(exc):
                        raise  # a bug of ours, not an outage
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

    async def _learn_cluster(self) -> None:
        """Have the cluster client learn the slots' masters, one call at a time: redis-py's
        cluster client, asked by many commands at once before it knows them, breaks
        connections that other commands are using."""
        if self._learning is None:
            self._learning = asyncio.Lock()
        async with self._learning:
            if self._learn_slots:
                await self.client.initialize()
                self._learn_slots = False

    def _follow_sentinels(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every FOLLOW_INTERVAL (at once after a failure), ask the sentinels for the master
        off the request's path, and move `client` to a new one they name."""
        now = self._clock.monotonic()
        if now < self._next_follow or self._following is not None:
            return
        self._next_follow = now + FOLLOW_INTERVAL
        self._following = loop.create_task(self._follow())

    async def _follow(self) -> None:
        sentinel = self._sentinel
        assert sentinel is not None
        try:
            async with asyncio.timeout(self._timeout * 2 + 0.05):
                moved = await sentinel.follow()
        except self._errors as exc:
            # the sentinels unreachable: the master may still be; its commands will say
            logger.debug("llmroute %s: the sentinels did not answer: %r", self.purpose, exc)
            moved = False
        finally:
            self._following = None
        if moved:
            self.client = sentinel.client
            logger.warning(
                "llmroute %s: Sentinel names a new master, %s:%s; moving to it",
                self.purpose, *(sentinel.address or ("?", "?")),
            )  # fmt: skip

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._learn_slots = self.cluster
        self._next_follow = float("-inf")  # a failover, perhaps: ask the sentinels at once
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
        self._learning = None  # a lock belongs to one loop
        self._following = None  # and so does a task
        self._learn_slots = self.cluster
        if self._held is not None:
            self._held.detach()
        self._held = hold(self, self._close)

    async def aclose(self) -> None:
        """Close the client's connections."""
        following, self._following = self._following, None
        if following is not None and following.get_loop() is asyncio.get_running_loop():
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
        held, self._held = self._held, None
        if held is not None:
            held.detach()
        self._loop = None
        await self._close()
