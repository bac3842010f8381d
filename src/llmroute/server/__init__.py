"""The HTTP gateway: a router served as an OpenAI-compatible API (the ``server`` extra).

``create_app(router)`` returns a plain ASGI application; ``llmroute serve``
runs it on uvicorn. Importing this package needs no extra: uvicorn and
prometheus-client are imported when an app is created or served. See
docs/server.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import GatewayKeyConfig, ServerConfig

if TYPE_CHECKING:
    from .app import GatewayApp, create_app

__all__ = ["GatewayApp", "GatewayKeyConfig", "ServerConfig", "create_app"]


def __getattr__(name: str) -> Any:
    # the app needs prometheus-client: load it on first use only
    if name in ("GatewayApp", "create_app"):
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
