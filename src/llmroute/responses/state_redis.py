"""Responses kept in Redis, through `llmroute.stores.redis.RedisConnection`.

One string key per response, ``<prefix>:{scope:<scope>}:<id>`` with the scope
and the id percent-encoded (every byte but ``A-Za-z0-9_.-~``), so no ``:`` in a scope
or an id can make two keys meet: ``a:b`` + ``c`` and ``a`` + ``b:c`` are
different keys. The key expires through Redis's own TTL, set from the
response's `expires_at` (the store's retention after its creation).

The value is ``1``, the previous response's encoded id (empty for the first of
a conversation), a newline, then the JSON document every store keeps
(`dump_stored`). The first line lets a Lua script follow a conversation's links
without decoding any JSON: `walk` reads a whole conversation in one round trip.
The script reads keys it computes itself, all of the one scope: the braces make
the scope the key's Redis Cluster hash tag, so a scope's responses share a slot
and the script runs on a cluster too. Every value read is checked against the scope and id it was asked
for before it is used.

Every command goes through the connection: bounded by its timeout, never
retried, and refused at once while Redis rests after a failure; each failure is
a `ResponseStoreUnavailable`. A write Redis refuses (out of memory under
``noeviction``, a read-only replica) is a `ResponseNotStored`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import quote

from .._clock import Clock, SystemClock
from .._errors import ResponseNotFound
from ..stores.redis import RedisConnection, RedisUnavailable
from .config import DEFAULT_RETENTION
from .state_base import (
    MAX_ID_LENGTH,
    ResponseNotStored,
    ResponseStore,
    ResponseStoreUnavailable,
    StoredResponse,
    check_chain,
    dump_stored,
    load_stored,
    unreadable,
)

__all__ = ["WALK_SCRIPT", "RedisResponseStore"]

T = TypeVar("T")

#: Follows the links from KEYS[1]; ARGV[1] is the scope's key prefix, ARGV[2] the most values
#: to return. Returns the values found, newest first: it stops at the first response of the
#: conversation, at a missing key, or at the limit.
WALK_SCRIPT = """
local found = {}
local key = KEYS[1]
local limit = tonumber(ARGV[2])
while #found < limit do
  local value = redis.call('GET', key)
  if not value then
    return found
  end
  found[#found + 1] = value
  local newline = string.find(value, '\\n', 1, true)
  if not newline or newline < 2 then
    return found
  end
  local link = string.sub(value, 2, newline - 1)
  if link == '' then
    return found
  end
  key = ARGV[1] .. link
end
return found
"""

_VERSION = b"1"


def _quote(text: str) -> str:
    return quote(text, safe="")


class RedisResponseStore(ResponseStore):
    """Responses in Redis (see the module docstring).

    Args:
        connection: the Redis connection (purpose ``responses``); closed by `aclose`.
        clock: the time source of expiry (its `time`).
        prefix: the first part of every key.
        retention: how long a new response is kept (`expires_at`).
        max_entry_size: a larger response is refused (`ResponseNotStored`).
    """

    def __init__(
        self,
        connection: RedisConnection,
        *,
        clock: Clock | None = None,
        prefix: str = "llmroute:responses",
        retention: float | None = DEFAULT_RETENTION,
        max_entry_size: int = 16 * 1_048_576,
    ) -> None:
        from redis.exceptions import ResponseError  # the connection has imported redis

        self._redis = connection
        self._clock = clock or SystemClock()
        self.prefix = prefix
        self.retention = retention
        self.max_entry_size = max_entry_size
        self._walk = connection.script(WALK_SCRIPT)
        #: An error Redis answers with: it is reachable, it refused the command.
        self._refusal: type[Exception] = ResponseError

    def key(self, scope: str, response_id: str) -> str:
        """The Redis key of a response."""
        return f"{self._scope_prefix(scope)}{_quote(response_id)}"

    def _scope_prefix(self, scope: str) -> str:
        # the scope is the hash tag (never empty: ``{}`` would not be a tag)
        return f"{self.prefix}:{{scope:{_quote(scope)}}}:"

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        try:
            return await self._redis.call(operation)
        except RedisUnavailable as exc:
            raise ResponseStoreUnavailable(str(exc)) from exc

    async def put(self, stored: StoredResponse) -> None:
        if len(stored.id) > MAX_ID_LENGTH or len(stored.scope) > MAX_ID_LENGTH:
            raise ResponseNotStored(f"response id or scope longer than {MAX_ID_LENGTH}")
        document = dump_stored(stored)
        if len(document) > self.max_entry_size:
            raise ResponseNotStored(
                f"response {stored.id!r} is {len(document)} bytes as JSON, over the store's "
                f"{self.max_entry_size} (responses.max_entry_size)"
            )
        client, key = self._redis.client, self.key(stored.scope, stored.id)
        milliseconds: int | None = None
        if stored.expires_at is not None:
            milliseconds = math.ceil((stored.expires_at - self._clock.time()) * 1000)
            if milliseconds <= 0:  # expired already: nothing to keep, nothing older either
                await self._call(lambda: client.delete(key))
                return
        link = _quote(stored.previous_response_id or "").encode()
        value = _VERSION + link + b"\n" + document
        refusal = self._refusal

        async def write() -> Exception | None:
            # caught here, not by the connection: a refusal is not an outage to rest after
            try:
                await client.set(key, value, px=milliseconds)
            except refusal as exc:
                return exc
            return None

        refused = await self._call(write)
        if refused is not None:
            raise ResponseNotStored(f"responses: Redis refused the write: {refused}") from refused

    def _load(self, value: bytes, key: str) -> StoredResponse | None:
        _, newline, document = value.partition(b"\n")
        try:
            if not newline or not value.startswith(_VERSION):
                raise ValueError("no header line")
            return load_stored(document)
        except ValueError as exc:
            unreadable(f"Redis key {key!r}", exc)
            return None

    async def get(self, scope: str, response_id: str) -> StoredResponse | None:
        if len(response_id) > MAX_ID_LENGTH or len(scope) > MAX_ID_LENGTH:
            return None
        client, key = self._redis.client, self.key(scope, response_id)
        value: bytes | None = await self._call(lambda: client.get(key))
        if value is None:
            return None
        stored = self._load(value, key)
        if stored is None or stored.id != response_id or stored.scope != scope:
            return None
        return None if stored.expired(self._clock.time()) else stored

    async def delete(self, scope: str, response_id: str) -> bool:
        if len(response_id) > MAX_ID_LENGTH or len(scope) > MAX_ID_LENGTH:
            return False
        client, key = self._redis.client, self.key(scope, response_id)

        async def take() -> bytes | None:
            # GET and DEL in one transaction (GETDEL needs Redis 6.2): whether what was
            # removed was this scope's, unexpired response is read from the value itself
            async with client.pipeline(transaction=True) as pipe:
                pipe.get(key)
                pipe.delete(key)
                value, _ = await pipe.execute()
            return value  # type: ignore[no-any-return]

        value = await self._call(take)
        if value is None:
            return False
        stored = self._load(value, key)
        return (
            stored is not None
            and (stored.scope, stored.id) == (scope, response_id)
            and not stored.expired(self._clock.time())
        )

    async def walk(self, scope: str, response_id: str, limit: int) -> list[StoredResponse]:
        """As `ResponseStore.walk`, in one round trip (a Lua script follows the links)."""
        if len(response_id) > MAX_ID_LENGTH or len(scope) > MAX_ID_LENGTH:
            raise ResponseNotFound(response_id)
        key = self.key(scope, response_id)
        scope_prefix = self._scope_prefix(scope)
        script = self._walk
        values: list[Any] = await self._call(lambda: script(keys=[key], args=[scope_prefix, limit]))
        chain: list[StoredResponse] = []
        for value in values:
            stored = self._load(value, key)
            if stored is None:
                break  # the chain is broken here: check_chain names the missing id
            chain.append(stored)
        return check_chain(chain, scope, response_id, limit, self._clock.time())

    async def check(self) -> str | None:
        return await self._redis.problem()

    async def aclose(self) -> None:
        await self._redis.aclose()
