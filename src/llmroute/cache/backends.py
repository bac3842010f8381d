"""Cache backends: where entries live, chosen by URL.

- ``memory://``: this process; a cachetools `LRUCache` bounded by the bytes
  of its entries (least recently used dropped first), each entry with its own
  time to live (an expired entry is dropped when it is next looked up, or
  when the least recently used make room).
- ``redis://host:port/db`` (or ``rediss://``, ``unix://``, ``redis+cluster://``,
  ``redis+sentinel://``): shared by every
  process and machine using it; entries expire through Redis's own TTL and
  are zlib-compressed above `compress_over` bytes. A lookup is one round trip
  (``MGET``, for every bucket of the key at once; on a Redis Cluster,
  ``redis+cluster://``, one ``MGET`` per slot, pipelined). A write Redis answers with
  an error (out of memory under ``noeviction``, a read-only replica) is a
  refused write (`CacheWriteRefused`): that entry is not stored, and Redis
  is not taken for unreachable, so lookups go on.

The memory backend keeps `StoredAnswer` objects as they are; Redis keeps
their bytes (see `llmroute.cache.entry`).
"""

from __future__ import annotations

import logging
import sys
import zlib
from collections.abc import Sequence
from typing import NamedTuple, Protocol

from cachetools import LRUCache

from .._clock import Clock
from ..stores.redis import RedisConnection
from .entry import StoredAnswer, decode_answer, encode_answer
from .keys import CacheKey

__all__ = ["CacheBackend", "CacheWriteRefused", "LocalCache", "MemoryBackend", "RedisBackend"]

_log = logging.getLogger("llmroute.cache")


class CacheWriteRefused(Exception):
    """The backend answered and would not store this entry (Redis out of memory, a
    read-only replica): a failed write, not an unavailable backend."""


class LocalCache(Protocol):
    """The synchronous face of a backend whose entries live in this process.

    A memory hit is the cache's fast path: `get_one` and `lookup` answer it
    without creating and awaiting a coroutine, and keys may be `memory_key`
    tuples (hashable values, never serialised) as well as text, which spares a
    hit the canonical JSON and its digest (the figures are in docs/caching.md,
    "Speed"; with tuple keys, the stage 96.5k -> 70.7k instructions per hit, callgrind,
    b0e5746). Oracle: tests/test_fast_paths.py (the short path against `get_many`'s).
    """

    def get_one(self, key: CacheKey) -> StoredAnswer | None:
        """The answer under `key`, None when missing or expired."""
        ...

    def lookup(self, keys: Sequence[CacheKey]) -> list[StoredAnswer | None]:
        """The answers under `keys`, None where missing or expired."""
        ...

    def put(self, key: CacheKey, answer: StoredAnswer, ttl: float) -> None:
        """Store `answer` under `key` for `ttl` seconds."""
        ...

    def __len__(self) -> int:
        """How many entries are held."""
        ...


class CacheBackend(Protocol):
    """A key-value store with expiry.

    The cache stage calls `local()` once: a backend in this process returns its
    `LocalCache` face, which the stage then uses for every lookup and store,
    with tuple keys where the request has one. A remote backend returns None;
    the stage then awaits `get_many` and `set` with text keys only (a tuple key
    reaching one is a bug, and raises `TypeError`).
    """

    #: Whether calls go over the network (then stores run off the request's path).
    remote: bool

    def local(self) -> LocalCache | None:
        """This backend's synchronous face if its entries live in this process, else None."""
        ...

    async def get_many(self, keys: Sequence[CacheKey]) -> list[StoredAnswer | None]:
        """The answers under `keys`, None where missing, expired or unreadable."""
        ...

    async def set(self, key: CacheKey, answer: StoredAnswer, ttl: float) -> None:
        """Store `answer` under `key` for `ttl` seconds; `CacheWriteRefused` when the
        backend will not take this entry."""
        ...

    async def check(self) -> str | None:
        """Why the store cannot be used right now, or None."""
        ...

    async def aclose(self) -> None:
        """Release what the backend holds."""
        ...


class _Item(NamedTuple):
    answer: StoredAnswer
    expires: float
    size: int


def _size(item: _Item) -> int:
    return item.size


def _key_size(key: object) -> int:
    """About the bytes `key` holds: its text, and what a tuple key's values hold."""
    if isinstance(key, str | bytes):
        return sys.getsizeof(key)  # not len(): a character may take up to four bytes
    if isinstance(key, tuple):
        return sum(_key_size(value) for value in key) + 8 * len(key)
    return 16


