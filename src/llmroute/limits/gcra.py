"""GCRA (the generic cell rate algorithm): exact rate limits in O(1) state per key.

A limit of `amount` per `period` emits one unit every ``interval = period /
amount`` seconds. Each key keeps one number, its theoretical arrival time
(TAT): when the key would be back to full if nothing else came. A charge of
`cost` units moves the TAT ``cost * interval`` later and is allowed when the
new TAT is at most ``capacity`` (``burst * interval``) ahead of now. So over
any span of time t, at most ``burst + amount * t / period`` units pass, and
under a sustained load exactly `amount` per `period`.

Several buckets are charged together: all or none. Charges are reconciled
afterwards (`adjust`): a positive delta takes more (a long answer's tokens),
a negative one gives back (a refused request, an overestimate).

`MemoryGcra` keeps the TATs in this process. `RedisGcra` keeps them in Redis,
where each check is one Lua script, run atomically, on Redis's own clock: N
processes sharing it let through exactly the limit, not N times it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cachetools import TLRUCache

from .._clock import Clock
from ..stores.redis import RedisConnection

__all__ = ["Charge", "GcraStore", "MemoryGcra", "RedisGcra"]

#: A float's slack when comparing times (seconds).
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Charge:
    """`cost` units on the bucket `key`: one unit every `interval` s, `capacity` s of burst."""

    key: str
    interval: float
    capacity: float
    cost: float


class GcraStore(Protocol):
    """Where the TATs live."""

    #: Whether calls go over the network (then reconciliations run off the request's path).
    remote: bool

    async def acquire(self, charges: Sequence[Charge]) -> tuple[float, int]:
        """Charge every bucket, or none: ``(0, -1)`` when allowed, else the seconds to
        wait and the index of the charge that refused."""
        ...

    async def adjust(self, charges: Sequence[Charge]) -> None:
        """Add each charge's `cost` (negative: give back) without checking the limit."""
        ...

    async def check(self) -> str | None:
        """Why the store cannot be used right now, or None."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds."""
        ...


def _expiry(_key: str, tat: float, _now: float) -> float:
    return tat  # a key whose TAT has passed is full again: it need not be kept


class MemoryGcra:
    """TATs in this process (one number per key; keys back at full are dropped)."""

    remote = False

    def __init__(self, clock: Clock, max_keys: int = 1_000_000) -> None:
        self._clock = clock
        self._tats: TLRUCache[str, float] = TLRUCache(max_keys, _expiry, timer=clock.monotonic)
        self._lock = threading.Lock()

    async def acquire(self, charges: Sequence[Charge]) -> tuple[float, int]:
        with self._lock:
            tats = self._tats
            now = self._clock.monotonic()
            wait, refused = 0.0, -1
            news = []
            for index, charge in enumerate(charges):
                tat = max(tats.get(charge.key, now), now)
                new = tat + charge.cost * charge.interval
                over = new - charge.capacity - now
                if over > wait + _EPSILON:
                    wait, refused = over, index
                news.append(new)
            if refused >= 0:
                return wait, refused
            for charge, new in zip(charges, news, strict=True):
                if new > now:
                    tats[charge.key] = new
            return 0.0, -1

    async def adjust(self, charges: Sequence[Charge]) -> None:
        with self._lock:
            tats = self._tats
            now = self._clock.monotonic()
            for charge in charges:
                new = max(tats.get(charge.key, now), now) + charge.cost * charge.interval
                if new > now:
                    tats[charge.key] = new
                else:
                    tats.pop(charge.key, None)

    async def check(self) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


# Times are microseconds on Redis's clock, kept as doubles printed with 17 digits
# (exact); a key expires when its TAT has passed.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wait, refused = 0, -1
local news = {}
for i = 1, #KEYS do
  local interval = tonumber(ARGV[i * 3 - 2])
  local capacity = tonumber(ARGV[i * 3 - 1])
  local cost = tonumber(ARGV[i * 3])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local new = tat + cost * interval
  local over = new - capacity - now
  if over > wait + 0.001 then
    wait, refused = over, i - 1
  end
  news[i] = new
end
if refused >= 0 then
  return {refused, string.format('%.17g', wait)}
end
for i = 1, #KEYS do
  if news[i] > now then
    redis.call('SET', KEYS[i], string.format('%.17g', news[i]), 'PX', math.ceil((news[i] - now) / 1000) + 1)
  end
end
return {-1, '0'}
"""

_ADJUST = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  local interval = tonumber(ARGV[i * 2 - 1])
  local delta = tonumber(ARGV[i * 2])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local new = tat + delta * interval
  if new > now then
    redis.call('SET', KEYS[i], string.format('%.17g', new), 'PX', math.ceil((new - now) / 1000) + 1)
  else
    redis.call('DEL', KEYS[i])
  end
end
return 1
"""


class RedisGcra:
    """TATs in Redis: each `acquire` and `adjust` is one atomic Lua script round trip."""

    remote = True

    def __init__(self, connection: RedisConnection) -> None:
        self._redis = connection
        self._acquire = connection.script(_ACQUIRE)
        self._adjust = connection.script(_ADJUST)

    async def acquire(self, charges: Sequence[Charge]) -> tuple[float, int]:
        keys = [c.key for c in charges]
        args: list[str] = []
        for c in charges:
            args += [repr(c.interval * 1e6), repr(c.capacity * 1e6), repr(c.cost)]
        refused, wait = await self._redis.call(lambda: self._acquire(keys=keys, args=args))
        index = int(refused)
        return (float(wait) / 1e6, index) if index >= 0 else (0.0, -1)

    async def adjust(self, charges: Sequence[Charge]) -> None:
        keys = [c.key for c in charges]
        args: list[str] = []
        for c in charges:
            args += [repr(c.interval * 1e6), repr(c.cost)]
        await self._redis.call(lambda: self._adjust(keys=keys, args=args))

    async def check(self) -> str | None:
        return await self._redis.problem()

    async def aclose(self) -> None:
        await self._redis.aclose()
