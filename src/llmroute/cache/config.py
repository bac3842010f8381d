"""The cache's configuration: the top-level `cache` section and a route's own `cache` block."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator

from .._units import PositiveDuration
from ..stores.redis_urls import REDIS_SCHEMES, parse_redis_url

__all__ = [
    "BACKEND_SCHEMES",
    "ByteCount",
    "CacheConfig",
    "CacheScope",
    "RouteCacheConfig",
    "check_backend_url",
    "parse_bytes",
]

_STRICT = ConfigDict(extra="forbid", defer_build=True)

#: The URL schemes a cache, rate-limit or budget backend may use.
BACKEND_SCHEMES = ("memory://", *REDIS_SCHEMES)

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?")
_SIZE_UNITS = {
    None: 1, "b": 1, "kb": 1_000, "kib": 1_024, "mb": 1_000_000, "mib": 1_048_576,
    "gb": 1_000_000_000, "gib": 1_073_741_824,
}  # fmt: skip


#: Whose requests share cache entries (see `CacheConfig.scope`).
CacheScope = Literal["key", "team", "user", "global"]


def parse_bytes(value: object) -> int:
    """A byte count from an integer or a string such as ``"64MiB"``, ``"500kb"``, ``"1gb"``."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 64MiB or 500kb, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip().lower())
        if match is not None:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    raise ValueError(f"expected a size such as 64MiB or 500kb, got {value!r}")


ByteCount = Annotated[
    int,
    BeforeValidator(parse_bytes),
    Field(ge=1),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {
                    "type": "string",
                    "pattern": r"(?i)^\s*\d+(\.\d+)?\s*(b|kb|kib|mb|mib|gb|gib)?\s*$",
                },
            ],
            "description": "bytes, or a size such as 500kb, 64MiB, 1gb",
        }
    ),
]


def check_backend_url(value: str) -> str:
    """A backend URL: ``memory://`` or a Redis URL (``redis://host:port/db``,
    ``redis+cluster://host:port,...``, ``redis+sentinel://host:port,.../service/db``)."""
    if not value.startswith(BACKEND_SCHEMES):
        raise ValueError(
            f"expected 'memory://' or a Redis URL ('redis://host:6379/0', 'rediss://...', "
            f"'unix:///path/redis.sock', 'redis+cluster://host:6379,host:6380', "
            f"'redis+sentinel://host:26379,host:26380/service/0'), got {value!r}"
        )
    if value.startswith(REDIS_SCHEMES):
        parse_redis_url(value)  # a malformed cluster or Sentinel URL: its ValueError
    return value


class CacheConfig(BaseModel):
    """The response cache (the top-level `cache` section).

    Attributes:
        enabled: cache every route (a route's own ``cache: {enabled: false}``
            opts out); when false, only routes with a `cache` block of their
            own are cached.
        backend: ``memory://`` (this process) or ``redis://host:port/db``
            (shared by every process and machine using it).
        ttl: how long an answer is kept (a route's or a request's `ttl` wins).
        max_size: the memory backend's bound on the bytes of its entries;
            the least recently used are dropped first.
        max_entry_size: answers larger than this are not stored.
        compress_over: Redis entries larger than this are zlib-compressed.
        namespace: separates this router's entries from others sharing the
            backend (a request's `namespace` is added to it).
        buckets: answers kept per request (a request's `buckets` wins): while
            fewer are stored, the request is sent and its answer added; then
            one of them is picked at random.
        only_deterministic: cache only requests with ``temperature: 0`` or a
            `seed`; others bypass the cache.
        embeddings: cache embeddings requests too.
        prefix: the first part of every Redis key.
        timeout: the Redis socket timeout (connecting, and each command).
        retry_interval: after a Redis failure, how long the cache is bypassed
            before Redis is tried again.
        scope: whose requests share entries: ``key`` (the default: each
            gateway key has its own, as if each had its own cache), ``team``
            (the keys of one team share; a key without a team has its own),
            ``user`` (each user of each key), or ``global`` (every caller
            shares every entry: one tenant's answer, its id and whether it was
            cached, are seen by another). Requests without a key (in process,
            or a gateway without keys) share the unscoped entries, as with
            ``global``. A request's own `scope` wins.
    """

    model_config = _STRICT
    enabled: bool = True
    backend: str = "memory://"
    ttl: PositiveDuration = 3600.0
    max_size: ByteCount = 64 * 1_048_576
    max_entry_size: ByteCount = 1_048_576
    compress_over: ByteCount = 1_024
    namespace: str = ""
    buckets: int = Field(default=1, ge=1, le=100)
    only_deterministic: bool = False
    embeddings: bool = True
    prefix: str = Field(default="llmroute:cache", min_length=1)
    timeout: PositiveDuration = 0.25
    retry_interval: PositiveDuration = 1.0
    scope: CacheScope = "key"

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        return check_backend_url(value)


class RouteCacheConfig(BaseModel):
    """A route's own cache settings (``routes.NAME.cache``).

    Attributes:
        enabled: whether the route's answers are cached (a route with a
            `cache` block is cached even when the top-level `enabled` is false).
        ttl: how long the route's answers are kept (default: the top-level `ttl`).
    """

    model_config = _STRICT
    enabled: bool = True
    ttl: PositiveDuration | None = None
