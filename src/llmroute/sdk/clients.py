"""The HTTP and SDK clients of a router's in-process gateway (``router.openai_client()`` ...).

What the SDK client's settings mean here:

- ``base_url`` and ``http_client`` are the router's (``http://llmroute.local/v1``,
  served in process): passing either is a `TypeError`, since either would
  send the requests somewhere else than the router. The SDK's own
  ``OPENAI_BASE_URL`` / ``ANTHROPIC_BASE_URL`` are not read, for the same reason.
- ``api_key`` is the gateway key when the router's ``server.keys`` are set
  (the key's limits, budgets and identity apply, as over HTTP); without gateway
  keys any value is accepted and a placeholder is sent when none is given.
  The SDK's ``OPENAI_API_KEY`` / ``ANTHROPIC_API_KEY`` are not read: provider
  keys belong to the router's configuration.
- ``max_retries`` defaults to 0: the router already retries and fails over
  along the route, within its deadline; the SDK's retries would repeat all of
  that (and multiply the attempts). Set it to retry on top, knowingly.
- ``timeout`` has no effect (no socket is opened): the route's ``deadline``
  bounds a request, or ``x-llmroute-timeout`` per request or client.
- ``default_headers`` and ``extra_headers`` are sent to the gateway: the
  ``x-llmroute-*`` controls (user, session, properties, cache, timeout) apply.
  Everything else (``organization``, ``project``, ``default_query``, ...) is
  passed to the SDK as given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx2

from ._serve import PortalCall
from .gateway import HOST, InProcessGateway
from .transports import AsyncInProcessTransport, InProcessTransport

if TYPE_CHECKING:
    import anthropic
    import openai

__all__ = [
    "BASE_URL", "PLACEHOLDER_KEY", "anthropic_client", "async_anthropic_client",
    "async_http_client", "async_openai_client", "http_client", "openai_client",
]  # fmt: skip

#: The base URL of the in-process clients (the gateway serves the same paths without ``/v1``).
BASE_URL = f"http://{HOST}/v1"
#: The API key the SDK clients send when none is given (any key passes a gateway without keys).
PLACEHOLDER_KEY = "llmroute-in-process"
_REFUSED = {
    "base_url": "the in-process client's base URL is the router's",
    "http_client": "the SDK client is built over the router's own HTTP client",
    "transport": "the client's transport is the router's gateway",
    "mounts": "mounted transports would send requests past the router",
    "proxy": "a proxy would send requests past the router",
    "app": "the client serves the router's gateway application",
}


def _check(options: dict[str, Any], *names: str) -> None:
    for name in names:
        if name in options:
            raise TypeError(f"{name}= is not accepted: {_REFUSED[name]}")


def async_http_client(gateway: InProcessGateway, **options: Any) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` whose requests the gateway serves in process; `options` as for
    ``httpx2.AsyncClient`` (but its transport, base URL, mounts and proxy)."""
    _check(options, "transport", "base_url", "mounts", "proxy", "app")
    return httpx2.AsyncClient(
        transport=AsyncInProcessTransport(gateway), base_url=BASE_URL, **options
    )


def http_client(gateway: InProcessGateway, call: PortalCall, **options: Any) -> httpx2.Client:
    """An ``httpx2.Client`` (blocking) whose requests the gateway serves on the router's loop
    thread, which `call` runs coroutines on; `options` as for `async_http_client`."""
    _check(options, "transport", "base_url", "mounts", "proxy", "app")
    return httpx2.Client(transport=InProcessTransport(gateway, call), base_url=BASE_URL, **options)


def _uses_httpx2(default_client: type) -> bool:
    """Whether an SDK's default HTTP client class is httpx2's (else: httpx's, before httpx2)."""
    return issubclass(default_client, httpx2.AsyncClient | httpx2.Client)


def _sdk_http_client(
    gateway: InProcessGateway, call: PortalCall | None, default_client: type
) -> Any:
    """The HTTP client of the library (httpx2 or httpx) the SDK is built on."""
    if _uses_httpx2(default_client):
        if call is None:
            return httpx2.AsyncClient(transport=AsyncInProcessTransport(gateway), base_url=BASE_URL)
        return httpx2.Client(transport=InProcessTransport(gateway, call), base_url=BASE_URL)
    import httpx

    from . import httpx_transports

    if call is None:
        transport = httpx_transports.AsyncInProcessTransport(gateway)
        return httpx.AsyncClient(transport=transport, base_url=BASE_URL)
    return httpx.Client(
        transport=httpx_transports.InProcessTransport(gateway, call), base_url=BASE_URL
    )


def _sdk_options(options: dict[str, Any]) -> dict[str, Any]:
    _check(options, "base_url", "http_client")
    options.setdefault("max_retries", 0)
    if options.get("api_key") is None:
        options["api_key"] = PLACEHOLDER_KEY
    return options


def async_openai_client(gateway: InProcessGateway, **options: Any) -> openai.AsyncOpenAI:
    """An ``openai.AsyncOpenAI`` served by the gateway in process (see the module for what
    its settings mean)."""
    import openai

    http = _sdk_http_client(gateway, None, openai.DefaultAsyncHttpxClient)
    return openai.AsyncOpenAI(base_url=BASE_URL, http_client=http, **_sdk_options(options))


def openai_client(gateway: InProcessGateway, call: PortalCall, **options: Any) -> openai.OpenAI:
    """An ``openai.OpenAI`` served by the gateway on the router's loop thread."""
    import openai

    http = _sdk_http_client(gateway, call, openai.DefaultHttpxClient)
    return openai.OpenAI(base_url=BASE_URL, http_client=http, **_sdk_options(options))


def async_anthropic_client(gateway: InProcessGateway, **options: Any) -> anthropic.AsyncAnthropic:
    """An ``anthropic.AsyncAnthropic`` served by the gateway's ``/v1/messages`` in process."""
    import anthropic

    http = _sdk_http_client(gateway, None, anthropic.DefaultAsyncHttpxClient)
    base = f"http://{HOST}"  # the anthropic SDK's paths start with /v1
    return anthropic.AsyncAnthropic(base_url=base, http_client=http, **_sdk_options(options))


def anthropic_client(
    gateway: InProcessGateway, call: PortalCall, **options: Any
) -> anthropic.Anthropic:
    """An ``anthropic.Anthropic`` served by the gateway's ``/v1/messages`` on the router's
    loop thread."""
    import anthropic

    http = _sdk_http_client(gateway, call, anthropic.DefaultHttpxClient)
    base = f"http://{HOST}"
    return anthropic.Anthropic(base_url=base, http_client=http, **_sdk_options(options))
