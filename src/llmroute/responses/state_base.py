"""What every conversation store shares: the stored response, the store's interface, the codec.

The backends (`llmroute.responses.state` for memory, `state_redis`,
`state_sqlite`) and the conversation functions build on this module; import
the names from `llmroute.responses.state`, which re-exports them.

Every backend keeps a response as the same JSON document (`dump_stored`), so
what `get` returns is the same whichever backend holds it: a copy, never the
object that was stored (a caller may change what it gets back, or what it
stored, without changing the store).
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from .._errors import ResponseNotFound

__all__ = [
    "MAX_ID_LENGTH",
    "ResponseNotStored",
    "ResponseStore",
    "ResponseStoreError",
    "ResponseStoreUnavailable",
    "StoredResponse",
    "check_chain",
    "dump_stored",
    "load_stored",
    "unreadable",
]

logger = logging.getLogger("llmroute.responses")

#: Ids and scopes longer than this are never stored; looking one up finds nothing.
MAX_ID_LENGTH = 512

#: The version of the stored JSON document (``"v"``).
_FORMAT = 1


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """One response kept for the conversations that continue from it.

    Attributes:
        id: the response's id (``resp_...``), as returned to the caller.
        scope: whose response it is: the gateway key's name in server mode,
            ``""`` in process. A response is found only under its own scope.
        created_at: when it was created (Unix seconds).
        expires_at: when it stops being found (Unix seconds); None: never by time.
        previous_response_id: the response this one continued, if any.
        model: the model the caller asked for.
        input_items: this turn's own input items (not the history), as sent.
        output_items: the response's output items.
        response: the whole Response object as returned to the caller.
    """

    id: str
    scope: str
    created_at: float
    expires_at: float | None
    previous_response_id: str | None
    model: str
    input_items: list[dict[str, Any]]
    output_items: list[dict[str, Any]]
    response: dict[str, Any]

    def expired(self, now: float) -> bool:
        """Whether it has expired at `now` (Unix seconds)."""
        return self.expires_at is not None and self.expires_at <= now


class ResponseStoreError(Exception):
    """A conversation store could not carry out an operation."""


class ResponseStoreUnavailable(ResponseStoreError):
    """The store cannot be reached or used right now (Redis down or timed out, a SQLite
    file locked past the timeout or unreadable); the operation may succeed later."""


class ResponseNotStored(ResponseStoreError):
    """The store would not keep this response: larger than its `max_entry_size`, not JSON,
    or refused by the backend (Redis out of memory). Nothing was changed."""


def dump_stored(stored: StoredResponse) -> bytes:
    """The JSON document a store keeps for `stored`; `ResponseNotStored` if it is not JSON."""
    document = {
        "v": _FORMAT,
        "id": stored.id,
        "scope": stored.scope,
        "created_at": stored.created_at,
        "expires_at": stored.expires_at,
        "previous_response_id": stored.previous_response_id,
        "model": stored.model,
        "input_items": stored.input_items,
        "output_items": stored.output_items,
        "response": stored.response,
    }
    try:
        text = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ResponseNotStored(f"response {stored.id!r} is not JSON: {exc}") from exc
    return text.encode()


def load_stored(data: bytes | str) -> StoredResponse:
    """The response a store kept as `data`; `ValueError` if it is not such a document."""
    try:
        document = json.loads(data)
        if not isinstance(document, dict) or document.get("v") != _FORMAT:
            raise ValueError("not a stored response of a known format")
        stored = StoredResponse(
            id=document["id"],
            scope=document["scope"],
            created_at=document["created_at"],
            expires_at=document["expires_at"],
            previous_response_id=document["previous_response_id"],
            model=document["model"],
            input_items=document["input_items"],
            output_items=document["output_items"],
            response=document["response"],
        )
    except (KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a stored response: {exc!r}") from exc
    if not (
        isinstance(stored.id, str)
        and isinstance(stored.scope, str)
        and isinstance(stored.input_items, list)
        and isinstance(stored.output_items, list)
        and isinstance(stored.response, dict)
        and (stored.previous_response_id is None or isinstance(stored.previous_response_id, str))
    ):
        raise ValueError("not a stored response: a field has the wrong type")
    return stored


def unreadable(where: str, exc: Exception) -> None:
    """Log a stored value that could not be read (it is then treated as missing)."""
    logger.warning("llmroute responses: an unreadable stored response at %s: %s", where, exc)


class ResponseStore(ABC):
    """Where responses are kept, by scope and id.

    A response stored under one scope is never found, deleted or walked through
    under another. An expired response is not found (`get` returns None).

    Subclasses implement `put`, `get` and `delete`; `walk` has a default made of
    `get` calls that a backend may replace with a single round trip.
    """

    #: How long a new response is kept (seconds); None: until deleted or evicted.
    retention: float | None = None

    def expires_at(self, created_at: float) -> float | None:
        """When a response created at `created_at` should expire, by this store's retention."""
        return None if self.retention is None else created_at + self.retention

    @abstractmethod
    async def put(self, stored: StoredResponse) -> None:
        """Keep `stored` under its scope and id (replacing what was there) until its
        `expires_at`. Raises `ResponseNotStored` or `ResponseStoreUnavailable`."""

    @abstractmethod
    async def get(self, scope: str, response_id: str) -> StoredResponse | None:
        """The response stored under `scope` and `response_id`, None if there is none or it
        has expired. Raises `ResponseStoreUnavailable`."""

    @abstractmethod
    async def delete(self, scope: str, response_id: str) -> bool:
        """Remove a response; whether there was one (unexpired) under `scope`. Raises
        `ResponseStoreUnavailable`."""

    async def walk(self, scope: str, response_id: str, limit: int) -> list[StoredResponse]:
        """The response and its ancestors, newest first, following `previous_response_id`.

        Stops at a response without a previous one (the root), or after `limit`
        responses. Raises `ResponseNotFound` naming the first id of the chain
        that is missing or expired under `scope`.
        """
        chain: list[StoredResponse] = []
        wanted: str | None = response_id
        while wanted is not None and len(chain) < limit:
            stored = await self.get(scope, wanted)
            if stored is None:
                raise ResponseNotFound(wanted)
            chain.append(stored)
            wanted = stored.previous_response_id
        return chain

    async def check(self) -> str | None:
        """Why the store cannot be used right now (for readiness), or None."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - a store that holds nothing has nothing to do
        """Release what the store holds (connections, threads)."""


def check_chain(
    chain: list[StoredResponse], scope: str, response_id: str, limit: int, now: float
) -> list[StoredResponse]:
    """Check a chain a backend read in one go (newest first, stopped at a root, at `limit`
    responses, or at a missing id) and return it.

    Raises `ResponseNotFound` for the first link that is missing or expired at
    `now`; a response whose scope or id is not the one it was looked up by
    counts as missing.
    """
    checked: list[StoredResponse] = []
    wanted: str | None = response_id
    for stored in chain:
        if wanted is None or len(checked) == limit:
            break
        if stored.id != wanted or stored.scope != scope or stored.expired(now):
            raise ResponseNotFound(wanted)
        checked.append(stored)
        wanted = stored.previous_response_id
    if wanted is not None and len(checked) < limit:
        raise ResponseNotFound(wanted)
    return checked
