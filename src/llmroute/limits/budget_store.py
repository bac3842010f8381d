"""Where budget spend is kept: in this process, or in Redis shared by every process.

Each budget window of each subject holds the dollars spent (in whole
nano-dollars, so sums are exact) and the dollars reserved by requests in
flight. A request is admitted while ``spent + reserved`` is below the limit,
and then reserves its estimated cost as a lease; when it ends, the lease is
released and its actual cost added to `spent`. So when estimates are not
below the actual costs, spend never passes the limit by more than the cost of
the last request admitted. A lease expires after the request's deadline (and
a minute's grace), so a process that dies does not hold budget forever.

In Redis, a window is a hash (``spent``, ``reserved``), a sorted set of leases
scored by their expiry, and a set of the window's subjects (for
`router.budgets()`); admission and release are one Lua script each, for every
budget of the request at once.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..stores.redis import RedisConnection, hash_tag

__all__ = ["BudgetStore", "Lease", "MemoryBudgetStore", "RedisBudgetStore", "WindowKey", "Usage"]

#: How long a window's state outlives its end (seconds): `router.budgets()` may still read it.
_KEEP_AFTER_END = 3600.0


@dataclass(frozen=True, slots=True)
class WindowKey:
    """One subject's window of one budget."""

    rule: str  # the budget's shape, such as ``user:5/1day``
    subject: str
    start: float
    end: float
    limit: int  # nano-dollars


@dataclass(frozen=True, slots=True)
class Lease:
    """A request's reservation: `amount` nano-dollars until `until` (Unix seconds)."""

    request_id: str
    amount: int
    until: float

    @property
    def member(self) -> str:
        return f"{self.request_id}:{self.amount}"


@dataclass(frozen=True, slots=True)
class Usage:
    """A window's spend and reservations, in nano-dollars (also a refusal's reason)."""

    spent: int
    reserved: int


class BudgetStore(Protocol):
    """Budget windows: admit with a lease, then release it with the actual cost."""

    #: Whether calls go over the network (then releases run off the request's path).
    remote: bool

    async def reserve(
        self, windows: Sequence[WindowKey], lease: Lease, now: float
    ) -> tuple[int, Usage] | None:
        """Lease `lease.amount` in every window, or none: None when admitted, else the
        index of the window that is spent and its usage."""
        ...

    async def release(self, windows: Sequence[WindowKey], lease: Lease, cost: int) -> None:
        """End `lease` and add `cost` nano-dollars to each window's spend."""
        ...

    async def usage(
        self, windows: Sequence[tuple[str, float, float]]
    ) -> list[tuple[str, str, Usage]]:
        """The usage of every subject seen in each ``(rule, start, end)`` window:
        ``(rule, subject, usage)``."""
        ...

    async def check(self) -> str | None:
        """Why the store cannot be used right now, or None."""
        ...

    async def aclose(self) -> None:
        """Release what the store holds."""
        ...


@dataclass(slots=True)
class _Window:
    end: float
    spent: int = 0
    reserved: int = 0
    leases: dict[str, tuple[int, float]] = field(default_factory=dict)
    next_expiry: float = float("inf")

    def expire_leases(self, now: float) -> None:
        if now < self.next_expiry:
            return
        for member, (amount, until) in list(self.leases.items()):
            if until <= now:
                del self.leases[member]
                self.reserved -= amount
        self.next_expiry = min((u for _, u in self.leases.values()), default=float("inf"))


class MemoryBudgetStore:
    """Budget windows in this process."""

    remote = False

    def __init__(self) -> None:
        self._windows: dict[tuple[str, float, str], _Window] = {}
        self._lock = threading.Lock()
        self._until_sweep = 1024

    def _sweep(self, now: float) -> None:
        self._until_sweep = 1024
        for key in [k for k, w in self._windows.items() if w.end + _KEEP_AFTER_END <= now]:
            del self._windows[key]

    async def reserve(
        self, windows: Sequence[WindowKey], lease: Lease, now: float
    ) -> tuple[int, Usage] | None:
        with self._lock:
            self._until_sweep -= 1
            if self._until_sweep <= 0:
                self._sweep(now)
            found = []
            for index, key in enumerate(windows):
                window = self._windows.get((key.rule, key.start, key.subject))
                if window is None:
                    window = self._windows[(key.rule, key.start, key.subject)] = _Window(key.end)
                window.expire_leases(now)
                if window.spent + window.reserved >= key.limit:
                    return index, Usage(window.spent, window.reserved)
                found.append(window)
            for window in found:
                window.leases[lease.member] = (lease.amount, lease.until)
                window.reserved += lease.amount
                window.next_expiry = min(window.next_expiry, lease.until)
            return None

    async def release(self, windows: Sequence[WindowKey], lease: Lease, cost: int) -> None:
        with self._lock:
            for key in windows:
                window = self._windows.get((key.rule, key.start, key.subject))
                if window is None:
                    window = self._windows[(key.rule, key.start, key.subject)] = _Window(key.end)
                if window.leases.pop(lease.member, None) is not None:
                    window.reserved -= lease.amount
                window.spent += cost

    async def usage(
        self, windows: Sequence[tuple[str, float, float]]
    ) -> list[tuple[str, str, Usage]]:
        with self._lock:
            found = []
            for rule, start, _end in windows:
                for (shape, begun, subject), window in self._windows.items():
                    if shape == rule and begun == start:
                        found.append((rule, subject, Usage(window.spent, window.reserved)))
            return found

    async def check(self) -> str | None:
        return None

    async def aclose(self) -> None:
        return None


