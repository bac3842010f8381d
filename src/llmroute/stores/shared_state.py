"""Provider state shared through Redis: circuits, cooldowns and half-open probes, fleet-wide.

Each router keeps deciding on its own `HealthTracker`: a request never waits on
Redis (but a half-open probe, below). What changes there (a circuit opens or
closes, a Retry-After or rate-limit cooldown is extended) is published off the
request's path: one Lua script merges it into the target's hash (the later of
each time wins) and announces the merged state on one channel. Every router
listens on that channel and merges what others did into its tracker; it also
reads every target's hash when it (re)connects and every `poll_interval`, so a
message lost in an outage changes nothing for long.

Times cross machines as Redis's own clock: a router sends how far from now a
deadline is, the script turns that into Redis time, and readers turn Redis time
back into their own clock. Machines' clocks need not agree.

A half-open circuit lets `health.half_open_probes` probes through for the whole
fleet, not per router: a router sends a probe only with a lease (``SET NX PX``
on one of that many keys, held for the attempt's time limit and released when it
ends); without one it waits for the prober's outcome, which the channel brings.

Redis lost: every router goes on with its own state (the tracker never stopped
being the source of decisions), says so in `problem()` (``/ready`` reports it
without failing) and in the log, once per outage (the connection's breaker);
probes go by the local bound. Changes made meanwhile wait, the latest per target,
and are published when Redis is back, if they still matter.

All the keys one script touches share the target's hash tag (``{provider/model}``),
so each script touches one slot of a Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from .._clock import Clock
from ..routing.health import HealthChange, HealthTracker
from .redis import RedisConnection, RedisUnavailable
from .shared_config import SharedStateConfig

__all__ = ["ProbeLease", "SharedHealth", "SharedStateStatus"]

logger = logging.getLogger("llmroute.redis")

#: A target's hash is kept this long after the last time it holds (ms).
RETAIN_MS = 3_600_000
#: The longest error text shared.
MAX_ERROR = 300
_NEVER = float("-inf")

# KEYS[1]: the target's hash. ARGV: origin, target, open_in (ms from now, '' none), opens,
# closed_in, cooldown_in, error, channel, retain (ms). Merges (the later wins), keeps the hash an hour
# past its latest time, and announces the merged state when anything moved.
_PUBLISH = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local moved = false
local function later(field, rel, extra, value)
  if rel == '' then return end
  local v = now + tonumber(rel)
  local old = tonumber(redis.call('HGET', key, field) or '')
  if old == nil or v > old then
    if extra then
      redis.call('HSET', key, field, v, extra, value)
    else
      redis.call('HSET', key, field, v)
    end
    moved = true
  end
end
later('open_until', ARGV[3], 'opens', ARGV[4])
later('closed_at', ARGV[5])
later('cooldown_until', ARGV[6])
if moved then
  if ARGV[7] ~= '' then redis.call('HSET', key, 'error', ARGV[7]) end
  local latest = now
  for _, f in ipairs({'open_until', 'closed_at', 'cooldown_until'}) do
    local v = tonumber(redis.call('HGET', key, f) or '')
    if v ~= nil and v > latest then latest = v end
  end
  local left = redis.call('PTTL', key)
  local keep = latest + tonumber(ARGV[9])
  if left < 0 or now + left < keep then
    redis.call('PEXPIREAT', key, keep)
  end
  local state = redis.call('HGETALL', key)
  redis.call('PUBLISH', ARGV[8], cjson.encode({o = ARGV[1], k = ARGV[2], t = now, s = state}))
end
return moved and 1 or 0
"""

# KEYS[1]: a target's hash. Its fields, and Redis's time (ms).
_READ = """
local t = redis.call('TIME')
return {tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), redis.call('HGETALL', KEYS[1])}
"""

# KEYS: a target's probe leases. ARGV: token, ms. The lease taken (1-based), or 0 and the
# milliseconds until the first held one ends.
_LEASE = """
local soonest = -1
for i, key in ipairs(KEYS) do
  if redis.call('SET', key, ARGV[1], 'NX', 'PX', ARGV[2]) then return {i, 0} end
  local left = redis.call('PTTL', key)
  if soonest < 0 or left < soonest then soonest = left end
end
return {0, soonest}
"""

