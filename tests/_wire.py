"""A provider's wire owned by the test, through the public `HandlerTransport`.

Give ``transports={"a": wire.transport}`` to an `AsyncRouter` and provider ``a``
(of any type) sends its requests here: the test reads their JSON bodies from
`requests`, and the mock provider's engine, configured with the same options
as a ``type: mock`` provider, answers them.
"""

from __future__ import annotations

import json
from typing import Any

from llmroute import HandlerTransport, HttpRequest, HttpResponse, SystemClock, Timeouts
from llmroute.providers.configs import MockProviderConfig
from llmroute.providers.mock import MockTransport

#: The mock's limits on the wire (the router's own deadlines still apply around it).
_TIMEOUTS = Timeouts(connect=10.0, read=None)


class Wire:
    """Keeps the JSON body of each request (`requests`) and answers as a mock would."""

    def __init__(self, **mock_options: Any) -> None:
        self.requests: list[dict[str, Any]] = []
        self._options: dict[str, Any] = {}
        self._upstream = self._mock()
        self.answer_like(**mock_options)
        self.transport = HandlerTransport(self._handle)

    def answer_like(self, **mock_options: Any) -> None:
        """From now on, answer as a mock with these options changed (a latency, say)."""
        self._options.update(mock_options)
        self._upstream = self._mock()

    def _mock(self) -> MockTransport:
        config = MockProviderConfig.model_validate({"type": "mock", **self._options})
        return MockTransport(config, SystemClock())

    async def _handle(self, request: HttpRequest) -> HttpResponse:
        self.requests.append(json.loads(request.body) if request.body else {})
        return await self._upstream.send(request, _TIMEOUTS)