_RESERVE = """
local now = tonumber(ARGV[1])
local member = ARGV[2]
local lease_until = ARGV[3]
local amount = tonumber(ARGV[4])
local count = #KEYS / 3
for i = 0, count - 1 do
  local window, leases = KEYS[i * 3 + 1], KEYS[i * 3 + 2]
  local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now)
  if #expired > 0 then
    local gone = 0
    for _, m in ipairs(expired) do
      gone = gone + tonumber(string.match(m, ':(%d+)$'))
    end
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
    redis.call('HINCRBY', window, 'reserved', -gone)
  end
  local values = redis.call('HMGET', window, 'spent', 'reserved')
  local spent = tonumber(values[1]) or 0
  local reserved = tonumber(values[2]) or 0
  if spent + reserved >= tonumber(ARGV[5 + i * 3]) then
    return {i, tostring(spent), tostring(reserved)}
  end
end
for i = 0, count - 1 do
  local window, leases, subjects = KEYS[i * 3 + 1], KEYS[i * 3 + 2], KEYS[i * 3 + 3]
  local keep_until = ARGV[7 + i * 3]
  redis.call('ZADD', leases, lease_until, member)
  redis.call('HINCRBY', window, 'reserved', amount)
  redis.call('SADD', subjects, ARGV[6 + i * 3])
  redis.call('PEXPIREAT', window, keep_until)
  redis.call('PEXPIREAT', leases, keep_until)
  redis.call('PEXPIREAT', subjects, keep_until)
end
return {-1}
"""

_RELEASE = """
local member = ARGV[1]
local amount = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
for i = 0, #KEYS / 2 - 1 do
  local window, leases = KEYS[i * 2 + 1], KEYS[i * 2 + 2]
  if redis.call('ZREM', leases, member) == 1 then
    redis.call('HINCRBY', window, 'reserved', -amount)
  end
  if cost > 0 then
    redis.call('HINCRBY', window, 'spent', cost)
  end
  redis.call('PEXPIREAT', window, ARGV[4 + i])
end
return 1
"""


class RedisBudgetStore:
    """Budget windows in Redis: admission and release are one atomic Lua script each."""

    remote = True

    def __init__(self, connection: RedisConnection, prefix: str) -> None:
        self._redis = connection
        # one hash tag: a request's windows (every rule's) are reserved by one script, which
        # on a Redis Cluster must find them all in one slot
        self._prefix = hash_tag(f"{prefix}:budget")
        self._reserve = connection.script(_RESERVE)
        self._release = connection.script(_RELEASE)

    def _base(self, rule: str, start: float) -> str:
        return f"{self._prefix}:{rule}:{int(start)}"

    async def reserve(
        self, windows: Sequence[WindowKey], lease: Lease, now: float
    ) -> tuple[int, Usage] | None:
        keys: list[str] = []
        args: list[str] = [str(int(now * 1000)), lease.member, str(int(lease.until * 1000)),
                           str(lease.amount)]  # fmt: skip
        for w in windows:
            base = self._base(w.rule, w.start)
            keys += [f"{base}:w:{w.subject}", f"{base}:l:{w.subject}", f"{base}:subjects"]
            args += [str(w.limit), w.subject, str(int((w.end + _KEEP_AFTER_END) * 1000))]
        reply = await self._redis.call(lambda: self._reserve(keys=keys, args=args))
        index = int(reply[0])
        if index < 0:
            return None
        return index, Usage(int(float(reply[1])), int(float(reply[2])))

    async def release(self, windows: Sequence[WindowKey], lease: Lease, cost: int) -> None:
        keys: list[str] = []
        args: list[str] = [lease.member, str(lease.amount), str(cost)]
        for w in windows:
            base = self._base(w.rule, w.start)
            keys += [f"{base}:w:{w.subject}", f"{base}:l:{w.subject}"]
            args.append(str(int((w.end + _KEEP_AFTER_END) * 1000)))
        await self._redis.call(lambda: self._release(keys=keys, args=args))

    async def usage(
        self, windows: Sequence[tuple[str, float, float]]
    ) -> list[tuple[str, str, Usage]]:
        client = self._redis.client

        async def members() -> list[list[bytes]]:
            async with client.pipeline(transaction=False) as pipe:
                for rule, start, _end in windows:
                    pipe.smembers(f"{self._base(rule, start)}:subjects")
                return [sorted(found) for found in await pipe.execute()]

        subjects = await self._redis.call(members)
        wanted = [
            (rule, start, raw.decode())
            for (rule, start, _end), found in zip(windows, subjects, strict=True)
            for raw in found
        ]

        async def values() -> list[list[bytes | None]]:
            async with client.pipeline(transaction=False) as pipe:
                for rule, start, subject in wanted:
                    pipe.hmget(f"{self._base(rule, start)}:w:{subject}", "spent", "reserved")
                result: list[list[bytes | None]] = await pipe.execute()
                return result

        found = await self._redis.call(values) if wanted else []
        return [
            (rule, subject, Usage(int(spent or 0), int(reserved or 0)))
            for (rule, _start, subject), (spent, reserved) in zip(wanted, found, strict=True)
        ]

    async def check(self) -> str | None:
        return await self._redis.problem()

    async def aclose(self) -> None:
        await self._redis.aclose()
