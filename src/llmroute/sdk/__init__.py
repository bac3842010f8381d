"""Genuine OpenAI and Anthropic SDK clients served by a router in process (no socket, no port).

``router.openai_client()`` returns a real ``openai.AsyncOpenAI`` (``openai.OpenAI``
on the blocking `Router`), ``router.anthropic_client()`` a real
``anthropic.AsyncAnthropic`` / ``anthropic.Anthropic``, and ``router.http_client()``
the ``httpx2`` client under them, for an SDK client built by hand
(``http_client=``). Their requests go straight into the router's gateway
application (the one ``llmroute serve`` serves, `InProcessGateway`), so the
SDKs' own types, helpers, headers and exception classes are the genuine ones,
and frameworks built on them (instructor, langchain-openai, pydantic-ai,
openai-agents) work unchanged. See docs/sdk-clients.md.

The transports (`AsyncInProcessTransport`, `InProcessTransport`; their httpx
0.28 twins in `llmroute.sdk.httpx_transports`) stream each response's body as
the application writes it; closing a response early tells the application its
client has gone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import exports as _exports

if TYPE_CHECKING:
    from ._exchange import AppFailed as AppFailed
    from ._serve import PortalCall as PortalCall
    from .clients import BASE_URL as BASE_URL
    from .clients import PLACEHOLDER_KEY as PLACEHOLDER_KEY
    from .gateway import GatewayClosed as GatewayClosed
    from .gateway import InProcessGateway as InProcessGateway
    from .transports import AsyncInProcessTransport as AsyncInProcessTransport
    from .transports import InProcessTransport as InProcessTransport

_EXPORTS = {
    "AppFailed": "._exchange",
    "AsyncInProcessTransport": ".transports",
    "BASE_URL": ".clients",
    "GatewayClosed": ".gateway",
    "InProcessGateway": ".gateway",
    "InProcessTransport": ".transports",
    "PLACEHOLDER_KEY": ".clients",
    "PortalCall": "._serve",
}

__getattr__, __dir__, __all__ = _exports(__name__, _EXPORTS)
