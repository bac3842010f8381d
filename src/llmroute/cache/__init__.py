"""The response cache: exact-match, in memory or shared through Redis.

See docs/caching.md. Names are imported on first use, so that the
configuration models (`CacheConfig`) load without the rest.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import CacheConfig, RouteCacheConfig
    from .convert import chunks_to_completion, completion_to_chunks
    from .keys import cache_key
    from .stage import CacheStage, CacheStats

__all__ = [
    "CacheConfig",
    "CacheStage",
    "CacheStats",
    "RouteCacheConfig",
    "cache_key",
    "chunks_to_completion",
    "completion_to_chunks",
]

_LAZY = {
    "CacheConfig": ".config",
    "CacheStage": ".stage",
    "CacheStats": ".stage",
    "RouteCacheConfig": ".config",
    "cache_key": ".keys",
    "chunks_to_completion": ".convert",
    "completion_to_chunks": ".convert",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