# KEYS[1]: a lease; ARGV[1]: its token. Delete it if it is still ours.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(slots=True, frozen=True, eq=False)
class ProbeLease:
    """A half-open probe's lease: its key and token; `end()` releases it."""

    key: str
    token: str
    owner: SharedHealth

    def end(self) -> None:
        """The probe ended: release the lease once its outcome is published."""
        self.owner.probe_ended(self)


@dataclass(slots=True, frozen=True)
class SharedStateStatus:
    """How the shared state is doing, as `AsyncRouter.shared_state()` reports it.

    Attributes:
        connected: whether the router listens to the others' changes now.
        problem: why Redis cannot be used (then each router decides on its own), or None.
        published: changes this router wrote to Redis.
        merged: others' changes that changed something here.
        pending: changes waiting for Redis (the latest per target).
        probes_granted: half-open probe leases this router took.
        probes_denied: probes it did not send because another router held the lease.
        redis_failures: Redis calls that failed or were skipped during an outage.
    """

    connected: bool
    problem: str | None
    published: int
    merged: int
    pending: int
    probes_granted: int
    probes_denied: int
    redis_failures: int


class SharedHealth:
    """One router's link between its `HealthTracker` and the fleet's state in Redis.

    Args:
        config: the `state` section.
        health: the router's tracker (its `listener` is set here).
        clock: the router's clock (the tracker's time scale).
        targets: the keys of the targets to read on (re)connecting and each poll.
    """

    def __init__(
        self,
        config: SharedStateConfig,
        health: HealthTracker,
        clock: Clock,
        targets: Callable[[], Iterable[str]],
    ) -> None:
        self.connection = RedisConnection(
            config.backend, timeout=config.timeout, retry_interval=config.retry_interval,
            purpose="state", clock=clock,
        )  # fmt: skip
        self._health = health
        self._clock = clock
        self._targets = targets
        self._prefix = config.prefix
        self.channel = f"{config.prefix}:changes"
        self._poll = config.poll_interval
        self._retry = config.retry_interval
        self._start_limit = config.timeout * 4  # subscribe and read, with room
        self._publish = self.connection.script(_PUBLISH)
        self._read = self.connection.script(_READ)
        self._lease = self.connection.script(_LEASE)
        self._release = self.connection.script(_RELEASE)
        self.origin = os.urandom(8).hex()  # our own messages come back: skip them
        self._pending: dict[str, HealthChange] = {}
        self._releases: list[ProbeLease] = []
        self._flushing: asyncio.Task[None] | None = None
        self._listening: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = False
        self._settled: asyncio.Event | None = None  # the listener's first try ended
        self._closed = False
        self.published = self.merged = self.granted = self.denied = 0
        health.listener = self._changed

    # -------------------------------------------------------------- keys

    def _key(self, target: str) -> str:
        return f"{self._prefix}:{{{target}}}"

    def _lease_keys(self, target: str, count: int) -> list[str]:
        return [f"{self._prefix}:{{{target}}}:probe:{i}" for i in range(count)]

    # -------------------------------------------------------------- running

    def ensure(self) -> None:
        """Listen to the others' changes on the running loop (once per loop; a request calls
        it: a check while the listener runs)."""
        task = self._listening
        if task is None or task.done() or self._loop is not asyncio.get_running_loop():
            self._start()

    def _start(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._settled = asyncio.Event()
        self._listening = loop.create_task(
            _listen(weakref.ref(self), self.connection, self.channel, self._poll, self._retry),
            name="llmroute-shared-state",
        )

    # -------------------------------------------------------------- publishing

    def _changed(self, change: HealthChange) -> None:
        """The tracker's listener: publish `change` off the request's path."""
        self._pending[change.key] = change  # it holds the target's whole state: the latest wins
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # changed outside a loop (router.cool_down in sync code): sent on the next
        if self._listening is None or self._loop is not loop:
            self.ensure()
        if self._flushing is None or self._flushing.done():
            self._flushing = loop.create_task(self._flush(), name="llmroute-shared-publish")

    async def _flush(self) -> None:
        """Publish the pending changes, then release the leases of probes that ended; on a
        Redis failure, keep what is left for when it is back."""
        while self._pending or self._releases:
            key, change = next(iter(self._pending.items())) if self._pending else ("", None)
            try:
                if change is not None:
                    await self._send(change)
                    if self._pending.get(key) is change:
                        del self._pending[key]
                else:
                    lease = self._releases.pop(0)
                    await self.connection.call(
                        partial(self._release, keys=[lease.key], args=[lease.token])
                    )
            except RedisUnavailable:
                # the connection's breaker has logged and counted the outage; what is
                # pending is published when Redis is back, and leases expire by themselves
                self._releases.clear()
                return

    async def _send(self, change: HealthChange) -> None:
        now = self._clock.monotonic()

        def rel(at: float) -> str:
            return repr(round((at - now) * 1000)) if at != _NEVER else ""

        closed = change.closed_at
        # an opening that ended with no close: a stale one (published late) asks nothing
        current = change.open_until > now or (closed != _NEVER and closed >= change.open_until)
        open_in = rel(change.open_until) if current else ""
        cooldown_in = rel(change.cooldown_until) if change.cooldown_until > now else ""
        closed_in = rel(closed)
        if not (open_in or cooldown_in or closed_in):
            return
        args = [self.origin, change.key, open_in, str(change.opens), closed_in, cooldown_in,
                (change.error or "")[:MAX_ERROR], self.channel, str(RETAIN_MS)]  # fmt: skip
        await self.connection.call(lambda: self._publish(keys=[self._key(change.key)], args=args))
        self.published += 1

    # -------------------------------------------------------------- merging

    def merge(self, target: str, redis_now: float, fields: dict[str, str]) -> None:
        """Take in a target's shared state (times in Redis milliseconds, read at
        `redis_now`); ValueError when a field is not a number."""
        now = self._clock.monotonic()

        def local(name: str) -> float:
            value = fields.get(name)
            return now + (float(value) - redis_now) / 1000 if value is not None else _NEVER

        change = HealthChange(
            target, local("open_until"), int(fields.get("opens", "0")), local("closed_at"),
            local("cooldown_until"), (fields.get("error") or "")[:MAX_ERROR] or None,
        )  # fmt: skip
        if self._health.merge(change, now):
            self.merged += 1

    def took_message(self, data: bytes | str) -> None:
        """Merge one message from the channel: another router's change to a target this
        router knows (our own messages, and other targets, are skipped)."""
        try:
            message = json.loads(data)
            if message["o"] == self.origin or message["k"] not in set(self._targets()):
                return
            state = message["s"]
            fields = {str(state[i]): str(state[i + 1]) for i in range(0, len(state) - 1, 2)}
            self.merge(str(message["k"]), float(message["t"]), fields)
        except (ValueError, KeyError, TypeError, IndexError):
            logger.warning("llmroute state: ignored a malformed message on %s", self.channel)

    async def load(self) -> None:
        """Read every target's shared state and merge it (on connecting, and each poll)."""
        keys = list(self._targets())

        async def one(target: str) -> None:
            redis_now, pairs = await self.connection.call(
                lambda: self._read(keys=[self._key(target)])
            )
            fields = {_text(pairs[i]): _text(pairs[i + 1]) for i in range(0, len(pairs) - 1, 2)}
            if not fields:
                return
            try:
                self.merge(target, float(redis_now), fields)
            except ValueError:
                logger.warning("llmroute state: ignored %s: not llmroute's", self._key(target))

        await asyncio.gather(*(one(k) for k in keys))

    def connected(self, up: bool) -> None:
        """The listener's news: subscribed and read (publish what waited), or lost."""
        self._connected = up
        if self._settled is not None:
            self._settled.set()
        if up and self._pending:
            self._flush_soon()

    async def start(self) -> None:
        """Listen on the running loop, and wait (a few Redis timeouts at most) for the first
        reading of the fleet's state or for Redis to fail: a router started this way takes
        its first request knowing what the others know."""
        self.ensure()
        settled = self._settled
        if settled is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._start_limit):
                    await settled.wait()

    # -------------------------------------------------------------- probes

    async def probe(
        self, target: str, probes: int, seconds: float
    ) -> ProbeLease | Literal[False] | None:
        """A fleet-wide lease for one of `probes` half-open probes of `target`, held for
        `seconds` at most: the lease, False when every lease is held elsewhere (the
        tracker is told until when), or None when Redis cannot be asked (the local bound
        applies)."""
        keys = self._lease_keys(target, probes)
        token = os.urandom(8).hex()
        ms = max(1, round(seconds * 1000))
        try:
            taken, left = await self.connection.call(
                lambda: self._lease(keys=keys, args=[token, str(ms)])
            )
        except RedisUnavailable:  # logged and counted by the connection's breaker
            return None  # the caller applies the local probe bound (see the docstring)
        if int(taken):
            self.granted += 1
            return ProbeLease(keys[int(taken) - 1], token, self)
        self.denied += 1
        wait = max(int(left), 1) / 1000
        self._health.probing_elsewhere(target, self._clock.monotonic() + wait)
        return False

    def probe_ended(self, lease: ProbeLease) -> None:
        """Release `lease` once the probe's outcome is published (off the request's path)."""
        self._releases.append(lease)
        self._flush_soon()

    # -------------------------------------------------------------- reporting and closing

    async def problem(self) -> str | None:
        """Why the fleet's state cannot be shared right now (a PING fails), or None."""
        problem = await self.connection.problem()
        if problem is None and not self._connected and self._listening is not None:
            return "state: not listening to the other routers' changes yet"
        return problem

    def status(self, problem: str | None = None) -> SharedStateStatus:
        """The counters, and `problem` as `problem()` found it."""
        return SharedStateStatus(
            self._connected, problem, self.published, self.merged, len(self._pending),
            self.granted, self.denied, self.connection.failures,
        )  # fmt: skip

    async def drain(self) -> None:
        """Wait until what changed here is in Redis (or Redis failed)."""
        while self._flushing is not None and not self._flushing.done():
            await asyncio.shield(self._flushing)

    async def aclose(self) -> None:
        """Publish what can be, stop listening and close the connection."""
        with contextlib.suppress(RedisUnavailable):
            await self.drain()
        self._closed = True
        task, self._listening = self._listening, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.connection.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _listen(
    ref: weakref.ref[SharedHealth],
    connection: RedisConnection,
    channel: str,
    poll: float,
    retry: float,
) -> None:
    """Subscribe to the others' changes and merge them; read every target's state on
    (re)connecting and each `poll`; after a failure, wait `retry` and start over. Holds the
    `SharedHealth` only while using it: a router dropped unclosed ends this task."""
    from redis.exceptions import RedisError  # installed: the connection was made

    loop = asyncio.get_running_loop()
    while True:
        pubsub = connection.client.pubsub(ignore_subscribe_messages=True)
        try:
            await connection.call(partial(pubsub.subscribe, channel))
            shared = ref()
            if shared is None:
                return
            await shared.load()
            shared.connected(True)
            del shared
            next_poll = loop.time() + poll
            while True:
                message = await pubsub.get_message(timeout=max(0.0, next_poll - loop.time()))
                shared = ref()
                if shared is None:
                    return
                if message is not None and message.get("type") == "message":
                    shared.took_message(message["data"])
                if loop.time() >= next_poll:
                    await shared.load()
                    next_poll = loop.time() + poll
                del shared
        except RedisUnavailable:
            pass  # resting after an outage its breaker logged: subscribe again below
        except (OSError, RedisError) as exc:
            # the subscription broke: tell the connection's breaker (it logs an outage once)
            logger.debug("llmroute state: the subscription broke: %r", exc)
            with contextlib.suppress(RedisUnavailable):
                await connection.call(lambda: connection.client.ping())
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()
        shared = ref()
        if shared is None:
            return
        shared.connected(False)
        del shared
        await asyncio.sleep(retry)
