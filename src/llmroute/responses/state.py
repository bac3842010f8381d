"""Conversation state for the Responses API: stored responses, and conversations rebuilt from them.

A response created with ``store: true`` is kept as a `StoredResponse`: its own
input items, its output items and the Response object, under the caller's
scope (the gateway key's name; ``""`` in process). A later request naming it
as ``previous_response_id`` is sent as a self-contained conversation:
`conversation()` walks the ``previous_response_id`` links back to the first
response and returns, oldest first, each turn's input items followed by its
output items. Any target can then continue it, whatever served the turns before.

Stores (`ResponseStore`), chosen by `store_from_config`:

- `MemoryResponseStore`: this process; bounded by a count and by bytes, the
  least recently used response going first (reading a conversation uses every
  response in it, so a live conversation is not evicted before an idle one).
  An expired response is dropped when read, and by a sweep of the whole store
  at most once a minute, run by `put`.
- `RedisResponseStore` (`llmroute.responses.state_redis`): one key per response,
  expiring through Redis's own TTL; a conversation is read in one round trip.
- `SqliteResponseStore` (`llmroute.responses.state_sqlite`): a table in a
  SQLite file (WAL), shared by the processes of one machine; run in a thread
  of its own, never on the event loop.

Scope isolation is a security property: a response stored under one scope is
not found, deleted or walked through under another (`ResponseNotFound`, as if
it did not exist).
"""

from __future__ import annotations

from collections import OrderedDict
from hashlib import sha256
from typing import Any, NamedTuple

from .._clock import Clock, SystemClock
from .._errors import ConfigError, RequestError, ResponseNotFound
from ..stores.redis import RedisConnection
from .config import DEFAULT_MAX_TURNS, DEFAULT_RETENTION, ResponsesConfig
from .state_base import (
    MAX_ID_LENGTH,
    ResponseNotStored,
    ResponseStore,
    ResponseStoreError,
    ResponseStoreUnavailable,
    StoredResponse,
    dump_stored,
    load_stored,
    unreadable,
)
from .state_redis import RedisResponseStore
from .state_sqlite import SqliteResponseStore

__all__ = [
    "MemoryResponseStore",
    "RedisResponseStore",
    "ResponseNotFound",
    "ResponseNotStored",
    "ResponseStore",
    "ResponseStoreError",
    "ResponseStoreUnavailable",
    "SqliteResponseStore",
    "StoredResponse",
    "conversation",
    "input_items",
    "listed_input_items",
    "store_from_config",
]

#: The memory store sweeps out expired responses at most this often (seconds).
SWEEP_INTERVAL = 60.0


# ---------------------------------------------------------------- conversations


async def _chain(
    store: ResponseStore, scope: str, response_id: str, max_turns: int, param: str | None
) -> list[StoredResponse]:
    """The stored responses from the first to `response_id`, oldest first."""
    if max_turns < 1:
        raise ValueError(f"max_turns must be at least 1, got {max_turns}")
    try:
        chain = await store.walk(scope, response_id, max_turns + 1)
    except ResponseNotFound as exc:
        raise ResponseNotFound(exc.response_id, param=param) from None
    if len(chain) > max_turns:
        raise RequestError(
            f"the conversation ending with response '{response_id}' has more than "
            f"{max_turns} stored turns (responses.max_turns); start a new one, with the "
            "items it needs as input",
            param=param,
        )
    chain.reverse()
    return chain


async def conversation(
    store: ResponseStore,
    scope: str,
    response_id: str,
    *,
    max_turns: int,
    param: str | None = "previous_response_id",
) -> list[dict[str, Any]]:
    """The items that rebuild a conversation up to and including `response_id`.

    Walks ``previous_response_id`` back to the first response, then returns,
    oldest first, each turn's input items followed by its output items: the
    history to put before a request that continues from `response_id`.

    Raises `ResponseNotFound` when `response_id` or one of its ancestors is
    unknown under `scope` or has expired, and `RequestError` when the chain has
    more than `max_turns` responses; both name `param`.
    """
    items: list[dict[str, Any]] = []
    for turn in await _chain(store, scope, response_id, max_turns, param):
        items += turn.input_items
        items += turn.output_items
    return items


async def input_items(
    store: ResponseStore,
    scope: str,
    response_id: str,
    *,
    max_turns: int = DEFAULT_MAX_TURNS,
    param: str | None = None,
) -> list[dict[str, Any]]:
    """The items that were the model's input for `response_id`, oldest first.

    The conversation before it (as `conversation` rebuilds it for its previous
    response) followed by its own input items: what
    ``GET /v1/responses/{id}/input_items`` lists. Raises as `conversation` does.
    """
    chain = await _chain(store, scope, response_id, max_turns, param)
    items: list[dict[str, Any]] = []
    for turn in chain[:-1]:
        items += turn.input_items
        items += turn.output_items
    items += chain[-1].input_items
    return items


#: The prefix of an input item's id, by its type, as OpenAI names them.
_ID_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco",
                "custom_tool_call": "ctc", "custom_tool_call_output": "ctco"}  # fmt: skip


def _listed(turn: StoredResponse, index: int, item: dict[str, Any]) -> dict[str, Any]:
    """`item` (input item `index` of `turn`) with an id: its own, else one made from its
    place (the same in every listing), with the prefix OpenAI gives its type."""
    if "id" in item:
        return item
    prefix = _ID_PREFIXES.get(item.get("type", "message"), "item")
    digest = sha256(f"{turn.id}:{index}".encode()).hexdigest()[:48]
    return {"id": f"{prefix}_{digest}", **item}