class MemoryBackend:
    """Entries in this process, bounded to `max_size` bytes."""

    remote = False

    def __init__(self, clock: Clock, max_size: int) -> None:
        # an LRUCache with expiry checked on lookup costs a fifth of a TLRUCache's get
        self._items: LRUCache[CacheKey, _Item] = LRUCache(max_size, getsizeof=_size)
        self._clock = clock

    def local(self) -> MemoryBackend:
        return self

    def get_one(self, key: CacheKey) -> StoredAnswer | None:
        """The answer under `key`, None when missing or expired (a hit's path is short)."""
        try:  # half the calls of `get()`, which checks `in` first
            item = self._items[key]
        except KeyError:  # not there: a miss
            return None
        if item.expires <= self._clock.monotonic():
            self._items.pop(key, None)
            return None
        return item.answer

    def lookup(self, keys: Sequence[CacheKey]) -> list[StoredAnswer | None]:
        """`get_many`, without the coroutine: a hit's path is short."""
        items = self._items
        now = self._clock.monotonic()
        found: list[StoredAnswer | None] = []
        for key in keys:
            item = items.get(key)
            if item is not None and item.expires <= now:
                items.pop(key, None)
                item = None
            found.append(item.answer if item is not None else None)
        return found

    async def get_many(self, keys: Sequence[CacheKey]) -> list[StoredAnswer | None]:
        return self.lookup(keys)

    async def set(self, key: CacheKey, answer: StoredAnswer, ttl: float) -> None:
        self.put(key, answer, ttl)

    def put(self, key: CacheKey, answer: StoredAnswer, ttl: float) -> None:
        """`set`, without the coroutine; `key` may also be a `memory_key` tuple.

        An entry counts its answer's bytes, its key's and 300 for the objects and
        the cache's own bookkeeping; one larger than the whole cache is not kept."""
        size = len(answer.body) + _key_size(key) + 300
        if size <= self._items.maxsize:
            self._items[key] = _Item(answer, self._clock.monotonic() + ttl, size)

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
        from redis.exceptions import ResponseError  # the connection has imported redis

        self._redis = connection
        self._compress_over = compress_over
        #: An error Redis answers with: it is reachable, it refused the command.
        self._refusal: type[Exception] = ResponseError

    def local(self) -> None:
        return None

    async def get_many(self, keys: Sequence[CacheKey]) -> list[StoredAnswer | None]:
        client = self._redis.client
        names = [_text(key) for key in keys]
        if len(names) == 1:
            name = names[0]
            raw: list[bytes | None] = [await self._redis.call(lambda: client.get(name))]
        elif self._redis.cluster:  # keys of many slots: one MGET per slot, in one pipeline
            raw = await self._redis.call(lambda: client.mget_nonatomic(names))
        else:
            raw = await self._redis.call(lambda: client.mget(names))
        return [_unpack(value) if value is not None else None for value in raw]

    async def set(self, key: CacheKey, answer: StoredAnswer, ttl: float) -> None:
        name = _text(key)
        value = encode_answer(answer)
        if len(value) > self._compress_over:
            packed = _ZLIB + zlib.compress(value, 1)
        else:
            packed = _RAW + value
        client, refusal = self._redis.client, self._refusal
        milliseconds = max(1, int(ttl * 1000))

        async def write() -> Exception | None:
            # caught here, not by the connection: a refusal is not an outage to rest after
            try:
                await client.set(name, packed, px=milliseconds)
            except refusal as exc:
                return exc
            return None

        refused = await self._redis.call(write)
        if refused is not None:
            raise CacheWriteRefused(f"cache: Redis refused the write: {refused}") from refused

    async def check(self) -> str | None:
        return await self._redis.problem()

    async def aclose(self) -> None:
        await self._redis.aclose()


def _text(key: CacheKey) -> str:
    """A Redis key: text only (`memory_key` tuples are for `LocalCache` backends)."""
    if not isinstance(key, str):
        raise TypeError(f"a remote cache backend takes text keys, got {key!r}")
    return key


def _unpack(value: bytes) -> StoredAnswer | None:
    """The answer in a Redis value; None for a value this version cannot read."""
    kind, body = value[:1], value[1:]
    if kind == _ZLIB:
        try:
            body = zlib.decompress(body)
        except zlib.error as exc:
            _log.warning("llmroute cache: a corrupt compressed entry, treated as a miss: %s", exc)
            return None
    elif kind != _RAW:
        _log.warning("llmroute cache: an entry of unknown format %r, treated as a miss", kind)
        return None
    return decode_answer(body)
