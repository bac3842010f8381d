"""Cache backends: where entries live, chosen by URL.

- ``memory://``: this process; a cachetools `TLRUCache` bounded by the bytes
  of its entries (least recently used dropped first), each entry with its own
  time to live.
- ``redis://host:port/db`` (or ``rediss://``, ``unix://``): shared by every
  process and machine using it; entries expire through Redis's own TTL and
  are zlib-compressed above `compress_over` bytes. A lookup is one round trip
  (``MGET``, for every bucket of the key at once).

Entries are bytes (see `llmroute.cache.entry`); a backend never interprets them.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from cachetools import TLRUCache

from .._clock import Clock
from ..limits._redis import RedisConnection

__all__ = ["CacheBackend", "MemoryBackend", "RedisBackend"]


class CacheBackend(Protocol):
    """A key-value store with expiry."""

    #: Whether calls go over the network (then stores run off the request's path).
    remote: bool

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of `keys`, None where missing or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store `value` under `key` for `ttl` seconds."""
        ...

    async def check(self) -> str | None:
        """Why the store cannot be used right now, or None."""
        ...

    async def aclose(self) -> None:
        """Release what the backend holds."""
        ...


class _Item(NamedTuple):
    value: bytes
    ttl: float


def _expires(_key: str, item: _Item, now: float) -> float:
    return now + item.ttl


def _size(item: _Item) -> int:
    return len(item.value) + 200  # the key, the tuple and the cache's own bookkeeping


class MemoryBackend:
    """Entries in this process, bounded to `max_size` bytes."""

    remote = False

    def __init__(self, clock: Clock, max_size: int) -> None:
        self._items: TLRUCache[str, _Item] = TLRUCache(
            max_size, _expires, timer=clock.monotonic, getsizeof=_size
        )

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        items = self._items
        found: list[bytes | None] = []
        for key in keys:
            item = items.get(key)
            found.append(item.value if item is not None else None)
        return found

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        item = _Item(value, ttl)
        if _size(item) <= self._items.maxsize:
            self._items[key] = item

    def __len__(self) -> int:
        return len(self._items)

    async def check(self) -> str | None:
        return None

    async def aclose(self) -> None:
        self._items.clear()


_RAW, _ZLIB = b"r", b"z"


class RedisBackend:
    """Entries in Redis (see the module docstring); a failure raises `RedisUnavailable`."""

    remote = True

    def __init__(self, connection: RedisConnection, compress_over: int) -> None:
        self._redis = connection
        self._compress_over = compress_over

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        client = self._redis.client
        if len(keys) == 1:
            key = keys[0]
            raw: list[bytes | None] = [await self._redis.call(lambda: client.get(key))]
        else:
            raw = await self._redis.call(lambda: client.mget(keys))
        return [_unpack(value) if value is not None else None for value in raw]

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        if len(value) > self._compress_over:
            packed = _ZLIB + zlib.compress(value, 1)
        else:
            packed = _RAW + value
        client = self._redis.client
        await self._redis.call(lambda: client.set(key, packed, px=max(1, int(ttl * 1000))))

    async def check(self) -> str | None:
        return await self._redis.problem()

    async def aclose(self) -> None:
        await self._redis.aclose()


def _unpack(value: bytes) -> bytes | None:
    """An entry's bytes; None for a value this version cannot read."""
    kind, body = value[:1], value[1:]
    if kind == _RAW:
        return body
    if kind == _ZLIB:
        try:
            return zlib.decompress(body)
        except zlib.error:
            return None
    return None