async def listed_input_items(
    store: ResponseStore,
    scope: str,
    response_id: str,
    *,
    max_turns: int = DEFAULT_MAX_TURNS,
    param: str | None = None,
) -> list[dict[str, Any]]:
    """`input_items`, each with an id (what ``GET /v1/responses/{id}/input_items`` lists).

    An item the caller sent without an id is stored and replayed without one: an id
    llmroute made up would reach the next turn's native upstream, which refuses ids it
    did not issue (and ids of the wrong kind: ``item_...`` for a function call output).
    Listed, it gets one derived from its response and place, stable across listings."""
    chain = await _chain(store, scope, response_id, max_turns, param)
    items: list[dict[str, Any]] = []
    for turn in chain[:-1]:
        items += [_listed(turn, i, item) for i, item in enumerate(turn.input_items)]
        items += turn.output_items
    last = chain[-1]
    items += [_listed(last, i, item) for i, item in enumerate(last.input_items)]
    return items


# ---------------------------------------------------------------- in memory


class _Entry(NamedTuple):
    data: bytes
    expires_at: float | None


class MemoryResponseStore(ResponseStore):
    """Responses in this process (see the module docstring).

    Args:
        max_responses: the most responses kept; the least recently used go first.
        clock: the time source of expiry (its `time`).
        retention: how long a new response is kept (`expires_at`).
        max_size: the most bytes kept (responses as JSON); the least recently
            used go first.
        max_entry_size: a larger response is refused (`ResponseNotStored`).
    """

    def __init__(
        self,
        max_responses: int = 10_000,
        clock: Clock | None = None,
        *,
        retention: float | None = DEFAULT_RETENTION,
        max_size: int = 256 * 1_048_576,
        max_entry_size: int = 16 * 1_048_576,
    ) -> None:
        if max_responses < 1:
            raise ValueError(f"max_responses must be at least 1, got {max_responses}")
        self.max_responses = max_responses
        self.max_size = max_size
        self.max_entry_size = max_entry_size
        self.retention = retention
        self._clock = clock or SystemClock()
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._bytes = 0
        self._next_sweep = float("-inf")
        #: Responses dropped to stay within `max_responses` and `max_size`.
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        """The bytes held (the responses' JSON)."""
        return self._bytes

    async def put(self, stored: StoredResponse) -> None:
        data = dump_stored(stored)
        if len(data) > self.max_entry_size or len(data) > self.max_size:
            raise ResponseNotStored(
                f"response {stored.id!r} is {len(data)} bytes as JSON, over the store's "
                f"{min(self.max_entry_size, self.max_size)} (responses.max_entry_size)"
            )
        if len(stored.id) > MAX_ID_LENGTH or len(stored.scope) > MAX_ID_LENGTH:
            raise ResponseNotStored(f"response id or scope longer than {MAX_ID_LENGTH}")
        now = self._clock.time()
        key = (stored.scope, stored.id)
        self._remove(key)
        if not stored.expired(now):
            self._entries[key] = _Entry(data, stored.expires_at)
            self._bytes += len(data)
            while len(self._entries) > self.max_responses or self._bytes > self.max_size:
                self._remove(next(iter(self._entries)))
                self.evictions += 1
        if now >= self._next_sweep:
            self.sweep()

    async def get(self, scope: str, response_id: str) -> StoredResponse | None:
        key = (scope, response_id)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at is not None and entry.expires_at <= self._clock.time():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        try:
            return load_stored(entry.data)
        except ValueError as exc:  # only what dump_stored wrote is here: not expected
            unreadable(f"memory {key!r}", exc)
            return None

    async def delete(self, scope: str, response_id: str) -> bool:
        key = (scope, response_id)
        entry = self._entries.get(key)
        if entry is None:
            return False
        self._remove(key)
        return entry.expires_at is None or entry.expires_at > self._clock.time()

    def sweep(self) -> int:
        """Drop every expired response now; how many were dropped."""
        now = self._clock.time()
        self._next_sweep = now + SWEEP_INTERVAL
        expired = [
            key
            for key, entry in self._entries.items()
            if entry.expires_at is not None and entry.expires_at <= now
        ]
        for key in expired:
            self._remove(key)
        return len(expired)

    def _remove(self, key: tuple[str, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry.data)

    async def aclose(self) -> None:
        self._entries.clear()
        self._bytes = 0


# ---------------------------------------------------------------- from the configuration


def store_from_config(config: ResponsesConfig, clock: Clock) -> ResponseStore | None:
    """The store the `responses` section asks for; None for ``store: off``.

    Nothing is connected or opened yet: Redis is reached, and the SQLite file
    created, on first use (`check()` tries them).
    """
    url = config.store
    if url == "off":
        return None
    if url == "memory":
        return MemoryResponseStore(
            config.max_responses,
            clock,
            retention=config.retention,
            max_size=config.max_size,
            max_entry_size=config.max_entry_size,
        )
    if url.startswith("sqlite:///"):
        return SqliteResponseStore(
            url[len("sqlite:///") :],
            clock=clock,
            retention=config.retention,
            max_entry_size=config.max_entry_size,
            timeout=config.timeout,
        )
    try:
        connection = RedisConnection(
            url,
            timeout=config.timeout,
            retry_interval=config.retry_interval,
            purpose="responses",
            clock=clock,
        )
    except ConfigError as exc:
        raise ConfigError(
            f"{url!r} needs the redis package: pip install 'llmroute[redis]'",
            path="responses.store",
        ) from exc
    return RedisResponseStore(
        connection,
        clock=clock,
        prefix=config.prefix,
        retention=config.retention,
        max_entry_size=config.max_entry_size,
    )
