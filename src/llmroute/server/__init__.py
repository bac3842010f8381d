"""The HTTP gateway: a router served as an OpenAI-compatible API (the ``server`` extra).

``create_app(router)`` returns a plain ASGI application; ``llmroute serve``
runs it on uvicorn. Importing this package needs no extra: uvicorn and
prometheus-client are imported when an app is created or served (the app
module is loaded on first use, see `llmroute._lazy`). See docs/server.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import exports as _exports
from .config import GatewayKeyConfig as GatewayKeyConfig
from .config import ServerConfig as ServerConfig

if TYPE_CHECKING:
    from .app import GatewayApp as GatewayApp
    from .app import create_app as create_app

_EXPORTS = {"GatewayApp": ".app", "create_app": ".app"}

__getattr__, __dir__, __all__ = _exports(
    __name__, _EXPORTS, eager=["GatewayKeyConfig", "ServerConfig"]
)
