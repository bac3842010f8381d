"""The response cache: exact-match, in memory or shared through Redis.

See docs/caching.md. Names are imported on first use (see `llmroute._lazy`), so
that the configuration models (`CacheConfig`) load without the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import exports as _exports

if TYPE_CHECKING:
    from .config import CacheConfig as CacheConfig
    from .config import RouteCacheConfig as RouteCacheConfig
    from .convert import chunks_to_completion as chunks_to_completion
    from .convert import completion_to_chunks as completion_to_chunks
    from .keys import cache_key as cache_key
    from .stage import CacheStage as CacheStage
    from .stage import CacheStats as CacheStats

_EXPORTS = {
    "CacheConfig": ".config",
    "CacheStage": ".stage",
    "CacheStats": ".stage",
    "RouteCacheConfig": ".config",
    "cache_key": ".keys",
    "chunks_to_completion": ".convert",
    "completion_to_chunks": ".convert",
}

__getattr__, __dir__, __all__ = _exports(__name__, _EXPORTS)
