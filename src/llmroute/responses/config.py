"""The `responses` section: where the Responses API keeps conversation state, and for how long.

Kept apart from the state store's modules so that loading the configuration
loads only pydantic and the unit parsers, not a store.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from .._units import PositiveDuration
from ..cache.config import ByteCount
from ..stores.redis_urls import REDIS_SCHEMES, parse_redis_url

__all__ = ["DEFAULT_MAX_TURNS", "DEFAULT_RETENTION", "ResponsesConfig", "check_store_url"]

_STRICT = ConfigDict(extra="forbid", defer_build=True)

#: OpenAI keeps a stored response for 30 days.
DEFAULT_RETENTION = 30 * 86_400.0
#: The longest chain of stored responses a conversation is rebuilt from.
DEFAULT_MAX_TURNS = 100


def check_store_url(value: object) -> object:
    """``memory``, ``off``, a Redis URL or ``sqlite:///path``; YAML's ``off`` (false) and
    null mean ``off``."""
    if value is False or value is None:
        return "off"
    if isinstance(value, str):
        if value in ("memory", "off"):
            return value
        if value.startswith(REDIS_SCHEMES):
            parse_redis_url(value)  # a malformed cluster or Sentinel URL: its ValueError
            return value
        if value.startswith("sqlite:///") and len(value) > len("sqlite:///"):
            return value
    raise ValueError(
        "expected 'memory', 'off', a Redis URL ('redis://host:6379/0', 'rediss://...', "
        f"'unix:///path/redis.sock') or 'sqlite:///path', got {value!r}"
    )


StoreUrl = Annotated[
    str,
    BeforeValidator(check_store_url),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": (
                        r"^(memory|off|(redis|rediss|unix|redis\+cluster|redis\+sentinel)://.*"
                        r"|sqlite:///.+)$"
                    ),
                },
                {"const": False},
                {"type": "null"},
            ],
            "description": "memory, off, redis://host:port/db, rediss://..., unix:///path, "
            "redis+cluster://host:port,..., redis+sentinel://host:port,.../service/db, "
            "or sqlite:///path",
        }
    ),
]


class ResponsesConfig(BaseModel):
    """Conversation state of the Responses API (the top-level `responses` section).

    A response created with ``store: true`` (the API's default) is kept so that
    a later request can name it as ``previous_response_id`` (llmroute then sends
    the whole conversation, to any target), and so that ``GET`` and ``DELETE
    /v1/responses/{id}`` find it. In the gateway, each key sees only the
    responses created with it.

    Attributes:
        store: where responses are kept: ``memory`` (this process; lost on
            restart), ``redis://host:port/db`` (or ``rediss://``,
            ``unix:///path``: shared by every process using it),
            ``sqlite:///path`` (a file, shared by the processes of one machine),
            or ``off`` (nothing is kept; ``previous_response_id`` is refused).
        retention: how long a response is kept after it was created.
        max_responses: the memory store's bound on responses; the least
            recently used go first.
        max_size: the memory store's bound on the bytes of its responses (as
            JSON); the least recently used go first.
        max_entry_size: a response larger than this (its input, output and
            response object, as JSON) is not stored.
        max_turns: the longest chain of stored responses a conversation is
            rebuilt from; a longer one is refused.
        prefix: the first part of every Redis key.
        timeout: how long one store operation may wait: the Redis socket
            timeout (connecting, and each command), SQLite's wait for a lock.
        retry_interval: after a Redis failure, how long Redis is left alone
            (operations fail at once meanwhile) before it is tried again.
    """

    model_config = _STRICT
    store: StoreUrl = "memory"
    retention: PositiveDuration = DEFAULT_RETENTION
    max_responses: int = Field(default=10_000, ge=1)
    max_size: ByteCount = 256 * 1_048_576
    max_entry_size: ByteCount = 16 * 1_048_576
    max_turns: int = Field(default=DEFAULT_MAX_TURNS, ge=1)
    prefix: str = Field(default="llmroute:responses", min_length=1)
    timeout: PositiveDuration = 1.0
    retry_interval: PositiveDuration = 1.0
