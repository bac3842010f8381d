"""Shared fixtures: the anyio backend and a loopback OpenAI-compatible upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from _upstream import Upstream, completion_body


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# ---------------------------------------------------------------- a loopback upstream


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    state = Upstream(base_url="")

    async def dispatch(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        state.requests.append(json.loads(raw) if raw else {})
        state.headers.append(request.headers.copy())
        state.queries.append(request.query_string)
        state.peers.append(
            request.transport.get_extra_info("peername") if request.transport else None
        )
        if state.handler is None:
            return web.json_response(completion_body())
        return await state.handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", dispatch)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    state.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield state
    finally:
        await runner.cleanup()
